"""select_latest on arrays and on a hand-made bag with known stamps (missing and stale inputs)."""

import json

import numpy as np
import pytest

from trimodal_ros.data import bags as B
from trimodal_ros.data import messages as M
from trimodal_ros.data.align import MISSING, STALE, alignment_counts, select_latest
from trimodal_ros.data.dataset import BagDataset

S = 1_000_000_000


def test_select_latest_basics():
    stamps = [1.0, 2.0, 2.0, 3.0]
    assert select_latest(stamps, 0.5) == MISSING
    assert select_latest(stamps, 1.0) == 0  # at the stamp counts
    assert select_latest(stamps, 2.5) == 2  # ties keep the later one
    assert select_latest(stamps, 9.0) == 3
    assert select_latest(stamps, 9.0, max_age=1.0) == STALE
    out = select_latest(stamps, np.array([0.0, 1.5, 3.5, 5.0]), max_age=1.0)
    assert out.dtype == np.int64 and out.tolist() == [MISSING, 0, 3, STALE]
    assert alignment_counts(out) == {"ok": 2, "missing": 1, "stale": 1}
    assert select_latest([], 1.0) == MISSING
    with pytest.raises(ValueError, match="sorted"):
        select_latest([2.0, 1.0], 1.5)


def _known_bag(path):
    """Camera every 100 ms from t=1.0 s. Joint states start at 1.15 s (frames 1.0 and 1.1 have
    none: MISSING) and pause between 1.45 and 1.85 s (frame 1.8 sees a 0.35 s old one: STALE)."""
    cam = [(1000 + 100 * i) / 1e3 for i in range(12)]
    js = [ms / 1e3 for ms in (1150, 1250, 1350, 1450, 1850, 1950, 2050)]
    msgs = [("/instruction", M.string_msg("reach the goal"), int(0.9 * S))]
    for t in cam:
        ns = int(round(t * S))
        msgs.append(("/camera/image_raw", M.image_msg(np.full((8, 8, 3), int(t * 10), np.uint8), ns, "corner")))
        msgs.append(("/expert/action", M.action_msg([t, 0, 0, 0], ns)))
    for t in js:
        msgs.append(("/joint_states", M.joint_state_msg(["j"], [t], [0.0], int(round(t * S)))))
    B.write_bag(path, msgs)
    (path / "episode.json").write_text(json.dumps({"task": "reach-v3", "layout": 0}))
    return np.array(cam), np.array(js)


def test_alignment_on_a_bag(tmp_path):
    cam, js = _known_bag(tmp_path / "ep")
    bag = B.read_bag(tmp_path / "ep")
    cam_s = bag.header_stamps_s("/camera/image_raw")
    js_s = bag.header_stamps_s("/joint_states")
    assert np.allclose(cam_s, cam) and np.allclose(js_s, js)
    idx = select_latest(js_s, cam_s, max_age=0.3)
    # frames 1.0, 1.1: missing; 1.2 -> 1.15 ... 1.5, 1.6, 1.7 -> 1.45 (up to 0.25 s old: ok);
    # 1.8 -> 1.45 is 0.35 s old: stale; 1.9 -> 1.85; 2.0 -> 1.95; 2.1 -> 2.05
    expect = [MISSING, MISSING, 0, 1, 2, 3, 3, 3, STALE, 4, 5, 6]
    assert idx.tolist() == expect
    assert alignment_counts(idx) == {"ok": 9, "missing": 2, "stale": 1}


def test_dataset_drops_and_counts_missing_and_stale(tmp_path):
    cam, js = _known_bag(tmp_path / "ep")
    ds = BagDataset(tmp_path, joint_names=["j"], use_velocities=False, max_input_age=0.3, verbose=False)
    assert len(ds) == 9
    assert ds.dropped["missing_joint_state"] == 2 and ds.dropped["stale_joint_state"] == 1
    assert [ds[i]["step"] for i in range(len(ds))] == [2, 3, 4, 5, 6, 7, 9, 10, 11]
    # the proprio of each sample is the joint state select_latest picked
    expect_pos = [js[i] for i in [0, 1, 2, 3, 3, 3, 4, 5, 6]]
    assert np.allclose([ds[i]["proprio"][0] for i in range(len(ds))], expect_pos)
    assert all(ds[i]["instruction"] == "reach the goal" for i in range(len(ds)))
    # a tighter max age drops more, a looser one fewer
    assert len(BagDataset(tmp_path, joint_names=["j"], max_input_age=0.1, verbose=False)) == 7
    assert len(BagDataset(tmp_path, joint_names=["j"], max_input_age=None, verbose=False)) == 10
