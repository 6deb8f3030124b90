"""`trimodal-ros generate` for real (short episodes, small images), read back with rosbags."""

import json

import numpy as np
import pytest

from trimodal_ros.cli import main
from trimodal_ros.config import SAWYER_JOINTS
from trimodal_ros.decode import image_from_msg, joints_from_msg
from trimodal_ros.interface import ACTION_NAMES, SIM_STATE_NAMES
from trimodal_ros.data import bags as B
from trimodal_lab import metaworld as mw
from trimodal_ros.data.instructions import MT10, MT50, PARAPHRASES, instruction_for, paraphrases, resolve_tasks

TASKS = ["reach-v3", "drawer-close-v3"]
STEPS, SIZE = 15, 64


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    rc = main(["generate", "--tasks", ",".join(TASKS), "--episodes", "1", "--out", str(d),
               "--size", str(SIZE), "--max-steps", str(STEPS), "--keep-failures", "--seed", "3"])
    assert rc == 0
    return d


def test_bags_read_back(out):
    bags = B.find_bags(out)
    assert [b.name for b in bags] == [mw.episode_name(t, 3, 0) for t in sorted(TASKS)]
    for path in bags:
        meta = json.loads((path / "episode.json").read_text())
        bag = B.read_bag(path)
        assert bag.msgtypes == {mw.TOPIC_IMAGE: "sensor_msgs/msg/Image",
                                mw.TOPIC_INSTRUCTION: "std_msgs/msg/String",
                                mw.TOPIC_JOINTS: "sensor_msgs/msg/JointState",
                                mw.TOPIC_ACTION: "sensor_msgs/msg/JointState",
                                mw.TOPIC_STATE: "sensor_msgs/msg/JointState"}
        n = meta["length"]
        assert 1 <= n <= STEPS and all(len(bag.messages[t]) == n for t in
                                       (mw.TOPIC_IMAGE, mw.TOPIC_JOINTS, mw.TOPIC_ACTION, mw.TOPIC_STATE))
        # stamps: simulation time, 12.5 ms apart, identical across the per-step topics
        cam = np.array([B.stamp_ns(m) for m in bag.messages[mw.TOPIC_IMAGE]])
        assert np.all(np.diff(cam) == 12_500_000) and np.array_equal(cam, bag.stamps[mw.TOPIC_IMAGE])
        for t in (mw.TOPIC_JOINTS, mw.TOPIC_ACTION, mw.TOPIC_STATE):
            assert np.array_equal([B.stamp_ns(m) for m in bag.messages[t]], cam)
        # the simulator's object, goal and hand: named, in the table's range, the goal fixed for the
        # episode, the hand moving
        st = np.stack([joints_from_msg(m, SIM_STATE_NAMES)[0] for m in bag.messages[mw.TOPIC_STATE]])
        assert st.shape == (n, 9) and np.all(np.abs(st[:, :2]) < 1.5) and np.all(st[:, 2] > -0.1)
        assert np.ptp(st[:, 3:6], axis=0).max() == 0 and 0.3 < st[0, 4] < 1.2
        assert np.ptp(st[:, 6:], axis=0).max() > 1e-2 and np.all(st[:, 8] > 0)
        assert bag.stamps[mw.TOPIC_INSTRUCTION].tolist() == [cam[0]]
        # joints: the Sawyer's real names with positions and velocities that change
        js = bag.messages[mw.TOPIC_JOINTS]
        assert all(list(m.name) == SAWYER_JOINTS for m in js)
        pos = np.stack([m.position for m in js])
        assert pos.shape == (n, 9) and np.stack([m.velocity for m in js]).shape == (n, 9)
        assert np.ptp(pos[:, :7], axis=0).max() > 1e-3  # the arm moved
        # images: rgb8, upright size, not blank
        for m in bag.messages[mw.TOPIC_IMAGE]:
            assert (m.encoding, m.height, m.width, m.header.frame_id) == ("rgb8", SIZE, SIZE, "corner")
        img = image_from_msg(bag.messages[mw.TOPIC_IMAGE][0])
        assert img.shape == (SIZE, SIZE, 3) and img.std() > 10
        # actions: 4-D, named, within the env's [-1, 1]
        acts = np.stack([joints_from_msg(m, ACTION_NAMES)[0] for m in bag.messages[mw.TOPIC_ACTION]])
        assert acts.shape == (n, 4) and np.abs(acts).max() <= 1 and np.abs(acts).max() > 0
        # metadata in episode.json and in metadata.yaml custom_data
        assert json.loads(bag.custom_data[mw.CUSTOM_DATA_KEY])["task"] == meta["task"]
        assert meta["layout"] == mw.episode_layout(meta["task"], 3, 0)
        assert meta["layout_split"] == mw.layout_split(meta["layout"])
        assert meta["instruction"] == bag.messages[mw.TOPIC_INSTRUCTION][0].data
        assert meta["instruction"] in paraphrases(meta["task"], meta["paraphrase_split"])
        assert (meta["camera"], meta["image_size"], meta["seed"], meta["success"]) == ("corner", [SIZE, SIZE], 3, False)


def test_frames_are_rotated_upright(out):
    path = out / mw.episode_name("reach-v3", 3, 0)
    meta = json.loads((path / "episode.json").read_text())
    bag = B.read_bag(path, [mw.TOPIC_IMAGE, mw.TOPIC_STATE])
    first = image_from_msg(bag.messages[mw.TOPIC_IMAGE][0])
    scene = mw.SawyerScene("reach-v3", "corner", SIZE)
    try:
        obs = scene.reset(meta["layout"])
        raw = scene.render_raw()
        # the first recorded state is the scene's: its puck, the goal the expert reaches for, the gripper
        state = joints_from_msg(bag.messages[mw.TOPIC_STATE][0], SIM_STATE_NAMES)[0]
        np.testing.assert_allclose(state[3:6], scene.env._target_pos, atol=1e-9)
        np.testing.assert_allclose(state[:3], scene.data.body("obj").xpos, atol=1e-6)
        np.testing.assert_allclose(state[6:], obs[:3], atol=1e-6)  # the hand the observation reports
    finally:
        scene.close()
    assert scene.upside_down and meta["rotated_180"]
    rot = raw[::-1, ::-1].astype(int)
    assert np.abs(first - rot).mean() < 1.0  # the recorded frame is the raw render turned 180°
    assert np.abs(first - raw.astype(int)).mean() > 10


def test_rerun_skips_and_failures_are_not_kept(out, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.mcap")}
    rep = mw.generate(TASKS, 1, out, size=SIZE, seed=3, max_steps=STEPS, keep_failures=True, progress=False)
    assert [r.status for r in rep.results] == ["exists", "exists"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mcap")} == before
    with pytest.raises(mw.GenerateError, match="size"):
        mw.generate(TASKS, 1, out, size=32, seed=3, max_steps=STEPS, progress=False)
    # without --keep-failures a 3-step episode (no success) leaves no bag, only a marker
    (tmp_path / f"{B.PARTIAL_PREFIX}{mw.episode_name('reach-v3', 0, 0)}").mkdir()  # from a crash
    rc = main(["generate", "--tasks", "reach-v3", "--episodes", "1", "--out", str(tmp_path),
               "--size", "32", "--max-steps", "3"])
    assert rc == 1
    assert B.find_bags(tmp_path) == [] and not list(tmp_path.glob(f"{B.PARTIAL_PREFIX}*"))
    assert (tmp_path / f".failed-{mw.episode_name('reach-v3', 0, 0)}.json").is_file()
    rep = mw.generate("reach-v3", 1, tmp_path, size=32, max_steps=3, progress=False)
    assert [r.status for r in rep.results] == ["failed-before"]


def test_after_success_records_the_expert_holding_the_goal(tmp_path):
    """--after-success N: the same episode, N steps longer, the expert still closing in on the goal."""
    runs = {}
    for n in (0, 6):
        rep = mw.generate("reach-v3", 1, tmp_path / str(n), size=32, seed=3, max_steps=120, progress=False,
                          after_success=n)
        (r,) = rep.of("kept")
        bag = B.read_bag(r.path)
        runs[n] = (json.loads((r.path / "episode.json").read_text()),
                   np.stack([joints_from_msg(m, SIM_STATE_NAMES)[0] for m in bag.messages[mw.TOPIC_STATE]]),
                   np.stack([joints_from_msg(m, ACTION_NAMES)[0] for m in bag.messages[mw.TOPIC_ACTION]]))
    (m0, _, a0), (m6, s6, a6) = runs[0], runs[6]
    assert m0["success"] and m6["success"] and m0["first_success_step"] == m6["first_success_step"]
    assert (m0["after_success"], m6["after_success"]) == (0, 6)
    assert m0["length"] == m0["first_success_step"] + 1 and m6["length"] == m0["length"] + 6
    assert len(s6) == len(a6) == m6["length"] and np.allclose(a6[:len(a0)], a0)  # the same episode, longer
    dist = np.linalg.norm(s6[:, 6:] - s6[:, 3:6], axis=1)  # hand to goal
    assert dist[-1] <= dist[len(a0) - 1] and np.abs(a6[len(a0):, :3]).max() < 1  # closing in, not saturated
    with pytest.raises(mw.GenerateError, match="after_success=6"):
        mw.generate("reach-v3", 1, tmp_path / "6", size=32, seed=3, max_steps=120, progress=False)
    with pytest.raises(ValueError, match="after_success"):
        mw.generate("reach-v3", 1, tmp_path / "x", size=32, after_success=-1, progress=False)


def test_dataset_on_generated_bags(out):
    from trimodal_ros.data.dataset import BagDataset

    ds = BagDataset(out, chunk=3, verbose=False)
    assert len(ds) == 2 * STEPS and ds.frames.shape[1:] == (SIZE, SIZE, 3)
    bag = B.read_bag(ds.episodes[0].path)
    acts = np.stack([joints_from_msg(m, ACTION_NAMES)[0] for m in bag.messages[mw.TOPIC_ACTION]])
    x = ds[4]
    assert np.allclose(x["actions"], acts[4:7])
    assert np.allclose(x["proprio"][:9], bag.messages[mw.TOPIC_JOINTS][4].position)
    assert np.array_equal(x["image"], image_from_msg(bag.messages[mw.TOPIC_IMAGE][4]))


def test_an_extra_layout_is_recorded_as_a_new_train_scene(tmp_path):
    """Episode 57 records extra layout 57: a scene the benchmark's 50 do not have, in the train split."""
    from trimodal_ros.data.dataset import BagDataset

    scene = mw.SawyerScene("reach-v3", "corner", SIZE, max_steps=STEPS)
    try:
        r = mw.record_episode(scene, tmp_path, seed=3, episode=57, max_steps=STEPS, keep_failures=True)
        first = {}
        for layout in (7, 57):
            scene.reset(layout)
            first[layout] = scene.render()
    finally:
        scene.close()
    meta = json.loads((r.path / "episode.json").read_text())
    assert (r.layout, meta["layout"], meta["layout_split"], meta["paraphrase_split"]) == (57, 57, "train", "train")
    recorded = image_from_msg(B.read_bag(r.path, [mw.TOPIC_IMAGE]).messages[mw.TOPIC_IMAGE][0])
    assert np.array_equal(recorded, first[57]) and not np.array_equal(first[7], first[57])
    assert len(BagDataset(tmp_path, split="train", verbose=False)) == STEPS
    assert len(BagDataset(tmp_path, split="val", verbose=False).episodes) == 0


def test_layouts_and_instructions():
    assert len(mw.layouts("train")) == 35 and mw.layouts("val") == list(range(35, 40))
    assert mw.layouts("heldout") == list(range(40, 50))
    splits = [set(mw.layouts(s)) for s in ("train", "val", "heldout")]
    assert sum(map(len, splits)) == 50 and set.union(*splits) == set(range(50))  # disjoint, complete
    eps = [mw.episode_layout("push-v3", 0, e) for e in range(50)]
    assert sorted(eps) == list(range(50))  # 50 episodes visit every layout once
    assert eps == [mw.episode_layout("push-v3", 0, e) for e in range(50)]  # deterministic
    assert eps != [mw.episode_layout("push-v3", 1, e) for e in range(50)]  # the seed matters
    # past the benchmark's 50: extra train layouts, new placements from Meta-World's own sampler
    assert [mw.episode_layout("push-v3", 0, e) for e in (50, 51, 99, 100)] == [50, 51, 99, 100]
    assert mw.layout_split(50) == mw.layout_split(1234) == "train"
    for bad in (-1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="layout"):
            mw.layout_split(bad)
    import pickle

    def goal(layout):
        return pickle.loads(mw.layout_task("push-v3", layout).data)["rand_vec"]

    assert np.array_equal(goal(7), goal(7)) and mw.layout_task("push-v3", 7) is mw.benchmark("push-v3").train_tasks[7]
    base = [goal(i) for i in range(50)]
    extra = [goal(i) for i in (50, 57, 99, 100)]
    assert all(not np.allclose(x, b) for x in extra for b in base)  # none repeats a benchmark scene
    assert len({x.tobytes() for x in extra}) == 4
    import metaworld

    assert MT50 == list(metaworld.env_dict.MT50_V3) and MT10 == list(metaworld.env_dict.MT10_V3)
    assert set(PARAPHRASES) == set(MT50)
    for task, ps in PARAPHRASES.items():
        assert len(ps) >= 5 and len(set(ps)) == len(ps), task
        assert not set(paraphrases(task, "train")) & set(paraphrases(task, "heldout"))
    assert instruction_for("reach-v3", np.random.default_rng(0), "heldout") in paraphrases("reach-v3", "heldout")
    assert resolve_tasks("mt10") == MT10 and resolve_tasks("reach-v3, push-v3") == ["reach-v3", "push-v3"]
    with pytest.raises(ValueError, match="reach-v2"):
        resolve_tasks("reach-v2")


def test_interrupt_keeps_finished_bags(tmp_path, monkeypatch):
    real_step = mw.SawyerScene.step

    def step(self, action):
        if self.task == "drawer-close-v3" and self.env.curr_path_length == 2:
            raise KeyboardInterrupt
        return real_step(self, action)

    monkeypatch.setattr(mw.SawyerScene, "step", step)
    with pytest.raises(KeyboardInterrupt):
        mw.generate(TASKS, 1, tmp_path, size=32, max_steps=4, keep_failures=True, progress=False)
    assert [p.name for p in B.find_bags(tmp_path)] == [mw.episode_name("reach-v3", 0, 0)]
    assert not list(tmp_path.glob(f"{B.PARTIAL_PREFIX}*"))  # the half-written bag is gone
    assert main(["generate", "--tasks", "reach-v9", "--episodes", "1", "--out", str(tmp_path)]) == 2


def test_imports_stay_light():
    import subprocess
    import sys

    code = ("import sys, trimodal_ros.data.dataset, trimodal_ros.data.bags; "
            "print(sorted(m for m in ('rclpy', 'mujoco', 'metaworld') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_camera_specs_name_each_camera_and_say_what_is_wrong():
    assert mw.camera_spec("corner") == {"camera": "corner"}
    assert mw.camera_spec("corner, top_camera=topview") == {"camera": "corner", "top_camera": "topview"}
    assert mw.camera_spec("front=corner2") == {"front": "corner2"}
    for bad in ("corner,topview", "corner,top=topview,top=corner2", ""):
        with pytest.raises(ValueError, match="NAME=MUJOCO_CAM"):
            mw.camera_spec(bad)
    assert mw.sim_camera_spec(["camera"]) == "corner"
    assert mw.sim_camera_spec(["camera", "top_camera"]) == "corner,top_camera=topview"
    with pytest.raises(ValueError, match="no simulated camera for \\['left'\\]"):
        mw.sim_camera_spec(["camera", "left"])


def test_two_named_cameras_are_recorded_on_their_topics_and_read_as_views(tmp_path):
    """generate --camera corner,top_camera=topview: both views, same stamps, each the camera's own
    upright render; a two-camera dataset gives (2, H, W, 3) samples, and a one-camera folder is
    skipped with the missing topic named."""
    from trimodal_ros.data.dataset import BagDataset

    two, one = tmp_path / "two", tmp_path / "one"
    assert main(["generate", "--tasks", "reach-v3", "--episodes", "1", "--out", str(two), "--size", "32",
                 "--max-steps", "6", "--keep-failures", "--camera", "corner,top_camera=topview"]) == 0
    bag_dir = B.find_bags(two)[0]
    meta = json.loads((bag_dir / "episode.json").read_text())
    assert meta["cameras"] == {"camera": "corner", "top_camera": "topview"}
    assert "/top_camera/image_raw" in meta["topics"]
    bag = B.read_bag(bag_dir)
    corner, top = bag.messages[mw.TOPIC_IMAGE], bag.messages["/top_camera/image_raw"]
    assert len(corner) == len(top) == 6 and [m.header.frame_id for m in top[:1]] == ["topview"]
    assert [m.header.stamp.nanosec for m in corner] == [m.header.stamp.nanosec for m in top]
    scene = mw.SawyerScene("reach-v3", "topview", 32)
    try:
        scene.reset(meta["layout"])
        assert np.array_equal(scene.render(), image_from_msg(top[0]))  # the first frame, before any step
    finally:
        scene.close()
    ds = BagDataset(two, chunk=2, verbose=False, cameras=["camera", "top_camera"])
    assert len(ds) == 6 and ds[2]["image"].shape == (2, 32, 32, 3)
    assert np.array_equal(ds[2]["image"][1], image_from_msg(top[2]))
    assert np.array_equal(ds[2]["image"][0], image_from_msg(corner[2]))
    top_first = BagDataset(two, chunk=2, verbose=False, cameras=["top_camera", "camera"])  # any camera may lead
    assert len(top_first) == 6 and np.array_equal(top_first[2]["image"][0], image_from_msg(top[2]))
    assert main(["generate", "--tasks", "reach-v3", "--episodes", "1", "--out", str(one), "--size", "32",
                 "--max-steps", "6", "--keep-failures"]) == 0
    with pytest.warns(RuntimeWarning, match="top_camera"):
        ds1 = BagDataset(one, chunk=2, verbose=False, cameras=["camera", "top_camera"])
    assert len(ds1) == 0 and "/top_camera/image_raw" in ds1.skipped[0][1]


def test_a_bag_recorded_under_another_layout_table_is_not_reused(tmp_path):
    """A re-run reuses finished bags; one whose recorded layout split is not today's (datasets read
    the recorded split) is refused with the reason instead of silently mixing splits."""
    import json

    mw.generate(["reach-v3"], episodes=1, out=tmp_path, size=32, seed=0, max_steps=10, keep_failures=True,
                progress=False)
    (bag,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert mw.generate(["reach-v3"], episodes=1, out=tmp_path, size=32, seed=0, max_steps=10, keep_failures=True,
                       progress=False).results[0].status == "exists"
    meta = json.loads((bag / "episode.json").read_text())
    meta["layout_split"] = "train" if meta["layout_split"] != "train" else "val"
    (bag / "episode.json").write_text(json.dumps(meta))
    with pytest.raises(mw.GenerateError, match="layout table now says"):
        mw.generate(["reach-v3"], episodes=1, out=tmp_path, size=32, seed=0, max_steps=10, keep_failures=True,
                    progress=False)
