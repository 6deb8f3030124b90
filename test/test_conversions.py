"""Message ↔ array conversions: round trips and every bad input the node must skip."""

import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState

from trimodal_ros.config import SAWYER_JOINTS
from trimodal_ros.ros.conversions import (
    BadInput,
    embedding_to_msg,
    image_from_msg,
    image_to_msg,
    instruction_from_msg,
    joints_from_msg,
    joints_to_msg,
    scores_to_msg,
    tokens_from_msg,
    sec_to_stamp,
    stamp_to_sec,
    tokens_to_msg,
    trajectory_to_msg,
    trajectory_to_numpy,
)


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize("enc", ["rgb8", "bgr8"])
def test_image_round_trip(rgb, enc):
    msg = image_to_msg(rgb, sec_to_stamp(3.25), encoding=enc)
    assert msg.encoding == enc and msg.step == 15 and len(msg.data) == 90
    np.testing.assert_array_equal(image_from_msg(msg), rgb)


def test_mono_and_alpha_and_padded_rows(rgb):
    mono = image_from_msg(image_to_msg(rgb, encoding="mono8"))
    assert mono.shape == (6, 5, 3) and np.all(mono[..., 0] == mono[..., 2])
    bgra = np.concatenate([rgb[..., ::-1], np.full((6, 5, 1), 7, np.uint8)], axis=2)
    padded = np.concatenate([bgra.reshape(6, 20), np.zeros((6, 4), np.uint8)], axis=1)  # step 24 > 20
    msg = Image(height=6, width=5, encoding="bgra8", step=24, data=padded.tobytes())
    np.testing.assert_array_equal(image_from_msg(msg), rgb)


@pytest.mark.parametrize("mutate", [
    lambda m: setattr(m, "encoding", "nv21"),
    lambda m: setattr(m, "encoding", "32FC1"),
    lambda m: setattr(m, "data", bytes(len(m.data) - 1)),
    lambda m: setattr(m, "step", 2),
    lambda m: setattr(m, "height", 0),
])
def test_bad_images(rgb, mutate):
    msg = image_to_msg(rgb)
    mutate(msg)
    with pytest.raises(BadInput) as e:
        image_from_msg(msg)
    assert e.value.kind == "bad_image"


def test_joints_by_name_any_order_extra_ignored():
    names = list(reversed(SAWYER_JOINTS)) + ["head_pan"]
    msg = joints_to_msg(names, np.arange(10.0), np.arange(10.0) * 2)
    pos, vel = joints_from_msg(msg, SAWYER_JOINTS)
    np.testing.assert_array_equal(pos, np.arange(9.0)[::-1])
    np.testing.assert_array_equal(vel, 2 * np.arange(9.0)[::-1])
    pos, vel = joints_from_msg(joints_to_msg(SAWYER_JOINTS, np.zeros(9)), SAWYER_JOINTS)
    assert vel is None and pos.dtype == np.float32


@pytest.mark.parametrize("msg,kind", [
    (joints_to_msg(SAWYER_JOINTS, [0.0] * 8 + [float("nan")]), "nan_joints"),
    (joints_to_msg(SAWYER_JOINTS, [0.0] * 9, [float("inf")] * 9), "nan_joints"),
    (joints_to_msg(SAWYER_JOINTS[:-1], [0.0] * 8), "missing_joints"),
    (joints_to_msg(["a", "b"], [0.0, 1.0]), "unknown_joint_names"),
    (JointState(name=SAWYER_JOINTS, position=[0.0] * 3), "bad_joint_state"),
    (JointState(name=SAWYER_JOINTS, position=[0.0] * 9, velocity=[0.0]), "bad_joint_state"),
])
def test_bad_joint_states(msg, kind):
    with pytest.raises(BadInput) as e:
        joints_from_msg(msg, SAWYER_JOINTS)
    assert e.value.kind == kind


def test_instructions():
    assert instruction_from_msg("  push\n the  button ") == "push the button"
    assert instruction_from_msg("") == instruction_from_msg("   \n") == ""  # empty: the documented stop
    with pytest.raises(BadInput) as e:
        instruction_from_msg("x" * 100_000)
    assert e.value.kind == "bad_instruction"


def test_outputs_carry_the_frames_header():
    stamp = sec_to_stamp(7.25)
    emb = embedding_to_msg(np.arange(128, dtype=np.float32), stamp, "cam_optical", "concat_mlp")
    assert (emb.header.stamp, emb.header.frame_id, emb.fusion, emb.random_weights) == (stamp, "cam_optical",
                                                                                        "concat_mlp", False)
    np.testing.assert_array_equal(np.asarray(emb.data), np.arange(128))
    assert embedding_to_msg(np.zeros(2), stamp, random_weights=True).random_weights
    tok = tokens_to_msg(np.arange(12).reshape(4, 3), stamp, "cam_optical", bins=256)
    assert (tok.chunk, tok.action_dim, tok.bins, tok.header.frame_id) == (4, 3, 256, "cam_optical")
    np.testing.assert_array_equal(tokens_from_msg(tok), np.arange(12).reshape(4, 3))  # row-major
    tok.chunk = 5
    with pytest.raises(BadInput, match="12 tokens"):
        tokens_from_msg(tok)
    sc = scores_to_msg(0.25, 1.5, stamp, "cam_optical")
    assert (sc.agreement, sc.ood, sc.header.stamp) == (0.25, 1.5, stamp)
    actions = np.linspace(-1, 1, 16).reshape(4, 4)
    traj = trajectory_to_msg(actions, sec_to_stamp(12.5), ["ee_dx", "ee_dy", "ee_dz", "gripper"], 0.0125)
    assert stamp_to_sec(traj.header.stamp) == 12.5 and len(traj.points) == 4
    assert [p.time_from_start.nanosec for p in traj.points] == [12_500_000, 25_000_000, 37_500_000, 50_000_000]
    np.testing.assert_allclose(trajectory_to_numpy(traj), actions)
    with pytest.raises(ValueError):
        trajectory_to_msg(actions, sec_to_stamp(0), ["a"], 0.1)
