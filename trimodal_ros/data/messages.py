"""ROS 2 messages as ``rosbags`` objects (no rclpy), built from numpy: stamps, images, joint states,
trajectories, strings and actions, from the ROS 2 Jazzy typestore with this repository's own
messages registered. What the bag writers record and the tests publish."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..interface import ACTION_NAMES

# msgtypes used by this package
IMAGE = "sensor_msgs/msg/Image"
JOINT_STATE = "sensor_msgs/msg/JointState"
STRING = "std_msgs/msg/String"

INTERFACES = "trimodal_ros_interfaces"


def interface_folder() -> Optional[Path]:
    """The ``msg/`` folder of this repository's message package: where it is installed (ament index,
    or the environment's share/, where scripts/setup.sh puts it), else the source tree's."""
    import sys

    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(INTERFACES)))
    except Exception:  # not on the ament index (pip environment) or no ament_index_python
        pass
    candidates += [Path(sys.prefix) / "share" / INTERFACES, Path(__file__).resolve().parents[2] / INTERFACES]
    return next((c / "msg" for c in candidates if (c / "msg").is_dir()), None)


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Jazzy typestore (message classes, CDR (de)serialisation, type hashes), with the
    package's own messages (trimodal/embedding, action_tokens, scores) registered from their .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    folder = interface_folder()
    if folder is not None:
        types = {}
        for f in sorted(folder.glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"{INTERFACES}/msg/{f.stem}"))
        store.register(types)
    return store


def msg_class(msgtype: str):
    return typestore().types[msgtype]


# --- stamps -----------------------------------------------------------------------------------

def time_msg(stamp_ns: int):
    """builtin_interfaces/Time from integer nanoseconds."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"negative stamp {stamp_ns}")
    return msg_class("builtin_interfaces/msg/Time")(sec=stamp_ns // 1_000_000_000,
                                                   nanosec=stamp_ns % 1_000_000_000)


def header_msg(stamp_ns: int, frame_id: str = ""):
    return msg_class("std_msgs/msg/Header")(stamp=time_msg(stamp_ns), frame_id=frame_id)


# --- message <-> numpy ------------------------------------------------------------------------

_ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def image_msg(image: np.ndarray, stamp: int, frame_id: str = "", encoding: str = "rgb8"):
    """uint8 (H, W, 3) RGB array → sensor_msgs/Image (rgb8, row-major, no padding)."""
    a = np.ascontiguousarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != _ENCODINGS.get(encoding, -1):
        raise ValueError(f"expected uint8 (H, W, {_ENCODINGS.get(encoding)}) for {encoding}, "
                         f"got {a.dtype} {a.shape}")
    h, w, c = a.shape
    return msg_class(IMAGE)(header=header_msg(stamp, frame_id), height=h, width=w, encoding=encoding,
                            is_bigendian=0, step=w * c, data=a.reshape(-1))


def joint_state_msg(names: Sequence[str], positions, velocities=None, stamp: int = 0,
                    frame_id: str = "", efforts=None):
    f64 = lambda x: np.ascontiguousarray(np.asarray([] if x is None else x, dtype=np.float64).reshape(-1))  # noqa: E731
    pos, vel, eff = f64(positions), f64(velocities), f64(efforts)
    for what, arr in (("positions", pos), ("velocities", vel), ("efforts", eff)):
        if arr.size not in (0, len(names)) or (what == "positions" and arr.size != len(names)):
            raise ValueError(f"{len(names)} joint names but {arr.size} {what}")
    return msg_class(JOINT_STATE)(header=header_msg(stamp, frame_id), name=list(names),
                                  position=pos, velocity=vel, effort=eff)


def compressed_image_msg(image: np.ndarray, stamp: int, frame_id: str = "", fmt: str = "jpeg", quality: int = 90):
    """uint8 (H, W, 3) RGB → sensor_msgs/CompressedImage (jpeg or png, image_transport's format string)."""
    from ..decode import encode_compressed

    name, data = encode_compressed(image, fmt, quality)
    return msg_class("sensor_msgs/msg/CompressedImage")(header=header_msg(stamp, frame_id), format=name,
                                                        data=np.frombuffer(data, np.uint8))


def joint_trajectory_msg(names: Sequence[str], points, period_s: float, stamp: int = 0, frame_id: str = ""):
    """(K, J) joint positions → trajectory_msgs/JointTrajectory, point k due at (k+1) × ``period_s``
    after ``stamp`` (how a joint_trajectory_controller reads a command)."""
    pts = np.atleast_2d(np.asarray(points, np.float64))
    if pts.shape[1] != len(names):
        raise ValueError(f"{len(names)} joint names but points of {pts.shape[1]} positions")
    point = msg_class("trajectory_msgs/msg/JointTrajectoryPoint")
    duration = msg_class("builtin_interfaces/msg/Duration")
    empty = np.zeros(0, np.float64)

    def due(k):
        ns = int(round((k + 1) * period_s * 1e9))
        return duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    return msg_class("trajectory_msgs/msg/JointTrajectory")(
        header=header_msg(stamp, frame_id), joint_names=list(names),
        points=[point(positions=p.copy(), velocities=empty, accelerations=empty, effort=empty,
                      time_from_start=due(k)) for k, p in enumerate(pts)])


def string_msg(text: str):
    return msg_class(STRING)(data=str(text))


# The expert's action travels as a JointState so that it carries a header stamp: the names are
# interface.ACTION_NAMES and ``position`` holds the action (see trimodal_lab/metaworld/record.py); read it back
# with ``decode.joints_from_msg(msg, ACTION_NAMES)``.
def action_msg(action, stamp: int, frame_id: str = "", names: Sequence[str] = ACTION_NAMES):
    return joint_state_msg(names, action, None, stamp, frame_id)
