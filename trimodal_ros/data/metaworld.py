"""Record Meta-World v3 scripted-expert episodes as ROS 2 bags (``trimodal-ros generate``).

One bag folder per episode, ``OUT/<task>_s<seed>_e<episode>/`` with ``metadata.yaml``, one
zstd-chunked ``.mcap`` (``ros2 bag info/play`` read it) and ``episode.json``. Topics, all stamped
with simulation time (one env step = 12.5 ms = 5 MuJoCo steps of 2.5 ms, starting at the sim
time after ``reset``):

* ``/camera/image_raw``  sensor_msgs/Image, rgb8, upright, ``frame_id`` = camera name; with
                         ``--camera corner,top_camera=topview`` each further named camera NAME
                         records ``/NAME/image_raw`` with the same stamps (``camera_spec``);
* ``/instruction``       std_msgs/String, once, at the first frame's stamp (log time);
* ``/joint_states``      sensor_msgs/JointState: the Sawyer's MuJoCo joints ``right_j0..6``,
                         ``r_close``, ``l_close`` with positions and velocities;
* ``/expert/action``     the expert's 4-D action for that frame, as a **sensor_msgs/JointState**
                         (it has a header, so the stamp is exact and ``ros2 bag play`` replays it
                         with the right timing): ``name = ["ee_dx", "ee_dy", "ee_dz", "gripper"]``,
                         ``position`` = the action clipped to [-1, 1] (what the env executes),
                         velocity/effort empty. Stamped exactly like the frame it answers.
* ``/sim/state``         sensor_msgs/JointState, ``name = SIM_STATE_NAMES``: the position (m, world)
                         of the task's object, of its goal and of the hand at that frame, what the
                         scripted expert reads. Privileged: a training target (``train.state_weight``),
                         never a model input; bags recorded before it existed lack it, and bags
                         recorded by older versions lack the hand (``hand_x/y/z``).

Step ``i``: the frame, joint state and action all carry stamp ``t0 + i * 12.5 ms``; the action is
the expert's response to the state in that frame, so an aligned dataset sample is (frame i,
joints i) → actions i, i+1, ...

An episode ends at the expert's first success (``first_success_step``), or ``--after-success N``
steps later: the expert keeps acting, so the bag also shows the last centimetres and holding the
goal, which a policy that stops a few centimetres short has otherwise never seen.

Episode metadata (task, layout, seed, success, length, instruction, paraphrase split, camera,
image size, ...) lives in ``episode.json`` (typed, plus sha256 of the .mcap so corruption is
caught on read) and, as one JSON string, in metadata.yaml ``custom_data["trimodal_ros.episode"]``.

Layouts: a layout is the index of the Meta-World task variation (object/goal placement) in
``MT1(task, seed=LAYOUT_SEED).train_tasks`` (50 per task; ``LAYOUT_SEED`` is fixed, so layout 7
is the same scene whatever ``--seed`` is). Layouts 0-34 are **train**, 35-39 **val** (every
choice of configuration, checkpoint or hyper-parameter is made there) and 40-49 **held out** (the
final numbers only; ``layout_split``). Episode ``e`` of a task with ``--seed s`` uses the ``e``-th
entry of a seeded permutation of all 50 layouts, so 50 episodes cover each layout once; dataset
split filters pick them apart. Layouts 50 and up are **extra train layouts**, more scenes to learn
from (never evaluated on): layout ``L`` is entry ``L % 50`` of ``MT1(task, seed=LAYOUT_SEED + L //
50).train_tasks``, new placements drawn by Meta-World's own sampler; episode ``e >= 50`` records
layout ``e``, so ``generate --episodes 100`` adds 50 of them per task. The recorded instruction is a
train paraphrase on train and val layouts and a held-out paraphrase on held-out layouts (so a
held-out bag is new in both scene and wording). A language-critical task ``<task>@lang``
(``--tasks lang``, see ``language_tasks``) uses its group's shared placement for layout ``L``, so
every task of the group starts layout ``L`` from the same first frame; its ``episode.json`` adds
``base_task`` and ``language_group``.

Rendering uses ``mujoco.Renderer`` directly with shadows, reflections and MSAA off (~4x faster
than the default). Cameras whose up axis points down in the world (all ``corner*`` cameras)
render upside down and are rotated 180°.

Crash safety: a bag is written into ``OUT/.partial-<name>/`` and renamed into place when
complete, so an interrupted run keeps its finished bags and a re-run skips them; failed episodes
leave a ``.failed-<name>.json`` marker so a re-run with the same ``--max-steps`` does not retry.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco / metaworld are imported anywhere

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict, List, Optional, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from .. import interface as I  # noqa: E402
from . import language_tasks as LT  # noqa: E402
from .instructions import instruction_for, resolve_tasks, task_id  # noqa: E402

# bag topics: the interface's names, absolute (a bag is recorded from the root namespace)
TOPIC_IMAGE = I.absolute(I.IMAGE_TOPIC)
TOPIC_INSTRUCTION = I.absolute(I.INSTRUCTION_TOPIC)
TOPIC_JOINTS = I.absolute(I.JOINTS_TOPIC)
TOPIC_ACTION = I.absolute(I.EXPERT_ACTION_TOPIC)
TOPIC_STATE = I.absolute(I.SIM_STATE_TOPIC)
TOPICS = (TOPIC_IMAGE, TOPIC_INSTRUCTION, TOPIC_JOINTS, TOPIC_ACTION, TOPIC_STATE)


def camera_topic(camera: str) -> str:
    """The bag topic of a named camera: ``camera`` → ``/camera/image_raw`` (= TOPIC_IMAGE)."""
    return I.absolute(I.image_topic(camera))


from .bags import CUSTOM_DATA_KEY, SPLITS as LAYOUT_SPLITS  # noqa: E402,F401  (re-exported)

N_LAYOUTS = 50
VAL_LAYOUTS = tuple(range(35, 40))      # for every choice: configuration, checkpoint, hyper-parameters
HELDOUT_LAYOUTS = tuple(range(40, 50))  # rolled out by many policies: for choosing, like val, now
# The study's test set: entries 0-19 of MT1(task, seed=LAYOUT_SEED + 20), a seed block no recording
# or rollout had rendered before the study's plan was committed. Never recorded (``episode_layout``
# refuses them); rolled out once per pre-registered run, only by ``trimodal-ros study run``.
TEST_LAYOUTS = tuple(range(1000, 1020))
LAYOUT_SEED = 0


# --- layouts ----------------------------------------------------------------------------------

def check_layout(layout) -> int:
    """``layout`` as an int; a ValueError unless it is a whole number >= 0."""
    if isinstance(layout, bool) or not isinstance(layout, (int, np.integer)) or layout < 0:
        raise ValueError(f"layout must be an integer >= 0 (0-49 the benchmark's, 50 and up extra train "
                         f"layouts), got {layout!r}")
    return int(layout)


def layout_split(layout: int) -> str:
    """"train" for layouts 0-34 and every extra layout (50 and up) but the test set, "val" for 35-39
    and "heldout" for 40-49 (both for choosing), "test" for TEST_LAYOUTS (the study's final numbers)."""
    if check_layout(layout) in TEST_LAYOUTS:
        return "test"
    if int(layout) >= N_LAYOUTS:
        return "train"
    if int(layout) in HELDOUT_LAYOUTS:
        return "heldout"
    return "val" if int(layout) in VAL_LAYOUTS else "train"


def layouts(split: str = "all") -> List[int]:
    """The layout indices of a split: "train", "val", "heldout" or "all"."""
    if split == "all":
        return list(range(N_LAYOUTS))
    if split not in LAYOUT_SPLITS:
        raise ValueError(f"layout split must be one of {LAYOUT_SPLITS} or 'all', got {split!r}")
    if split == "test":
        return list(TEST_LAYOUTS)
    return [i for i in range(N_LAYOUTS) if layout_split(i) == split]


def parse_layouts(spec: str) -> List[int]:
    """``"35-49"``, ``"35,40-42"`` or a split name (``val``, ``heldout``, ...) → layout indices; a
    ValueError says what is wrong."""
    if spec in LAYOUT_SPLITS + ("all",):
        return layouts(spec)
    out: List[int] = []
    try:
        for part in spec.split(","):
            a, _, b = part.strip().partition("-")
            out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    except ValueError:
        raise ValueError(f"layouts must look like 35-49 or 35,40-42 (or name a split), got {spec!r}") from None
    if not out:
        raise ValueError(f"no layouts in {spec!r}")
    return [check_layout(x) for x in out]


def _task_key(task: str) -> int:
    return zlib.crc32(task.encode())


def episode_layout(task: str, seed: int, episode: int) -> int:
    """Layout of episode ``episode``: for the first 50, entry ``episode`` of a permutation of the
    benchmark's layouts seeded by (seed, task), so 50 episodes cover each once; from 50 on, extra
    train layout ``episode``.
    The tasks of a language-critical group share one permutation (seeded by the group), so
    episode ``e`` of each starts from the same first frame: with fewer than 50 episodes, the
    layouts recorded would otherwise tell the tasks apart."""
    if int(episode) >= N_LAYOUTS:  # past the benchmark's 50: the extra train layouts, in order
        if int(episode) in TEST_LAYOUTS:
            raise ValueError(f"episode {episode} would record test layout {episode}: the test set is never "
                             f"recorded (use fewer than {TEST_LAYOUTS[0]} episodes)")
        return int(episode)
    rng = np.random.default_rng([int(seed), _task_key(LT.layout_key(task)), 0])
    return int(rng.permutation(N_LAYOUTS)[int(episode)])


def episode_name(task: str, seed: int, episode: int) -> str:
    return f"{task}_s{seed}_e{episode:04d}"


def episode_instruction(task: str, seed: int, episode: int, layout: int) -> Tuple[str, str]:
    """(instruction, paraphrase split) recorded for an episode; deterministic. Held-out layouts get
    held-out wording (new scene and new words); train and validation layouts train wording."""
    split = "heldout" if layout_split(layout) == "heldout" else "train"
    rng = np.random.default_rng([int(seed), _task_key(task), int(episode), 1])
    return instruction_for(task, rng, split), split


# --- simulation -------------------------------------------------------------------------------

def _benchmark(task: str, seed: int = LAYOUT_SEED):
    return _mt1(task, int(seed))


@lru_cache(maxsize=None)
def _mt1(task: str, seed: int):
    import metaworld

    return metaworld.MT1(task, seed=seed)  # 50 resets: ~1 s per task, so cache it


def layout_task(task: str, layout: int):
    """The Meta-World ``Task`` (what ``env.set_task`` takes) of layout ``layout``: entry ``layout %
    50`` of ``MT1(task, seed=LAYOUT_SEED + layout // 50).train_tasks``; for a language-critical
    ``<task>@lang``, its group's shared placement (``language_tasks.task_data``)."""
    block, index = divmod(check_layout(layout), N_LAYOUTS)
    if LT.is_variant(task):
        return LT.task_data(task, index, lambda name: _benchmark(name, LAYOUT_SEED + block))
    return _benchmark(task, LAYOUT_SEED + block).train_tasks[index]


def camera_spec(spec: str) -> Dict[str, str]:
    """``--camera`` → {ROS camera name: MuJoCo camera}, primary first: ``corner`` → {camera: corner};
    ``corner,top_camera=topview`` → {camera: corner, top_camera: topview} (each further camera
    needs a name; camera NAME is recorded and published on ``NAME/image_raw``)."""
    out: Dict[str, str] = {}
    for i, part in enumerate(p.strip() for p in str(spec).split(",")):
        name, _, cam = part.rpartition("=")
        if not name and i == 0:
            name = I.PRIMARY_CAMERA
        if not name or not cam or name in out:
            raise ValueError(f"camera spec {spec!r}: give MUJOCO_CAM[,NAME=MUJOCO_CAM...] with distinct names "
                             f"(e.g. corner,top_camera=topview)")
        out[name] = cam
    return out


# The MuJoCo camera that stands in for a model camera of this name in simulation (rollouts,
# sim_node) when no ``--camera`` spec is given.
SIM_CAMERAS = {I.PRIMARY_CAMERA: "corner", "top_camera": "topview", "wrist_camera": "gripperPOV",
               "side_camera": "corner2"}


def sim_camera_spec(cameras) -> str:
    """The ``camera_spec`` that feeds a model's named ``cameras`` in simulation:
    ["camera", "top_camera"] → "corner,top_camera=topview"."""
    unknown = [c for c in cameras if c not in SIM_CAMERAS]
    if unknown:
        raise ValueError(f"no simulated camera for {unknown}: give --camera NAME=MUJOCO_CAM for each "
                         f"(known: {SIM_CAMERAS})")
    first, *rest = cameras
    return ",".join([SIM_CAMERAS[first] if first == I.PRIMARY_CAMERA else f"{first}={SIM_CAMERAS[first]}"]
                    + [f"{c}={SIM_CAMERAS[c]}" for c in rest])


class SawyerScene:
    """One Meta-World task env with a fast offscreen renderer and named-joint readout. ``task`` is
    a Meta-World v3 name or a language-critical ``<task>@lang`` (``language_tasks``): the same env
    started from its group's shared state (``reset``), its task-specific goal markers hidden.
    ``camera`` is a ``camera_spec``: one MuJoCo camera, or several named ones (``views``)."""

    action_low, action_high = -1.0, 1.0  # Meta-World's action box (end-effector displacement, gripper)

    def __init__(self, task: str, camera: str = "corner", size: int = 224, max_steps: int = 500):
        from ..sim.scenes import load_triton_before_mesa

        load_triton_before_mesa()
        import mujoco

        task_id(task)  # unknown task: clear error before the slow import
        self.cameras = camera_spec(camera)
        self.primary = next(iter(self.cameras))
        self.task, self.camera, self.size = task, camera, int(size)
        self.base_task = LT.base_task(task)
        self.language_critical = LT.is_variant(task)
        self.bench = _benchmark(self.base_task)
        self.env = self.bench.train_classes[self.base_task]()
        self.env.max_path_length = max(int(self.env.max_path_length), int(max_steps))
        self.env.set_task(self.bench.train_tasks[0])
        self.env.reset()
        m, d = self.model, self.data = self.env.model, self.env.data
        self.dt_ns = int(round(m.opt.timestep * self.env.frame_skip * 1e9))
        self.cam_ids = {n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, c) for n, c in self.cameras.items()}
        if min(self.cam_ids.values()) < 0:
            names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(m.ncam)]
            raise ValueError(f"camera {camera!r} not in the Meta-World model; cameras: {names}")
        self.cam_id = self.cam_ids[self.primary]
        # joint name -> qpos / dof address, straight from the model
        self.joint_names = list(I.SAWYER_JOINTS)
        ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in self.joint_names]
        if min(ids) < 0:
            raise RuntimeError(f"joints {[n for n, i in zip(self.joint_names, ids) if i < 0]} not in model")
        self.qpos_adr = np.array([m.jnt_qposadr[i] for i in ids])
        self.dof_adr = np.array([m.jnt_dofadr[i] for i in ids])
        if self.language_critical:
            LT.prepare_model(task, m)  # this env's own model: hide the group's goal markers
        # fast rendering: no shadows / reflections / MSAA
        m.vis.quality.offsamples = 0
        m.vis.global_.offwidth = max(int(m.vis.global_.offwidth), self.size)
        m.vis.global_.offheight = max(int(m.vis.global_.offheight), self.size)
        self.renderer = mujoco.Renderer(m, self.size, self.size)
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        mujoco.mj_forward(m, d)
        # a camera whose image "up" (its y axis) points down in the world renders upside down
        self.flipped = {n: bool(d.cam_xmat[c].reshape(3, 3)[2, 1] < 0) for n, c in self.cam_ids.items()}
        self.upside_down = self.flipped[self.primary]

    def reset(self, layout: int) -> np.ndarray:
        """Start layout ``layout`` (``layout_task``); for a language-critical task, in its group's
        shared state. Returns the observation the scripted expert takes."""
        self.env.set_task(layout_task(self.task, layout))
        obs, _ = self.env.reset()
        if self.language_critical:
            obs = LT.after_reset(self.task, self.env)
        return obs

    @property
    def time_ns(self) -> int:
        return int(round(self.data.time * 1e9))

    def joints(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.data.qpos[self.qpos_adr].copy(), self.data.qvel[self.dof_adr].copy()

    def render_raw(self, cam_id: Optional[int] = None) -> np.ndarray:
        self.renderer.update_scene(self.data, camera=self.cam_id if cam_id is None else cam_id)
        return self.renderer.render()

    def render(self, name: Optional[str] = None) -> np.ndarray:
        """Upright uint8 (size, size, 3) RGB frame of camera ``name`` (default: the primary)."""
        name = self.primary if name is None else name
        img = self.render_raw(self.cam_ids[name])
        return np.ascontiguousarray(img[::-1, ::-1]) if self.flipped[name] else img

    def views(self, names=None) -> Dict[str, np.ndarray]:
        """{camera name: upright frame} of ``names`` (default: every camera), in that order."""
        return {n: self.render(n) for n in (self.cam_ids if names is None else names)}

    def state(self, obs: np.ndarray) -> np.ndarray:
        """(9,) the object, goal and hand positions (``SIM_STATE_NAMES``) in the observation ``obs``."""
        o = np.asarray(obs, np.float64)
        return np.concatenate([o[4:7], o[-3:], o[0:3]])

    def step(self, action: np.ndarray):
        obs, _, _, _, info = self.env.step(action)
        return obs, info

    def close(self) -> None:
        self.renderer.close()
        self.env.close()


def expert_policy(task: str):
    """Meta-World's scripted expert of ``task`` (of its base task for ``<task>@lang``)."""
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[LT.base_task(task)]()


# --- recording --------------------------------------------------------------------------------

@dataclass
class EpisodeResult:
    name: str
    task: str
    episode: int
    layout: int
    success: bool
    length: int
    status: str                 # "kept", "failed", "exists", "failed-before"
    path: Optional[Path] = None
    bytes: int = 0
    seconds: float = 0.0
    timing: Dict[str, float] = field(default_factory=dict)  # seconds: sim, render, write


def _timer():
    t = time.perf_counter()
    return lambda: time.perf_counter() - t


def record_episode(scene: SawyerScene, out: Path, seed: int, episode: int, max_steps: int,
                   keep_failures: bool = False, after_success: int = 0) -> EpisodeResult:
    """Roll out the expert on one layout and write its bag (see module docstring): until its
    first success, then ``after_success`` steps more (within ``max_steps``)."""
    from .bags import (BagWriter, action_msg, bag_size_bytes, finished_bag, image_msg, joint_state_msg,
                       string_msg, write_sidecar)

    task = scene.task
    name = episode_name(task, seed, episode)
    layout = episode_layout(task, seed, episode)
    instruction, para_split = episode_instruction(task, seed, episode, layout)
    policy = expert_policy(task)
    timing = {"sim": 0.0, "render": 0.0, "write": 0.0}
    clock = _timer()
    success, first_success, steps = False, None, 0
    try:
        with finished_bag(out, name) as bag_dir:  # a bag folder under OUT is always complete
            with BagWriter(bag_dir) as w:
                obs = scene.reset(layout)
                t0 = scene.time_ns
                w.write(TOPIC_INSTRUCTION, string_msg(instruction), t0)
                for i in range(max_steps):
                    t = t0 + i * scene.dt_ns
                    c = _timer()
                    frames = scene.views()
                    timing["render"] += c()
                    c = _timer()
                    pos, vel = scene.joints()
                    with warnings.catch_warnings():  # the experts' "Constant(s) may be too high" note
                        warnings.filterwarnings("ignore", message="Constant", category=UserWarning)
                        raw = policy.get_action(obs)
                    action = np.clip(np.asarray(raw, dtype=np.float64), -1.0, 1.0)
                    timing["sim"] += c()
                    c = _timer()
                    w.write(TOPIC_JOINTS, joint_state_msg(scene.joint_names, pos, vel, t))
                    for cam in reversed(list(frames)):  # the primary last, as sim_node publishes: replayed,
                        w.write(camera_topic(cam), image_msg(frames[cam], t, scene.cameras[cam]))  # it finds the rest
                    w.write(TOPIC_ACTION, action_msg(action, t))
                    w.write(TOPIC_STATE, joint_state_msg(I.SIM_STATE_NAMES, scene.state(obs), None, t, "world"))
                    timing["write"] += c()
                    c = _timer()
                    obs, info = scene.step(action)
                    timing["sim"] += c()
                    steps = i + 1
                    if first_success is None and info.get("success", 0.0) >= 1.0:
                        success, first_success = True, i
                    if first_success is not None and i - first_success >= after_success:
                        break
                meta = {
                    "task": task, "task_id": task_id(task), "episode": episode, "name": name,
                    "layout": layout, "layout_split": layout_split(layout), "layout_seed": LAYOUT_SEED, "seed": seed,
                    "success": success, "length": steps, "first_success_step": first_success,
                    "max_steps": max_steps, "after_success": after_success, "instruction": instruction,
                    "paraphrase_split": para_split,
                    "camera": scene.camera, "image_size": [scene.size, scene.size],
                    **({"cameras": scene.cameras} if len(scene.cameras) > 1 else {}),
                    "rotated_180": scene.upside_down, "control_period_ns": scene.dt_ns,
                    "start_ns": t0, "joint_names": scene.joint_names,
                    "action_names": list(I.ACTION_NAMES),
                    "action_topic_type": "sensor_msgs/msg/JointState",
                    "topics": list(TOPICS) + [camera_topic(c) for c in list(scene.cameras)[1:]],
                    "generator": "trimodal-ros generate",
                }
                if scene.language_critical:  # plain Meta-World bags keep exactly their old metadata
                    meta.update(base_task=scene.base_task, language_group=LT.group_of(task).name)
                if not success and not keep_failures:
                    raise _Discard()
                w.set_custom_data(CUSTOM_DATA_KEY, json.dumps(meta, sort_keys=True))
            write_sidecar(bag_dir, meta)
    except _Discard:
        (out / f".failed-{name}.json").write_text(json.dumps(
            {"task": task, "episode": episode, "layout": layout, "max_steps": max_steps,
             "length": steps}) + "\n")
        return EpisodeResult(name, task, episode, layout, False, steps, "failed", None, 0, clock(), timing)
    final = out / name
    return EpisodeResult(name, task, episode, layout, success, steps, "kept", final,
                         bag_size_bytes(final), clock(), timing)


class GenerateError(ValueError):
    """A generate request that conflicts with what is already in the output folder."""


class _Discard(Exception):
    """Abort the bag of a failed episode (not kept)."""


def _existing(out: Path, name: str, camera: str, size: int, max_steps: int, keep_failures: bool,
              after_success: int = 0):
    """'exists' / 'failed-before' when a previous run already settled this episode."""
    from .bags import is_bag, read_sidecar

    bag = out / name
    if is_bag(bag):
        meta = read_sidecar(bag)
        if meta and (meta.get("camera") != camera or list(meta.get("image_size", [])) != [size, size]
                     or meta.get("after_success", 0) != after_success):
            raise GenerateError(f"{bag} was recorded with camera={meta.get('camera')} size="
                                f"{meta.get('image_size')} after_success={meta.get('after_success', 0)}; "
                                f"this run asks camera={camera} size={size} after_success={after_success}. "
                                "Use another --out folder.")
        return "exists", meta
    marker = out / f".failed-{name}.json"
    if not keep_failures and marker.is_file():
        try:
            if json.loads(marker.read_text()).get("max_steps") == max_steps:
                return "failed-before", json.loads(marker.read_text())
        except ValueError:
            pass
    return None, None


@dataclass
class GenerateReport:
    results: List[EpisodeResult]
    seconds: float

    def of(self, status: str) -> List[EpisodeResult]:
        return [r for r in self.results if r.status == status]

    @property
    def steps(self) -> int:
        return sum(r.length for r in self.results if r.status in ("kept", "failed"))

    @property
    def ms_per_step(self) -> float:
        ran = [r for r in self.results if r.status in ("kept", "failed")]
        return 1e3 * sum(r.seconds for r in ran) / max(1, self.steps)

    @property
    def mb_per_episode(self) -> float:
        kept = self.of("kept")
        return sum(r.bytes for r in kept) / max(1, len(kept)) / 1e6


def generate(tasks, episodes: int, out, camera: str = "corner", size: int = 224, seed: int = 0,
             max_steps: int = 200, keep_failures: bool = False, progress: bool = True,
             after_success: int = 0) -> GenerateReport:
    """Record ``episodes`` expert episodes of each task into ``out`` (see module docstring), each
    until the expert's first success and ``after_success`` steps more."""
    from tqdm import tqdm

    task_list = resolve_tasks(tasks)
    if episodes < 1 or max_steps < 1 or size < 8 or after_success < 0:
        raise ValueError("need episodes >= 1, max_steps >= 1, size >= 8 and after_success >= 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: List[EpisodeResult] = []
    clock = _timer()
    bar = tqdm(total=len(task_list) * episodes, unit="ep", disable=not progress, dynamic_ncols=True)
    try:
        for task in task_list:
            todo = []
            for e in range(episodes):
                name = episode_name(task, seed, e)
                status, meta = _existing(out, name, camera, size, max_steps, keep_failures, after_success)
                if status:
                    results.append(EpisodeResult(name, task, e, episode_layout(task, seed, e),
                                                 bool(meta.get("success", False)) if status == "exists" else False,
                                                 int(meta.get("length", 0)), status, out / name))
                    bar.update(1)
                else:
                    todo.append(e)
            if not todo:
                continue
            bar.set_description(task)
            scene = SawyerScene(task, camera, size, max_steps)
            try:
                for e in todo:
                    r = record_episode(scene, out, seed, e, max_steps, keep_failures, after_success)
                    results.append(r)
                    bar.update(1)
                    bar.set_postfix(kept=len([x for x in results if x.status == "kept"]),
                                    failed=len([x for x in results if x.status == "failed"]))
            finally:
                scene.close()
    finally:
        bar.close()
    return GenerateReport(results, clock())


def summarize(rep: GenerateReport, file=sys.stdout) -> None:
    p = lambda *a: print(*a, file=file)  # noqa: E731
    kept, failed = rep.of("kept"), rep.of("failed")
    p(f"generate: {len(kept)} kept, {len(failed)} failed, {len(rep.of('exists'))} already there, "
      f"{len(rep.of('failed-before'))} failed before, in {rep.seconds:.1f} s")
    for task in dict.fromkeys(r.task for r in rep.results):
        ran = [r for r in rep.results if r.task == task and r.status in ("kept", "failed")]
        if ran:
            ok = [r for r in ran if r.success]
            p(f"  {task}: expert success {len(ok)}/{len(ran)}, mean length "
              f"{np.mean([r.length for r in ran]):.0f} steps")
    ran = kept + failed
    if ran:
        tot = {k: sum(r.timing.get(k, 0.0) for r in ran) for k in ("sim", "render", "write")}
        n = max(1, rep.steps)
        p(f"  {rep.ms_per_step:.1f} ms/step (sim+expert {1e3 * tot['sim'] / n:.1f}, render "
          f"{1e3 * tot['render'] / n:.1f}, serialize+write {1e3 * tot['write'] / n:.1f}) over {rep.steps} steps")
    if kept:
        p(f"  {rep.mb_per_episode:.2f} MB/episode (mean of {len(kept)} kept bags, "
          f"{np.mean([r.length for r in kept]):.0f} steps each)")
    for r in [r for r in ran if not r.success]:
        p(f"  FAILED {r.name} (layout {r.layout}): no success in {r.length} steps"
          + ("" if r.path is None else f", kept at {r.path}"))


def register(sub) -> None:
    p = sub.add_parser("generate", help="roll out Meta-World experts and record one ROS 2 bag per episode")
    p.add_argument("--tasks", required=True, help="comma list of Meta-World v3 tasks (or <task>@lang), "
                   "or mt10 / mt50 / lang (the language-critical set, see data/language_tasks.py)")
    p.add_argument("--episodes", type=int, default=5, help="episodes per task: the first 50 visit the "
                   "benchmark's 50 layouts once (train, val, held-out); from 50 on, extra train layouts")
    p.add_argument("--out", required=True, help="output folder (one bag folder per episode)")
    p.add_argument("--camera", default="corner", help="Meta-World camera (default: corner), or several named "
                   "cameras, primary first: corner,top_camera=topview records /top_camera/image_raw too")
    p.add_argument("--size", type=int, default=224, help="square image size in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=200, help="episode step limit")
    p.add_argument("--keep-failures", action="store_true", help="also keep episodes the expert failed")
    p.add_argument("--after-success", type=int, default=0, metavar="N", help="record N more expert steps "
                   "after the first success (default 0: the episode ends there), so the demonstrations "
                   "show the last centimetres and holding the goal, not only crossing the threshold")
    p.set_defaults(func=cli_generate)


def cli_generate(args) -> int:
    """``trimodal-ros generate``."""
    try:
        rep = generate(args.tasks, args.episodes, args.out, camera=args.camera, size=args.size,
                       seed=args.seed, max_steps=args.max_steps, keep_failures=args.keep_failures,
                       after_success=args.after_success)
    except (GenerateError, ValueError) as e:  # bad task name, size, camera, mixed folder
        print(f"generate: {e}", file=sys.stderr)
        return 2
    summarize(rep)
    if not rep.of("kept") and not rep.of("exists") and (rep.of("failed") or rep.of("failed-before")):
        print("generate: no episode succeeded (use --keep-failures to keep them anyway)", file=sys.stderr)
        return 1
    return 0
