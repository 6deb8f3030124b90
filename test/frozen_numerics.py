"""The numerics a refactor must not change. A fixed checkpoint per configuration — weights drawn
from each parameter's *name* (not from construction order, which a refactor may change) — runs on
fixed frames and joints; its tokens, actions and embeddings are committed under
``test/data/frozen/``. ``test_frozen_numerics.py`` replays them; ``python test/frozen_numerics.py
--write`` records them again, which only a deliberate change of the numerics may do (say so in the
commit). A parameter renamed by a refactor fails the test: old checkpoints would not load either."""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "data" / "frozen"
# every fusion variant's config, the shipped recipe's (state head, 512-wide concat head, positions
# only), the two-camera one and the wordllama text tower's; each is served for TICKS ticks of one task
CONFIGS = ("weighted_sum", "concat_mlp", "cross_attention", "qformer", "early_fusion", "mt10_policy",
           "mt10_policy_concat", "mt10_two_cameras", "mt10_policy_wordllama")
TICKS = 6
INSTRUCTION = "open the drawer"


def frozen_weights(model) -> None:
    """Overwrite every parameter with values drawn from its name: N(0, 1/fan_in) for matrices,
    1 + N(0, 0.1) for norm scales, N(0, 0.02) for the other vectors. Buffers keep their defaults."""
    import torch

    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            rng = np.random.default_rng(zlib.crc32(name.encode()))
            x = rng.standard_normal(tuple(p.shape))
            if p.ndim >= 2:
                x /= np.sqrt(np.prod(p.shape[1:]))
            elif name.endswith("weight"):
                x = 1.0 + 0.1 * x
            else:
                x *= 0.02
            p.copy_(torch.as_tensor(x, dtype=p.dtype))


def inputs(policy, ticks: int = TICKS, size: int = 72):
    """Fixed frames (a {camera: uint8 frame} mapping) and joint states, the same on every machine."""
    rng = np.random.default_rng(7)
    cams = policy.model_config.cameras
    n = len(policy.model_config.joint_names)
    for _ in range(ticks):
        frames = {c: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for c in cams}
        yield frames, rng.uniform(-1, 1, n).astype(np.float32), rng.uniform(-0.1, 0.1, n).astype(np.float32)


def checkpoint(name: str, path: Path) -> Path:
    """Write configuration ``name``'s fixed checkpoint to ``path``."""
    from trimodal_ros.checkpoint import save_checkpoint
    from trimodal_ros.policy import Policy

    p = Policy.load(config=name, seed=0)
    frozen_weights(p.model)
    return save_checkpoint(path, p.model, p.config, p.tokenizer)


def run(policy):
    """{"tokens" (T, K, A), "actions" (T, K, A), "embeddings" (T, D), "margins" (T,)} for the fixed
    inputs; a margin is a tick's smallest gap between the best and second-best bin's logit."""
    import torch

    policy.reset(INSTRUCTION)
    out = {"tokens": [], "actions": [], "embeddings": [], "margins": []}
    head = policy.model.head
    seen = []
    hook = head.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        for f, q, dq in inputs(policy):
            s = policy.act(f, q, dq)
            top2 = torch.topk(seen[-1].float(), 2, dim=-1).values
            out["margins"].append(float((top2[..., 0] - top2[..., 1]).min()))
            out["tokens"].append(s.tokens)
            out["actions"].append(s.actions)
            out["embeddings"].append(s.embedding)
    finally:
        hook.remove()
    return {k: np.stack(v) for k, v in out.items()}


def write() -> None:
    import tempfile

    import torch

    from trimodal_ros.policy import Policy

    torch.set_num_threads(1)
    HERE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in CONFIGS:
            got = run(Policy.load(str(checkpoint(name, Path(tmp) / f"{name}.pt"))))
            np.savez(HERE / f"{name}.npz", **got)
            print(f"{name}: tokens {got['tokens'].shape}, smallest logit margin {got['margins'].min():.2e}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the expected outputs again")
    if ap.parse_args().write:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        write()
