"""``trimodal-ros train``: arguments and the call into ``trainer.train``."""

from __future__ import annotations

import dataclasses
import logging

from ..config import ConfigError, load_config


def register(sub) -> None:
    p = sub.add_parser("train", help="train on bags: contrastive alignment + action-token cross-entropy")
    p.add_argument("--config", required=True, help="config YAML or variant name (config/<name>.yaml)")
    p.add_argument("--data", required=True, help="folder of episode bags (trimodal-ros generate)")
    p.add_argument("--out", required=True, help="run folder: last.pt, metrics.csv")
    p.add_argument("--fusion", default=None, help="override the config's fusion variant")
    p.add_argument("--cameras", default=None, help="override the config's named cameras, primary first "
                   "(camera,wrist_camera); the bags must hold each NAME/image_raw")
    p.add_argument("--robot", default=None, help="robot spec YAML (or a name in config/robots): the bags' topics, "
                                                 "joint and action names; carried by the checkpoint")
    p.add_argument("--loss", default=None, help="override the contrastive loss (pairwise, joint, clip, none)")
    p.add_argument("--instructions", default=None, choices=["bag", "train", "empty"],
                   help="override train.instructions (bag: the recorded words, for tasks outside Meta-World)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--augment-shift", type=int, default=None,
                   help="override train.augment_shift: DrQ random shift of training images by up to ± N pixels")
    p.add_argument("--ema", type=float, default=None,
                   help="override train.ema: serve an exponential moving average of the weights with this decay")
    p.add_argument("--label-sigma", type=float, default=None,
                   help="override train.label_sigma: HL-Gauss action targets this many bins wide (0: one-hot)")
    p.add_argument("--state-weight", type=float, default=None,
                   help="override train.state_weight: auxiliary object/goal position loss (needs bags with /sim/state)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=cli_train)


def cli_train(args) -> int:
    from .trainer import TrainDataError, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cameras = [c.strip() for c in args.cameras.split(",")] if args.cameras else None
    try:
        cfg = load_config(args.config, robot=args.robot, fusion=args.fusion, cameras=cameras)
    except ConfigError as e:
        print(f"trimodal-ros train: {e}")
        return 2
    over = {k: v for k, v in {"loss": args.loss, "instructions": args.instructions, "seed": args.seed,
                               "steps": args.steps,
                               "batch_size": args.batch_size, "augment_shift": args.augment_shift,
                               "ema": args.ema, "label_sigma": args.label_sigma,
                               "state_weight": args.state_weight}.items()
            if v is not None}
    if over:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **over))
    try:
        result = train(cfg, args.data, args.out, resume=args.resume, device=args.device)
    except TrainDataError as e:
        print(f"trimodal-ros train: {e}")
        return 2
    if result.rank == 0:
        print(f"checkpoint: {result.checkpoint}")
    return 0
