"""``trimodal-ros evaluate``: arguments and the call into ``evaluate.evaluate``."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score a checkpoint on bags: retrieval, token accuracy, MAE")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--bags", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="heldout", choices=["train", "val", "heldout", "all"], help="layouts to score")
    p.add_argument("--instructions", default="bag", choices=["bag", "train", "heldout", "other_task", "empty"],
                   help="the recorded command, a paraphrase from the train / held-out set, another task's, or none")
    p.add_argument("--no-language", action="store_true",
                   help="skip the language section (the same frames with other instructions: 5 passes)")
    p.add_argument("--fusion", default=None, help="fail unless the checkpoint is this variant")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cli_evaluate)


def cli_evaluate(args) -> int:
    from trimodal_lab.eval.evaluate import evaluate

    evaluate(args.checkpoint, args.bags, args.out, split=args.split, instructions=args.instructions,
             batch_size=args.batch_size, device=args.device, fusion=args.fusion, with_language=not args.no_language)
    print((Path(args.out) / "report.md").read_text())
    return 0
