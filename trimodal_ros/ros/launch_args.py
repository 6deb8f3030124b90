"""The one table of launch arguments, read by both ``launch/vla.launch.py`` and ``trimodal-ros up``.

Imports neither rclpy nor launch, so the CLI and tests can read it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    choices: Optional[List[str]] = None


def launch_arguments() -> List[LaunchArg]:
    from ..model.fusion import FUSIONS

    return [
        LaunchArg("fusion", "weighted_sum", "fusion variant of the tri-modal model", FUSIONS.names()),
        LaunchArg("config", "", "model config YAML (default: config/<fusion>.yaml)"),
        LaunchArg("checkpoint", "", "trained checkpoint (.pt); empty runs random weights, for wiring tests only"),
        LaunchArg("device", "auto", "inference device", ["auto", "cpu", "cuda"]),
        LaunchArg("namespace", "", "namespace for the nodes and their relative topics"),
        LaunchArg("use_sim_time", "false", "use /clock (bag replay, simulation)", ["true", "false"]),
    ]


def add_launch_arguments(parser) -> None:
    """Mirror every launch argument as an argparse option (``fusion`` → ``--fusion``)."""
    for a in launch_arguments():
        parser.add_argument(f"--{a.name.replace('_', '-')}", dest=a.name, default=a.default,
                            choices=a.choices, help=a.description)
