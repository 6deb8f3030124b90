"""The one parameter table of each node, and what is derived from it.

``VLA_PARAMS`` / ``SIM_PARAMS`` list every parameter once: type (from the default), default,
description, allowed values or range, and whether it can change while the node runs (``live``;
the others are declared ``read_only`` and need a restart). From the table come

* the node's ``declare_parameter`` calls, each with its own ``ParameterDescriptor``
  (``declare``) and the checks of its on-set callback (``check``);
* the launch arguments of ``launch/vla.launch.py`` and the options of ``trimodal-ros up``
  (``launch_arguments``) and the node they start (``node_specs``).

Imports neither rclpy nor launch at module level, so the CLI and tests can read it anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import interface as I
from ..model.configuration import DEFAULT_FUSION, FUSION_NAMES, PRECISIONS

PACKAGE = "trimodal_ros"


def _device_ok(v: str) -> Optional[str]:
    import re

    return None if re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) else "must be auto, cpu, cuda or cuda:N"


@dataclass(frozen=True)
class Param:
    name: str
    default: Any                   # its type is the parameter's type (str, int, float, bool, list of str)
    description: str
    choices: Optional[Tuple[str, ...]] = None
    low: Optional[float] = None    # inclusive range for numbers
    high: Optional[float] = None
    live: bool = False             # changes take effect while running; else read-only
    launch: bool = True            # a launch argument / `trimodal-ros up` option
    check: Optional[Callable[[Any], Optional[str]]] = None  # extra check: an error text or None

    @property
    def type(self) -> type:
        return type(self.default)

    def allowed(self) -> Optional[List[str]]:
        return list(self.choices) if self.choices is not None else None

    def constraints(self) -> str:
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(self.choices))
        if self.low is not None or self.high is not None:
            parts.append(f"in [{self.low if self.low is not None else '-inf'}, "
                         f"{self.high if self.high is not None else 'inf'}]")
        parts.append("can change while running" if self.live else "read-only: set at start")
        return "; ".join(parts)


def check(p: Param, value: Any) -> Tuple[Any, Optional[str]]:
    """(value converted to the parameter's type, None) or (value, the reason it is refused)."""
    t = p.type
    if t is bool:
        if not isinstance(value, bool):
            return value, f"{p.name} must be true or false, got {value!r}"
    elif t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return value, f"{p.name} must be an integer, got {value!r}"
    elif t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"{p.name} must be a number, got {value!r}"
        value = float(value)
        if not math.isfinite(value):
            return value, f"{p.name} must be finite, got {value!r}"
    elif t is list:
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            return value, f"{p.name} must be a list of strings, got {value!r}"
        value = list(value)
    elif not isinstance(value, str):
        return value, f"{p.name} must be a string, got {value!r}"
    if p.low is not None and value < p.low:
        return value, f"{p.name}={value!r} is below its minimum {p.low}"
    if p.high is not None and value > p.high:
        return value, f"{p.name}={value!r} is above its maximum {p.high}"
    allowed = p.allowed()
    if allowed is not None and value not in allowed:
        return value, f"{p.name}={value!r} is not one of {allowed}"
    if p.check is not None:
        err = p.check(value)
        if err:
            return value, f"{p.name}={value!r}: {err}"
    return value, None


VLA_PARAMS: List[Param] = [
    Param("fusion", "", "fusion variant; empty: the checkpoint's (without one: the config's, else "
                        f"{DEFAULT_FUSION}); a named one must match the checkpoint", choices=("",) + FUSION_NAMES),
    Param("config", "", "model config YAML or variant name (default: config/<fusion>.yaml)"),
    Param("checkpoint", "", "trained checkpoint (.pt); empty runs random weights, for wiring tests only"),
    Param("allow_random_weights", False, "with no checkpoint, publish actions anyway (wiring tests); by "
                                         "default a node without a checkpoint publishes embeddings and "
                                         "tokens but never an action"),
    Param("device", "auto", "inference device: auto, cpu, cuda or cuda:N", check=_device_ok),
    Param("precision", "fp32", "inference precision: fp32, or bf16 / fp16 autocast (fp16 on CUDA only; a few "
                               "ticks' tokens may differ from fp32's)", choices=PRECISIONS),
    Param("cuda_graph", False, "on CUDA, replay the tick as one captured CUDA graph per input shape (a "
                               "launch-bound small model's tick gets faster); refused on the CPU"),
    Param("torch_threads", 0, "torch intra-op threads for inference; 0 picks by device, model size and cores",
          low=0, high=256),
    Param("image_transport", "", "camera input for every camera: raw (sensor_msgs/Image on NAME/image_raw) or "
                                 "compressed (sensor_msgs/CompressedImage jpeg/png on NAME/image_raw/compressed); "
                                 "empty: as the checkpoint's robot spec says per camera",
          choices=("", "raw", "compressed")),
    Param("image_qos_reliability", "best_effort", "camera subscription reliability (best_effort matches "
                                                  "every publisher)", choices=("best_effort", "reliable")),
    Param("image_qos_depth", 5, "camera subscription queue depth", low=1, high=1000),
    Param("input_deadline", 0.0, "QoS deadline (s) the camera and joint_states subscriptions request; 0 none",
          low=0.0, high=3600.0),
    Param("output_deadline", 0.0, "QoS deadline (s) the outputs offer; 0 none", low=0.0, high=3600.0),
    Param("output_liveliness_lease", 0.0, "automatic-liveliness lease (s) of the outputs; 0: the middleware's",
          low=0.0, high=3600.0),
    Param("max_input_age", 0.5, "seconds a joint state may lag the camera frame (or a frame may wait, with "
                                "rate_hz) before output stops", low=1e-3, high=3600.0, live=True),
    Param("input_stamps", "header", "time of each camera frame and joint state: its header stamp, or receipt (the "
                                    "node clock on arrival, for drivers that stamp zero or with another clock)",
          choices=("header", "receipt")),
    Param("rate_hz", 0.0, "inference rate on the newest frame; 0 runs once per camera frame",
          low=0.0, high=1000.0, live=True),
    Param("control_period", 0.0, "seconds between the points of the published action chunk; 0: the "
                                 "checkpoint's robot spec's", low=0.0, high=10.0, live=True),
    Param("execute_steps", 0, "points of each chunk the controller executes before the next frame (feeds "
                              "the action history); 0: the checkpoint's", low=0, high=1000),
    Param("execution", "chunk", "chunk: each answered frame publishes its chunk; ensemble / latest: one "
                                "command per control period from the chunk executor (a model slower than the "
                                "controller), the covering chunks averaged / the newest cross-faded in",
          choices=("chunk", "ensemble", "latest")),
    Param("forecast", "checkpoint", "with execution ensemble / latest: infer on the joint targets commanded for "
                                    "when the chunk arrives (the model's measured latency in control periods), "
                                    "not on the positions when inference starts (joint-position actions only); "
                                    "checkpoint: its inference.forecast", choices=("checkpoint", "on", "off")),
    Param("min_agreement", -2.0, "hold instead of acting on a frame whose instruction–scene agreement (cosine "
                                 "in the joint space, on trimodal/scores) is below this; -2 never (needs a "
                                 "checkpoint trained with an alignment loss)", low=-2.0, high=1.0, live=True),
    Param("instruction_timeout", 0.0, "seconds after the last instruction message when the task ends "
                                      "(outputs stop); 0 never", low=0.0, high=1e6, live=True),
    Param("max_instruction_chars", I.MAX_INSTRUCTION_CHARS, "longer instructions are refused",
          low=1, high=1_000_000, live=True),
    Param("joint_names", [], "joint_states names, in the model's proprio order (the robot's driver names for "
                             "the spec's joints); empty: the checkpoint's robot spec's", launch=False),
    Param("action_names", [], "joint_names of the published action trajectory; empty: the checkpoint's "
                              "robot spec's action names", launch=False),
    Param("seed", 0, "random-weight init (no checkpoint)", low=0, high=2**31 - 1),
    Param("autostart", True, "configure and activate at start (unmanaged); false waits for "
                             "`ros2 lifecycle set` (managed)", launch=False),
]

SIM_PARAMS: List[Param] = [
    Param("sim", "metaworld", "the simulated robot (trimodal_lab.sim.scenes): Meta-World's Sawyer, or gymnasium's "
          "two-joint Reacher on the gym_reacher spec's topics", choices=("metaworld", "reacher")),
    Param("task", "reach-v3", "Meta-World v3 task, or a language-critical <task>@lang (the reacher: reach-target)"),
    Param("layout", -1, "layout 0-49 (40-49 held out), 50 and up extra train layouts; -1 cycles the "
          "held-out layouts 40-49", low=-1, high=1_000_000),
    Param("instructions", "train", "paraphrase set of the published instruction", choices=("train", "heldout")),
    Param("instruction", "", "this exact instruction instead of a paraphrase"),
    Param("seed", 0, "seeds the paraphrase draw", low=0, high=2**31 - 1),
    Param("max_steps", 200, "episode step limit", low=1, high=100_000),
    Param("size", 224, "square camera image size in pixels", low=8, high=2048),
    Param("camera", "corner", "Meta-World camera, or named cameras primary first "
                              "(corner,top_camera=topview: NAME/image_raw each)"),
    Param("execute_steps", 1, "trajectory points executed per frame", low=1, high=1000),
    Param("action_timeout", 5.0, "wall seconds before an unanswered frame is published again",
          low=1e-3, high=3600.0, live=True),
    Param("instruction_settle", 0.2, "wall seconds between the instruction and the first frame",
          low=0.0, high=60.0, live=True),
    Param("action_names", [], "expected joint_names of trimodal/action; empty: the robot spec's action names"),
    Param("autostart", True, "start the first episode at once"),
    Param("episodes", 0, "episodes before the node finishes; 0 runs until shut down", low=0, high=1_000_000),
]


def against_checkpoint(p: Mapping[str, Any], config) -> Tuple[List[str], List[str], List[Tuple[int, int]]]:
    """vla_node's joint names, action names and forecast (joint, action) index pairs for a loaded
    checkpoint's ``config``: the parameters where given, else the checkpoint's; a ValueError or
    ConfigError says why they do not fit it."""
    robot = config.robot
    joints, actions = list(p["joint_names"] or robot.joint_names), list(p["action_names"] or robot.action.names)
    if len(joints) != len(robot.joint_names) or len(actions) != robot.action.dim:
        raise ValueError(f"joint_names/action_names have {len(joints)}/{len(actions)} entries; the checkpoint's "
                         f"robot {robot.name!r} has {len(robot.joint_names)} joints {robot.joint_names} and "
                         f"{robot.action.dim} action dims {robot.action.names}")
    forecast = config.inference.forecast if p["forecast"] == "checkpoint" else p["forecast"] == "on"
    return joints, actions, (config.forecast_targets() if forecast and p["execution"] != "chunk" else [])


def table(params: Sequence[Param]) -> Dict[str, Param]:
    return {p.name: p for p in params}


def declare(node, params: Sequence[Param], overrides_ok: bool = True) -> Dict[str, Any]:
    """Declare every parameter of ``params`` on ``node`` (one descriptor each) and return the
    checked values. A value that fails its check raises ValueError naming it (the node refuses
    to start rather than run with, e.g., ``rate_hz=inf``)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter

    values: Dict[str, Any] = {}
    for p in params:
        d = ParameterDescriptor(description=p.description, additional_constraints=p.constraints(),
                                read_only=not p.live)
        if p.type in (int, float):
            d.dynamic_typing = True  # rate_hz:=10 (an int) is a rate, not a type error
        if p.type is float and (p.low is not None or p.high is not None):
            d.floating_point_range = [FloatingPointRange(from_value=float(p.low if p.low is not None else -1e308),
                                                         to_value=float(p.high if p.high is not None else 1e308))]
        if p.type is int and (p.low is not None or p.high is not None):
            d.integer_range = [IntegerRange(from_value=int(p.low if p.low is not None else -2**63),
                                            to_value=int(p.high if p.high is not None else 2**63 - 1))]
        default = Parameter.Type.STRING_ARRAY if p.type is list else p.default
        try:
            raw = node.declare_parameter(p.name, default, d).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as e:  # an override out of range
            raise ValueError(f"parameter {p.name}: {e}") from None
        if p.type is list and raw is None:
            raw = list(p.default)
        value, err = check(p, raw)
        if err:
            raise ValueError(f"parameter {err}")
        if p.type is float and type(raw) is int and p.live:  # `-p rate_hz:=10`: stays a double parameter
            node.set_parameters([Parameter(p.name, Parameter.Type.DOUBLE, value)])
        values[p.name] = value
    return values


# --- launch arguments ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    choices: Optional[List[str]] = None


@dataclass
class NodeSpec:
    """One node to start: what ``launch_ros.actions.Node`` and ``trimodal-ros up`` both need."""

    executable: str
    name: str
    namespace: str = ""
    parameters: Dict[str, Any] = field(default_factory=dict)
    package: str = PACKAGE
    managed: bool = False  # a lifecycle node driven from outside (lifecycle:=true)
    params_file: str = ""  # a ROS parameters YAML read first; ``parameters`` then holds only what differs
                           # from the table's defaults, so the file's values are not overwritten
    remappings: List[Tuple[str, str]] = field(default_factory=list)
    log_level: str = "info"
    ros_args: List[str] = field(default_factory=list)  # passed through (``trimodal-ros up --ros-args ...``)


def _launch_str(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


EXTRA_LAUNCH_ARGS = [
    LaunchArg("namespace", "", "namespace for the node and its relative topics"),
    LaunchArg("use_sim_time", "false", "use /clock (bag replay with --clock, simulation)", ["true", "false"]),
    LaunchArg("lifecycle", "false", "start vla_node as a managed lifecycle node: it waits for "
                                    "`ros2 lifecycle set /vla_node configure` and `activate`", ["true", "false"]),
    LaunchArg("params_file", "", "ROS parameters YAML for vla_node (as ros2 run --params-file); a launch "
                                 "argument set to other than its default wins over it"),
    LaunchArg("remappings", "", "topic remappings, 'from:=to' separated by ';' (camera/image_raw:=/cam/color)"),
    LaunchArg("log_level", "info", "vla_node's log level", ["debug", "info", "warn", "error", "fatal"]),
]


def parse_remappings(text: str) -> List[Tuple[str, str]]:
    """'a:=b;c:=d' → [('a', 'b'), ('c', 'd')]; ValueError names a malformed entry."""
    out = []
    for item in (x.strip() for x in text.split(";")):
        if not item:
            continue
        src, sep, dst = item.partition(":=")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"launch argument remappings: {item!r} is not 'from:=to'")
        out.append((src.strip(), dst.strip()))
    return out


def launch_arguments() -> List[LaunchArg]:
    """Every launch argument: the table's launch parameters, then namespace, use_sim_time, lifecycle.
    Plain data, no torch: `ros2 launch` builds them under the system Python."""
    args = []
    for p in VLA_PARAMS:
        if p.launch:
            c = p.allowed()
            args.append(LaunchArg(p.name, _launch_str(p.default), f"{p.description} ({p.constraints()})",
                                  c if c is None else [str(x) for x in c]))
    return args + EXTRA_LAUNCH_ARGS


def parse_value(p: Param, text: str) -> Any:
    """A launch argument string → the parameter's type, checked; ValueError names the argument."""
    t = p.type
    try:
        if t is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"expected true or false, got {text!r}")
            v: Any = text.lower() == "true"
        elif t is int:
            v = int(text)
        elif t is float:
            v = float(text)
        else:
            v = text
    except ValueError as e:
        raise ValueError(f"launch argument {p.name}:={text!r}: {e}") from None
    v, err = check(p, v)
    if err:
        raise ValueError(f"launch argument {err}")
    return v


def node_specs(values: Mapping[str, Any]) -> List[NodeSpec]:
    """Launch argument values (strings, as launch gives them; missing ones take their defaults)
    → the nodes to start, with typed, checked parameters."""
    known = {a.name: a for a in launch_arguments()}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown launch argument(s) {unknown}; known: {sorted(known)}")
    v = {n: a.default for n, a in known.items()}
    v.update({k: ("" if x is None else _launch_str(x)) for k, x in values.items()})
    tbl = table(VLA_PARAMS)
    params: Dict[str, Any] = {n: parse_value(tbl[n], v[n]) for n in tbl if tbl[n].launch}
    for a in EXTRA_LAUNCH_ARGS:
        if a.choices and v[a.name] not in a.choices:
            raise ValueError(f"launch argument {a.name}:={v[a.name]!r} is not one of {a.choices}")
    params_file = v["params_file"]
    if params_file:  # only what was set apart from the defaults: the file decides the rest
        params = {n: x for n, x in params.items() if x != parse_value(tbl[n], _launch_str(tbl[n].default))}
    managed = v["lifecycle"] == "true"
    ours, defaults = {"use_sim_time": v["use_sim_time"] == "true", "autostart": not managed}, {"autostart": True}
    # with a file, these too only where set apart from their defaults: a file's use_sim_time: true stands
    params.update({k: x for k, x in ours.items() if not params_file or x != defaults.get(k, False)})
    return [NodeSpec(executable="vla_node", name="vla_node", namespace=v["namespace"], parameters=params,
                     managed=managed, params_file=params_file, remappings=parse_remappings(v["remappings"]),
                     log_level=v["log_level"])]


def add_cli_options(parser) -> None:
    """Every launch argument as an argparse option (``fusion`` → ``--fusion``), checked later by
    ``node_specs``."""
    for a in launch_arguments():
        parser.add_argument(f"--{a.name.replace('_', '-')}", dest=a.name, default=a.default, help=a.description)


def follow_updates(node, params: Sequence[Param], values: Dict[str, Any],
                   on_change: Optional[Callable[[List[str]], None]] = None) -> None:
    """Make ``ros2 param set`` mean something: a live parameter is checked before it is accepted
    and then written into ``values`` (and ``on_change(names)`` is called); a read-only one is
    refused by rclpy with its reason."""
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.parameter import Parameter

    tbl = table(params)

    def keep_double(changes):
        """``ros2 param set /vla_node rate_hz 5`` sends an integer: a float parameter stays a double
        (``ros2 param get`` shows 5.0, and its range still applies)."""
        return [Parameter(prm.name, Parameter.Type.DOUBLE, float(prm.value))
                if prm.name in tbl and tbl[prm.name].type is float and prm.type_ == Parameter.Type.INTEGER
                else prm for prm in changes]

    def validate(changes):
        for prm in changes:
            spec = tbl.get(prm.name)
            if spec is None:
                continue  # use_sim_time and the like: rclpy's own
            if not spec.live:
                return SetParametersResult(successful=False, reason=f"{prm.name} is read-only: restart the node")
            err = check(spec, prm.value)[1]
            if err:
                return SetParametersResult(successful=False, reason=err)
        return SetParametersResult(successful=True)

    def apply(changes):
        names = [prm.name for prm in changes if prm.name in tbl]
        for prm in changes:
            if prm.name in tbl:
                values[prm.name] = check(tbl[prm.name], prm.value)[0]
                node.get_logger().info(f"parameter {prm.name} = {values[prm.name]!r}")
        if names and on_change is not None:
            on_change(names)

    node.add_pre_set_parameters_callback(keep_double)
    node.add_on_set_parameters_callback(validate)
    node.add_post_set_parameters_callback(apply)
