"""Message ↔ array conversions for the VLA node: pure functions, checked, no node state.

Each ``*_from_msg`` raises ``BadInput`` (with a ``kind`` the node counts in its diagnostics)
instead of returning garbage, so the node can log, count and skip a bad message and live on.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Int32MultiArray, MultiArrayDimension, MultiArrayLayout
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

# encoding -> (channels, channel order to take for RGB); only 8-bit encodings: the model eats uint8
ENCODINGS = {
    "rgb8": (3, [0, 1, 2]),
    "bgr8": (3, [2, 1, 0]),
    "rgba8": (4, [0, 1, 2]),
    "bgra8": (4, [2, 1, 0]),
    "mono8": (1, [0, 0, 0]),
    "8uc1": (1, [0, 0, 0]),
    "8uc3": (3, [0, 1, 2]),  # OpenCV's untagged 3-channel: taken as RGB
}
MAX_INSTRUCTION_CHARS = 2000


class BadInput(ValueError):
    """A message the node must skip. ``kind`` names the diagnostics counter it goes to."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# --- time ----------------------------------------------------------------------------------------
def stamp_to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float) -> Time:
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def sec_to_duration(t: float) -> Duration:
    ns = int(round(t * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# --- inputs --------------------------------------------------------------------------------------
def image_from_msg(msg: Image) -> np.ndarray:
    """sensor_msgs/Image → uint8 RGB (H, W, 3). Honors ``step`` (row padding); rejects unknown
    encodings and data whose length is not height × step."""
    enc = msg.encoding.lower()
    if enc not in ENCODINGS:
        raise BadInput("bad_image", f"unsupported image encoding {msg.encoding!r} (supported: {sorted(ENCODINGS)})")
    ch, order = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise BadInput("bad_image", f"empty image {w}x{h}")
    if step < w * ch:
        raise BadInput("bad_image", f"step {step} < width {w} x {ch} channels")
    data = msg.data
    n = len(data)
    if n != h * step:
        raise BadInput("bad_image", f"image data has {n} bytes, expected height {h} x step {step} = {h * step}")
    buf = np.frombuffer(data, dtype=np.uint8)  # array.array / bytes: no copy
    rows = buf.reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if order == [0, 1, 2] and ch == 3:
        return rows
    return rows[:, :, order]


def image_to_msg(rgb: np.ndarray, stamp: Optional[Time] = None, frame_id: str = "camera",
                 encoding: str = "rgb8") -> Image:
    """uint8 RGB (H, W, 3) → sensor_msgs/Image in ``rgb8``, ``bgr8`` or ``mono8``."""
    a = np.asarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {a.shape}")
    if encoding == "bgr8":
        a = a[:, :, ::-1]
    elif encoding == "mono8":
        a = a.mean(axis=2).astype(np.uint8)[:, :, None]
    elif encoding != "rgb8":
        raise ValueError(f"image_to_msg writes rgb8, bgr8 or mono8, not {encoding!r}")
    a = np.ascontiguousarray(a)
    msg = Image(height=a.shape[0], width=a.shape[1], encoding=encoding, is_bigendian=0,
                step=a.shape[1] * a.shape[2])
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.data = a.tobytes()
    return msg


def joints_from_msg(msg: JointState, names: Sequence[str]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """sensor_msgs/JointState → (positions, velocities or None) in the order of ``names``.

    Extra joints the model does not use (a head pan, another arm) are ignored; a missing or
    non-finite joint, or arrays whose length does not match ``name``, make the message bad.
    """
    n = len(msg.name)
    if len(msg.position) != n:
        raise BadInput("bad_joint_state", f"joint_states has {n} names but {len(msg.position)} positions")
    if len(msg.velocity) not in (0, n):
        raise BadInput("bad_joint_state", f"joint_states has {n} names but {len(msg.velocity)} velocities")
    index = {name: i for i, name in enumerate(msg.name)}
    missing = [j for j in names if j not in index]
    if missing:
        unknown = [j for j in msg.name if j not in set(names)]
        if unknown:
            raise BadInput("unknown_joint_names", f"joint_states names {unknown} are not the expected joints; "
                                                  f"missing {missing} (parameter joint_names)")
        raise BadInput("missing_joints", f"joint_states lacks joints {missing}")
    idx = [index[j] for j in names]
    pos = np.asarray(msg.position, dtype=np.float64)[idx].astype(np.float32)
    vel = np.asarray(msg.velocity, dtype=np.float64)[idx].astype(np.float32) if len(msg.velocity) else None
    if not np.all(np.isfinite(pos)) or (vel is not None and not np.all(np.isfinite(vel))):
        raise BadInput("nan_joints", "joint_states has NaN or infinite positions/velocities")
    return pos, vel


def joints_to_msg(names: Sequence[str], positions, velocities=None, stamp: Optional[Time] = None) -> JointState:
    msg = JointState(name=list(names), position=[float(x) for x in positions])
    if velocities is not None:
        msg.velocity = [float(x) for x in velocities]
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def instruction_from_msg(text: str, max_chars: int = MAX_INSTRUCTION_CHARS) -> str:
    """std_msgs/String data → a stripped instruction; empty or over-long ones are bad input
    (the text tower truncates anyway: a 100 kB string is a bug upstream, not a command)."""
    if len(text) > max_chars:
        raise BadInput("bad_instruction", f"instruction of {len(text)} chars exceeds {max_chars}")
    s = " ".join(text.split())
    if not s:
        raise BadInput("bad_instruction", "empty instruction")
    return s


# --- outputs -------------------------------------------------------------------------------------
def _layout(dims: List[Tuple[str, int]]) -> MultiArrayLayout:
    out, stride = [], int(np.prod([s for _, s in dims])) if dims else 0
    for label, size in dims:
        out.append(MultiArrayDimension(label=label, size=int(size), stride=int(stride)))
        stride //= max(int(size), 1)
    return MultiArrayLayout(dim=out, data_offset=0)


def embedding_to_msg(vec) -> Float32MultiArray:
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    return Float32MultiArray(layout=_layout([("embedding", v.size)]), data=v.tolist())


def tokens_to_msg(tokens) -> Int32MultiArray:
    t = np.asarray(tokens, dtype=np.int64)
    if t.ndim != 2:
        raise ValueError(f"tokens must be (chunk, action_dim), got {t.shape}")
    return Int32MultiArray(layout=_layout([("chunk", t.shape[0]), ("action_dim", t.shape[1])]),
                           data=t.reshape(-1).astype(np.int32).tolist())


def multiarray_to_numpy(msg) -> np.ndarray:
    """Float32/Int32MultiArray → ndarray shaped by its layout (the inverse of the two above)."""
    shape = [d.size for d in msg.layout.dim]
    a = np.asarray(msg.data)
    return a.reshape(shape) if shape else a


def trajectory_to_msg(actions, stamp: Time, joint_names: Sequence[str], control_period: float,
                      frame_id: str = "") -> JointTrajectory:
    """(chunk, action_dim) actions → JointTrajectory: point k at (k + 1) × control period after the
    camera frame (the first action is due one control step after the frame it was computed from)."""
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != len(joint_names):
        raise ValueError(f"actions {a.shape} do not match joint_names {list(joint_names)}")
    msg = JointTrajectory(joint_names=list(joint_names))
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    for k, row in enumerate(a):
        msg.points.append(JointTrajectoryPoint(positions=[float(x) for x in row],
                                               time_from_start=sec_to_duration((k + 1) * control_period)))
    return msg


def trajectory_to_numpy(msg: JointTrajectory) -> np.ndarray:
    return np.asarray([p.positions for p in msg.points], dtype=np.float64).reshape(len(msg.points), -1)


def duration_to_sec(d: Duration) -> float:
    return d.sec + d.nanosec * 1e-9

