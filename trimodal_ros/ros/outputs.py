"""vla_node's outputs, one place that knows what each topic carries: the fused embedding, the action
tokens and the frame's scores (each with the camera frame's header), the action chunk as a
JointTrajectory (``trimodal/action``) and, for a Cartesian policy (``action.output: twist``), a
TwistStamped plus the gripper command. All are lifecycle publishers: nothing goes out while the
node is inactive. A *hold* is a JointTrajectory without points (ros2_control's
joint_trajectory_controller stops and holds position) and a zero twist."""

from __future__ import annotations

import dataclasses
from typing import Dict

import numpy as np
from geometry_msgs.msg import TwistStamped
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory
from trimodal_ros_interfaces.msg import ActionTokens, Embedding, FrameScores

from .. import interface as I
from .conversions import embedding_to_msg, qos_profile, scores_to_msg, tokens_to_msg, trajectory_to_msg, twist_to_msgs


class Outputs:
    def __init__(self, node, robot, action_names, deadline: float, liveliness_lease: float):
        self.node, self.robot, self.action_names = node, robot, list(action_names)
        qos = qos_profile(dataclasses.replace(I.RELIABLE, deadline=deadline, liveliness_lease=liveliness_lease))
        twist = robot.action.output == "twist"
        self.pubs: Dict[str, object] = {k: node.create_lifecycle_publisher(t, n, qos) for k, t, n in (
            ("embedding", Embedding, I.EMBEDDING_TOPIC), ("tokens", ActionTokens, I.TOKENS_TOPIC),
            ("action", JointTrajectory, I.ACTION_TOPIC), ("scores", FrameScores, I.SCORES_TOPIC),
            *((("twist", TwistStamped, I.TWIST_TOPIC), ("gripper", Float64MultiArray, I.GRIPPER_TOPIC)) if twist
              else ()))}

    def scores(self, step, stamp, frame_id: str) -> None:
        self.pubs["scores"].publish(scores_to_msg(step.agreement, step.ood, stamp, frame_id))

    def action(self, actions: np.ndarray, stamp, frame_id: str, period: float) -> None:
        """The chunk (point k at (k+1) × ``period``) and, for a Cartesian policy, its first action as a twist."""
        self.pubs["action"].publish(trajectory_to_msg(actions, stamp, self.action_names, period, frame_id))
        self._twist(actions[0], stamp)

    def step(self, step, stamp, frame_id: str, bins: int, fusion: str, random_weights: bool) -> None:
        """Everything but the action: tokens, embedding, scores."""
        self.pubs["tokens"].publish(tokens_to_msg(step.tokens, stamp, frame_id, bins, random_weights))
        self.pubs["embedding"].publish(embedding_to_msg(step.embedding, stamp, frame_id, fusion, random_weights))
        self.scores(step, stamp, frame_id)

    def hold(self, stamp) -> None:
        msg = JointTrajectory(joint_names=self.action_names)
        msg.header.stamp = stamp
        self.pubs["action"].publish(msg)
        self._twist(None, stamp)

    def _twist(self, action, stamp) -> None:
        """The chunk's first action as a twist, or zero velocity to hold (the gripper then stays as it was)."""
        if "twist" not in self.pubs:
            return
        hold = action is None
        tw, grip = twist_to_msgs(np.zeros(len(self.action_names)) if hold else action, self.robot.action.names,
                                 stamp, self.robot.action.frame)
        self.pubs["twist"].publish(tw)
        if grip is not None and not hold:
            self.pubs["gripper"].publish(grip)

    def release(self) -> None:
        for pub in self.pubs.values():
            self.node.destroy_lifecycle_publisher(pub)
        self.pubs = {}
