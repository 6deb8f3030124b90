"""The robot spec: validated on load, carried by the run config, and deciding what a dataset reads
from bags laid out like another robot's (a compressed camera, arm and gripper on two JointState
publishers, no instruction topic, an action from a command topic or from the joint states)."""

import io

import numpy as np
import pytest

from trimodal_ros.config import ConfigError, config_from_dict, load_config
from trimodal_ros.data import bags as B
from trimodal_ros.data import messages as M
from trimodal_ros.data.dataset import BagDataset
from trimodal_ros.robot import CameraSpec, load_robot, robot_from_dict

ARM, GRIPPER = ["shoulder", "elbow", "wrist"], ["finger"]
PERIOD_NS = 100_000_000  # 10 Hz camera and joint states


def arm_spec(**action):
    return robot_from_dict({
        "name": "test_arm",
        "cameras": [{"name": "wrist", "topic": "wrist/image_raw/compressed", "compressed": True}],
        "joint_topics": ["arm/joint_states", "gripper/joint_states"],
        "joint_names": ARM + GRIPPER,
        "instruction": "put the cup on the plate",
        "action": action or {"source": "joint_positions", "names": ARM + GRIPPER, "units": "rad"},
        "control_period": 0.1,
    })


def jpeg_msg(rgb, stamp):
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")  # lossless: the test compares pixels
    return M.msg_class("sensor_msgs/msg/CompressedImage")(header=M.header_msg(stamp), format="png",
                                                          data=np.frombuffer(buf.getvalue(), np.uint8))


def arm_positions(k):
    """Joint positions at frame k: a slow sweep, the finger closing halfway."""
    return np.array([0.1 * k, -0.05 * k, 0.02 * k, 0.0 if k < 5 else 0.04], np.float64)


def write_arm_bag(path, frames=10, gripper_from=0, extra=()):
    """A bag as another robot records it: frame k at k * 100 ms; the gripper's publisher starts at
    frame ``gripper_from``; ``extra`` adds (topic, msg[, stamp]) items (a command topic)."""
    msgs = []
    for k in range(frames):
        t = (k + 1) * PERIOD_NS
        q = arm_positions(k)
        msgs.append(("/arm/joint_states", M.joint_state_msg(ARM, q[:3], np.full(3, 0.5), t)))
        if k >= gripper_from:
            msgs.append(("/gripper/joint_states", M.joint_state_msg(GRIPPER, q[3:], None, t)))
        msgs.append(("/wrist/image_raw/compressed", jpeg_msg(np.full((8, 8, 3), 10 * k, np.uint8), t)))
    msgs.extend(extra)
    msgs.sort(key=lambda m: m[2] if len(m) > 2 else B.stamp_ns(m[1]) if hasattr(m[1], "header") else 0)
    return B.write_bag(path, msgs)


def test_the_sawyer_spec_is_the_default_robot_of_every_config():
    sawyer = load_robot("metaworld_sawyer")
    cfg = load_config("mt10_policy_concat")
    assert cfg.robot == sawyer and cfg.model.joint_names == sawyer.joint_names
    assert cfg.model.action_dim == 4 and cfg.robot.control_period == 0.0125
    again = config_from_dict(cfg.to_dict())  # what a checkpoint holds comes back equal
    assert again.robot == sawyer and again.to_dict() == cfg.to_dict()


def test_a_robot_section_decides_the_model_layout_and_a_disagreeing_model_key_is_refused(tmp_path):
    spec = arm_spec().to_dict()
    cfg = config_from_dict({"model": {"fusion": "concat_mlp"}, "robot": spec})
    assert cfg.model.joint_names == ARM + GRIPPER and cfg.model.action_dim == 4
    assert cfg.model.cameras == ["wrist"] and cfg.robot.name == "test_arm"
    with pytest.raises(ConfigError, match="model.joint_names .* disagrees with the robot spec 'test_arm'"):
        config_from_dict({"model": {"joint_names": ["a", "b"]}, "robot": spec})
    f = tmp_path / "arm.yaml"
    import yaml

    f.write_text(yaml.safe_dump(spec))
    over = load_config("mt10_policy_concat", robot=f)  # the train CLI's --robot
    assert over.robot.name == "test_arm" and over.model.joint_names == ARM + GRIPPER
    assert over.model.fusion == "concat_mlp"
    with pytest.raises(ConfigError, match="decides"):
        load_config("mt10_policy_concat", robot=f, cameras=["a"])


@pytest.mark.parametrize("bad, match", [
    ({"action": {"source": "teleop"}}, "action.source"),
    ({"action": {"type": "geometry_msgs/msg/TwistStamped", "names": ["x"]}}, "TwistStamped action names"),
    ({"action": {"names": ["a", "b"], "low": [0.0]}}, "action.low must be 2 numbers"),
    ({"action": {"names": ["a"], "low": [1.0], "high": [0.0]}}, "below action.high"),
    ({"action": {"source": "joint_deltas", "names": ["gripper"]}, "joint_names": ["j1"]}, "not in joint_names"),
    ({"joint_topics": []}, "joint_topics"),
    ({"joint_topics": ["bad topic"]}, "not a ROS topic name"),
    ({"cameras": [{"name": "a"}, {"name": "a"}]}, "distinct"),
    ({"control_period": 0}, "control_period"),
    ({"joint_namez": ["a"]}, "unknown key"),
])
def test_a_bad_robot_spec_names_what_is_wrong(bad, match):
    with pytest.raises(ConfigError, match=match):
        robot_from_dict(bad)


def test_an_unknown_robot_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="metaworld_sawyer"):
        load_robot("no_such_robot")


def test_image_transport_switches_a_camera_topic_like_image_transport_does():
    raw, comp = CameraSpec("cam"), CameraSpec("cam", compressed=True)
    assert raw.input() == ("cam/image_raw", False) and comp.input() == ("cam/image_raw/compressed", True)
    assert raw.input("compressed") == ("cam/image_raw/compressed", True)
    assert comp.input("raw") == ("cam/image_raw", False) and raw.input("raw") == ("cam/image_raw", False)


def test_another_robots_bags_give_merged_joints_and_actions_derived_from_them(tmp_path):
    write_arm_bag(tmp_path / "ep0", frames=10, gripper_from=2)
    ds = BagDataset(tmp_path, robot=arm_spec(), use_velocities=True, chunk=3, max_input_age=0.05, verbose=False)
    # frames 0-1 have no gripper joint (missing), frame 9 has no next frame (no action)
    assert len(ds) == 7 and ds.dropped["missing_joint_state"] == 2 and ds.dropped["missing_action"] == 1
    assert ds.steps.tolist() == list(range(2, 9))
    item = ds[0]
    k = int(item["step"])
    np.testing.assert_allclose(item["proprio"][:4], arm_positions(k), atol=1e-6)
    np.testing.assert_allclose(item["proprio"][4:], [0.5, 0.5, 0.5, 0.0])  # the gripper sends no velocity
    # joint_positions: the action of frame k is frame k+1's positions, the chunk the next ones after it
    np.testing.assert_allclose(item["actions"], [arm_positions(k + 1), arm_positions(k + 2), arm_positions(k + 3)],
                               atol=1e-6)
    assert item["instruction"] == "put the cup on the plate" and ds.episodes[0].task == "put the cup on the plate"
    assert item["image"].shape == (8, 8, 3) and int(item["image"][0, 0, 0]) == 10 * k  # the PNG frame itself
    last = ds[len(ds) - 1]
    assert last["action_mask"].tolist() == [True, False, False]  # past the episode end: padded, masked

    deltas = BagDataset(tmp_path, robot=arm_spec(source="joint_deltas", names=ARM), chunk=1,
                        max_input_age=0.05, verbose=False)
    np.testing.assert_allclose(deltas[0]["actions"][0], arm_positions(3)[:3] - arm_positions(2)[:3], atol=1e-6)
    assert deltas.action_dim == 3 and deltas.all_actions().shape[1] == 3


def test_actions_from_a_command_topic_of_each_supported_type(tmp_path):
    m = lambda t: M.msg_class(t)  # noqa: E731
    Vector3, Duration = m("geometry_msgs/msg/Vector3"), m("builtin_interfaces/msg/Duration")
    cmd = lambda k: np.array([k, -k], np.float64)  # noqa: E731

    def f64(k, t):
        return m("std_msgs/msg/Float64MultiArray")(
            layout=m("std_msgs/msg/MultiArrayLayout")(dim=[], data_offset=0), data=cmd(k)), t

    def twist(k, t):
        return m("geometry_msgs/msg/TwistStamped")(header=M.header_msg(t), twist=m("geometry_msgs/msg/Twist")(
            linear=Vector3(x=cmd(k)[0], y=0.0, z=0.0), angular=Vector3(x=0.0, y=0.0, z=cmd(k)[1]))),

    def trajectory(k, t):  # the joints in another order than the spec's
        point = m("trajectory_msgs/msg/JointTrajectoryPoint")(
            positions=cmd(k)[::-1].copy(), velocities=np.zeros(0), accelerations=np.zeros(0), effort=np.zeros(0),
            time_from_start=Duration(sec=0, nanosec=0))
        return m("trajectory_msgs/msg/JointTrajectory")(header=M.header_msg(t), joint_names=["b", "a"],
                                                         points=[point]),

    cases = {"std_msgs/msg/Float64MultiArray": f64, "geometry_msgs/msg/TwistStamped": twist,
             "trajectory_msgs/msg/JointTrajectory": trajectory}
    names = {"geometry_msgs/msg/TwistStamped": ["linear.x", "angular.z"]}
    for msgtype, make in cases.items():
        root = tmp_path / msgtype.replace("/", "_")
        extra = [("/cmd", *make(k, (k + 1) * PERIOD_NS)) for k in range(6)]
        write_arm_bag(root / "ep", frames=6, extra=extra)
        spec = arm_spec(source="topic", topic="/cmd", type=msgtype, names=names.get(msgtype, ["a", "b"]),
                        output="twist" if "Twist" in msgtype else "joint_trajectory")
        ds = BagDataset(root, robot=spec, chunk=2, max_input_age=0.05, verbose=False)
        assert len(ds) == 6, msgtype
        np.testing.assert_allclose(ds[3]["actions"], [cmd(3), cmd(4)], err_msg=msgtype)


def test_a_bag_without_the_specs_camera_is_skipped_with_the_reason(tmp_path):
    write_arm_bag(tmp_path / "ep0", frames=3)
    spec = arm_spec()
    spec.cameras[0] = CameraSpec("wrist")  # raw wrist/image_raw: not in the bag
    with pytest.warns(RuntimeWarning, match="no messages on /wrist/image_raw"):
        ds = BagDataset(tmp_path, robot=spec, verbose=False)
    assert len(ds) == 0 and len(ds.skipped) == 1


def test_bags_without_metadata_are_training_data_and_a_split_in_their_metadata_moves_them(tmp_path):
    import json

    for e in range(3):
        write_arm_bag(tmp_path / f"ep{e}", frames=4)
    (tmp_path / "ep2" / "episode.json").write_text(json.dumps({"split": "val", "task": "stack cups"}))
    train = BagDataset(tmp_path, robot=arm_spec(), split="train", verbose=False)
    val = BagDataset(tmp_path, robot=arm_spec(), split="val", verbose=False)
    assert [e.name for e in train.episodes] == ["ep0", "ep1"] and [e.name for e in val.episodes] == ["ep2"]
    assert val.episodes[0].task == "stack cups" and val[0]["instruction"] == "put the cup on the plate"


def test_train_and_evaluate_on_another_robots_bags(tmp_path):
    """The README's own-robot commands in-process: train with the spec (the recorded words, as
    paraphrases exist for Meta-World tasks only), evaluate on a validation episode; the language
    report keeps the conditions that exist for these tasks (recorded, another task's, empty)."""
    import dataclasses
    import json

    from trimodal_lab.eval.evaluate import evaluate
    from trimodal_ros.train.trainer import TrainDataError, train

    for e in range(4):
        write_arm_bag(tmp_path / "bags" / f"ep{e}", frames=12)
    (tmp_path / "bags" / "ep3" / "episode.json").write_text(json.dumps({"split": "val"}))
    (tmp_path / "bags" / "ep2" / "episode.json").write_text(json.dumps({"task": "stack", "instruction": "stack it",
                                                                            "split": "val"}))
    cfg = config_from_dict({**{k: v for k, v in load_config("weighted_sum").to_dict().items() if k != "model"},
                            "model": {"fusion": "weighted_sum", "clip_model": "tiny-vit", "embed_dim": 32},
                            "robot": arm_spec().to_dict()})
    small = dict(steps=4, batch_size=8, warmup_steps=1, log_every=2, ckpt_every=4)
    with pytest.raises(TrainDataError, match="train.instructions: bag"):
        train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **small)), tmp_path / "bags",
              tmp_path / "refused", progress=False)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, instructions="bag", **small))
    ckpt = train(cfg, tmp_path / "bags", tmp_path / "run", progress=False).checkpoint
    rep = evaluate(ckpt, tmp_path / "bags", tmp_path / "eval", split="val", with_language=True)
    assert rep["split"] == "val" and rep["samples"] == 22
    assert set(rep["language"]["conditions"]) == {"recorded", "other_task", "empty"}
    assert rep["language"]["wording_robustness"] == {} and "ood" in rep
    assert (tmp_path / "eval" / "report.md").is_file()


def test_a_config_whose_model_and_robot_disagree_cannot_be_built():
    import dataclasses

    cfg = load_config("weighted_sum")
    with pytest.raises(ConfigError, match="disagrees with the model"):
        dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, cameras=["camera", "top_camera"]))
