"""Where does a policy trained with ``train.state_weight`` think the object and the goal are?

The model's state head (``model.state_input``; older checkpoints may carry an auxiliary one beside
the weights instead) reads the image embedding; its error on the frames of unseen layouts says how
well the visual features localise what each task is about, separately from how well the action head
uses them. Mean absolute error in cm per coordinate, for every task, on a subsample of the train
frames and on the chosen split.

    python -m trimodal_lab.probes.state_probe --checkpoint runs/mt10_state/last.pt \
        [--data data/mt10_192_state] [--split val] [--by-layout reach-v3,pick-place-v3]

``--by-layout`` adds, for the named tasks, the goal error of each layout of the split on the first
frames of its episode (before the arm can hide the marker): an average over layouts can hide one
layout the features get wholly wrong.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="data/mt10_192_state")
    p.add_argument("--split", default="val")
    p.add_argument("--train-every", type=int, default=7, help="train frames: every N-th (it is a sanity line)")
    p.add_argument("--by-layout", default="", help="comma-separated tasks: goal error per layout, first frames")
    p.add_argument("--first", type=int, default=5, help="--by-layout: frames from the start of each episode")
    args = p.parse_args()

    import torch

    from trimodal_ros.checkpoint import load_checkpoint, read_checkpoint
    from trimodal_ros.data.dataset import BagDataset
    from trimodal_ros.model.heads import StateHead

    model, _, cfg = load_checkpoint(args.checkpoint)
    model.eval()
    saved = read_checkpoint(args.checkpoint).get("state_head")  # the auxiliary one, beside the model
    if cfg.model.state_input:
        head = model.state_head
    elif saved is not None:
        head = StateHead(cfg.model.embed_dim, saved["mean"].numel())
        head.load_state_dict(saved)
        head.eval()
    else:
        print(f"{args.checkpoint} was trained without train.state_weight: no state head to probe")
        return 1
    width = head.mean.numel()  # the state the head was trained on: 6 (object, goal) or 9 (and hand)
    groups = ["object", "goal", "hand"][:width // 3]
    print("mean |error| in cm: " + " | ".join(f"{g} x y z" for g in groups))
    for split, every in (("train", args.train_every), (args.split, 1)):
        ds = BagDataset.from_config(args.data, cfg.model, split=split, verbose=False, state=width)
        idx = np.arange(0, len(ds), every)
        errors, tasks, layouts, steps = [], [], [], []
        with torch.inference_mode():
            for s in range(0, len(idx), 64):
                items = [ds[int(i)] for i in idx[s:s + 64]]
                out = model(model.preprocess(np.stack([x["image"] for x in items])),
                            torch.as_tensor(np.stack([x["proprio"] for x in items])),
                            text_ids=model.tokenize([x["instruction"] for x in items]))
                pred = (out.state if cfg.model.state_input else head(out.image)) * head.std + head.mean  # (B, S) m
                errors.append((pred - torch.as_tensor(np.stack([x["state"] for x in items]))).abs().numpy())
                tasks += [x["task"] for x in items]
                layouts += [x["layout"] for x in items]
                steps += [x["step"] for x in items]
        err, tasks = 100 * np.concatenate(errors), np.array(tasks)
        layouts, steps = np.array(layouts), np.array(steps)
        print(f"{split} ({len(idx)} frames)")
        for t in sorted(set(tasks)) + ["ALL"]:
            e = err if t == "ALL" else err[tasks == t]
            print(f"  {t:24s} " + " | ".join(" ".join(f"{v:4.1f}" for v in e[:, 3 * g:3 * g + 3].mean(0))
                                              for g in range(len(groups))))
        if split == args.split and args.by_layout:
            print(f"  goal x y z per layout, first {args.first} frames of each episode")
            for t in args.by_layout.split(","):
                for lay in sorted(set(layouts[tasks == t])):
                    m = (tasks == t) & (layouts == lay)
                    first = np.argsort(steps[m], kind="stable")[:args.first]
                    print(f"  {t:24s} layout {lay:3d} " + " ".join(f"{v:4.1f}" for v in err[m][first, 3:6].mean(0)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
