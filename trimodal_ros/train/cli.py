"""Argument glue for ``trimodal-ros train``."""

from __future__ import annotations

import dataclasses
import logging

from ..config import load_config


def cli_train(args) -> int:
    from .trainer import train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, fusion=args.fusion)
    over = {k: v for k, v in {"loss": args.loss, "seed": args.seed, "steps": args.steps,
                               "batch_size": args.batch_size}.items() if v is not None}
    if over:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **over))
    result = train(cfg, args.data, args.out, resume=args.resume, device=args.device)
    if result.rank == 0:
        print(f"checkpoint: {result.checkpoint}")
    return 0
