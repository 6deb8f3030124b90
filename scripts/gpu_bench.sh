#!/usr/bin/env bash
# The README's GPU figures: the model and a training step on CUDA for the one- and two-camera MT10
# configs, a CPU/CUDA agreement check of the two-camera policy, and `bench ros` with vla_node on
# CUDA (then on the CPU of the same machine, for the ratio). Usage: scripts/gpu_bench.sh [PYTHON] [OUTDIR]
# PYTHON must import torch (CUDA), open_clip_torch, and for the last part rclpy (the ros-jazzy wheels).
set -u
PY=${1:-python3}
OUT=${2:-runs/gpu_bench}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
T="$PY -m trimodal_ros.cli"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/machine.txt"
echo "cores: $(nproc)" | tee -a "$OUT/machine.txt"
for c in mt10_policy mt10_two_cameras; do
  $T bench model --device cuda --no-vitb32 --iters 40 --config $c 2>&1 | tee "$OUT/model_$c.txt"
  $T bench train --device cuda --no-vitb32 --iters 20 --config $c 2>&1 | tee "$OUT/train_$c.txt"
done
$T bench tick --device cuda --iters 200 2>&1 | tee "$OUT/tick.txt"  # fp32 / bf16 / fp16, eager and CUDA graph
$PY -m pytest -q test/test_policy.py -k "cuda_graph or bf16" 2>&1 | tee "$OUT/tick_tests.txt"  # graph tokens = eager
$PY - <<'EOF' 2>&1 | tee "$OUT/agreement.txt"
import numpy as np
from trimodal_ros.policy import Policy
rng = np.random.default_rng(0)
ticks = [({"camera": f[0], "top_camera": f[1]}, rng.normal(size=9)) for f in
         rng.integers(0, 256, (20, 2, 192, 192, 3), dtype=np.uint8)]
out = {}
for d in ("cpu", "cuda"):
    p = Policy.load(fusion="weighted_sum", config="mt10_two_cameras", seed=0, device=d)
    p.reset("reach the goal")
    out[d] = [p.act(v, q, np.zeros(9)) for v, q in ticks]
emb = max(float(np.abs(a.embedding - b.embedding).max()) for a, b in zip(out["cpu"], out["cuda"]))
tok = np.mean([np.mean(a.tokens == b.tokens) for a, b in zip(out["cpu"], out["cuda"])])
print(f"two-camera policy, 20 ticks, random weights: CPU vs CUDA max |embedding diff| {emb:.2e}, "
      f"tokens equal {tok:.3f}")
EOF
$PY -c "import rclpy" || { echo "no rclpy: bench ros skipped"; exit 0; }
for d in cuda cpu; do
  timeout 240 $T bench ros --device $d --iters 60 2>&1 | tee "$OUT/ros_$d.txt"
done
