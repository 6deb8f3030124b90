"""rclpy-side message helpers: building the node's output messages, stamps and durations, and
QoS profiles from ``interface.Qos``. Decoding incoming messages is ``trimodal_ros.decode`` (shared
with the bag reader); it is re-exported here for the node's convenience.
"""

from __future__ import annotations

import array
from typing import Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Header
from trimodal_ros_interfaces.msg import ActionTokens, Embedding, FrameScores
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..decode import (  # noqa: F401  (re-exported)
    BadInput,
    compressed_image_from_msg,
    encode_compressed,
    image_from_msg,
    instruction_from_msg,
    joint_values,
    joints_from_msg,
    stamp_ns,
)
from ..interface import Qos


def qos_profile(q: Qos):
    """interface.Qos → rclpy QoSProfile (keep-last history; deadline and liveliness lease when set)."""
    from rclpy.duration import Duration as RclDuration
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy

    extra = {}
    if q.deadline > 0:
        extra["deadline"] = RclDuration(nanoseconds=int(q.deadline * 1e9))
    if q.liveliness_lease > 0:
        extra.update(liveliness=LivelinessPolicy.AUTOMATIC,
                     liveliness_lease_duration=RclDuration(nanoseconds=int(q.liveliness_lease * 1e9)))
    return QoSProfile(depth=q.depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=(ReliabilityPolicy.RELIABLE if q.reliability == "reliable"
                                   else ReliabilityPolicy.BEST_EFFORT),
                      durability=(DurabilityPolicy.TRANSIENT_LOCAL if q.durability == "transient_local"
                                  else DurabilityPolicy.VOLATILE), **extra)


# --- time ----------------------------------------------------------------------------------------
def stamp_to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float) -> Time:
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns) // 1_000_000_000, nanosec=int(ns) % 1_000_000_000)


def sec_to_duration(t: float) -> Duration:
    ns = int(round(t * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# --- test/bench inputs --------------------------------------------------------------------------------------
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


def compressed_image_to_msg(rgb: np.ndarray, fmt: str = "jpeg", stamp: Optional[Time] = None,
                            frame_id: str = "camera", quality: int = 90) -> CompressedImage:
    """uint8 RGB (H, W, 3) → sensor_msgs/CompressedImage (``jpeg`` or ``png``), as image_transport's
    compressed plugin names them."""
    fmt_name, data = encode_compressed(rgb, fmt, quality)
    msg = CompressedImage(format=fmt_name)
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.data = data
    return msg


def joints_to_msg(names: Sequence[str], positions, velocities=None, stamp: Optional[Time] = None) -> JointState:
    msg = JointState(name=list(names), position=[float(x) for x in positions])
    if velocities is not None:
        msg.velocity = [float(x) for x in velocities]
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


# --- outputs -------------------------------------------------------------------------------------
def diagnostics_msg(name: str, level: int, message: str, values: dict, stamp: Time,
                    hardware_id: str = "") -> DiagnosticArray:
    """One status (``ledger`` level, message, string values) as a /diagnostics message."""
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg


def _header(stamp: Time, frame_id: str) -> Header:
    return Header(stamp=stamp, frame_id=frame_id)


def embedding_to_msg(vec, stamp: Time, frame_id: str = "", fusion: str = "",
                     random_weights: bool = False) -> Embedding:
    """(embed_dim,) → trimodal_ros_interfaces/Embedding with the camera frame's header."""
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    return Embedding(header=_header(stamp, frame_id), fusion=fusion, random_weights=bool(random_weights),
                     data=array.array("f", v.tobytes()))


def tokens_to_msg(tokens, stamp: Time, frame_id: str = "", bins: int = 256,
                  random_weights: bool = False) -> ActionTokens:
    """(chunk, action_dim) int tokens → trimodal_ros_interfaces/ActionTokens, row-major."""
    t = np.asarray(tokens, dtype=np.int64)
    if t.ndim != 2:
        raise ValueError(f"tokens must be (chunk, action_dim), got {t.shape}")
    return ActionTokens(header=_header(stamp, frame_id), chunk=t.shape[0], action_dim=t.shape[1], bins=int(bins),
                        random_weights=bool(random_weights),
                        tokens=array.array("i", t.reshape(-1).astype(np.int32).tobytes()))


def scores_to_msg(agreement: float, ood: float, stamp: Time, frame_id: str = "") -> FrameScores:
    """trimodal/scores: one frame's instruction–scene agreement and ood score (trimodal_ros.scores)."""
    return FrameScores(header=_header(stamp, frame_id), agreement=float(agreement), ood=float(ood))


def tokens_from_msg(msg: ActionTokens) -> np.ndarray:
    """ActionTokens → (chunk, action_dim) int64, the inverse of ``tokens_to_msg``."""
    t = np.asarray(msg.tokens, dtype=np.int64)
    if t.size != msg.chunk * msg.action_dim:
        raise BadInput("bad_tokens", f"ActionTokens holds {t.size} tokens, not chunk {msg.chunk} x action_dim "
                                     f"{msg.action_dim}")
    return t.reshape(msg.chunk, msg.action_dim)


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


def twist_to_msgs(action, names: Sequence[str], stamp: Time, frame_id: str):
    """One action (the chunk's first) → (TwistStamped of its velocity dimensions, named as
    ``robot.TWIST_FIELDS``; Float64MultiArray of the others, a gripper command, or None)."""
    from geometry_msgs.msg import TwistStamped
    from std_msgs.msg import Float64MultiArray

    from ..robot import TWIST_FIELDS

    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.size != len(names):
        raise ValueError(f"action of {a.size} values does not match names {list(names)}")
    tw = TwistStamped()
    tw.header.stamp, tw.header.frame_id = stamp, frame_id
    rest = []
    for n, v in zip(names, a):
        if n in TWIST_FIELDS:
            part, axis = n.split(".")
            setattr(getattr(tw.twist, part), axis, float(v))
        else:
            rest.append(float(v))
    return tw, (Float64MultiArray(data=rest) if rest else None)


def trajectory_to_numpy(msg: JointTrajectory) -> np.ndarray:
    return np.asarray([p.positions for p in msg.points], dtype=np.float64).reshape(len(msg.points), -1)


def duration_to_sec(d: Duration) -> float:
    return d.sec + d.nanosec * 1e-9

