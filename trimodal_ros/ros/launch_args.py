"""The one table of launch arguments, read by both ``launch/vla.launch.py`` and ``trimodal-ros up``,
and the one mapping from argument values to the nodes they start (``node_specs``).

Imports neither rclpy nor launch, so the CLI and tests can read it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

PACKAGE = "trimodal_ros"


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    choices: Optional[List[str]] = None


@dataclass
class NodeSpec:
    """One node to start: what ``launch_ros.actions.Node`` and the in-process bringup both need."""

    executable: str  # console script (launch) and key of bringup.NODE_CLASSES (in-process)
    name: str
    namespace: str = ""
    parameters: Dict[str, Any] = field(default_factory=dict)
    package: str = PACKAGE


def launch_arguments() -> List[LaunchArg]:
    from ..model.fusion import FUSIONS

    return [
        LaunchArg("fusion", "weighted_sum", "fusion variant of the tri-modal model", FUSIONS.names()),
        LaunchArg("config", "", "model config YAML (default: config/<fusion>.yaml)"),
        LaunchArg("checkpoint", "", "trained checkpoint (.pt); empty runs random weights, for wiring tests only"),
        LaunchArg("device", "auto", "inference device", ["auto", "cpu", "cuda"]),
        LaunchArg("namespace", "", "namespace for the nodes and their relative topics"),
        LaunchArg("use_sim_time", "false", "use /clock (bag replay, simulation)", ["true", "false"]),
        LaunchArg("image_qos_reliability", "best_effort", "camera subscription reliability",
                  ["best_effort", "reliable"]),
        LaunchArg("image_qos_depth", "5", "camera subscription queue depth"),
        LaunchArg("max_input_age", "0.5", "seconds a joint state may lag the camera frame (or a frame may "
                                          "age, with rate_hz) before output stops"),
        LaunchArg("rate_hz", "0.0", "inference rate on the latest frame; 0 runs once per camera frame"),
        LaunchArg("control_period", "0.0125", "seconds between the points of the published action chunk"),
    ]


def _bool(v: str) -> bool:
    if str(v).lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {v!r}")
    return str(v).lower() == "true"


def node_specs(values: Mapping[str, Any]) -> List[NodeSpec]:
    """Launch argument values (strings, as launch gives them; missing ones take their defaults)
    → the nodes to start, with typed parameters."""
    v = {a.name: a.default for a in launch_arguments()}
    v.update({k: ("" if x is None else str(x)) for k, x in values.items()})
    unknown = sorted(set(values) - {a.name for a in launch_arguments()})
    if unknown:
        raise ValueError(f"unknown launch argument(s) {unknown}")
    for a in launch_arguments():
        if a.choices and v[a.name] not in a.choices:
            raise ValueError(f"{a.name}={v[a.name]!r} is not one of {a.choices}")
    params = {
        "fusion": v["fusion"], "config": v["config"], "checkpoint": v["checkpoint"], "device": v["device"],
        "use_sim_time": _bool(v["use_sim_time"]),
        "image_qos_reliability": v["image_qos_reliability"], "image_qos_depth": int(v["image_qos_depth"]),
        "max_input_age": float(v["max_input_age"]), "rate_hz": float(v["rate_hz"]),
        "control_period": float(v["control_period"]),
    }
    return [NodeSpec(executable="vla_node", name="vla_node", namespace=v["namespace"], parameters=params)]


def add_launch_arguments(parser) -> None:
    """Mirror every launch argument as an argparse option (``fusion`` → ``--fusion``)."""
    for a in launch_arguments():
        parser.add_argument(f"--{a.name.replace('_', '-')}", dest=a.name, default=a.default,
                            choices=a.choices, help=a.description)
