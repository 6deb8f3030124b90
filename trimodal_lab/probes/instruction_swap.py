"""Does a trained policy read the instruction? Swap it on recorded frames and see the error move.

Reach, push and pick-place start from one kind of scene (a puck and a goal marker): the marker's
colour and the instruction tell them apart. For every third frame of each task's episodes in a
split, the first predicted action (argmax tokens, decoded) is compared with the expert's recorded
one, once with an instruction of the frame's own task and once with each other task's; a policy
that ignores the words has the same error in every column.

    python -m trimodal_lab.probes.instruction_swap --checkpoint runs/mt10_policy/last.pt \
        [--data data/mt10_192] [--split val] [--tasks reach-v3,push-v3,pick-place-v3]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="data/mt10_192")
    p.add_argument("--split", default="val")
    p.add_argument("--tasks", default="reach-v3,push-v3,pick-place-v3")
    args = p.parse_args()

    import torch

    from trimodal_ros.checkpoint import load_checkpoint
    from trimodal_ros.data.dataset import BagDataset
    from trimodal_ros.data.instructions import instruction_for

    model, tok, cfg = load_checkpoint(args.checkpoint)
    model.eval()
    tasks = args.tasks.split(",")
    ds = BagDataset.from_config(args.data, cfg.model, split=args.split, verbose=False)
    rng = np.random.default_rng(0)
    print(f"mean |Δxyz| of the first action vs the expert, {args.split} frames; columns: the instruction's task")
    print(f"{'frames of':16} {'n':>4} " + " ".join(f"{t:>16}" for t in tasks))
    every = [ds[i] for i in range(len(ds))]
    for task in tasks:
        items = [it for it in every if it["task"] == task][::3]
        if not items:
            print(f"{task:16} no frames in {args.data} ({args.split})")
            continue
        images = model.preprocess(np.stack([it["image"] for it in items]))
        proprio = torch.as_tensor(np.stack([it["proprio"] for it in items]))
        expert = np.stack([it["actions"][0] for it in items])[:, :3]
        errs = []
        with torch.inference_mode():
            for told in tasks:
                texts = [instruction_for(told, rng, "train") for _ in items]
                out = model(images, proprio, text_ids=model.tokenize(texts))
                actions = tok.decode(out.logits.argmax(-1).numpy())[:, 0, :3]
                errs.append(float(np.abs(actions - expert).mean()))
        print(f"{task:16} {len(items):4d} " + " ".join(f"{e:16.3f}" for e in errs), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
