"""The robot spec: what a robot's bags and topics hold, in one YAML a user writes for their robot.

Training reads its bags through it, the checkpoint carries it (the ``robot:`` section of the run
config), and the node, replay and evaluation take their topics, joint and action names and control
period from there. The Meta-World Sawyer that ``trimodal-ros generate`` records is one spec among
others (``config/robots/metaworld_sawyer.yaml``; also the default when a config names none).

Plain data, no rclpy and no torch: the launch file may read it under a system Python.

```yaml
name: my_arm
cameras: [{name: wrist, topic: /wrist/image_raw/compressed, compressed: true}]
joint_topics: [/arm/joint_states, /gripper/joint_states]   # merged: arm and gripper apart
joint_names: [shoulder, elbow, wrist, finger]              # the proprio order
instruction_topic: /instruction                            # or instruction: "pick up the cup"
action: {source: joint_positions, names: [shoulder, elbow, wrist, finger], units: rad}
control_period: 0.05
```
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import yaml

from . import interface as I
from .schema import ConfigError, build, one_of

# Where an action comes from in a bag: a command topic, or the joint states themselves (the next
# absolute joint positions, or their change over one control period).
ACTION_SOURCES = ("topic", "joint_positions", "joint_deltas")
# The command types an action topic may carry, and the fields each value is read from.
ACTION_TYPES = ("sensor_msgs/msg/JointState", "trajectory_msgs/msg/JointTrajectory",
                "std_msgs/msg/Float64MultiArray", "geometry_msgs/msg/TwistStamped")
TWIST_FIELDS = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")
# The controller-ready output: a JointTrajectory (joint_trajectory_controller) or, for a Cartesian
# policy, a TwistStamped (MoveIt Servo: velocities in the spec's units, header.frame_id = action.frame)
# plus the remaining dimension(s) as a Float64MultiArray gripper command (a forward_command_controller).
OUTPUTS = ("joint_trajectory", "twist")
_TOPIC = re.compile(r"^/?[A-Za-z_~][A-Za-z0-9_/]*$")


def _topic(where: str, t: str) -> None:
    if not isinstance(t, str) or not _TOPIC.match(t) or "//" in t or t.endswith("/"):
        raise ConfigError(f"{where}: {t!r} is not a ROS topic name")


@dataclass
class CameraSpec:
    """A camera the model sees: its name in the model (``ModelConfig.cameras``) and its topic."""

    name: str
    topic: str = ""          # default: NAME/image_raw (NAME/image_raw/compressed when compressed)
    compressed: bool = False  # sensor_msgs/CompressedImage (jpeg/png) instead of sensor_msgs/Image

    def __post_init__(self) -> None:
        if not self.topic:
            self.topic = I.image_topic(self.name, self.compressed)
        _topic(f"camera {self.name!r}", self.topic)

    @property
    def msgtype(self) -> str:
        return "sensor_msgs/msg/CompressedImage" if self.compressed else "sensor_msgs/msg/Image"

    def input(self, transport: str = "") -> Tuple[str, bool]:
        """(topic, compressed) a node subscribes to: the spec's, or with ``transport`` raw / compressed
        image_transport's convention applied to it (``NAME/image_raw`` ↔ ``NAME/image_raw/compressed``)."""
        one_of("image_transport", transport, ("", "raw", "compressed"))
        if not transport or (transport == "compressed") == self.compressed:
            return self.topic, self.compressed
        if transport == "compressed":
            return self.topic + "/compressed", True
        return (self.topic[: -len("/compressed")] if self.topic.endswith("/compressed") else self.topic), False


@dataclass
class ActionSpec:
    """What the policy predicts, per dimension, and where the bags hold it."""

    source: str = "topic"
    topic: str = I.EXPERT_ACTION_TOPIC
    type: str = "sensor_msgs/msg/JointState"
    names: List[str] = field(default_factory=lambda: list(I.ACTION_NAMES))
    units: str = "unitless"  # said in the output's documentation and diagnostics; "rad", "m/s", ...
    frame: str = ""          # the Cartesian frame a twist is in (TwistStamped's header.frame_id)
    low: Optional[List[float]] = None   # bounds the output is clamped to (besides the tokenizer's range,
    high: Optional[List[float]] = None  # the training data's quantiles); null: that range alone
    output: str = "joint_trajectory"

    def __post_init__(self) -> None:
        one_of("action.source", self.source, ACTION_SOURCES)
        one_of("action.output", self.output, OUTPUTS)
        if self.source == "topic":
            one_of("action.type", self.type, ACTION_TYPES)
            _topic("action.topic", self.topic)
        if not self.names or len(set(self.names)) != len(self.names) or not all(isinstance(n, str) for n in self.names):
            raise ConfigError(f"action.names must be a non-empty list of distinct names: {self.names!r}")
        if self.source == "topic" and self.type.endswith("TwistStamped"):
            bad = [n for n in self.names if n not in TWIST_FIELDS]
            if bad:
                raise ConfigError(f"action.names {bad}: a TwistStamped action names its fields {TWIST_FIELDS}")
        for k in ("low", "high"):
            v = getattr(self, k)
            if v is not None and (len(v) != len(self.names) or not all(isinstance(x, (int, float)) for x in v)):
                raise ConfigError(f"action.{k} must be {len(self.names)} numbers (one per action name), got {v!r}")
        if self.low is not None and self.high is not None and any(lo >= hi for lo, hi in zip(self.low, self.high)):
            raise ConfigError(f"action.low must be below action.high in every dimension: {self.low} / {self.high}")
        if self.output == "twist" and not any(n in TWIST_FIELDS for n in self.names):
            raise ConfigError(f"action.output twist needs velocity names among {TWIST_FIELDS} (the other "
                              f"dimensions, a gripper, go to trimodal/gripper)")

    @property
    def dim(self) -> int:
        return len(self.names)


@dataclass
class RobotSpec:
    """See the module docstring. ``joint_names`` is the proprio order; each name must be published on
    one of ``joint_topics`` (several JointState publishers are merged by name)."""

    name: str = "metaworld_sawyer"
    cameras: List[CameraSpec] = field(default_factory=lambda: [CameraSpec(I.PRIMARY_CAMERA)])
    joint_topics: List[str] = field(default_factory=lambda: [I.JOINTS_TOPIC])
    joint_names: List[str] = field(default_factory=lambda: list(I.SAWYER_JOINTS))
    instruction_topic: str = I.INSTRUCTION_TOPIC
    instruction: Optional[str] = None  # bags without an instruction topic: this text (or the
                                       # episode metadata's "instruction")
    action: ActionSpec = field(default_factory=ActionSpec)
    control_period: float = 0.0125     # seconds between actions the robot executes

    def __post_init__(self) -> None:
        if not self.cameras or len({c.name for c in self.cameras}) != len(self.cameras):
            raise ConfigError(f"cameras must be a non-empty list of distinct names: {[c.name for c in self.cameras]}")
        if not self.joint_topics:
            raise ConfigError("joint_topics must name at least one sensor_msgs/JointState topic")
        for t in self.joint_topics:
            _topic("joint_topics", t)
        _topic("instruction_topic", self.instruction_topic)
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise ConfigError(f"joint_names must be a non-empty list of distinct names: {self.joint_names!r}")
        if self.action.source != "topic":
            missing = [n for n in self.action.names if n not in self.joint_names]
            if missing:
                raise ConfigError(f"action.source {self.action.source} derives the action from the joint states: "
                                  f"action.names {missing} are not in joint_names {self.joint_names}")
        if not (isinstance(self.control_period, (int, float)) and 0 < self.control_period <= 10):
            raise ConfigError(f"control_period must be seconds in (0, 10], got {self.control_period!r}")

    def position_targets(self) -> List[Tuple[int, int]]:
        """(joint index, action index) of each action dimension that is an absolute position target
        for one of ``joint_names`` (joint_positions, or a JointTrajectory / JointState command's
        positions); empty for deltas, velocities and twists. What ``inference.forecast`` needs."""
        a = self.action
        absolute = a.source == "joint_positions" or (a.source == "topic" and a.type.endswith(("JointTrajectory",
                                                                                              "JointState")))
        if not absolute:
            return []
        return [(self.joint_names.index(n), i) for i, n in enumerate(a.names) if n in self.joint_names]

    @property
    def camera_names(self) -> List[str]:
        return [c.name for c in self.cameras]

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def robot_from_dict(data: Any, where: str = "robot") -> RobotSpec:
    """A mapping (a YAML file's or a checkpoint's ``robot:`` section) → RobotSpec, checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    data = dict(data)
    cams = data.get("cameras")
    if cams is not None:
        if not isinstance(cams, list):
            raise ConfigError(f"{where}.cameras: expected a list, got {cams!r}")
        data["cameras"] = [build(CameraSpec, {"name": c} if isinstance(c, str) else c, f"{where}.cameras[{i}]")
                           for i, c in enumerate(cams)]
    if "action" in data:
        data["action"] = build(ActionSpec, data["action"], f"{where}.action")
    return build(RobotSpec, data, where)


def robot_dirs() -> List[Path]:
    """Where a bare robot name is looked up: the package's ``config/robots`` folders."""
    from .config import config_dirs

    return [base / "robots" for _, base in config_dirs() if base is not None]


def load_robot(path_or_name: Union[str, Path]) -> RobotSpec:
    """A robot spec YAML file, or a bare name (``metaworld_sawyer``) from ``config/robots``."""
    s = str(path_or_name)
    p = Path(s).expanduser()
    if not p.is_file() and "/" not in s and not s.endswith((".yaml", ".yml")):
        found = [d / f"{s}.yaml" for d in robot_dirs() if (d / f"{s}.yaml").is_file()]
        if not found:
            known = sorted({f.stem for d in robot_dirs() if d.is_dir() for f in d.glob("*.yaml")})
            raise ConfigError(f"robot spec {s!r} not found: not a file, and not one of {known}")
        p = found[0]
    if not p.is_file():
        raise ConfigError(f"robot spec file {s!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not a readable YAML file: {e}") from None
    return robot_from_dict(data, where=str(p))
