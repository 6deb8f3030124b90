"""``trimodal-ros``: one command, many subcommands. This file only parses arguments and calls
functions; each subcommand's work lives in its own module (imported lazily, so ``--help`` is fast
and ``generate`` does not need torch-heavy imports it does not use)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# subcommand -> "module:function"; the function takes the parsed argparse.Namespace
COMMANDS = {
    "generate": "trimodal_ros.data.metaworld:cli_generate",
    "bench": "trimodal_ros.bench:cli_bench",
    "info": "trimodal_ros.cli:cli_info",
    "demo": "trimodal_ros.demo:run",
    "train": "trimodal_ros.train.cli:cli_train",
    "evaluate": "trimodal_ros.eval.cli:cli_evaluate",
    "ablate": "trimodal_ros.eval.ablate:cli_ablate",
    "up": "trimodal_ros.ros.bringup:cli_up",
    "replay": "trimodal_ros.ros.replay:cli_replay",
    "record": "trimodal_ros.ros.record:cli_record",
    "sim": "trimodal_ros.sim.cli:cli_sim",
    "rollout": "trimodal_ros.sim.cli:cli_rollout",
}


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="roll out Meta-World experts and record one ROS 2 bag per episode")
    p.add_argument("--tasks", required=True, help="comma list of Meta-World v3 tasks, or mt10 / mt50")
    p.add_argument("--episodes", type=int, default=5, help="episodes per task")
    p.add_argument("--out", required=True, help="output folder (one bag folder per episode)")
    p.add_argument("--camera", default="corner", help="Meta-World camera name (default: corner)")
    p.add_argument("--size", type=int, default=224, help="square image size in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=200, help="episode step limit")
    p.add_argument("--keep-failures", action="store_true", help="also keep episodes the expert failed")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="print speed and memory figures")
    p.add_argument("what", choices=["model", "ros"], help="model: per-variant latency; ros: end-to-end")
    p.add_argument("--fusion", default=None, help="only this fusion variant")
    p.add_argument("--no-vitb32", action="store_true", help="skip the ViT-B-32 rows (model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--iters", type=int, default=20)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train on bags: contrastive alignment + action-token cross-entropy")
    p.add_argument("--config", required=True, help="config YAML or variant name (config/<name>.yaml)")
    p.add_argument("--data", required=True, help="folder of episode bags (trimodal-ros generate)")
    p.add_argument("--out", required=True, help="run folder: last.pt, metrics.csv")
    p.add_argument("--fusion", default=None, help="override the config's fusion variant")
    p.add_argument("--loss", default=None, choices=["pairwise", "joint", "clip", "none"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p = sub.add_parser("evaluate", help="score a checkpoint on bags: retrieval, token accuracy, MAE")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--bags", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="heldout", choices=["train", "heldout", "all"], help="layouts to score")
    p.add_argument("--instructions", default="bag", choices=["bag", "train", "heldout"],
                   help="the recorded command, or a paraphrase from the train / held-out set")
    p.add_argument("--fusion", default=None, help="fail unless the checkpoint is this variant")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p = sub.add_parser("ablate", help="fusion × loss × seeds grid: train, score held-out data, report")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", default="small", choices=["tiny", "small", "full"])
    p.add_argument("--fusions", default=None, help="comma list (default: all)")
    p.add_argument("--losses", default=None, help="comma list (default: pairwise,joint,clip,none)")
    p.add_argument("--rollout-episodes", type=int, default=0,
                   help="closed-loop episodes per task and run on held-out layouts (0: offline metrics only)")
    p.add_argument("--device", default="auto")


def _add_demo(sub) -> None:
    from .demo import DEMO_TASKS

    p = sub.add_parser("demo", help="generate bags, train a tiny model, evaluate it, run it live through vla_node")
    p.add_argument("--data", default="data/demo", help="bag folder (generated when missing)")
    p.add_argument("--run", default="runs/demo", help="run folder; RUN/<fusion>/last.pt is reused when present")
    p.add_argument("--fusion", default="weighted_sum")
    p.add_argument("--tasks", default=DEMO_TASKS)
    p.add_argument("--episodes", type=int, default=10, help="episodes per task")
    p.add_argument("--size", type=int, default=128, help="camera image size")
    p.add_argument("--steps", type=int, default=400, help="training steps")
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed")
    p.add_argument("--every", type=int, default=8, help="print every N-th frame")
    p.add_argument("--realtime", action="store_true",
                   help="replay at the bag's timing (default: lockstep, every frame answered)")
    p.add_argument("--device", default="auto")


def _add_info(sub) -> None:
    sub.add_parser("info", help="list fusion variants, adapters, losses, configs and architectures")


def _add_ros(sub) -> None:
    p = sub.add_parser("up", help="bring up the VLA nodes in-process (what vla.launch.py launches)")
    from .ros.launch_args import add_launch_arguments  # no rclpy import: only the argument table

    add_launch_arguments(p)
    p = sub.add_parser("replay", help="publish a bag's messages with their original timing (ros2 bag play)")
    p.add_argument("--bag", required=True)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--namespace", default="")
    p = sub.add_parser("record", help="record topics to an mcap bag (ros2 bag record)")
    p.add_argument("--out", required=True)
    p.add_argument("--topics", nargs="*", default=None, help="default: the vla_node outputs")
    p.add_argument("--duration", type=float, default=None, help="seconds; default until Ctrl-C")


def _add_sim(sub) -> None:
    p = sub.add_parser("sim", help="run Meta-World as a ROS 2 robot (camera, joints, instruction, /clock; "
                                   "steps on trimodal/action)")
    p.add_argument("--task", required=True, help="Meta-World v3 task, e.g. reach-v3")
    p.add_argument("--layout", type=int, default=-1, help="layout 0-49; -1 cycles the held-out layouts 40-49")
    p.add_argument("--instructions", default="train", choices=["train", "heldout"], help="paraphrase set")
    p.add_argument("--instruction", default=None, help="this exact command instead of a paraphrase")
    p.add_argument("--episodes", type=int, default=0, help="episodes before exiting; 0 runs until Ctrl-C")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--size", type=int, default=224, help="square camera image size in pixels")
    p.add_argument("--camera", default="corner")
    p.add_argument("--execute-steps", type=int, default=1, help="trajectory points executed per frame")
    p.add_argument("--action-timeout", type=float, default=5.0, help="wall seconds before a frame is re-sent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--namespace", default="")
    p = sub.add_parser("rollout", help="closed-loop success rate of a checkpoint in Meta-World "
                                       "(in-process or through ROS)")
    p.add_argument("--checkpoint", default=None, help="trained .pt; omit to run random weights (wiring)")
    p.add_argument("--fusion", default=None, help="fusion variant (must match the checkpoint, if any)")
    p.add_argument("--config", default=None, help="config for random weights (default: the fusion's)")
    p.add_argument("--tasks", required=True, help="comma list of Meta-World v3 tasks, or mt10 / mt50")
    p.add_argument("--episodes", type=int, default=10, help="episodes (layouts) per task")
    p.add_argument("--through-ros", action="store_true", help="via sim_node <-> vla_node over DDS")
    p.add_argument("--compare", action="store_true", help="run both paths and compare their actions")
    p.add_argument("--split", default="heldout", choices=["heldout", "train", "all"], help="layouts")
    p.add_argument("--instructions", default="train", choices=["train", "heldout"], help="paraphrase set")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--execute", type=int, default=1, help="actions of each predicted chunk executed")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--camera", default="corner")
    p.add_argument("--seed", type=int, default=0, help="layout / instruction draw")
    p.add_argument("--model-seed", type=int, default=0, help="random-weight init (no checkpoint)")
    p.add_argument("--action-timeout", type=float, default=60.0, help="through ROS: wall s per model answer")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="folder for rollout.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trimodal-ros", description="trimodal_ros: a vision-language-action front end for ROS 2")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_generate, _add_train, _add_demo, _add_bench, _add_info, _add_ros, _add_sim):
        add(sub)
    return parser


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


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    module, func = COMMANDS[args.command].split(":")
    try:
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
