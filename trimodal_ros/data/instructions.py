"""Natural-language commands for the 50 Meta-World v3 tasks.

Each task has 7 paraphrases. The first 5 are the **train** paraphrases; the last 2 are
**held out** (never recorded into training bags of train layouts, never sampled by the dataset in
"train" mode), so a model can be scored on wording it has not seen. ``HELDOUT_PARAPHRASES`` is the
size of that tail. Plain Python: no metaworld, mujoco or torch import.

A language-critical task ``<task>@lang`` (``language_tasks``) is instructed with its base task's
paraphrases and shares its task id: the wording names the task, the scene does not.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, List, Sequence, Union

import numpy as np
import yaml

from .language_tasks import LANG, TASK_SETS, base_task, is_variant

HELDOUT_PARAPHRASES = 2  # the last 2 paraphrases of every task are held out
SPLITS = ("train", "heldout")

# In Meta-World's own MT50 order (metaworld.env_dict.MT50_V3); the index is the task id.
MT50: List[str] = [
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3", "button-press-topdown-v3",
    "button-press-topdown-wall-v3", "button-press-v3", "button-press-wall-v3", "coffee-button-v3",
    "coffee-pull-v3", "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3",
    "door-lock-v3", "door-open-v3", "door-unlock-v3", "hand-insert-v3", "drawer-close-v3",
    "drawer-open-v3", "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3",
    "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3", "pick-place-wall-v3",
    "pick-out-of-hole-v3", "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3",
    "plate-slide-back-v3", "plate-slide-back-side-v3", "peg-insert-side-v3", "peg-unplug-side-v3",
    "soccer-v3", "stick-push-v3", "stick-pull-v3", "push-v3", "push-wall-v3", "push-back-v3",
    "reach-v3", "reach-wall-v3", "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3",
    "window-close-v3",
]
# metaworld.env_dict.MT10_V3 order
MT10: List[str] = [
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
    "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3",
]

# Seven phrasings per task (the first five train, the last two held out), kept as data beside this file.
PARAPHRASES: Dict[str, List[str]] = yaml.safe_load((Path(__file__).with_name("paraphrases.yaml")).read_text())
if list(PARAPHRASES) != MT50 or any(len(v) != 7 for v in PARAPHRASES.values()):
    raise RuntimeError("paraphrases.yaml must hold 7 phrasings for each MT50 task, in MT50 order")

TASK_IDS: Dict[str, int] = {t: i for i, t in enumerate(MT50)}


def check_task(task: str) -> str:
    """``task`` if it is a Meta-World v3 task or a language-critical ``<task>@lang``."""
    if task in TASK_IDS or task in LANG:
        return task
    if is_variant(task):
        raise ValueError(f"unknown language-critical task {task!r}; known: {', '.join(LANG)}")
    raise ValueError(f"unknown Meta-World v3 task {task!r}; known: {', '.join(MT50)} "
                     f"(and the language-critical {', '.join(LANG)})")


def task_id(task: str) -> int:
    """Index of ``task`` in MT50 order (the dataset's ``task_id``); ``<task>@lang`` has its base
    task's id (same paraphrases)."""
    return TASK_IDS[base_task(check_task(task))]


def has_paraphrases(tasks) -> bool:
    """Whether every task is one of Meta-World's (the package's own phrasings exist for it)."""
    return all(base_task(t) in TASK_IDS for t in tasks)


def paraphrases(task: str, split: str = "train") -> List[str]:
    """The paraphrases of ``task`` in ``split`` ("train", "heldout" or "all"); a ``<task>@lang``
    has its base task's."""
    p = PARAPHRASES[base_task(check_task(task))]
    if split == "train":
        return p[:-HELDOUT_PARAPHRASES]
    if split == "heldout":
        return p[-HELDOUT_PARAPHRASES:]
    if split == "all":
        return list(p)
    raise ValueError(f"paraphrase split must be 'train', 'heldout' or 'all', got {split!r}")


RngLike = Union[None, int, random.Random, np.random.Generator]


def _pick(n: int, rng: RngLike) -> int:
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(n))
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    return random.Random(rng).randrange(n)  # None: fresh entropy; int: a seed


def instruction_for(task: str, rng: RngLike = None, split: str = "train") -> str:
    """One paraphrase of ``task`` from ``split``, drawn with ``rng`` (random.Random, a numpy
    Generator, an int seed, or None)."""
    p = paraphrases(task, split)
    return p[_pick(len(p), rng)]


# Word-level noise for training (train.instruction_noise): what people do to a command that a fixed
# list of phrasings never shows. Generic edits only (no synonyms written for the tasks, which would
# leak the held-out wording into training).
_FILLERS_BEFORE = ("please ", "robot, ", "can you ", "now ", "ok, ", "i want you to ", "go and ")
_FILLERS_AFTER = (" please", " now", " for me", ", thanks", " quickly", " carefully")


def perturb_instruction(text: str, rng: np.random.Generator, p: float) -> str:
    """With probability ``p``, at most one random edit of ``text``: drop a word (texts of three words
    or more), swap two neighbouring words, swap two letters inside a word of four letters or more,
    or add a filler before or after (also what a drop or swap falls back to on a text too short for
    it). The empty instruction (a stop) stays empty."""
    words = text.split()
    if not words or p <= 0 or rng.random() >= p:
        return text
    kind = int(rng.integers(5))
    if kind == 0 and len(words) > 2:
        del words[int(rng.integers(len(words)))]
    elif kind == 1 and len(words) > 1:
        i = int(rng.integers(len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == 2:
        long = [i for i, w in enumerate(words) if len(w) > 3]
        if long:
            i = long[int(rng.integers(len(long)))]
            w, j = words[i], 1 + int(rng.integers(len(words[i]) - 2))
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    elif kind == 3:
        return _FILLERS_BEFORE[int(rng.integers(len(_FILLERS_BEFORE)))] + " ".join(words)
    else:
        return " ".join(words) + _FILLERS_AFTER[int(rng.integers(len(_FILLERS_AFTER)))]
    return " ".join(words)


def resolve_tasks(spec: Union[str, Sequence[str]]) -> List[str]:
    """"mt10", "mt50", "lang" (the language-critical tasks) or a comma list of task names → a list
    of task names, checked."""
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key == "mt10":
            return list(MT10)
        if key == "mt50":
            return list(MT50)
        if key in TASK_SETS:
            return list(TASK_SETS[key])
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    tasks: List[str] = []
    for t in spec:
        check_task(t)
        if t not in tasks:
            tasks.append(t)
    if not tasks:
        raise ValueError("no tasks given")
    return tasks
