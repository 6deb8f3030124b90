"""Training samples from a folder of episode bags (what ``trimodal-ros generate`` writes).

Each sample is one camera frame with the inputs the live node would have had at that moment,
aligned with ``align.select_latest`` (the function the node uses): the latest joint state and
instruction at or before the frame's header stamp. Frames whose joint state (or expert action)
is MISSING or older than ``max_input_age`` are dropped and counted in ``dropped``.

Images stay raw uint8 (H, W, 3): the model's ``preprocess`` resizes/normalises per batch, on the
same code path as the node. All kept frames are decoded once into ONE preallocated uint8 array,
so ``__getitem__`` is an index (~5 µs), never a decode. Measured on 224² Meta-World bags:
loading costs ~0.6 ms per frame in all (zstd + CDR + alignment), about what reading an
uncompressed ``.npy`` cache of the same frames costs (~0.45 ms/frame), so no on-disk cache is
written. Memory is ``N * H * W * 3`` bytes (150 KB per 224² frame: 10k frames = 1.5 GB); see
``memory_bytes`` and the one-line summary printed on load.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..decode import BadInput, image_from_msg, joints_from_msg, stamp_ns
from ..interface import ACTION_NAMES, PRIMARY_CAMERA, SAWYER_JOINTS, SIM_STATE_NAMES
from ..model.preprocess import proprio_vector
from .align import MISSING, STALE, select_latest
from .bags import IMAGE, BagError, PathLike, find_bags, read_bag, read_sidecar, topic_message_count
from .instructions import task_id
from .metaworld import (
    CUSTOM_DATA_KEY,
    LAYOUT_SPLITS,
    TOPIC_ACTION,
    TOPIC_INSTRUCTION,
    TOPIC_JOINTS,
    TOPIC_STATE,
    camera_topic,
    layout_split,
)

log = logging.getLogger(__name__)

ACTION_DIM = len(ACTION_NAMES)


@dataclass
class Episode:
    name: str
    path: Path
    task: str
    task_id: int
    layout: int
    meta: Dict[str, Any]
    instructions: List[str]   # recorded /instruction messages, in stamp order
    n_frames: int             # camera frames in the bag (before dropping)
    n_samples: int            # kept


def episode_meta(path: PathLike, custom_data: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """An episode's metadata: ``episode.json``, else metadata.yaml's custom_data entry, else {}."""
    from .bags import _custom_data_from_yaml

    meta = read_sidecar(path)
    if meta:
        return meta
    cd = _custom_data_from_yaml(Path(path)) if custom_data is None else custom_data
    if CUSTOM_DATA_KEY not in cd:
        return {}
    try:
        return json.loads(cd[CUSTOM_DATA_KEY])
    except ValueError as e:
        raise BagError(path, f"custom_data[{CUSTOM_DATA_KEY!r}] is not JSON: {e}") from None


class BagDataset(Dataset):
    """Aligned (image, instruction, proprio, action chunk) samples from every bag under ``root``.

    Args:
        root: a folder of bag folders (or one bag folder).
        chunk: K, the number of future expert actions per sample (padded by repeating the last
            action past the episode end; ``action_mask`` marks the real ones).
        action_history: past expert actions fed into ``proprio`` (zero-filled at episode start).
        joint_names, use_velocities: the proprio layout (``ModelConfig`` fields).
        split: keep episodes whose layout is in the "train", "val" or "heldout" layouts, or "all".
        max_input_age: seconds; a joint state / action older than this at a frame is STALE.
        tasks: optionally keep only these task names.
        images: False skips decoding the frames (``image`` is None): labels only, for baselines.
        cameras: the named cameras a sample holds, primary first (``ModelConfig.cameras``). Each
            primary frame is a sample; another camera contributes its latest frame at or before
            that stamp (a frame it lacks, or one older than ``max_input_age``, drops the sample).
            With one camera ``image`` is (H, W, 3), with V it is (V, H, W, 3).
        state: also load each frame's recorded simulator state (``/sim/state``) as ``state``: the
            first ``state`` of ``SIM_STATE_NAMES`` (``True``: 6, object and goal positions; 9 adds the
            hand's); a bag without them is skipped with a warning.

    A sample's ``instruction`` is the one recorded in the bag; training and evaluation draw
    paraphrases themselves (``train.trainer.Batcher``, ``eval.evaluate``).
    """

    def __init__(self, root: PathLike, chunk: int = 1, action_history: int = 0,
                 joint_names: Sequence[str] = SAWYER_JOINTS, use_velocities: bool = True,
                 split: str = "all", max_input_age: float = 0.1, tasks: Optional[Sequence[str]] = None,
                 verbose: bool = True, images: bool = True, cameras: Sequence[str] = (PRIMARY_CAMERA,),
                 state: int = 0):
        if chunk < 1 or action_history < 0:
            raise ValueError(f"need chunk >= 1 and action_history >= 0, got {chunk}, {action_history}")
        if split not in LAYOUT_SPLITS + ("all",):
            raise ValueError(f"split must be one of {LAYOUT_SPLITS + ('all',)}, got {split!r}")
        self.root = Path(root)
        self.chunk, self.action_history = int(chunk), int(action_history)
        self.joint_names, self.use_velocities = list(joint_names), bool(use_velocities)
        self.split, self.max_input_age, self.images = split, max_input_age, images
        n_state = 6 if state is True else int(state)
        if not 0 <= n_state <= len(SIM_STATE_NAMES):
            raise ValueError(f"state: how many of {SIM_STATE_NAMES} to load (0-{len(SIM_STATE_NAMES)}), "
                             f"got {state!r}")
        self.cameras, self.state_names = list(cameras), list(SIM_STATE_NAMES[:n_state])
        self.image_topics = [camera_topic(c) for c in self.cameras]
        self.skipped: List[Tuple[Path, str]] = []
        self.dropped = {"missing_joint_state": 0, "stale_joint_state": 0, "missing_action": 0,
                        "stale_action": 0, "missing_instruction": 0, "missing_camera_frame": 0,
                        "missing_state": 0}
        self.episodes: List[Episode] = []
        self._load(tasks)
        (print if verbose else log.info)(self.summary())

    @classmethod
    def from_config(cls, root: PathLike, model_cfg, **kw) -> "BagDataset":
        """A dataset whose proprio/chunk layout matches a ``ModelConfig``."""
        return cls(root, chunk=model_cfg.chunk, action_history=model_cfg.action_history,
                   joint_names=model_cfg.joint_names, use_velocities=model_cfg.use_velocities,
                   cameras=model_cfg.cameras, **kw)

    @property
    def with_state(self) -> bool:
        return bool(self.state_names)

    # --- loading ----------------------------------------------------------------------------

    def _candidates(self, tasks) -> List[Tuple[Path, Dict[str, Any], int]]:
        """(bag, metadata, camera message count) of bags passing the split/task filters."""
        out = []
        for p in find_bags(self.root):
            try:
                meta = episode_meta(p)
                if "task" not in meta or "layout" not in meta:
                    raise BagError(p, "no episode metadata (episode.json or custom_data "
                                      f"{CUSTOM_DATA_KEY!r} with task and layout)")
                task_id(meta["task"])
                if self.split != "all" and layout_split(meta["layout"]) != self.split:
                    continue
                if tasks is not None and meta["task"] not in tasks:
                    continue
                out.append((p, meta, topic_message_count(p, self.image_topics[0])))
            except (BagError, ValueError) as e:
                self._skip(p, e)
        return out

    def _skip(self, path: Path, err: Exception) -> None:
        reason = err.reason if isinstance(err, BagError) else f"{getattr(err, 'kind', 'error')}: {err}"
        warnings.warn(f"skipping bag {path}: {reason}", RuntimeWarning, stacklevel=3)
        log.warning("skipping bag %s: %s", path, reason)
        self.skipped.append((path, reason))

    def _load(self, tasks) -> None:
        cands = self._candidates(tasks)
        capacity = sum(n for _, _, n in cands)
        self.frames = np.empty((0, 0, 0, 3), np.uint8)
        prop, act_start, act_end, step, ep_of, instr_of, states = [], [], [], [], [], [], []
        actions: List[np.ndarray] = []
        n_act, n = 0, 0
        for path, meta, n_meta in cands:
            try:
                topics = (*self.image_topics, TOPIC_JOINTS, TOPIC_ACTION, TOPIC_INSTRUCTION)
                bag = read_bag(path, topics + ((TOPIC_STATE,) if self.with_state else ()))
                primary = self.image_topics[0]
                if len(bag.messages.get(primary, ())) != n_meta:  # also guards the preallocation
                    raise BagError(path, f"metadata.yaml lists {n_meta} {primary} messages, the "
                                         f"storage has {len(bag.messages.get(primary, ()))}")
                keep, js_i, act_i, ins_i, pos, vel, acts, images, others, state = self._align(bag, meta)
                decoded = [image_from_msg(images[f]) for f in keep] if self.images else []  # views: no copy
                if self.images and others:  # (V, H, W, 3) per kept frame
                    decoded = [np.stack([im] + [image_from_msg(o[j]) for o in others]) for j, im in enumerate(decoded)]
            except (BagError, BadInput) as e:
                self._skip(path, e)
                continue
            k = len(keep)
            if k and self.images and self.frames.size == 0:
                self.frames = np.empty((capacity,) + decoded[0].shape, np.uint8)  # one allocation for all frames
            for j in range(k):
                if self.images:
                    img = decoded[j]
                    if img.shape != self.frames.shape[1:]:
                        raise ValueError(f"bag {path}: image size {img.shape} differs from "
                                         f"{self.frames.shape[1:]} of earlier bags; use one --size per folder")
                    self.frames[n + j] = img
                a = act_i[j]
                prop.append(proprio_vector(pos[js_i[j]], vel[js_i[j]],
                                           acts[max(0, a - self.action_history):a], self.use_velocities,
                                           self.action_history, ACTION_DIM))
            ep_index = len(self.episodes)
            self.episodes.append(Episode(path.name, path, meta["task"], task_id(meta["task"]),
                                         int(meta["layout"]), meta,
                                         [m.data for m in bag.messages[TOPIC_INSTRUCTION]],
                                         len(images), k))
            act_start.append(n_act + act_i)
            act_end.append(np.full(k, n_act + len(acts), np.int64))
            step.append(keep.astype(np.int64))
            ep_of.append(np.full(k, ep_index, np.int64))
            instr_of.append(ins_i)
            states.append(state)
            actions.append(acts)
            n_act += len(acts)
            n += k
        if n < len(self.frames):
            self.frames = self.frames[:n]  # a view: the buffer stays allocated (counted below)
        cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
        p_dim = len(self.joint_names) * (2 if self.use_velocities else 1) + self.action_history * ACTION_DIM
        self.proprio = np.stack(prop).astype(np.float32) if prop else np.zeros((0, p_dim), np.float32)
        self.actions = np.concatenate(actions).astype(np.float32) if actions else np.zeros((0, ACTION_DIM), np.float32)
        self._act_start, self._act_end = cat(act_start, np.int64), cat(act_end, np.int64)
        self.steps, self._episode = cat(step, np.int64), cat(ep_of, np.int64)
        self._instr = cat(instr_of, np.int64)
        self.state = (cat(states, np.float32).reshape(-1, len(self.state_names)) if self.with_state
                      else None)  # (N, S) object and goal (and hand) positions per sample

    def _align(self, bag, meta):
        """Indices of kept frames and of their joint state / action / instruction messages, and per
        other camera (several cameras) its message for each kept frame."""
        primary, *other_topics = self.image_topics
        images = self._camera_messages(bag, primary)
        cam_s = _header_s(images)
        js_msgs = bag.topic(TOPIC_JOINTS)[1]
        act_msgs = bag.topic(TOPIC_ACTION)[1]
        ins_t, ins_msgs = bag.topic(TOPIC_INSTRUCTION)
        if np.any(np.diff(cam_s) < 0):
            raise BagError(bag.path, f"{primary} header stamps go backwards")
        js_msgs, js_i = _latest_for(js_msgs, cam_s, self.max_input_age)
        act_msgs, act_i = _latest_for(act_msgs, cam_s, self.max_input_age)
        ins_i = select_latest(np.asarray(ins_t, np.int64) / 1e9, cam_s)  # an instruction holds until replaced
        d = self.dropped
        d["missing_joint_state"] += int(np.sum(js_i == MISSING))
        d["stale_joint_state"] += int(np.sum(js_i == STALE))
        ok = js_i >= 0
        d["missing_action"] += int(np.sum(ok & (act_i == MISSING)))
        d["stale_action"] += int(np.sum(ok & (act_i == STALE)))
        ok &= act_i >= 0
        d["missing_instruction"] += int(np.sum(ok & (ins_i < 0)))
        ok &= ins_i >= 0
        st_i = None
        if self.with_state:  # the privileged target, recorded with the frame's own stamp
            st_msgs = list(bag.messages.get(TOPIC_STATE, ()))
            if not st_msgs:
                raise BagError(bag.path, f"no {TOPIC_STATE} (recorded before generate wrote it: regenerate "
                                         "the bags to train with train.state_weight)")
            st_msgs, st_i = _latest_for(st_msgs, cam_s, self.max_input_age)
            d["missing_state"] += int(np.sum(ok & (st_i < 0)))
            ok &= st_i >= 0
        others = []
        for topic in other_topics:
            msgs, o_i = _latest_for(self._camera_messages(bag, topic), cam_s, self.max_input_age)
            d["missing_camera_frame"] += int(np.sum(ok & (o_i < 0)))
            ok &= o_i >= 0
            others.append((msgs, o_i))
        keep = np.flatnonzero(ok)
        others = [[msgs[i] for i in o_i[keep]] for msgs, o_i in others]
        # the node's decoder: the same accepted messages and the same errors as serving
        try:
            pv = [joints_from_msg(m, self.joint_names) for m in js_msgs]
            acts = (np.stack([joints_from_msg(m, ACTION_NAMES)[0] for m in act_msgs]) if act_msgs
                    else np.zeros((0, ACTION_DIM)))
            state = (np.array([joints_from_msg(st_msgs[i], self.state_names)[0] for i in st_i[keep]], np.float64)
                     .reshape(-1, len(self.state_names)) if self.with_state else None)
        except BadInput as e:
            raise BagError(bag.path, f"{e.kind}: {e}") from None
        n_j = len(self.joint_names)
        pos = np.stack([p for p, _ in pv]) if pv else np.zeros((0, n_j))
        vel = np.stack([np.zeros(n_j, np.float32) if v is None else v for _, v in pv]) if pv else np.zeros((0, n_j))
        return keep, js_i[keep], act_i[keep], ins_i[keep], pos, vel, acts.astype(np.float32), images, others, state

    def _camera_messages(self, bag, topic: str) -> list:
        """The Image messages a camera recorded (log order); a BagError when it has none or another type."""
        msgs = bag.topic(topic)[1]
        if not msgs:
            raise BagError(bag.path, f"no messages on {topic} (the model's cameras are {self.cameras})")
        if msgs[0].__msgtype__ != IMAGE:
            raise BagError(bag.path, f"{topic} is {msgs[0].__msgtype__}, expected {IMAGE}")
        return msgs

    # --- access -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def memory_bytes(self) -> int:
        """Bytes held in RAM: the frame buffer plus the proprio/action/index arrays."""
        base = self.frames.base if self.frames.base is not None else self.frames
        arrays = (self.proprio, self.actions, self._act_start, self._act_end, self.steps,
                  self._episode, self._instr) + (() if self.state is None else (self.state,))
        return int(base.nbytes + sum(a.nbytes for a in arrays))

    def summary(self) -> str:
        drops = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.dropped.items() if v) or "none"
        shape = "x".join(map(str, self.frames.shape[1:])) if len(self) else "-"
        return (f"BagDataset {self.root}: {len(self)} samples from {len(self.episodes)} episodes "
                f"(split={self.split}), frames {shape} uint8, {self.memory_bytes / 1e6:.1f} MB in memory; "
                f"dropped frames: {drops}; skipped bags: {len(self.skipped)}")

    def action_chunk(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """(K, 4) float32 expert actions from sample ``i``'s frame on, and the (K,) real-action mask."""
        idx = self._act_start[i] + np.arange(self.chunk)
        end = self._act_end[i]
        return self.actions[np.minimum(idx, end - 1)], idx < end

    def __getitem__(self, i: int) -> Dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        i = int(i) % len(self)
        ep = self.episodes[self._episode[i]]
        text = ep.instructions[self._instr[i]]
        actions, mask = self.action_chunk(i)
        item = {"image": self.frames[i] if self.images else None, "instruction": text, "proprio": self.proprio[i],
                "actions": actions, "action_mask": mask, "task_id": ep.task_id, "task": ep.task,
                "episode": ep.name, "step": int(self.steps[i]), "layout": ep.layout}
        if self.state is not None:
            item["state"] = self.state[i]
        return item

    # --- statistics -------------------------------------------------------------------------

    def proprio_stats(self, eps: float = 1e-6) -> Tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and std (floored at ``eps``) of ``proprio`` over all samples."""
        if not len(self):
            raise ValueError("empty dataset: no proprio statistics")
        return self.proprio.mean(0), np.maximum(self.proprio.std(0), eps).astype(np.float32)

    def all_actions(self) -> np.ndarray:
        """Every recorded expert action (M, 4) of the loaded episodes, for ActionTokenizer.fit."""
        return self.actions


def _header_s(msgs) -> np.ndarray:
    return np.array([stamp_ns(m) for m in msgs], dtype=np.int64) / 1e9


def _latest_for(msgs, cam_s: np.ndarray, max_age: float):
    """``msgs`` in header-stamp order, and for each camera stamp (s) the index of the latest of them
    at or before it (``select_latest``: MISSING / STALE when there is none or it is too old)."""
    s = _header_s(msgs)
    order = np.argsort(s, kind="stable")
    return [msgs[i] for i in order], select_latest(s[order], cam_s, max_age)


def collate(batch: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """List of samples → batch: uint8 image tensor (B, H, W, 3) or (B, V, H, W, 3) (feed it to the model's
    ``preprocess``), float32 proprio (B, P) / actions (B, K, 4), bool action_mask (B, K),
    int64 task_id / step / layout (B,), and lists of str for instruction / task / episode (and
    float32 state (B, 6) when the dataset loads it)."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    stack = lambda k: np.stack([b[k] for b in batch])  # noqa: E731
    return {
        "image": torch.from_numpy(stack("image")),
        "instruction": [b["instruction"] for b in batch],
        "proprio": torch.from_numpy(stack("proprio").astype(np.float32, copy=False)),
        "actions": torch.from_numpy(stack("actions").astype(np.float32, copy=False)),
        "action_mask": torch.from_numpy(stack("action_mask").astype(bool, copy=False)),
        "task_id": torch.tensor([b["task_id"] for b in batch], dtype=torch.long),
        "task": [b["task"] for b in batch],
        "episode": [b["episode"] for b in batch],
        "step": torch.tensor([b["step"] for b in batch], dtype=torch.long),
        "layout": torch.tensor([b["layout"] for b in batch], dtype=torch.long),
        **({"state": torch.from_numpy(stack("state").astype(np.float32, copy=False))} if "state" in batch[0] else {}),
    }


def dataset_stats(ds: BagDataset) -> Dict[str, np.ndarray]:
    """What training needs before step 1: proprio mean/std and all actions (tokenizer fit)."""
    mean, std = ds.proprio_stats()
    return {"proprio_mean": mean, "proprio_std": std, "actions": ds.all_actions()}
