"""``trimodal-ros bench model``: per-variant inference latency and throughput, against the
machine's measured matmul rate, so a number can be read as "x times the FLOP floor"."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable, List

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from trimodal_ros.config import load_config
from trimodal_ros.model import FUSIONS, TriModalModel


def _time(fn: Callable[[], object], iters: int, warmup: int = 2) -> List[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def matmul_gflops(n: int = 1024, iters: int = 10, device: str = "cpu") -> float:
    """Measured fp32 matmul rate of ``device`` (GFLOP/s): the denominator of the FLOP floor."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t = statistics.median(_time(lambda: (a @ b, sync()), iters))
    return 2 * n**3 / t / 1e9


def count_flops(fn: Callable[[], object]) -> int:
    # FlopCounterMode's module tracker needs autograd metadata, so count with grad mode on
    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def synthetic_frames(batch: int, size: int, cameras: int, seed: int = 0) -> np.ndarray:
    """uint8 frames the model takes: (B, S, S, 3), or (B, V, S, S, 3) for V cameras."""
    shape = (batch, size, size, 3) if cameras == 1 else (batch, cameras, size, size, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def bench_variant(arch: str, fusion: str, iters: int, device: str, gflops: float, config: str = "") -> dict:
    cfg = dataclasses.replace(load_config(config or fusion).model, clip_model=arch, pretrained=None)
    torch.manual_seed(0)
    model = TriModalModel(cfg).to(device).eval()
    frame = synthetic_frames(1, 224, len(cfg.cameras))
    frames16 = np.repeat(frame, 16, axis=0)
    proprio1 = torch.zeros(1, cfg.proprio_dim, device=device)
    proprio16 = torch.zeros(16, cfg.proprio_dim, device=device)
    instruction = ["open the top drawer of the cabinet"]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    cached = model.encode_instructions(instruction)

    def tick_cached():
        model(model.preprocess(frame), proprio1, text=cached).tokens().cpu()
        sync()

    def tick_uncached():
        model(model.preprocess(frame), proprio1, text=model.encode_instructions(instruction)).tokens().cpu()
        sync()

    def batch16():
        model(model.preprocess(frames16), proprio16, text=cached).tokens().cpu()
        sync()

    flops = count_flops(tick_cached)
    with torch.inference_mode():
        cached = model.encode_instructions(instruction)  # the closures read this one
        t_c = _time(tick_cached, iters)
        t_u = _time(tick_uncached, iters)
        t_b = _time(batch16, max(2, iters // 4), warmup=1)
    tick = statistics.median(t_c)
    floor = flops / (gflops * 1e9)
    return {
        "arch": arch, "fusion": cfg.fusion, "cameras": len(cfg.cameras),
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "tick_cached_ms": 1e3 * tick, "tick_cached_p95_ms": 1e3 * float(np.percentile(t_c, 95)),
        "tick_uncached_ms": 1e3 * statistics.median(t_u), "batch16_per_s": 16 / statistics.median(t_b),
        "gflop_per_tick": flops / 1e9, "floor_ms": 1e3 * floor, "tick_over_floor": tick / floor,
    }


def run(args) -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    device = args.device
    gflops = matmul_gflops(4096 if device.startswith("cuda") else 1024, device=device)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"{torch.get_num_threads()} CPU threads"
    print(f"device={device} ({name}), torch {torch.__version__}, measured fp32 matmul: {gflops:.1f} GFLOP/s")
    fusions = [load_config(args.config).model.fusion] if args.config else ([args.fusion] if args.fusion
                                                                            else FUSIONS.names())
    archs = ["tiny-vit"] + ([] if args.no_vitb32 else ["ViT-B-32"])
    hdr = (f"{'arch':9} {'fusion':16} {'params':>7} {'tick(cached)':>13} {'p95':>7} {'tick(uncached)':>15} "
           f"{'b16/s':>7} {'GFLOP':>6} {'floor':>8} {'tick/floor':>10}")
    print(hdr)
    print("-" * len(hdr))
    for arch in archs:
        iters = args.iters if arch == "tiny-vit" else max(3, args.iters // 4)
        for fusion in fusions:
            r = bench_variant(arch, fusion, iters, device, gflops, args.config or "")
            print(f"{r['arch']:9} {r['fusion']:16} {r['params_M']:6.1f}M {r['tick_cached_ms']:11.1f}ms "
                  f"{r['tick_cached_p95_ms']:6.1f} {r['tick_uncached_ms']:13.1f}ms {r['batch16_per_s']:7.1f} "
                  f"{r['gflop_per_tick']:6.2f} {r['floor_ms']:6.1f}ms {r['tick_over_floor']:9.1f}x", flush=True)
    if args.config:
        print(f"config {args.config}: {r['cameras']} camera(s) per tick")
    print("tick = one inference at batch 1 (preprocess 224² frame(s) → tokens); cached = text embedding "
          "reused per instruction, as vla_node does. floor = FLOPs of the cached tick / measured matmul rate.")
    return 0
