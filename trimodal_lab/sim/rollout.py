"""Closed-loop rollouts in Meta-World: success rate, episode length, control rate.

Action chunks (K steps) are executed receding-horizon by default: each tick predicts K actions
and the robot executes the first ``execute`` of them (default 1) before the next frame is
encoded. ``execute=K`` runs whole chunks open-loop (K× fewer model calls, less reactive). The
ROS path (``sim_node``, parameter ``execute_steps``) steps through the same ``EpisodeStepper``,
and both paths ask the same ``trimodal_ros.policy.Policy`` for actions (its ``execute`` decides
what enters the action history), so they execute the same actions.
"""

from __future__ import annotations

import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from trimodal_lab.eval.metrics import wilson_interval


@dataclass
class EpisodeOutcome:
    task: str
    layout: int
    success: bool
    length: int
    ticks: int
    seconds: float


class EpisodeStepper:
    """The one stepping rule, shared by ``run_episode`` (in-process) and ``sim_node`` (through ROS)
    so both paths execute exactly the same actions: each tick observes once, then executes the
    first ``execute`` actions of the predicted chunk (receding horizon), each clipped to the scene's
    ``action_low`` / ``action_high`` (Meta-World: [-1, 1]), stopping early at success or ``max_steps``."""

    def __init__(self, scene, max_steps: int, execute: int = 1):
        self.scene, self.max_steps, self.execute = scene, int(max_steps), max(1, int(execute))
        self.layout, self.steps, self.ticks, self.success = -1, 0, 0, False
        self._t0: Optional[float] = None
        self._t_end: Optional[float] = None

    def reset(self, layout: int) -> None:
        self.scene.reset(layout)
        self.layout, self.steps, self.ticks, self.success = int(layout), 0, 0, False
        self._t0 = self._t_end = None

    @property
    def done(self) -> bool:
        return self.success or self.steps >= self.max_steps

    def observe(self):
        """({camera name: frame}, joint positions, joint velocities) for the next tick; starts the
        episode clock."""
        if self._t0 is None:
            self._t0 = time.perf_counter()
        pos, vel = self.scene.joints()
        return self.scene.views(), pos, vel

    def apply(self, chunk) -> List[np.ndarray]:
        """Execute the first ``execute`` rows of ``chunk`` (K, A); returns the actions executed."""
        done: List[np.ndarray] = []
        self.ticks += 1
        for a in np.atleast_2d(chunk)[:self.execute]:
            a = np.clip(np.asarray(a, np.float64), self.scene.action_low, self.scene.action_high)
            _, info = self.scene.step(a)
            done.append(a)
            self.steps += 1
            if info.get("success", 0.0) >= 1.0:
                self.success = True
            if self.done:
                break
        if self.done and self._t_end is None:
            self._t_end = time.perf_counter()
        return done

    def outcome(self) -> EpisodeOutcome:
        t0 = self._t0 if self._t0 is not None else time.perf_counter()
        t1 = self._t_end if self._t_end is not None else time.perf_counter()
        return EpisodeOutcome(self.scene.task, self.layout, self.success, self.steps, self.ticks, t1 - t0)


def run_episode(scene, act: Callable[[dict, np.ndarray, np.ndarray], np.ndarray], layout: int,
                max_steps: int, execute: int = 1, trace: Optional[List[np.ndarray]] = None) -> EpisodeOutcome:
    """Step ``scene`` with chunks from ``act(views, positions, velocities)`` until success or
    ``max_steps`` (``trace``, if a list, receives every executed action: to compare with the ROS
    path step by step)."""
    stepper = EpisodeStepper(scene, max_steps, execute)
    stepper.reset(layout)
    while not stepper.done:
        done = stepper.apply(act(*stepper.observe()))
        if trace is not None:
            trace.extend(done)
    return stepper.outcome()


def run_episode_async(scene, infer: Callable[[dict, np.ndarray, np.ndarray], np.ndarray], layout: int,
                      max_steps: int, delay: int, executor, hold: Callable[[np.ndarray], np.ndarray],
                      trace: Optional[List[np.ndarray]] = None,
                      boundaries: Optional[List[int]] = None,
                      forecast: Optional[List[Tuple[int, int]]] = None) -> EpisodeOutcome:
    """Asynchronous execution with a model ``delay`` control periods slow, in simulated time (so it
    is reproducible): the robot steps every tick with ``executor.action(tick)`` (``executor.
    ChunkExecutor``; ``hold(joint positions)`` before the first chunk) while inference runs on the
    newest inputs, back to back: a chunk from the inputs of tick t is handed to the executor at
    tick t + ``delay``, and the next inference starts on that tick's inputs. ``delay`` 0 is the
    synchronous case: a fresh chunk every tick. ``boundaries``, if a list, receives the steps at
    which a new chunk arrived. ``forecast`` ((joint, action) index pairs: ``RobotSpec.position_targets``):
    infer on the commanded positions of the arrival tick instead (``ChunkExecutor.forecast``)."""
    stepper = EpisodeStepper(scene, max_steps, 1)
    stepper.reset(layout)
    executor.reset()
    pending: Optional[Tuple[int, int, np.ndarray]] = None  # (origin tick, arrival tick, chunk) in flight
    tick = 0

    def hand_over_if_due() -> None:
        nonlocal pending
        if pending is not None and tick >= pending[1]:
            executor.add(pending[2], pending[0], now=tick)
            if boundaries is not None:
                boundaries.append(tick)
            pending = None

    while not stepper.done:
        views, pos, vel = stepper.observe()
        hand_over_if_due()
        if pending is None:  # the next inference starts on this tick's inputs
            origin, q = executor.forecast(pos, tick, delay, forecast) if forecast else (tick, pos)
            pending = (origin, tick + delay, np.asarray(infer(views, q, vel)))
            hand_over_if_due()  # delay 0: at once
        a = executor.action(tick)
        done = stepper.apply((hold(pos) if a is None else a)[None])
        if trace is not None:
            trace.extend(done)
        tick += 1
    return stepper.outcome()


def action_jumps(trace: List[np.ndarray], boundaries: List[int]) -> Tuple[List[float], List[float]]:
    """(|Δa| at the steps where a new chunk took over, |Δa| at the other steps): the largest change
    of any action dimension from the previous step's command."""
    at, other, b = [], [], set(boundaries)
    for k in range(1, len(trace)):
        d = float(np.max(np.abs(np.asarray(trace[k]) - np.asarray(trace[k - 1]))))
        (at if k in b else other).append(d)
    return at, other


def summarize(outcomes: List[EpisodeOutcome]) -> Dict[str, object]:
    """Per-task and overall success with 95% Wilson intervals, mean length, control rate."""
    def block(os_: List[EpisodeOutcome]) -> Dict[str, object]:
        k, n = sum(o.success for o in os_), len(os_)
        lo, hi = wilson_interval(k, n)
        secs = sum(o.seconds for o in os_)
        return {"episodes": n, "successes": k, "success_rate": k / n if n else float("nan"),
                "ci95": [lo, hi], "mean_length": float(np.mean([o.length for o in os_])) if n else float("nan"),
                "control_rate_hz": sum(o.ticks for o in os_) / secs if secs else float("nan"),
                "env_steps_per_s": sum(o.length for o in os_) / secs if secs else float("nan")}
    tasks = sorted({o.task for o in outcomes})
    return {"overall": block(outcomes), "per_task": {t: block([o for o in outcomes if o.task == t]) for t in tasks},
            "episodes": [asdict(o) for o in outcomes]}


def eval_layouts(split: str, episodes: int, seed: int) -> List[int]:
    """``episodes`` layouts of a split: a permutation seeded by ``seed``, cycled when more are
    asked than the split has. Prefix-consistent: the first n of a longer list are the n-list, so
    a run with more episodes extends, never reshuffles, a run with fewer (paired comparisons)."""
    from trimodal_lab.metaworld import layouts

    pool = layouts(split)
    perm = np.random.default_rng([seed, 99]).permutation(pool)
    return [int(perm[i % len(perm)]) for i in range(episodes)]


INSTRUCTION_CONDITIONS = ("train", "heldout", "other_task", "empty")


def other_task(task: str, tasks: List[str]) -> str:
    """The task whose instruction a counterfactual episode of ``task`` gets: for a language-critical
    ``<task>@lang`` the other task of its group (same first frame, opposite actions), else the next
    of ``tasks`` in sorted order."""
    from trimodal_ros.data import language_tasks as LT

    if LT.is_variant(task):
        group = LT.group_of(task).tasks
        return group[(group.index(LT.base_task(task)) + 1) % len(group)] + LT.SUFFIX
    pool = sorted(set(tasks) | {task})
    if len(pool) == 1:
        from trimodal_ros.data.instructions import MT50

        pool = sorted({task, MT50[(MT50.index(task) + 1) % len(MT50)]})
    return pool[(pool.index(task) + 1) % len(pool)]


def episode_plan(tasks: List[str], episodes: int, split: str = "heldout", seed: int = 0,
                 instructions: str = "train", layouts: Optional[List[int]] = None,
                 wordings: Optional[Dict[str, List[str]]] = None) -> List[Tuple[str, int, str]]:
    """(task, layout, instruction) of every episode, in order: the in-process and through-ROS
    rollouts both run this list, so "same seeds" means the same scenes and the same wording.
    ``layouts`` (explicit) replaces ``episodes`` layouts of ``split``. ``instructions``: the task's
    train or held-out paraphrases, a train paraphrase of ``other_task`` (does the policy follow the
    words or the scene?), or "empty"; ``wordings`` ({task: [wording, ...]}, the user's own) wins
    for the tasks it names."""
    from trimodal_ros.data.instructions import instruction_for

    if instructions not in INSTRUCTION_CONDITIONS:
        raise ValueError(f"instructions must be one of {INSTRUCTION_CONDITIONS}, got {instructions!r}")
    plan = []
    for task in tasks:  # one stream per task: adding a task or episodes leaves the others' wording alone
        rng = np.random.default_rng([seed, 5, zlib.crc32(task.encode())])
        for layout in (layouts if layouts is not None else eval_layouts(split, episodes, seed)):
            if wordings and task in wordings:
                text = wordings[task][int(rng.integers(len(wordings[task])))]
            elif instructions == "empty":
                text = ""
            elif instructions == "other_task":
                text = instruction_for(other_task(task, tasks), rng, "train")
            else:
                text = instruction_for(task, rng, instructions)
            plan.append((task, int(layout), text))
    return plan


@dataclass
class RolloutSpec:
    """Which episodes a rollout runs and how each runs; the in-process and the through-ROS rollouts
    both take one, so one spec means the same scenes and the same words. The episodes are ``plan``
    ((task, layout, instruction) each), else ``episode_plan``'s for ``episodes`` layouts of ``split``
    per task. ``execute``: actions of each chunk executed per tick (vla_node's ``execute_steps``);
    ``camera``: a ``camera_spec`` (default: the simulated cameras of the policy's named ones)."""

    tasks: List[str] = field(default_factory=list)
    episodes: int = 0
    split: str = "heldout"
    seed: int = 0
    instructions: str = "train"
    plan: Optional[List[Tuple[str, int, str]]] = None
    max_steps: int = 200
    execute: int = 1
    size: int = 224
    camera: Optional[str] = None

    def episode_plan(self) -> List[Tuple[str, int, str]]:
        return self.plan if self.plan is not None else episode_plan(self.tasks, self.episodes, self.split,
                                                                    self.seed, self.instructions)


def rollout_in_process(policy, spec: RolloutSpec, progress: bool = True,
                       traces: Optional[List[List[np.ndarray]]] = None,
                       scenes: Optional[dict] = None) -> Dict[str, object]:
    """The ``Policy`` drives ``spec``'s episodes, no ROS in between (``traces``, if a list, receives
    each episode's executed actions). ``scenes``, if a dict, keeps the simulated scenes for the next
    call (building one costs about a second)."""
    from tqdm import tqdm

    from trimodal_lab.metaworld import SawyerScene, sim_camera_spec

    camera = spec.camera or sim_camera_spec(policy.model_config.cameras)
    max_steps, execute, size = spec.max_steps, spec.execute, spec.size
    outcomes = []
    plan = spec.episode_plan()
    tasks = list(dict.fromkeys(t for t, _, _ in plan))
    bar = tqdm(total=len(plan), desc="rollout", disable=not progress, dynamic_ncols=True)
    # The model runs on its own thread, as in vla_node: torch's OpenMP on the thread that also
    # renders with Mesa's EGL made every call ~70x slower on 2 cores (measured 360 ms vs 5 ms).
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="policy")

    policy.execute = max(1, int(execute))  # Policy refuses more than one with temporal ensembling

    def act(views, pos, vel):
        return model_thread.submit(policy.act, views, pos, vel).result().actions

    try:
        for task in tasks:
            key = (task, camera, size)
            scene = (scenes or {}).get(key) or SawyerScene(task, camera=camera, size=size, max_steps=max_steps)
            scene.env.max_path_length = max(int(scene.env.max_path_length), int(max_steps))
            try:
                for _, layout, instruction in (e for e in plan if e[0] == task):
                    model_thread.submit(policy.reset, instruction, True).result()
                    trace = [] if traces is not None else None
                    outcomes.append(run_episode(scene, act, layout, max_steps, execute, trace))
                    if traces is not None:
                        traces.append(trace)
                    bar.update(1)
            finally:
                if scenes is None:
                    scene.close()
                else:
                    scenes[key] = scene
    finally:
        model_thread.shutdown()
        bar.close()
    return summarize(outcomes)


def expert_success(tasks: List[str], episodes: int, split: str = "heldout", seed: int = 0,
                   max_steps: int = 200, size: int = 64) -> Dict[str, object]:
    """The scripted expert on the same layouts: the ceiling the learned policy is compared to."""
    return expert_success_on([(t, layout, "") for t in tasks for layout in eval_layouts(split, episodes, seed)],
                             max_steps, size)


def expert_success_on(plan: List[Tuple[str, int, str]], max_steps: int = 200, size: int = 64) -> Dict[str, object]:
    """The scripted expert on ``plan``'s (task, layout) episodes (it reads no instruction)."""
    from trimodal_lab.metaworld import SawyerScene, expert_policy

    outcomes = []
    for task in dict.fromkeys(t for t, _, _ in plan):
        scene = SawyerScene(task, size=size, max_steps=max_steps)
        try:
            for _, layout, _ in (e for e in plan if e[0] == task):
                outcomes.append(expert_episode(scene, expert_policy(task).get_action, layout, max_steps))
        finally:
            scene.close()
    return summarize(outcomes)


def expert_episode(scene, expert: Callable[[object], np.ndarray], layout: int, max_steps: int) -> EpisodeOutcome:
    """A scripted expert (observation → action, clipped to the scene's bounds) on one layout."""
    obs = scene.reset(layout)
    t0 = time.perf_counter()
    for i in range(max_steps):
        obs, info = scene.step(np.clip(expert(obs), scene.action_low, scene.action_high))
        if info.get("success", 0.0) >= 1.0:
            return EpisodeOutcome(scene.task, layout, True, i + 1, i + 1, time.perf_counter() - t0)
    return EpisodeOutcome(scene.task, layout, False, max_steps, max_steps, time.perf_counter() - t0)
