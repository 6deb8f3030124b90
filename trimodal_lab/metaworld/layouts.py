"""Meta-World layouts and their splits. A layout is the index of the Meta-World task variation
(object/goal placement) in ``MT1(task, seed=LAYOUT_SEED).train_tasks`` (50 per task; ``LAYOUT_SEED``
is fixed, so layout 7 is the same scene whatever ``--seed`` is). Layouts 0-34 are **train**, 35-39
**val** (every choice of configuration, checkpoint or hyper-parameter is made there) and 40-49 **held
out** (``layout_split``); 1000-1019 are the study's test set. Episode ``e`` of a task with ``--seed
s`` uses the ``e``-th entry of a seeded permutation of all 50 layouts, so 50 episodes cover each
layout once. Layouts 50 and up are **extra train layouts**: layout ``L`` is entry ``L % 50`` of
``MT1(task, seed=LAYOUT_SEED + L // 50).train_tasks``, new placements drawn by Meta-World's own
sampler. A language-critical ``<task>@lang`` uses its group's shared placement for layout ``L``."""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import List, Tuple

import numpy as np

from trimodal_ros.data import language_tasks as LT
from trimodal_ros.data.instructions import instruction_for
from trimodal_lab.metaworld import language
from trimodal_ros.data.bags import CUSTOM_DATA_KEY, SPLITS as LAYOUT_SPLITS  # noqa: F401  (re-exported)

N_LAYOUTS = 50
VAL_LAYOUTS = tuple(range(35, 40))      # for every choice: configuration, checkpoint, hyper-parameters
HELDOUT_LAYOUTS = tuple(range(40, 50))  # rolled out by many policies: for choosing, like val, now
# The study's test set: entries 0-19 of MT1(task, seed=LAYOUT_SEED + 20), a seed block no recording
# or rollout had rendered before the study's plan was committed. Never recorded (``episode_layout``
# refuses them); rolled out once per pre-registered run, only by ``trimodal-study run``.
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

def benchmark(task: str, seed: int = LAYOUT_SEED):
    """Meta-World's MT1 benchmark of ``task`` whose train tasks are its layouts (cached)."""
    return _mt1(task, int(seed))


@lru_cache(maxsize=None)
def _mt1(task: str, seed: int):
    import metaworld

    return metaworld.MT1(task, seed=seed)  # 50 resets: ~1 s per task, so cache it


def layout_task(task: str, layout: int):
    """The Meta-World ``Task`` (what ``env.set_task`` takes) of layout ``layout``: entry ``layout %
    50`` of ``MT1(task, seed=LAYOUT_SEED + layout // 50).train_tasks``; for a language-critical
    ``<task>@lang``, its group's shared placement (``language.task_data``)."""
    block, index = divmod(check_layout(layout), N_LAYOUTS)
    if LT.is_variant(task):
        return language.task_data(task, index, lambda name: benchmark(name, LAYOUT_SEED + block))
    return benchmark(task, LAYOUT_SEED + block).train_tasks[index]


