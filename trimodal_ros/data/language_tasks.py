"""Language-critical tasks: Meta-World tasks whose first frame does not tell which task it is.

On MT10 the first camera frame already identifies the task (each task has its own scene, and even
reach / push / pick-place, which share a scene, draw their goal marker in a different colour), so
an instruction adds little. Here, the tasks of a **group** start from the *same* physical state in
the *same* scene, rendered to the *same* pixels, while needing opposite actions; only the
instruction says which.

A language-critical task is named ``<meta-world task>@lang`` (``drawer-open-v3@lang``) and
``resolve_tasks("lang")`` lists them all. It is the Meta-World task (same env class, reward,
success test and scripted expert, same instructions: its base task's paraphrases, which differ
between the tasks of a group) started from its group's shared initial state:

* **placement**: layout ``L`` is the object placement (``rand_vec``) of the group's *anchor* task,
  ``MT1(anchor, seed=0).train_tasks[L]``, given to every task of the group (each task's own
  layouts would put the object elsewhere);
* **hidden goal markers**: sites that Meta-World draws only in one task of the group (where that
  task's goal is) are made transparent, in every task of the group;
* **mid state**: where the tasks start the object in opposite states (drawer-close starts with the
  drawer open, drawer-open with it closed), every task of the group starts it half-way (a joint
  position set after Meta-World's reset);
* the kinematics are recomputed after the reset (``mj_forward``) so the camera and the observation
  see the state that was set (some Meta-World resets end with a physics step, others with a
  forward pass: without it, the same state renders a few pixels apart).

``generate`` records the tasks of a group on the same layouts, episode for episode
(``layout_key``): with fewer than 50 episodes per task, different layouts per task would let the
object's placement tell the tasks apart.

This is applied in one place, the lab's ``SawyerScene`` (``trimodal_lab.metaworld``: ``layout_task``
and ``SawyerScene.reset``, with ``trimodal_lab.metaworld.language``), which data generation,
in-process rollouts and ``sim_node`` all use. Plain Meta-World names (MT10,
MT50) are untouched.

Groups were kept when, on every layout checked, the first frames of their tasks are identical
pixel for pixel, the scripted experts succeed from the shared state, and the tasks exclude each
other: replaying one task's expert in the other task's env (same state, same dynamics) never
completes the other task, so a policy that ignores the instruction gets at most one task of each
group right (chance: 50 %). See docs/results/language_tasks.md for the groups tried and rejected.

Plain Python (no metaworld / mujoco): ``instructions`` imports the names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

SUFFIX = "@lang"


@dataclass(frozen=True)
class Group:
    """Meta-World tasks that share one scene and one initial state (see the module docstring)."""

    name: str
    anchor: str                          # its MT1 layouts place the scene for every task of the group
    tasks: Tuple[str, ...]               # Meta-World v3 task names
    hidden_sites: Tuple[str, ...] = ()   # goal markers drawn in one task only: made transparent
    joints: Tuple[Tuple[str, float], ...] = ()  # (joint, position) set after reset: the shared mid state
    about: str = ""


GROUPS: Tuple[Group, ...] = (
    Group("faucet", "faucet-open-v3", ("faucet-open-v3", "faucet-close-v3"),
          hidden_sites=("goal_open", "goal_close"),
          about="the faucet at the same place, handle straight; turn it one way or the other"),
    Group("drawer", "drawer-open-v3", ("drawer-open-v3", "drawer-close-v3"),
          hidden_sites=("goal",), joints=(("goal_slidey", -0.08),),  # range [-0.16, 0]: half open
          about="the drawer half open (8 of its 16 cm); open it fully or close it"),
    Group("window", "window-open-v3", ("window-open-v3", "window-close-v3"),
          hidden_sites=("goal",), joints=(("window_slide", 0.1),),  # range [0, 0.2]: half open
          about="the window half open (10 of its 20 cm); open it fully or close it"),
)

_BY_TASK: Dict[str, Group] = {t: g for g in GROUPS for t in g.tasks}
LANG: List[str] = [t + SUFFIX for g in GROUPS for t in g.tasks]  # resolve_tasks("lang")
TASK_SETS: Dict[str, List[str]] = {"lang": LANG}


def is_variant(task: str) -> bool:
    """A ``<task>@lang`` name (known or not)."""
    return task.endswith(SUFFIX)


def base_task(task: str) -> str:
    """The Meta-World task behind a name: ``drawer-open-v3@lang`` → ``drawer-open-v3``; a plain
    name is returned as is."""
    return task[:-len(SUFFIX)] if is_variant(task) else task


def group_of(task: str) -> Group:
    """The group of a ``<task>@lang`` name; ValueError for any other name."""
    if task not in LANG:
        raise ValueError(f"{task!r} is not a language-critical task; they are: {', '.join(LANG)}")
    return _BY_TASK[base_task(task)]


def layout_key(task: str) -> str:
    """What seeds ``metaworld.episode_layout``'s permutation: the task name, or ``lang:<group>``
    for a language-critical task, so the tasks of a group record the same layouts."""
    return f"lang:{group_of(task).name}" if is_variant(task) else task
