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
from typing import Dict, List, Sequence, Union

import numpy as np

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

PARAPHRASES: Dict[str, List[str]] = {
    "assembly-v3": [
        "put the ring onto the peg",
        "pick up the nut and slide it over the peg",
        "assemble the ring on the pole",
        "place the round nut on the peg",
        "grab the ring by its handle and drop it onto the peg",
        "fit the nut around the upright peg",
        "thread the ring down over the pole",
    ],
    "basketball-v3": [
        "put the ball in the hoop",
        "dunk the basketball",
        "pick up the ball and drop it through the basket",
        "score a basket with the ball",
        "lift the ball and place it into the hoop",
        "shoot the ball into the net",
        "carry the orange ball to the hoop and let it fall in",
    ],
    "bin-picking-v3": [
        "move the cube from one bin to the other",
        "pick the block out of the left bin and put it in the right bin",
        "transfer the cube between the bins",
        "take the block from the first bin and drop it into the second",
        "relocate the cube to the other container",
        "lift the cube out of its bin and place it in the empty one",
        "carry the block over to the neighbouring bin",
    ],
    "box-close-v3": [
        "close the box with its lid",
        "put the lid on the box",
        "pick up the lid and cover the box",
        "place the cover onto the box",
        "shut the box by placing the lid on top",
        "cap the container with the lid",
        "grab the lid and seal the box",
    ],
    "button-press-topdown-v3": [
        "press the button from the top",
        "push the button down",
        "press down on the button from above",
        "hit the button with a downward push",
        "push the button downward from the top",
        "tap the button by coming straight down on it",
        "depress the top-facing button",
    ],
    "button-press-topdown-wall-v3": [
        "press the button from the top behind the wall",
        "reach over the wall and push the button down",
        "push the button down from above past the wall",
        "press down on the button on the other side of the wall",
        "get around the wall and press the button from the top",
        "go over the barrier and push the button downward",
        "press the top button that sits behind a wall",
    ],
    "button-press-v3": [
        "press the button",
        "push the button forward",
        "press the button on the front of the box",
        "push in the button horizontally",
        "hit the button with a forward push",
        "poke the button straight in",
        "push the side-facing button",
    ],
    "button-press-wall-v3": [
        "press the button behind the wall",
        "push the button forward past the wall",
        "reach around the wall and press the button",
        "press the button on the far side of the wall",
        "get past the wall and push the button in",
        "avoid the barrier and push the button",
        "press the button that is blocked by a wall",
    ],
    "coffee-button-v3": [
        "press the button on the coffee machine",
        "push the coffee machine's button",
        "start the coffee machine",
        "hit the button on the espresso machine",
        "press the coffee maker button",
        "turn on the coffee machine with its button",
        "push the switch on the coffee maker",
    ],
    "coffee-pull-v3": [
        "pull the mug away from the coffee machine",
        "take the cup out from under the coffee machine",
        "slide the mug back from the coffee maker",
        "move the coffee cup away from the machine",
        "pull the cup toward you from the coffee machine",
        "retrieve the mug from beneath the spout",
        "drag the coffee mug out of the machine",
    ],
    "coffee-push-v3": [
        "push the mug under the coffee machine",
        "slide the cup under the coffee spout",
        "move the mug into the coffee machine",
        "push the coffee cup toward the machine",
        "place the mug beneath the coffee maker",
        "shove the cup into position under the spout",
        "nudge the mug over to the coffee machine",
    ],
    "dial-turn-v3": [
        "turn the dial",
        "rotate the knob",
        "spin the dial around",
        "twist the dial",
        "turn the knob on the box",
        "crank the dial a quarter turn",
        "rotate the round control",
    ],
    "disassemble-v3": [
        "take the ring off the peg",
        "pull the nut off the pole",
        "disassemble the ring from the peg",
        "lift the round nut up and off the peg",
        "remove the ring from the post",
        "unmount the nut from the peg",
        "pick the ring up off the pole",
    ],
    "door-close-v3": [
        "close the door",
        "shut the door",
        "push the door closed",
        "swing the door shut",
        "close the open door",
        "push the door until it is shut",
        "close the hinged door",
    ],
    "door-lock-v3": [
        "lock the door",
        "turn the door lock",
        "lock the door by rotating the lock",
        "twist the lock on the door to lock it",
        "engage the door lock",
        "press the latch down to lock the door",
        "secure the door with its lock",
    ],
    "door-open-v3": [
        "open the door",
        "pull the door open",
        "swing the door open by its handle",
        "open the door using the handle",
        "grab the handle and open the door",
        "pull on the handle until the door is open",
        "open up the hinged door",
    ],
    "door-unlock-v3": [
        "unlock the door",
        "turn the door lock to unlock it",
        "release the door lock",
        "twist the lock open",
        "unlock the door by rotating the lock",
        "disengage the door lock",
        "flip the latch to unlock the door",
    ],
    "hand-insert-v3": [
        "put the hand into the hole",
        "insert the gripper into the hole",
        "move the hand down into the hole",
        "place the gripper in the opening",
        "reach into the hole",
        "lower the gripper into the gap in the table",
        "stick the hand in the hole",
    ],
    "drawer-close-v3": [
        "close the drawer",
        "push the drawer shut",
        "slide the drawer closed",
        "shut the drawer",
        "push the drawer in",
        "push the open drawer back into the cabinet",
        "close up the drawer",
    ],
    "drawer-open-v3": [
        "open the drawer",
        "pull the drawer open",
        "slide the drawer out",
        "pull out the drawer",
        "grab the handle and open the drawer",
        "pull the drawer toward you",
        "open up the drawer by its handle",
    ],
    "faucet-open-v3": [
        "turn on the faucet",
        "open the faucet",
        "rotate the faucet handle to open it",
        "turn the tap on",
        "twist the faucet open",
        "let the water run by turning the tap",
        "swing the faucet handle to the open side",
    ],
    "faucet-close-v3": [
        "turn off the faucet",
        "close the faucet",
        "rotate the faucet handle to close it",
        "turn the tap off",
        "twist the faucet shut",
        "stop the water by turning the tap",
        "swing the faucet handle to the closed side",
    ],
    "hammer-v3": [
        "hammer the nail",
        "pick up the hammer and hit the nail",
        "use the hammer to drive in the nail",
        "hammer the peg into the wall",
        "grab the hammer and pound the nail",
        "knock the nail in with the hammer",
        "strike the nail using the hammer",
    ],
    "handle-press-side-v3": [
        "press the handle down from the side",
        "push the handle down sideways",
        "press down the side handle",
        "push down on the handle from the side",
        "lower the handle from the side",
        "press the sideways handle all the way down",
        "push the lever handle down from its side",
    ],
    "handle-press-v3": [
        "press the handle down",
        "push the handle down",
        "press down on the handle",
        "push the handle all the way down",
        "lower the handle",
        "press the lever handle downward",
        "push down the handle in front of you",
    ],
    "handle-pull-side-v3": [
        "pull the handle up from the side",
        "lift the side handle up",
        "pull up the handle sideways",
        "raise the handle from the side",
        "pull the side handle upward",
        "hook the side handle and pull it up",
        "lift the handle up from its side",
    ],
    "handle-pull-v3": [
        "pull the handle up",
        "lift the handle",
        "pull up on the handle",
        "raise the handle",
        "pull the handle upward",
        "hook the handle and lift it up",
        "pull the lever handle to the top",
    ],
    "lever-pull-v3": [
        "pull the lever up",
        "lift the lever",
        "raise the lever",
        "pull up on the lever",
        "rotate the lever upward",
        "swing the lever up",
        "flip the lever to the top",
    ],
    "pick-place-wall-v3": [
        "pick up the puck and place it behind the wall",
        "move the puck over the wall to the goal",
        "lift the puck over the wall and put it down at the target",
        "carry the puck past the wall to the goal",
        "place the puck on the far side of the wall",
        "hop the puck over the barrier onto the target",
        "take the puck across the wall and set it at the goal",
    ],
    "pick-out-of-hole-v3": [
        "pick the puck out of the hole",
        "lift the puck out of the hole",
        "take the puck out of the hole and hold it up",
        "grab the puck from the hole",
        "remove the puck from the hole",
        "fish the puck out of the hole",
        "retrieve the puck from inside the hole",
    ],
    "pick-place-v3": [
        "pick up the puck and place it at the goal",
        "move the puck to the target",
        "pick and place the puck",
        "lift the puck and put it at the goal position",
        "grab the puck and carry it to the target",
        "take the puck and set it down at the goal",
        "transport the puck to the marked spot",
    ],
    "plate-slide-v3": [
        "slide the plate into the goal",
        "push the plate into the net",
        "slide the puck forward into the goal",
        "push the plate toward the goal",
        "slide the plate into the cabinet",
        "shove the plate forward into the goal",
        "glide the plate into the net",
    ],
    "plate-slide-side-v3": [
        "slide the plate sideways into the goal",
        "push the plate into the goal from the side",
        "slide the plate to the side into the net",
        "push the plate sideways into the cabinet",
        "move the plate sideways into the goal",
        "shove the plate laterally into the net",
        "glide the plate sideways into the goal",
    ],
    "plate-slide-back-v3": [
        "slide the plate back out of the goal",
        "pull the plate out of the net",
        "slide the plate back toward you",
        "take the plate out of the goal by sliding it",
        "pull the plate back from the cabinet",
        "drag the plate out of the goal",
        "retrieve the plate by sliding it backward",
    ],
    "plate-slide-back-side-v3": [
        "slide the plate sideways out of the goal",
        "pull the plate out of the net from the side",
        "slide the plate back out sideways",
        "move the plate sideways out of the goal",
        "pull the plate sideways out of the cabinet",
        "drag the plate laterally out of the goal",
        "retrieve the plate by sliding it out to the side",
    ],
    "peg-insert-side-v3": [
        "insert the peg into the hole from the side",
        "put the peg sideways into the hole",
        "pick up the peg and push it into the hole",
        "slide the peg into the side hole",
        "insert the peg horizontally into the box",
        "fit the peg into the opening on the side",
        "plug the peg into the hole sideways",
    ],
    "peg-unplug-side-v3": [
        "unplug the peg from the side",
        "pull the peg out of the hole",
        "remove the peg from the side hole",
        "pull the plug out sideways",
        "take the peg out of the box",
        "extract the peg from its socket",
        "yank the peg out to the side",
    ],
    "soccer-v3": [
        "kick the ball into the goal",
        "push the soccer ball into the net",
        "score a goal with the ball",
        "move the ball into the goal",
        "shoot the soccer ball into the goal",
        "dribble the ball into the net",
        "knock the ball between the goalposts",
    ],
    "stick-push-v3": [
        "use the stick to push the thermos",
        "pick up the stick and push the bottle with it",
        "push the thermos to the goal using the stick",
        "grab the stick and shove the container forward",
        "push the bottle with the stick",
        "poke the thermos toward the target with the stick",
        "move the flask forward using the rod",
    ],
    "stick-pull-v3": [
        "use the stick to pull the thermos",
        "pick up the stick and pull the bottle with it",
        "pull the thermos to the goal using the stick",
        "grab the stick and drag the container",
        "pull the bottle with the stick",
        "hook the thermos handle with the stick and pull it",
        "drag the flask toward the target using the rod",
    ],
    "push-v3": [
        "push the puck to the goal",
        "slide the puck to the target",
        "push the puck toward the goal position",
        "move the puck to the goal by pushing it",
        "shove the puck to the target",
        "nudge the puck over to the marked spot",
        "push the block across the table to the goal",
    ],
    "push-wall-v3": [
        "push the puck around the wall to the goal",
        "slide the puck past the wall to the target",
        "push the puck to the goal behind the wall",
        "move the puck around the barrier to the goal",
        "shove the puck past the wall to the target",
        "nudge the puck around the obstacle to the marked spot",
        "push the block beyond the wall to the goal",
    ],
    "push-back-v3": [
        "push the puck back to the goal",
        "slide the puck backward to the target",
        "pull the puck back toward the goal",
        "move the puck back to the goal position",
        "push the puck back toward you to the target",
        "drag the puck back to the marked spot",
        "bring the block back to the goal",
    ],
    "reach-v3": [
        "reach the goal",
        "move the gripper to the target",
        "reach for the goal position",
        "move the hand to the goal",
        "go to the target position",
        "bring the end effector to the red dot",
        "position the gripper at the goal",
    ],
    "reach-wall-v3": [
        "reach the goal behind the wall",
        "move the gripper around the wall to the target",
        "reach over the wall to the goal",
        "move the hand past the wall to the goal",
        "go around the wall to the target position",
        "bring the end effector beyond the barrier to the goal",
        "position the gripper at the goal past the wall",
    ],
    "shelf-place-v3": [
        "put the block on the shelf",
        "pick up the cube and place it on the shelf",
        "place the block onto the shelf",
        "move the cube to the shelf",
        "lift the block and set it on the shelf",
        "stow the cube on the shelf",
        "shelve the block",
    ],
    "sweep-into-v3": [
        "sweep the puck into the hole",
        "push the puck into the hole",
        "slide the puck into the hole",
        "sweep the block into the opening",
        "move the puck into the hole in the table",
        "brush the puck into the hole",
        "knock the block into the gap",
    ],
    "sweep-v3": [
        "sweep the puck off the table",
        "push the puck off the edge of the table",
        "sweep the block off the table",
        "slide the puck off the table",
        "brush the puck over the edge",
        "clear the puck off the tabletop",
        "knock the block off the table's edge",
    ],
    "window-open-v3": [
        "open the window",
        "slide the window open",
        "push the window open",
        "slide the window to the side to open it",
        "open the sliding window",
        "move the window pane to open it",
        "slide the window sash open",
    ],
    "window-close-v3": [
        "close the window",
        "slide the window closed",
        "push the window shut",
        "slide the window to the side to close it",
        "close the sliding window",
        "move the window pane to shut it",
        "slide the window sash closed",
    ],
}

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
