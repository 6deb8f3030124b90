"""Training samples from a folder of episode bags (any robot's, read through its robot spec).

Each sample is one camera frame with the inputs the live node would have had at that moment,
aligned with ``align.select_latest`` (the function the node uses): the latest joint state and
instruction at or before the frame's header stamp. Frames whose joint state (or action) is MISSING
or older than ``max_input_age`` are dropped and counted in ``dropped``.

Images stay raw uint8 (H, W, 3), decoded once into ONE preallocated array (``__getitem__`` is an
index, ~5 µs); the model's ``preprocess`` resizes and normalises per batch, as the node does.
Loading costs ~0.6 ms per 224² frame (zstd + CDR + alignment), about what an uncompressed ``.npy``
cache would (~0.45 ms), so none is written. Memory: ``N * H * W * 3`` bytes (``memory_bytes``).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..decode import BadInput, compressed_image_from_msg, image_from_msg, joint_values, joints_from_msg
from ..interface import PRIMARY_CAMERA, SAWYER_JOINTS, SIM_STATE_NAMES, SIM_STATE_TOPIC, absolute
from ..model.configuration import proprio_width
from ..model.preprocess import proprio_vector
from ..robot import CameraSpec, RobotSpec
from .actions import action_series
from .align import MISSING, STALE, header_s, latest_for, select_latest
from .bags import SPLITS as LAYOUT_SPLITS
from .bags import BagError, PathLike, find_bags, read_bag, topic_message_count
from .episodes import Episode, episode_meta, episode_split
from .instructions import TASK_IDS, task_id

TOPIC_STATE = absolute(SIM_STATE_TOPIC)  # the privileged state target (simulators record it)
log = logging.getLogger(__name__)


class BagDataset(Dataset):
    """Aligned (image, instruction, proprio, action chunk) samples from every bag under ``root``.

    Args:
        root: a folder of bag folders (or one bag folder).
        chunk: K, the number of future expert actions per sample (padded by repeating the last
            action past the episode end; ``action_mask`` marks the real ones).
        action_history: past expert actions fed into ``proprio`` (zero-filled at episode start).
        joint_names, use_velocities: the proprio layout (``ModelConfig`` fields).
        split: keep the episodes of this split ("train", "val", "heldout", "test") or "all".
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
        robot: the robot spec (``robot.RobotSpec``): camera, joint-state, instruction and action
            topics and names. Default: the Meta-World Sawyer's layout with ``joint_names`` and
            ``cameras``; given, it decides both (and ``joint_names`` / ``cameras`` are ignored).

    A sample's ``instruction`` is the one recorded in the bag (or the spec's / the episode metadata's
    text for bags without an instruction topic); training may draw paraphrases instead (``Batcher``).
    Episode metadata (``episode.json`` or metadata.yaml's custom_data) is optional outside
    Meta-World: without a ``task`` the episode's task is its instruction; its split is the
    metadata's ``split``, else its Meta-World ``layout_split``, else "train" (``episode_split``).
    """

    def __init__(self, root: PathLike, chunk: int = 1, action_history: int = 0,
                 joint_names: Sequence[str] = SAWYER_JOINTS, use_velocities: bool = True,
                 split: str = "all", max_input_age: float = 0.1, tasks: Optional[Sequence[str]] = None,
                 verbose: bool = True, images: bool = True, cameras: Sequence[str] = (PRIMARY_CAMERA,),
                 state: int = 0, robot: Optional[RobotSpec] = None):
        if chunk < 1 or action_history < 0:
            raise ValueError(f"need chunk >= 1 and action_history >= 0, got {chunk}, {action_history}")
        if split not in LAYOUT_SPLITS + ("all",):
            raise ValueError(f"split must be one of {LAYOUT_SPLITS + ('all',)}, got {split!r}")
        if robot is None:
            from ..config import DEFAULT_ROBOT
            from ..robot import load_robot

            robot = dataclasses.replace(load_robot(DEFAULT_ROBOT), cameras=[CameraSpec(c) for c in cameras],
                                        joint_names=list(joint_names))
        self.robot = robot
        self.root = Path(root)
        self.chunk, self.action_history = int(chunk), int(action_history)
        self.joint_names, self.use_velocities = list(robot.joint_names), bool(use_velocities)
        self.action_names, self.action_dim = list(robot.action.names), robot.action.dim
        self.split, self.max_input_age, self.images = split, max_input_age, images
        n_state = 6 if state is True else int(state)
        if not 0 <= n_state <= len(SIM_STATE_NAMES):
            raise ValueError(f"state: how many of {SIM_STATE_NAMES} to load (0-{len(SIM_STATE_NAMES)}), "
                             f"got {state!r}")
        self.cameras, self.state_names = robot.camera_names, list(SIM_STATE_NAMES[:n_state])
        self.image_topics = [absolute(c.topic) for c in robot.cameras]
        self._compressed = {absolute(c.topic): c.compressed for c in robot.cameras}
        self.joint_topics = [absolute(t) for t in robot.joint_topics]
        self.instruction_topic = absolute(robot.instruction_topic)
        self.action_topic = absolute(robot.action.topic) if robot.action.source == "topic" else None
        self._other_tasks: Dict[str, int] = {}  # tasks outside Meta-World: ids from len(TASK_IDS) on
        self.skipped: List[Tuple[Path, str]] = []
        self.dropped = {"missing_joint_state": 0, "stale_joint_state": 0, "missing_action": 0,
                        "stale_action": 0, "missing_instruction": 0, "missing_camera_frame": 0,
                        "missing_state": 0}
        self.episodes: List[Episode] = []
        self._load(tasks)
        (print if verbose else log.info)(self.summary())

    @classmethod
    def from_config(cls, root: PathLike, model_cfg, robot: Optional[RobotSpec] = None, **kw) -> "BagDataset":
        """A dataset whose proprio/chunk layout matches a ``ModelConfig`` (and topics a robot spec:
        pass the run config's ``robot``)."""
        return cls(root, chunk=model_cfg.chunk, action_history=model_cfg.action_history,
                   joint_names=model_cfg.joint_names, use_velocities=model_cfg.use_velocities,
                   cameras=model_cfg.cameras, robot=robot, **kw)

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
                if self.split != "all" and episode_split(meta) != self.split:
                    continue
                if tasks is not None and meta.get("task") not in tasks:
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
                topics = (*self.image_topics, *self.joint_topics, self.instruction_topic,
                          *((self.action_topic,) if self.action_topic else ()),
                          *((TOPIC_STATE,) if self.with_state else ()))
                bag = read_bag(path, topics)
                primary = self.image_topics[0]
                if len(bag.messages.get(primary, ())) != n_meta:  # also guards the preallocation
                    raise BagError(path, f"metadata.yaml lists {n_meta} {primary} messages, the "
                                         f"storage has {len(bag.messages.get(primary, ()))}")
                keep, act_i, instructions, ins_i, pos, vel, acts, images, others, state = self._align(bag, meta)
                decode = self._decoder(self.image_topics[0])
                decoded = [decode(images[f]) for f in keep] if self.images else []  # views: no copy
                if self.images and others:  # (V, H, W, 3) per kept frame
                    decoders = [self._decoder(t) for t in self.image_topics[1:]]
                    decoded = [np.stack([im] + [d(o[j]) for d, o in zip(decoders, others)])
                               for j, im in enumerate(decoded)]
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
                prop.append(proprio_vector(pos[j], vel[j], acts[max(0, a - self.action_history):a],
                                           self.use_velocities, self.action_history, self.action_dim))
            ep_index = len(self.episodes)
            task = meta.get("task") or (instructions[0] if instructions else path.name)
            self.episodes.append(Episode(path.name, path, task, self._task_id(task), int(meta.get("layout", -1)),
                                         meta, instructions, len(images), k))
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
        p_dim = proprio_width(len(self.joint_names), self.use_velocities, self.action_history, self.action_dim)
        self.proprio = np.stack(prop).astype(np.float32) if prop else np.zeros((0, p_dim), np.float32)
        self.actions = (np.concatenate(actions).astype(np.float32) if actions
                        else np.zeros((0, self.action_dim), np.float32))
        self._act_start, self._act_end = cat(act_start, np.int64), cat(act_end, np.int64)
        self.steps, self._episode = cat(step, np.int64), cat(ep_of, np.int64)
        self._instr = cat(instr_of, np.int64)
        self.state = (cat(states, np.float32).reshape(-1, len(self.state_names)) if self.with_state
                      else None)  # (N, S) object and goal (and hand) positions per sample

    def _task_id(self, task: str) -> int:
        """A Meta-World task's MT50 index; any other task an id of its own, from len(TASK_IDS) on."""
        try:
            return task_id(task)
        except ValueError:
            return self._other_tasks.setdefault(task, len(TASK_IDS) + len(self._other_tasks))

    def _align(self, bag, meta):
        """Indices of kept frames and of their action / instruction, their joint positions and
        velocities, the action series, and per other camera its message for each kept frame."""
        primary, *other_topics = self.image_topics
        images = self._camera_messages(bag, primary)
        cam_s = header_s(images)
        if np.any(np.diff(cam_s) < 0):
            raise BagError(bag.path, f"{primary} header stamps go backwards")
        d = self.dropped
        try:
            pos, vel, js_ok, js_stale = self._joints_at(bag, cam_s)
        except BadInput as e:
            raise BagError(bag.path, f"{e.kind}: {e}") from None
        d["missing_joint_state"] += int(np.sum(~js_ok & ~js_stale))
        d["stale_joint_state"] += int(np.sum(js_stale))
        ok = js_ok
        act_s, acts = action_series(bag, self.robot.action, self.action_topic, self.joint_names, cam_s, pos, ok)
        act_i = select_latest(act_s, cam_s, self.max_input_age)
        if self.robot.action.source != "topic":  # a frame's own move, never an earlier frame's
            act_i = np.where(np.isin(cam_s, act_s), act_i, MISSING)
        d["missing_action"] += int(np.sum(ok & (act_i == MISSING)))
        d["stale_action"] += int(np.sum(ok & (act_i == STALE)))
        ok &= act_i >= 0
        instructions, ins_i = self._instructions(bag, meta, cam_s)
        d["missing_instruction"] += int(np.sum(ok & (ins_i < 0)))
        ok &= ins_i >= 0
        st_i = None
        if self.with_state:  # the privileged target, recorded with the frame's own stamp
            st_msgs = list(bag.messages.get(TOPIC_STATE, ()))
            if not st_msgs:
                raise BagError(bag.path, f"no {TOPIC_STATE} (recorded before generate wrote it: regenerate "
                                         "the bags to train with train.state_weight)")
            st_msgs, st_i = latest_for(st_msgs, cam_s, self.max_input_age)
            d["missing_state"] += int(np.sum(ok & (st_i < 0)))
            ok &= st_i >= 0
        others = []
        for topic in other_topics:
            msgs, o_i = latest_for(self._camera_messages(bag, topic), cam_s, self.max_input_age)
            d["missing_camera_frame"] += int(np.sum(ok & (o_i < 0)))
            ok &= o_i >= 0
            others.append((msgs, o_i))
        keep = np.flatnonzero(ok)
        others = [[msgs[i] for i in o_i[keep]] for msgs, o_i in others]
        try:
            state = (np.array([joints_from_msg(st_msgs[i], self.state_names)[0] for i in st_i[keep]], np.float64)
                     .reshape(-1, len(self.state_names)) if self.with_state else None)
        except BadInput as e:
            raise BagError(bag.path, f"{e.kind}: {e}") from None
        return (keep, act_i[keep], instructions, ins_i[keep], pos[keep], vel[keep], acts.astype(np.float32),
                images, others, state)

    def _joints_at(self, bag, cam_s: np.ndarray):
        """Per camera frame, the joint positions and velocities (zeros where not published) merged by
        name over the spec's joint-state topics (each topic's latest message at or before the frame,
        read by the node's decoder), whether every joint was found, and whether one was too old."""
        n, names = len(cam_s), self.joint_names
        merged: List[Dict[str, Tuple[float, Optional[float]]]] = [{} for _ in range(n)]
        stale = np.zeros(n, bool)
        for topic in self.joint_topics:
            msgs, idx = latest_for(list(bag.messages.get(topic, ())), cam_s, self.max_input_age)
            values = [joint_values(m, names) for m in msgs]
            stale |= idx == STALE
            for f in np.flatnonzero(idx >= 0):
                merged[f].update(values[idx[f]])
        ok = np.array([len(m) == len(names) for m in merged], bool)
        if len(self.joint_topics) == 1 and n and not ok.any() and bag.messages.get(self.joint_topics[0]):
            joints_from_msg(bag.messages[self.joint_topics[0]][0], names)  # says which names are wrong
        pos = np.array([[m[j][0] for j in names] if k else [0.0] * len(names) for m, k in zip(merged, ok)],
                       np.float32).reshape(n, len(names))
        vel = np.array([[0.0 if m[j][1] is None else m[j][1] for j in names] if k else [0.0] * len(names)
                        for m, k in zip(merged, ok)], np.float32).reshape(n, len(names))
        return pos, vel, ok, stale & ~ok

    def _instructions(self, bag, meta, cam_s: np.ndarray):
        """The episode's instructions and, per frame, the one in force: the latest recorded at or before
        it; without an instruction topic, the episode metadata's or the spec's text for every frame."""
        msgs = list(bag.messages.get(self.instruction_topic, ()))
        if msgs:
            ins_t = bag.stamps[self.instruction_topic]
            return [m.data for m in msgs], select_latest(np.asarray(ins_t, np.int64) / 1e9, cam_s)
        text = meta.get("instruction") or self.robot.instruction
        if text:
            return [str(text)], np.zeros(len(cam_s), np.int64)
        return [], np.full(len(cam_s), MISSING, np.int64)

    def _decoder(self, topic: str):
        return compressed_image_from_msg if self._compressed.get(topic) else image_from_msg

    def _camera_messages(self, bag, topic: str) -> list:
        """The image messages a camera recorded (log order); a BagError when it has none or another type."""
        msgs = bag.topic(topic)[1] if topic in bag.messages else []
        if not msgs:
            raise BagError(bag.path, f"no messages on {topic} (the robot spec's cameras are "
                                     f"{[c.topic for c in self.robot.cameras]})")
        want = next(c.msgtype for c in self.robot.cameras if absolute(c.topic) == topic)
        if msgs[0].__msgtype__ != want:
            raise BagError(bag.path, f"{topic} is {msgs[0].__msgtype__}, the robot spec says {want}"
                                     f"{' (compressed: false)' if want.endswith('/Image') else ''}")
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
        """(K, A) float32 expert actions from sample ``i``'s frame on, and the (K,) real-action mask."""
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
        """Every recorded expert action (M, A) of the loaded episodes, for ActionTokenizer.fit."""
        return self.actions


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
