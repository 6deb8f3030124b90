"""The ROS contract of trimodal_ros, in one place: topic names, joint and action names, QoS.

Plain data, no rclpy: the bag writer (training data), the nodes (serving), the replay/record
tools and the tests all read the names here. QoS profiles are described as ``Qos`` values;
``ros/conversions.qos_profile`` turns one into an rclpy ``QoSProfile`` and the bag writer into
rosbag2's ``offered_qos_profiles``.

Topic names are relative, so a node's namespace moves them all (``/robot1/camera/image_raw``);
``absolute`` gives the name a bag records them under.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- cameras ----------------------------------------------------------------------------------------
# A model sees one or more named cameras (``ModelConfig.cameras``); camera NAME publishes on
# ``NAME/image_raw`` (and ``NAME/image_raw/compressed``). The first is the primary: each of its
# frames is one tick; the others contribute their latest frame at or before that frame's stamp.
# The default single camera is "camera", whose topic is IMAGE_TOPIC.
PRIMARY_CAMERA = "camera"


def image_topic(camera: str = PRIMARY_CAMERA, compressed: bool = False) -> str:
    """``camera`` → ``camera/image_raw``; ``top_camera`` → ``top_camera/image_raw`` (+ ``/compressed``)."""
    return f"{camera}/image_raw" + ("/compressed" if compressed else "")


# --- vla_node ---------------------------------------------------------------------------------
IMAGE_TOPIC = image_topic()                           # sensor_msgs/Image: "camera/image_raw"
COMPRESSED_IMAGE_TOPIC = image_topic(compressed=True)  # sensor_msgs/CompressedImage (image_transport)
INSTRUCTION_TOPIC = "instruction"                     # std_msgs/String
JOINTS_TOPIC = "joint_states"                         # sensor_msgs/JointState
EMBEDDING_TOPIC = "trimodal/embedding"                # trimodal_ros_interfaces/Embedding
TOKENS_TOPIC = "trimodal/action_tokens"               # trimodal_ros_interfaces/ActionTokens
ACTION_TOPIC = "trimodal/action"                      # trajectory_msgs/JointTrajectory
SCORES_TOPIC = "trimodal/scores"                      # trimodal_ros_interfaces/FrameScores
TWIST_TOPIC = "trimodal/twist"                        # geometry_msgs/TwistStamped (action.output: twist)
GRIPPER_TOPIC = "trimodal/gripper"                    # std_msgs/Float64MultiArray (action.output: twist)
DIAGNOSTICS_TOPIC = "/diagnostics"                    # diagnostic_msgs/DiagnosticArray

# --- recorded episodes and the simulated robot ------------------------------------------------
EXPERT_ACTION_TOPIC = "expert/action"                 # sensor_msgs/JointState (see trimodal_lab/metaworld/record.py)
CLOCK_TOPIC = "/clock"                                # rosgraph_msgs/Clock
SIM_EPISODE_TOPIC = "sim/episode"                     # std_msgs/String (JSON)
SIM_RESET_TOPIC = "sim/reset"                         # std_msgs/String (JSON)
SIM_STATE_TOPIC = "sim/state"                         # sensor_msgs/JointState: the simulator's object, goal
                                                      # and hand positions (training targets, never an input)

# --- names --------------------------------------------------------------------------------------
# The Sawyer's MuJoCo joints in Meta-World: seven arm joints and the two gripper fingers.
SAWYER_JOINTS = ["right_j0", "right_j1", "right_j2", "right_j3", "right_j4", "right_j5", "right_j6",
                 "r_close", "l_close"]
# Meta-World's 4-D action: end-effector displacement and gripper effort, each in [-1, 1].
ACTION_NAMES = ["ee_dx", "ee_dy", "ee_dz", "gripper"]
# What a recorded episode's SIM_STATE_TOPIC holds (metres, world frame): the task's object, its goal
# and the hand (Meta-World's end-effector position, as its observation and scripted experts read it).
# A model with ``state_input: S`` learns the first S of them.
SIM_STATE_NAMES = ["object_x", "object_y", "object_z", "goal_x", "goal_y", "goal_z", "hand_x", "hand_y", "hand_z"]

MAX_INSTRUCTION_CHARS = 2000

MSG_TYPES = {
    IMAGE_TOPIC: "sensor_msgs/msg/Image",
    COMPRESSED_IMAGE_TOPIC: "sensor_msgs/msg/CompressedImage",
    INSTRUCTION_TOPIC: "std_msgs/msg/String",
    JOINTS_TOPIC: "sensor_msgs/msg/JointState",
    EMBEDDING_TOPIC: "trimodal_ros_interfaces/msg/Embedding",
    TOKENS_TOPIC: "trimodal_ros_interfaces/msg/ActionTokens",
    ACTION_TOPIC: "trajectory_msgs/msg/JointTrajectory",
    SCORES_TOPIC: "trimodal_ros_interfaces/msg/FrameScores",
    TWIST_TOPIC: "geometry_msgs/msg/TwistStamped",
    GRIPPER_TOPIC: "std_msgs/msg/Float64MultiArray",
    DIAGNOSTICS_TOPIC: "diagnostic_msgs/msg/DiagnosticArray",
    EXPERT_ACTION_TOPIC: "sensor_msgs/msg/JointState",
    CLOCK_TOPIC: "rosgraph_msgs/msg/Clock",
    SIM_EPISODE_TOPIC: "std_msgs/msg/String",
    SIM_RESET_TOPIC: "std_msgs/msg/String",
    SIM_STATE_TOPIC: "sensor_msgs/msg/JointState",
}


def absolute(topic: str, namespace: str = "") -> str:
    """``camera/image_raw`` → ``/camera/image_raw`` (or ``/<namespace>/camera/image_raw``)."""
    if topic.startswith("/"):
        return topic
    ns = namespace.strip("/")
    return f"/{ns}/{topic}" if ns else f"/{topic}"


# --- QoS ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Qos:
    """A QoS profile as plain data (history is always keep-last)."""

    reliability: str = "reliable"   # reliable | best_effort
    durability: str = "volatile"    # volatile | transient_local
    depth: int = 10
    deadline: float = 0.0           # seconds between messages a publisher offers / a subscriber requests; 0 none
    liveliness_lease: float = 0.0   # seconds of automatic liveliness lease; 0: the middleware's default

    def __post_init__(self) -> None:
        if not (self.deadline >= 0 and self.liveliness_lease >= 0):
            raise ValueError(f"deadline and liveliness_lease must be >= 0 s, not {self.deadline}, "
                             f"{self.liveliness_lease}")
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"reliability must be reliable or best_effort, not {self.reliability!r}")
        if self.durability not in ("volatile", "transient_local"):
            raise ValueError(f"durability must be volatile or transient_local, not {self.durability!r}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth must be an integer >= 1, not {self.depth!r}")


RELIABLE = Qos("reliable", "volatile", 10)     # outputs, commands
LATCHED = Qos("reliable", "transient_local", 1)  # the instruction a late subscriber must still get
SENSOR = Qos("best_effort", "volatile", 5)     # camera and joint subscriptions: match any publisher

# What vla_node's inputs accept. A best-effort reader matches reliable and best-effort writers
# alike; the instruction is subscribed twice (latched and volatile) so that latched publishers
# (whose last command must reach a node started later) and ordinary ones both connect.
INSTRUCTION_QOS = (LATCHED, RELIABLE)
JOINTS_QOS = Qos("best_effort", "volatile", 50)

# What each topic's publisher offers (vla_node's outputs, sim_node's robot topics, the recorded
# expert action): the QoS a bag records as ``offered_qos_profiles`` and replays with, so a latched
# instruction stays latched after `ros2 bag play`.
PUBLISHER_QOS = {
    IMAGE_TOPIC: RELIABLE, COMPRESSED_IMAGE_TOPIC: RELIABLE, JOINTS_TOPIC: RELIABLE,
    INSTRUCTION_TOPIC: LATCHED, EXPERT_ACTION_TOPIC: RELIABLE,
    EMBEDDING_TOPIC: RELIABLE, TOKENS_TOPIC: RELIABLE, ACTION_TOPIC: RELIABLE, SCORES_TOPIC: RELIABLE,
    TWIST_TOPIC: RELIABLE, GRIPPER_TOPIC: RELIABLE,
    DIAGNOSTICS_TOPIC: RELIABLE,
    CLOCK_TOPIC: RELIABLE, SIM_EPISODE_TOPIC: LATCHED, SIM_RESET_TOPIC: RELIABLE, SIM_STATE_TOPIC: RELIABLE,
}


def publisher_qos(topic: str) -> Qos:
    """The QoS ``topic`` is published with ('/robot1/instruction' → LATCHED); RELIABLE for a topic
    this package does not publish."""
    name = topic.lstrip("/")
    for t, q in PUBLISHER_QOS.items():
        t = t.lstrip("/")
        if name == t or name.endswith("/" + t):
            return q
    return RELIABLE
