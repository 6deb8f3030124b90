"""``trimodal-study``: the pre-registered study's runs and report (see ``trimodal_lab.study``)."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="trimodal-study", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="the runs, one 'CELL SEED' a line (feed a Slurm array or GNU parallel)")
    ls.add_argument("--missing", action="store_true", help="only those without a result file")
    r = sub.add_parser("run", help="one run: train (resuming), roll out once on the test set, write its result")
    r.add_argument("cell")
    r.add_argument("seed", type=int)
    n = sub.add_parser("next", help="the first missing run no other process holds")
    for p in (r, n):
        p.add_argument("--device", default="auto")
    for p in (ls, n):
        p.add_argument("--cell", action="append", default=[], metavar="GLOB",
                       help="only cells matching this glob, e.g. 'lang.*' (repeatable; plan order kept)")
    sub.add_parser("report", help="write docs/results/study/report.md (+ plot) from the run files")
    sub.add_parser("status", help="the runs begun on this machine: who holds each, how far it got")
    args = ap.parse_args(argv)

    from trimodal_ros.schema import ConfigError

    from .plan import load_plan
    from .runner import RunRefused, missing, next_run, run, status

    try:
        if args.cmd == "list":
            plan = load_plan()
            for cell, seed in (missing(plan, args.cell) if args.missing else plan.runs(args.cell)):
                print(cell, seed)
        elif args.cmd == "run":
            print(f"wrote {run(args.cell, args.seed, device=args.device)}")
        elif args.cmd == "next":
            out = next_run(device=args.device, cells=args.cell)
            print(f"wrote {out}" if out else "every run has its result")
        elif args.cmd == "status":
            print("\n".join(status(load_plan())))
        else:
            from .report import write_report

            print(f"wrote {write_report()}")
    except (ConfigError, RunRefused) as e:
        print(f"trimodal-study: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
