"""``trimodal-ros bench train``: training steps per second of one configuration on synthetic
batches (no bags needed), so a GPU budget can be planned from a measurement, not a FLOP estimate.

A step is what ``train.trainer`` does per step after batching: preprocess the uint8 frames,
forward (text tower included), the objective's action cross-entropy + contrastive loss, backward, clip, AdamW
(bf16 autocast on CUDA, as the trainer). Batch assembly from a dataset is not included.
"""

from __future__ import annotations

import dataclasses
import statistics

import torch


def bench_train(arch: str, fusion: str, loss: str, batch: int, size: int, steps: int, device: str,
                config: str = "") -> dict:
    from trimodal_ros.config import load_config
    from trimodal_ros.model import TriModalModel
    from trimodal_ros.model.objective import TriModalObjective
    from trimodal_ros.train.trainer import param_groups
    from trimodal_lab.bench.model_bench import _time, synthetic_frames

    cfg = load_config(config or fusion)
    mc = dataclasses.replace(cfg.model, clip_model=arch, pretrained=None)
    torch.manual_seed(0)
    model = TriModalModel(mc).to(device).train()
    cuda = device.startswith("cuda")
    # the action loss plus the contrastive one at weight 1, nothing else (no state, text or label terms)
    tc = dataclasses.replace(cfg.train, loss=loss, contrastive_weight=1.0, uncertainty_weighting=False,
                             state_weight=0.0, text_alignment=0.0, instruction_noise=0.0, label_sigma=0.0,
                             positives="sample")
    objective = TriModalObjective(model, tc, amp=cuda)
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, fused=True)
    frames = synthetic_frames(batch, size, len(mc.cameras))
    texts = [f"instruction number {i % 10}" for i in range(batch)]
    b = {"proprio": torch.randn(batch, mc.proprio_dim, device=device),
         "tokens": torch.randint(0, mc.bins, (batch, mc.chunk, mc.action_dim), device=device),
         "mask": torch.ones(batch, mc.chunk, dtype=torch.bool, device=device)}
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step():
        total, _ = objective({**b, "images": model.preprocess(frames), "text_ids": model.tokenize(texts)})
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()

    t = statistics.median(_time(step, steps, warmup=3))
    return {"arch": arch, "fusion": mc.fusion, "cameras": len(mc.cameras), "loss": loss, "batch": batch,
            "size": size, "ms_per_step": 1e3 * t, "samples_per_s": batch / t,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6}


def run(args) -> int:
    device = args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"{torch.get_num_threads()} CPU threads"
    print(f"device={device} ({name}), torch {torch.__version__}; synthetic batches, {args.iters} timed steps each")
    batch = args.batch or (128 if device.startswith("cuda") else 32)
    rows = [("tiny-vit", 128)] + ([] if args.no_vitb32 else [("ViT-B-32", 224)])
    for arch, size in rows:
        r = bench_train(arch, args.fusion or "weighted_sum", "pairwise", batch, size, args.iters, device,
                        args.config or "")
        print(f"{r['arch']:9} {r['fusion']:14} {r['params_M']:6.1f}M {r['cameras']} cam batch {r['batch']:4d} "
              f"{r['size']}²: "
              f"{r['ms_per_step']:8.1f} ms/step, {r['samples_per_s']:8.0f} samples/s", flush=True)
    return 0
