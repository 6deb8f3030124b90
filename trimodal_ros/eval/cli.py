"""Argument glue for ``trimodal-ros evaluate``."""

from __future__ import annotations

from pathlib import Path


def cli_evaluate(args) -> int:
    from .evaluate import evaluate

    evaluate(args.checkpoint, args.bags, args.out, split=args.split, instructions=args.instructions,
             batch_size=args.batch_size, device=args.device, fusion=args.fusion)
    print((Path(args.out) / "report.md").read_text())
    return 0
