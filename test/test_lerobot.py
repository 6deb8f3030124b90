"""Bags ↔ LeRobotDataset v3.0: a round trip on real recorded bags keeps every frame's state, action,
task and split (images through lossless PNG, then the spec's jpeg camera); datasets the importer
cannot read are refused with the reason; and, where LeRobot's own dataset library is installed
beside the venv (``LEROBOT_PYTHONPATH``, requirements-lerobot.txt; CI does), LeRobot loads what the
exporter writes and the importer reads what LeRobot writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trimodal_ros.data.dataset import BagDataset
from trimodal_ros.data.lerobot import LeRobotError, export_bags, import_dataset, read_dataset
from trimodal_ros.robot import load_robot

LEROBOT = os.environ.get("LEROBOT_PYTHONPATH", "")
needs_lerobot = pytest.mark.skipif(
    not (LEROBOT and Path(LEROBOT).is_dir()) and not os.environ.get("TRIMODAL_REQUIRE_LEROBOT"),
    reason="LeRobot's dataset library is not installed beside the venv (LEROBOT_PYTHONPATH; requirements-lerobot.txt)")


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    from trimodal_lab.reacher.record import generate

    root = tmp_path_factory.mktemp("lerobot") / "bags"
    generate(root, [0, 1, 1000, 2000], size=48, progress=False)
    return root


@pytest.fixture(scope="module")
def exported(bags, tmp_path_factory):
    out = tmp_path_factory.mktemp("lerobot") / "reacher"
    info = export_bags(bags, out, load_robot("gym_reacher"))
    return out, info


def test_export_then_import_keeps_every_frame(bags, exported, tmp_path):
    robot = load_robot("gym_reacher")
    out, info = exported
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20 and info["total_episodes"] == 4
    assert info["splits"] == {"train": "0:2", "val": "2:3", "heldout": "3:4"}
    assert info["features"]["action"]["names"] == ["joint0", "joint1"]
    with pytest.raises(LeRobotError, match="exists"):
        export_bags(bags, out, robot)
    back = import_dataset(out, tmp_path / "back", robot)
    assert len(back) == 4 and import_dataset(out, tmp_path / "back", robot) == []  # resumable
    for split in ("train", "val", "heldout"):
        a = BagDataset(bags, chunk=1, split=split, robot=robot, verbose=False)
        b = BagDataset(tmp_path / "back", chunk=1, split=split, robot=robot, verbose=False)
        assert len(a) == len(b) > 0
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert np.allclose(x["proprio"], y["proprio"], atol=1e-5)
            assert np.allclose(x["actions"], y["actions"], atol=1e-5)
            assert x["instruction"] == y["instruction"]
            assert np.abs(x["image"].astype(int) - y["image"].astype(int)).mean() < 4  # jpeg once more
    d = read_dataset(out)
    assert d["tasks"] == {0: "touch the red target with the fingertip"} and len(d["frames"]["index"]) == \
        info["total_frames"]


def test_datasets_it_cannot_read_are_refused_with_the_reason(exported, tmp_path):
    import shutil

    out, _ = exported
    with pytest.raises(LeRobotError, match="shape"):
        import_dataset(out, tmp_path / "x", load_robot("metaworld_sawyer"), camera_keys=["observation.images.overhead"])
    video = tmp_path / "video"
    shutil.copytree(out, video)
    info = json.loads((video / "meta/info.json").read_text())
    info["features"]["observation.images.overhead"]["dtype"] = "video"
    (video / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(LeRobotError, match="video"):
        read_dataset(video)
    info["codebase_version"] = "v2.1"
    (video / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(LeRobotError, match="v3"):
        read_dataset(video)
    with pytest.raises(LeRobotError, match="info.json"):
        read_dataset(tmp_path / "nothing")


def _lerobot(code: str, *args) -> str:
    env = {**os.environ, "PYTHONPATH": LEROBOT, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=600, cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@needs_lerobot
def test_lerobot_loads_what_export_writes(exported):
    out, info = exported
    got = json.loads(_lerobot(
        "import sys, json\n"
        "from ledataset.datasets.lerobot_dataset import LeRobotDataset\n"
        "ds = LeRobotDataset('local/reacher', root=sys.argv[1])\n"
        "x = ds[len(ds) - 1]\n"
        "print(json.dumps({'n': len(ds), 'episodes': ds.meta.total_episodes, 'fps': ds.fps, 'task': x['task'],\n"
        "  'image': list(x['observation.images.overhead'].shape), 'action': x['action'].tolist(),\n"
        "  'episode': int(x['episode_index'])}))\n", out).splitlines()[-1])
    frames = read_dataset(out)["frames"]
    assert got["n"] == info["total_frames"] and got["episodes"] == 4 and got["fps"] == 20
    assert got["task"] == "touch the red target with the fingertip" and got["image"] == [3, 48, 48]
    assert np.allclose(got["action"], frames["action"][-1]) and got["episode"] == 3


@needs_lerobot
def test_import_reads_what_lerobot_writes(tmp_path):
    _lerobot(
        "import sys, numpy as np\n"
        "from ledataset.datasets.lerobot_dataset import LeRobotDataset\n"
        "f = {'observation.images.overhead': {'dtype': 'image', 'shape': (32, 32, 3),\n"
        "                                     'names': ['height', 'width', 'channels']},\n"
        "     'observation.state': {'dtype': 'float32', 'shape': (2,), 'names': ['joint0', 'joint1']},\n"
        "     'action': {'dtype': 'float32', 'shape': (2,), 'names': ['joint0', 'joint1']}}\n"
        "ds = LeRobotDataset.create('local/made', fps=20, features=f, root=sys.argv[1], use_videos=False)\n"
        "for e, task in enumerate(['touch the red target', 'wave']):\n"
        "    for k in range(5 + e):\n"
        "        ds.add_frame({'observation.images.overhead': np.full((32, 32, 3), 20 * k + 100 * e, np.uint8),\n"
        "                      'observation.state': np.array([k, -k], np.float32) * 0.1 + e,\n"
        "                      'action': np.array([k + 1, -k - 1], np.float32) * 0.1 + e, 'task': task})\n"
        "    ds.save_episode()\n"
        "getattr(ds, 'finalize', lambda: None)()\n", tmp_path / "made")
    robot = load_robot("gym_reacher")
    assert len(import_dataset(tmp_path / "made", tmp_path / "bags", robot)) == 2
    ds = BagDataset(tmp_path / "bags", chunk=1, robot=robot, verbose=False)
    assert [e.n_samples for e in ds.episodes] == [5, 6] and [e.task for e in ds.episodes] == ["touch the red target",
                                                                                            "wave"]
    last = ds[len(ds) - 1]
    assert np.allclose(last["proprio"][:2], [1.5, 0.5], atol=1e-6) and np.allclose(last["actions"][0], [1.6, 0.4])
    assert abs(int(last["image"].mean()) - 200) <= 2
