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

Layouts and their splits: ``layouts``; a held-out layout's bag records a held-out paraphrase (new in
both scene and wording); a language-critical ``<task>@lang`` (``--tasks lang``) records its group's
shared placement, and its ``episode.json`` adds ``base_task`` and ``language_group``. The scene and
its rendering: ``scene``.

Crash safety: a bag is written into ``OUT/.partial-<name>/`` and renamed into place when
complete, so an interrupted run keeps its finished bags and a re-run skips them; failed episodes
leave a ``.failed-<name>.json`` marker so a re-run with the same ``--max-steps`` does not retry.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from trimodal_ros import interface as I
from trimodal_ros.data import language_tasks as LT
from trimodal_ros.data.instructions import resolve_tasks, task_id
from trimodal_lab.metaworld.expert import expert_policy
from trimodal_lab.metaworld.layouts import (CUSTOM_DATA_KEY, LAYOUT_SEED, episode_instruction, episode_layout,
                                            episode_name, layout_split)
from trimodal_lab.metaworld.scene import SawyerScene

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
    from trimodal_ros.data.bags import BagWriter, bag_size_bytes, finished_bag, write_sidecar
    from trimodal_ros.data.messages import action_msg, image_msg, joint_state_msg, string_msg

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
    from trimodal_ros.data.bags import is_bag, read_sidecar

    bag = out / name
    if is_bag(bag):
        meta = read_sidecar(bag)
        if meta and (meta.get("camera") != camera or list(meta.get("image_size", [])) != [size, size]
                     or meta.get("after_success", 0) != after_success):
            raise GenerateError(f"{bag} was recorded with camera={meta.get('camera')} size="
                                f"{meta.get('image_size')} after_success={meta.get('after_success', 0)}; "
                                f"this run asks camera={camera} size={size} after_success={after_success}. "
                                "Use another --out folder.")
        today = layout_split(meta["layout"]) if meta and "layout" in meta else None
        if today is not None and meta.get("layout_split", today) != today:  # datasets read the recorded split
            raise GenerateError(f"{bag} records layout {meta['layout']} as {meta['layout_split']!r}; the layout "
                                f"table now says {today!r}. Record into another --out folder.")
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
