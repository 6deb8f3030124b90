"""``trimodal-ros bench tick``: the policy's cached tick (``Policy.act``: preprocess, model, decode) in
every mode the device runs (fp32, bf16, fp16 autocast, each with and without a CUDA graph on CUDA), its
median time and ratio to fp32 measured in one run, and the share of ticks whose tokens equal fp32's on
the same frames. Random weights (seeded) unless ``--checkpoint``."""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch


def modes(device: str):
    cuda = device.startswith("cuda")
    for precision in ("fp32", "bf16") + (("fp16",) if cuda else ()):
        for graph in ((False, True) if cuda else (False,)):
            yield precision, graph


def tick_run(arch: str, config: str, checkpoint: str, device: str, precision: str, graph: bool, iters: int):
    """(median seconds per tick, tokens per tick) of one mode on fixed frames."""
    from trimodal_ros.config import load_config
    from trimodal_ros.policy import Policy

    if checkpoint:
        policy = Policy.load(checkpoint, device=device, precision=precision, cuda_graph=graph)
    else:  # the config's architecture with another image/text tower, random weights (seed 0)
        cfg = load_config(config)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, clip_model=arch, pretrained=None))
        policy = Policy.load(config=cfg, device=device, precision=precision, cuda_graph=graph)
    mc = policy.model_config
    rng = np.random.default_rng(0)
    n = len(mc.joint_names)
    ticks = [({c: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for c in mc.cameras},
              rng.uniform(-1, 1, n)) for _ in range(iters)]
    policy.reset("open the top drawer of the cabinet")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for views, q in ticks[:3]:  # warm-up (and graph capture)
        policy.act(views, q, np.zeros(n))
    policy.reset("open the top drawer of the cabinet")  # the same ensembling history in every mode
    times, tokens = [], []
    for views, q in ticks:
        sync()
        t0 = time.perf_counter()
        step = policy.act(views, q, np.zeros(n))
        sync()
        times.append(time.perf_counter() - t0)
        tokens.append(step.tokens)
    return statistics.median(times), tokens


def run(args) -> int:
    device = args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"{torch.get_num_threads()} CPU threads"
    archs = ["tiny-vit"] + ([] if args.no_vitb32 else ["ViT-B-32"])
    config = args.config or "mt10_policy_concat"
    print(f"device={device} ({name}), torch {torch.__version__}; Policy.act on 224² frames, text cached, "
          f"{args.iters} ticks per mode, {args.checkpoint or 'random weights of ' + config}")
    print(f"{'arch':9} {'precision':9} {'graph':5} {'tick':>9} {'vs fp32':>8} {'tokens = fp32':>14}")
    for arch in ([None] if args.checkpoint else archs):
        base = None
        for precision, graph in modes(device):
            t, tokens = tick_run(arch, config, args.checkpoint or "", device, precision, graph, args.iters)
            base = base or (t, tokens)
            same = float(np.mean([np.array_equal(a, b) for a, b in zip(tokens, base[1])]))
            print(f"{arch or 'ckpt':9} {precision:9} {'yes' if graph else 'no':5} {1e3 * t:7.2f}ms "
                  f"{t / base[0]:7.2f}x {same:13.1%}", flush=True)
    print("tokens = fp32: the share of ticks whose tokens equal fp32's on the same frames")
    return 0
