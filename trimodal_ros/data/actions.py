"""A robot's actions in an episode bag, in its spec's name order: read from the command topic
(JointState, JointTrajectory, Float64MultiArray or Twist) or derived from the joint states at the
camera frames (the next frame's positions, or the change to them)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..decode import BadInput, joints_from_msg
from ..robot import TWIST_FIELDS, ActionSpec
from .align import header_s
from .bags import BagError


def action_series(bag, spec: ActionSpec, topic: Optional[str], joint_names: Sequence[str], cam_s: np.ndarray,
                  pos: np.ndarray, js_ok: np.ndarray):
    """(stamps in s, (M, A) actions) of an episode: the command topic's messages, or derived from
    the joint states at the camera frames (the next frame's positions, or the change to them)."""
    if spec.source != "topic":  # one action per frame with a joint state: the move to the next one
        idx = np.flatnonzero(js_ok)
        cols = [list(joint_names).index(n) for n in spec.names]
        p = pos[idx][:, cols].astype(np.float64)
        acts = p[1:] if spec.source == "joint_positions" else p[1:] - p[:-1]
        return cam_s[idx[:-1]], acts.reshape(-1, spec.dim)
    log_t, msgs = np.asarray(bag.stamps.get(topic, np.zeros(0)), np.int64), \
        list(bag.messages.get(topic, ()))
    if msgs and spec.type.endswith("Float64MultiArray"):  # no header: the time it was logged
        s, order = log_t / 1e9, np.argsort(log_t, kind="stable")
    else:
        s = header_s(msgs)
        order = np.argsort(s, kind="stable")
    try:
        vals = [action_values(msgs[i], spec) for i in order]
    except BadInput as e:
        raise BagError(bag.path, f"{topic}: {e.kind}: {e}") from None
    acts = np.stack(vals) if vals else np.zeros((0, spec.dim))
    return s[order], acts


def action_values(msg, spec: ActionSpec) -> np.ndarray:
    """One command message → the action vector in the spec's name order."""
    t = spec.type.rsplit("/", 1)[-1]
    if t == "JointState":
        return joints_from_msg(msg, spec.names)[0]
    if t == "JointTrajectory":
        if not msg.points:
            raise BadInput("bad_action", "a JointTrajectory command without points")
        names, values = list(msg.joint_names), list(msg.points[0].positions)
        if len(names) != len(values) or any(n not in names for n in spec.names):
            raise BadInput("bad_action", f"JointTrajectory joints {names} lack {spec.names} or have "
                                         f"{len(values)} positions")
        return np.array([values[names.index(n)] for n in spec.names], np.float64)
    if t == "Float64MultiArray":
        v = np.asarray(msg.data, np.float64)
        if v.shape != (spec.dim,):
            raise BadInput("bad_action", f"Float64MultiArray of {v.size} values; action.names has {spec.dim}")
        return v
    twist = msg.twist
    by_field = {f: getattr(getattr(twist, f.split(".")[0]), f.split(".")[1]) for f in TWIST_FIELDS}
    return np.array([by_field[n] for n in spec.names], np.float64)
