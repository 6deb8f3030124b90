"""Run configs: one YAML file per variant in ``config/`` with a ``model:``, a ``train:`` and an
optional ``inference:`` section, loaded into ``Config`` (``model.configuration.ModelConfig``,
``train.configuration.TrainConfig``, ``InferenceConfig``) and checked on load. A wrong key or value raises
``ConfigError`` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import yaml

from .interface import SAWYER_JOINTS  # noqa: F401  (re-exported: the proprio layout's default joints)
from .model.configuration import TUNING_MODES, ModelConfig  # noqa: F401
from .robot import ActionSpec, CameraSpec, RobotSpec, load_robot, robot_from_dict
from .schema import ConfigError, build
from .train.configuration import TrainConfig

PACKAGE = "trimodal_ros"
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_ROBOT = "metaworld_sawyer"  # config/robots/: the robot of a config that names none
ROBOT_KEYS = ("cameras", "joint_names", "action_dim")  # model keys a robot spec decides
# Keys older checkpoints may carry that no longer mean anything: dropped on load, whatever their value
# (None), or only while they hold the value that switched a removed variant off (a checkpoint trained
# with the variant cannot be served by this version: a clear error). The removed variants and their
# results: docs/results/policy_study.md.
RETIRED_KEYS = {"train": {"eval_every": None, "num_workers": None},
                "model": {"state_head": "pooled", "state_bottleneck": False, "image_dropout": 0.0}}


@dataclass
class InferenceConfig:
    """How the policy turns predicted chunks into commands (no effect on the weights).

    ``ensemble``: ACT's temporal ensembling (Zhao et al. 2023) of the action chunks with weight
    exp(-m·i) over the predictions for the current step, oldest first (m = 0: plain mean; None:
    off, the chunk's first row is executed); needs one executed action per tick.
    ``ensemble_horizon``: how many of the latest chunks take part (default: the chunk length).
    ``execute_steps``: actions of each chunk the robot executes before the next tick (1 with
    ensembling); the node, rollouts and evaluation take it from here unless told otherwise.
    ``forecast``: with asynchronous execution (a model slower than the control period), infer on the
    joint positions the robot will have been commanded when the chunk arrives, not those it had
    when inference started (``ChunkExecutor.forecast``); needs actions that are absolute joint-position
    targets and a model without joint velocities."""

    ensemble: Optional[float] = None
    ensemble_horizon: Optional[int] = None
    execute_steps: int = 1
    forecast: bool = False

    def __post_init__(self) -> None:
        if self.ensemble is not None and not (isinstance(self.ensemble, (int, float)) and abs(self.ensemble) < 100):
            raise ConfigError(f"ensemble must be a number (ACT's m) or null, got {self.ensemble!r}")
        if self.ensemble_horizon is not None and self.ensemble_horizon < 1:
            raise ConfigError(f"ensemble_horizon must be >= 1 or null, got {self.ensemble_horizon!r}")
        if not isinstance(self.execute_steps, int) or self.execute_steps < 1:
            raise ConfigError(f"execute_steps must be an integer >= 1, got {self.execute_steps!r}")
        if self.ensemble is not None and self.execute_steps != 1:
            raise ConfigError(f"temporal ensembling (ensemble) needs execute_steps 1, got {self.execute_steps}")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    robot: RobotSpec = field(default_factory=lambda: load_robot(DEFAULT_ROBOT))

    def __post_init__(self) -> None:
        r, m = self.robot, self.model
        if (r.camera_names, list(r.joint_names), r.action.dim) != (list(m.cameras), list(m.joint_names), m.action_dim):
            raise ConfigError(f"the robot spec {r.name!r} (cameras {r.camera_names}, joints {r.joint_names}, "
                              f"{r.action.dim} action dims) disagrees with the model (cameras {m.cameras}, joints "
                              f"{m.joint_names}, action_dim {m.action_dim})")
        if self.inference.forecast:
            self.forecast_targets()

    def forecast_targets(self) -> List[Tuple[int, int]]:
        """The (joint, action) index pairs ``inference.forecast`` sets, or a ConfigError saying why this
        checkpoint cannot forecast."""
        r, m = self.robot, self.model
        pairs = r.position_targets()
        if not pairs:
            raise ConfigError(f"inference.forecast needs actions that are absolute joint-position targets; the "
                              f"robot spec {r.name!r} has action.source {r.action.source} ({r.action.type}) of "
                              f"{r.action.names}, none of them a joint position in joint_names")
        if m.use_velocities:
            raise ConfigError("inference.forecast gives the model forecast joint positions but no forecast "
                              "velocities: it needs model.use_velocities false")
        return pairs

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(data: Dict[str, Any], where: str = "config", retired_ok: bool = False) -> Config:
    """A ``{"model": ..., "train": ..., "inference": ..., "robot": ...}`` mapping → Config
    (``retired_ok`` drops RETIRED_KEYS; a missing section takes its defaults). ``robot`` is a robot
    spec mapping or the name / path of one (``robot.load_robot``); the model's cameras, joint names
    and action width come from it unless the model section names them too, in which case they must
    agree. Without one, the spec is the Meta-World Sawyer's with the model's cameras and joints."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with 'model' and 'train', got {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS) - {"robot"})
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; valid sections: {list(SECTIONS) + ['robot']}")
    sections = {k: dict(data.get(k) or {}) for k in SECTIONS}
    if retired_ok:
        for sec, keys in RETIRED_KEYS.items():
            for k, off in keys.items():
                if k in sections[sec] and off is not None and sections[sec][k] != off:
                    raise ConfigError(f"{where}: {sec}.{k} {sections[sec][k]!r} is a variant this version no "
                                      f"longer has (removed, see docs/results/policy_study.md); only {off!r} loads")
                sections[sec].pop(k, None)
    spec = data.get("robot")
    robot = None if spec is None else _robot_section(spec, sections["model"], where)
    built = {k: build(cls, sections[k], f"{where}: {k}") for k, cls in SECTIONS.items()}
    return Config(**built, robot=_sawyer_like(built["model"]) if robot is None else robot)


def _sawyer_like(m: ModelConfig) -> RobotSpec:
    """The robot of a config or checkpoint from before robot specs: the Sawyer with the model's layout."""
    sawyer = load_robot(DEFAULT_ROBOT)
    action = sawyer.action if m.action_dim == sawyer.action.dim else ActionSpec(
        names=[f"a{i}" for i in range(m.action_dim)])
    return dataclasses.replace(sawyer, cameras=[CameraSpec(c) for c in m.cameras], joint_names=list(m.joint_names),
                               action=action)


def _robot_section(spec, model: Dict[str, Any], where: str) -> RobotSpec:
    """The run's robot spec; fills (or checks) the model section's robot-shaped keys in place."""
    robot = load_robot(spec) if isinstance(spec, (str, Path)) else robot_from_dict(spec, f"{where}: robot")
    for key, value in zip(ROBOT_KEYS, (robot.camera_names, list(robot.joint_names), robot.action.dim)):
        if key in model and model[key] != value:
            raise ConfigError(f"{where}: model.{key} {model[key]!r} disagrees with the robot spec "
                              f"{robot.name!r} ({value!r}); drop it from the model section")
        model[key] = value
    return robot


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "inference": InferenceConfig}


def config_dirs() -> List[Tuple[str, Optional[Path]]]:
    """Where a bare variant name is looked up: the source tree, a pip install's share/, and a
    colcon install's share/ (via ament_index_python; None when that is not installed)."""
    dirs: List[Tuple[str, Optional[Path]]] = [("source tree", PACKAGE_DIR.parent / "config"),
                                              ("pip install", Path(sys.prefix) / "share" / PACKAGE / "config")]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        dirs.append(("ament index (ament_index_python is not installed)", None))
        return dirs
    try:
        dirs.append(("ament index", Path(get_package_share_directory(PACKAGE)) / "config"))
    except (PackageNotFoundError, ValueError, LookupError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        dirs.append((f"ament index ({PACKAGE} is not in AMENT_PREFIX_PATH)", None))
    return dirs


def _is_path(s: str) -> bool:
    return "/" in s or "\\" in s or s.endswith((".yaml", ".yml")) or s.startswith(".")


def resolve_config_path(path_or_name: Union[str, Path]) -> Path:
    """A YAML path, or a bare variant name (``qformer``) looked up in the package's config folders
    (never in the working directory: ``qformer`` must not pick up a stray ./qformer)."""
    s = str(path_or_name)
    if not s:
        raise ConfigError("empty config name")
    if isinstance(path_or_name, Path) or _is_path(s):
        p = Path(s).expanduser()
        if p.is_dir():
            raise ConfigError(f"config {s!r} is a directory, not a YAML file")
        if not p.is_file():
            raise ConfigError(f"config file {s!r} does not exist")
        return p
    looked = []
    for what, base in config_dirs():
        if base is None:
            looked.append(what)
            continue
        f = base / f"{s}.yaml"
        if f.is_file():
            return f
        looked.append(f"{what}: {base}")
    raise ConfigError(f"config {s!r} not found: not a file path, and no {s}.yaml in " + "; ".join(looked)
                      + f". Known variants: {config_names()}")


def config_names() -> List[str]:
    names = set()
    for _, base in config_dirs():
        if base is not None and base.is_dir():
            names.update(p.stem for p in base.glob("*.yaml"))
    return sorted(names)


def load_config(path_or_name: Union[str, Path], robot: Union[str, Path, None] = None, **model_overrides) -> Config:
    """Load and validate a YAML config; ``model_overrides`` (e.g. fusion=...) win over the file, and
    ``robot`` (a robot spec file or name) over its ``robot:`` section and the model's robot-shaped keys."""
    path = resolve_config_path(path_or_name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a readable YAML file: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'model' and 'train', got {type(data).__name__}")
    if model_overrides:
        data = dict(data)
        data["model"] = {**(data.get("model") or {}), **{k: v for k, v in model_overrides.items() if v is not None}}
    if robot is not None:
        named = [k for k in ROBOT_KEYS if model_overrides.get(k) is not None]
        if named:
            raise ConfigError(f"the robot spec {robot} decides {named}: give one or the other")
        data = {**data, "robot": str(robot),
                "model": {k: v for k, v in (data.get("model") or {}).items() if k not in ROBOT_KEYS}}
    return config_from_dict(data, where=str(path))
