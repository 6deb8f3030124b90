"""``trimodal-ros``: one command, many subcommands. Each subcommand's module defines its parser
next to its handler (``register(sub)`` sets ``func``); this file only collects them: the robot's
(train, up, replay, record, inspect, lerobot, info) from ``trimodal_ros``, the lab's (generate,
evaluate, ablate, demo, sim, rollout, bench) from ``trimodal_lab``, the only place the runtime names
the lab. No module named here imports torch or rclpy at import time, so ``--help`` stays light."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

# modules that register subcommands, in the order --help lists them
MODULES = (
    "trimodal_lab.metaworld.record",   # generate
    "trimodal_ros.train.cli",          # train
    "trimodal_lab.eval.cli",           # evaluate
    "trimodal_lab.eval.ablate",        # ablate
    "trimodal_lab.demo",               # demo
    "trimodal_ros.ros.bringup",        # up
    "trimodal_ros.ros.replay",         # replay
    "trimodal_ros.ros.record",         # record
    "trimodal_ros.data.inspect",       # inspect
    "trimodal_ros.data.lerobot",       # lerobot export / import
    "trimodal_lab.sim.cli",            # sim, rollout
    "trimodal_lab.bench",              # bench
    "trimodal_ros.cli",                # info
)


def register(sub) -> None:
    p = sub.add_parser("info", help="list fusion variants, adapters, losses, configs and architectures")
    p.set_defaults(func=cli_info)


def cli_info(args) -> int:
    from .config import config_names
    from .model import ADAPTERS, CONTRASTIVE_LOSSES, FUSIONS
    from .model.encoders import packaged_architectures

    print("fusion variants :", ", ".join(FUSIONS.names()))
    print("adapters        :", ", ".join(ADAPTERS.names()))
    print("contrastive loss:", ", ".join(CONTRASTIVE_LOSSES.names()))
    print("configs         :", ", ".join(config_names()))
    print("architectures   :", ", ".join(packaged_architectures()), "(+ every open_clip model)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trimodal-ros",
                                     description="trimodal_ros: a vision-language-action front end for ROS 2")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    # Before torch (and its OpenMP runtime) loads: OpenMP threads that busy-wait make every torch
    # call crawl when another process shares the cores (measured on this 2-core machine beside one
    # other training job: 2455 ms per tiny-config training step by default, 256 ms with PASSIVE;
    # no loss when the machine is idle).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
