"""The second robot end to end, with no Meta-World code on its path: gymnasium's two-joint Reacher in
joint space, scripted demonstrations recorded in its own topic layout (jpeg CompressedImage camera,
its joint names, a JointTrajectory command topic), read through its robot spec, trained on, and
served closed-loop through sim_node (sim:=reacher) ↔ vla_node over DDS; the in-process path takes
the very same actions."""

import dataclasses
import math
import sys

import numpy as np
import pytest

from trimodal_lab.reacher import scene as S


def test_inverse_kinematics_puts_the_fingertip_on_the_target():
    import mujoco

    sc = S.ReacherScene(size=32)
    try:
        for lay in (0, 1, 2000, 3999):
            xy, q = S.layout_state(lay)
            assert 0.07 <= np.linalg.norm(xy) <= 0.19 and abs(math.atan2(xy[1], xy[0])) <= 0.75 * math.pi + 1e-9
            goal = S.inverse_kinematics(xy, q)
            sc.reset(lay)
            sc.data.qpos[sc.qadr[:2]] = goal
            mujoco.mj_forward(sc.model, sc.data)
            assert np.allclose(sc.fingertip(), xy, atol=1e-6)  # the link lengths are the model's
    finally:
        sc.close()
    assert S.layout_split(999) == "train" and S.layout_split(1000) == "val" and S.layout_split(3000) == "test"
    with pytest.raises(ValueError, match="outside"):
        S.layout_split(4000)
    sim = S.ReacherSim()  # what sim_node checks a requested layout with
    assert sim.check_layout(np.int64(2001)) == 2001
    for bad in (4000, -1, 1.5, True):
        with pytest.raises(ValueError):
            sim.check_layout(bad)


def test_the_scripted_expert_reaches_and_a_still_arm_does_not():
    from trimodal_lab.reacher.cli import expert_report

    layouts = S.split_layouts("heldout", 20)
    e = expert_report(layouts)["overall"]
    assert e["success_rate"] == 1.0 and e["mean_length"] < 20
    sc = S.ReacherScene(size=32)
    try:  # not vacuous: holding the start joints touches no target
        hits = 0
        for lay in layouts:
            sc.reset(lay)
            q, _ = sc.joints()
            for _ in range(10):
                _, info = sc.step(q)
            hits += info["success"] >= 1.0
        assert hits == 0
    finally:
        sc.close()


@pytest.fixture(scope="module")
def reacher_bags(tmp_path_factory):
    from trimodal_lab.reacher.record import generate

    root = tmp_path_factory.mktemp("reacher") / "bags"
    metas = generate(root, [0, 1, 2, 3, 1000, 1001], progress=False)
    assert len(metas) == 6 and all(m["success"] for m in metas)
    assert generate(root, [0, 1], progress=False) == []  # resumable: finished bags are kept
    return root


def test_bags_in_the_reacher_layout_read_through_its_spec(reacher_bags):
    from trimodal_ros.data.bags import read_bag
    from trimodal_ros.data.dataset import BagDataset
    from trimodal_ros.data.inspect import inspect_bag
    from trimodal_ros.robot import load_robot

    robot = load_robot("gym_reacher")
    bag = reacher_bags / "reacher-train-0000"
    found = inspect_bag(bag, robot)["dataset"]
    assert all(v.startswith("found") for v in found.values()), found
    ds = BagDataset(reacher_bags, chunk=4, split="train", robot=robot, verbose=False)
    assert len(ds.episodes) == 4 and {e.task for e in ds.episodes} == {S.TASK}
    s = ds[0]
    assert s["image"].shape == (96, 96, 3) and s["instruction"] == S.INSTRUCTION
    # the action is the expert's JointTrajectory command, by joint name, in rad
    cmd = read_bag(bag, ["/reacher/arm_controller/joint_trajectory"])
    msgs = cmd.messages["/reacher/arm_controller/joint_trajectory"]
    assert list(msgs[0].joint_names) == ["joint0", "joint1"]
    first = [np.asarray(m.points[0].positions) for m in msgs[:4]]
    assert np.allclose(s["actions"], np.stack(first), atol=1e-6)
    assert len(BagDataset(reacher_bags, split="val", robot=robot, verbose=False).episodes) == 2


@pytest.mark.ros
def test_trained_on_reacher_bags_served_through_ros_as_in_process(reacher_bags, tmp_path):
    from trimodal_lab.reacher.cli import rollout_in_process
    from trimodal_ros.config import load_config
    from trimodal_lab.ros.rollout import PolicySource, compare_traces, rollout_through_ros
    from trimodal_lab.sim.rollout import RolloutSpec
    from trimodal_ros.train.trainer import train

    cfg = load_config("reacher_policy")
    assert cfg.robot.name == "gym_reacher" and cfg.model.joint_names == ["joint0", "joint1"]
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4, batch_size=8, warmup_steps=1,
                                                             log_every=2, ckpt_every=4))
    ckpt = str(train(cfg, reacher_bags, tmp_path / "run", progress=False).checkpoint)
    layouts = S.split_layouts("val", 2)
    t_in, t_ros = [], []
    r_in = rollout_in_process(ckpt, layouts, max_steps=8, progress=False, traces=t_in)
    spec = RolloutSpec(plan=[(S.TASK, lay, S.INSTRUCTION) for lay in layouts], max_steps=8)
    r_ros = rollout_through_ros(spec, PolicySource(checkpoint=ckpt), sim="reacher", progress=False, traces=t_ros,
                                action_timeout=30.0)
    ros = r_ros["ros"]
    assert ros["sim.refused_actions"] == 0 and ros["sim.unmatched_actions"] == 0 and ros["sim.frames"] >= 2
    assert [e["layout"] for e in r_ros["episodes"]] == layouts
    agree = compare_traces(t_in, t_ros)
    assert agree["lengths_equal"] and agree["steps_compared"] > 0
    assert agree["identical_steps"] == agree["steps_compared"], agree
    assert r_in["overall"]["success_rate"] == r_ros["overall"]["success_rate"]
    # not vacuous: the policy's joint targets move the arm
    assert len(np.unique(np.round(np.concatenate(t_in), 6), axis=0)) > 1


def test_no_meta_world_code_on_the_reacher_path():
    """Expert, bags, dataset, sim_node's reacher and the node modules, in a fresh interpreter: neither
    the metaworld package nor the package's Meta-World module gets imported."""
    import subprocess

    code = ("import sys, tempfile\n"
            "from trimodal_lab.reacher.cli import expert_report\n"
            "from trimodal_lab.reacher.record import generate\n"
            "from trimodal_ros.data.bags import read_bag\n"
            "from trimodal_lab.sim.scenes import get_sim\n"
            "import trimodal_lab.ros.sim_node, trimodal_lab.ros.rollout\n"
            "assert expert_report([2000])['overall']['success_rate'] == 1.0\n"
            "d = tempfile.mkdtemp(); generate(d, [5], progress=False)\n"
            "get_sim('reacher').robot({})\n"
            "bad = sorted(m for m in sys.modules if 'metaworld' in m)\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
