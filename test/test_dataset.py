"""BagDataset on hand-made episode bags: shapes, action chunks, padding, history, splits."""

import json

import numpy as np
import pytest
import torch

from trimodal_ros.config import SAWYER_JOINTS, ModelConfig
from trimodal_ros.data import bags as B
from trimodal_ros.data import messages as M
from trimodal_ros.data.bags import CUSTOM_DATA_KEY
from trimodal_ros.data.dataset import BagDataset, collate, dataset_stats
from trimodal_ros.data.episodes import episode_split
from trimodal_ros.data.instructions import paraphrases, task_id
from trimodal_lab.metaworld.layouts import layout_split
from trimodal_ros.interface import SIM_STATE_NAMES

DT = 12_500_000


def _episode(root, name, task, layout, n, size=(16, 20), sidecar=True, state=0):
    """n frames; action i = [i, -i, 0.5 i, ep] / 100, joint j of frame i = i + j/10; with ``state``
    a /sim/state of frame i = [i, 2i, 3i, layout, layout, 0, -i, 0, 1][:state] / 100 (every frame but the
    first; ``state`` 6 is a bag recorded before the hand was, 9 one with it)."""
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    acts = np.stack([np.arange(n), -np.arange(n), 0.5 * np.arange(n), np.full(n, layout)], 1) / 100
    frames = rng.integers(0, 255, (n, *size, 3), dtype=np.uint8)
    t0 = 5 * 10**9
    msgs = [("/instruction", M.string_msg(paraphrases(task)[0]), t0)]
    for i in range(n):
        t = t0 + i * DT
        pos = i + np.arange(len(SAWYER_JOINTS)) / 10
        msgs += [("/joint_states", M.joint_state_msg(SAWYER_JOINTS[::-1], pos[::-1], -pos[::-1], t)),
                 ("/camera/image_raw", M.image_msg(frames[i], t, "corner")),
                 ("/expert/action", M.action_msg(acts[i], t))]
        if state and i > 0:
            st = np.array([i, 2 * i, 3 * i, layout, layout, 0, -i, 0, 1][:state]) / 100
            msgs.append(("/sim/state", M.joint_state_msg(SIM_STATE_NAMES[:state], st, None, t, "world")))
    meta = {"task": task, "layout": layout, "layout_split": layout_split(layout), "success": True, "length": n}
    B.write_bag(root / name, msgs, {CUSTOM_DATA_KEY: json.dumps(meta)})
    if sidecar:
        (root / name / "episode.json").write_text(json.dumps(meta))
    return frames, acts.astype(np.float32)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("bags")
    data = {"a": _episode(r, "a", "reach-v3", 3, 10),
            "b": _episode(r, "b", "drawer-close-v3", 45, 6, sidecar=False),  # metadata via custom_data
            "c": _episode(r, "c", "push-v3", 12, 7)}
    return r, data


def test_items_shapes_and_values(root):
    r, data = root
    ds = BagDataset(r, chunk=4, verbose=False)
    assert len(ds) == 23 and [e.name for e in ds.episodes] == ["a", "b", "c"]
    x = ds[0]
    assert x["image"].dtype == np.uint8 and x["image"].shape == (16, 20, 3)
    assert x["proprio"].dtype == np.float32 and x["proprio"].shape == (18,)
    assert x["actions"].dtype == np.float32 and x["actions"].shape == (4, 4)
    assert x["action_mask"].dtype == bool and x["action_mask"].shape == (4,)
    assert (x["task"], x["task_id"], x["episode"], x["step"], x["layout"]) == \
        ("reach-v3", task_id("reach-v3"), "a", 0, 3)
    assert x["instruction"] == paraphrases("reach-v3")[0]
    for i in range(len(ds)):
        y = ds[i]
        frames, acts = data[y["episode"]]
        s = y["step"]
        assert np.array_equal(y["image"], frames[s])
        # proprio in SAWYER_JOINTS order although the bag lists them reversed
        pos = s + np.arange(9) / 10
        assert np.allclose(y["proprio"], np.concatenate([pos, -pos]))
        # the chunk is the recorded next K actions, the last one repeated past the end
        n = len(acts)
        want = acts[np.minimum(np.arange(s, s + 4), n - 1)]
        assert np.allclose(y["actions"], want)
        assert y["action_mask"].tolist() == [s + k < n for k in range(4)]
    last = ds[9]  # episode a's last frame: one real action, 3 padded copies
    assert last["step"] == 9 and last["action_mask"].tolist() == [True, False, False, False]
    assert np.allclose(last["actions"], data["a"][1][9])
    assert ds.memory_bytes >= 23 * 16 * 20 * 3


def test_action_history_in_proprio(root):
    r, data = root
    cfg = ModelConfig(action_history=3, use_velocities=False, chunk=2)
    ds = BagDataset.from_config(r, cfg, verbose=False)
    assert ds[0]["proprio"].shape == (cfg.proprio_dim,) == (9 + 12,)
    acts = data["a"][1]
    assert np.allclose(ds[1]["proprio"][9:], np.concatenate([np.zeros(8), acts[0]]))  # zero-filled
    assert np.allclose(ds[5]["proprio"][9:], acts[2:5].reshape(-1))  # oldest first


def test_layout_split_and_task_filter(root):
    r, _ = root
    assert {e.name for e in BagDataset(r, split="train", verbose=False).episodes} == {"a", "c"}
    held = BagDataset(r, split="heldout", verbose=False)
    assert {e.name for e in held.episodes} == {"b"} and {held[i]["layout"] for i in range(len(held))} == {45}
    assert len(BagDataset(r, tasks=["push-v3"], verbose=False)) == 7
    with pytest.raises(ValueError, match="split"):
        BagDataset(r, split="testing")
    # the recorder names an episode's split; a layout alone is never guessed into one
    assert episode_split({"layout": 45, "layout_split": "heldout"}) == "heldout" and episode_split({}) == "train"
    with pytest.raises(ValueError, match="no split"):
        episode_split({"layout": 45})


def test_collate_and_stats(root):
    r, _ = root
    ds = BagDataset(r, chunk=3, verbose=False)
    b = collate([ds[i] for i in (0, 12, 22)])
    assert b["image"].dtype == torch.uint8 and b["image"].shape == (3, 16, 20, 3)
    assert b["proprio"].shape == (3, 18) and b["actions"].shape == (3, 3, 4)
    assert b["action_mask"].dtype == torch.bool and b["task_id"].dtype == torch.long
    assert b["episode"] == ["a", "b", "c"] and len(b["instruction"]) == 3
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, collate_fn=collate)
    assert sum(len(batch["task"]) for batch in loader) == len(ds)
    st = dataset_stats(ds)
    assert st["actions"].shape == (23, 4)
    assert np.allclose(st["proprio_mean"], ds.proprio.mean(0)) and np.all(st["proprio_std"] > 0)


def test_corrupt_bag_is_skipped(tmp_path):
    _episode(tmp_path, "good", "reach-v3", 1, 5)
    _episode(tmp_path, "bad", "reach-v3", 2, 5)
    mcap = tmp_path / "bad" / "bad.mcap"
    mcap.write_bytes(mcap.read_bytes()[:-200])
    with pytest.warns(RuntimeWarning, match="bad"):
        ds = BagDataset(tmp_path, verbose=False)
    assert len(ds) == 5 and len(ds.skipped) == 1 and ds.skipped[0][0].name == "bad"
    assert "skipped bags: 1" in ds.summary()


def test_recorded_state_is_aligned_and_its_absence_is_a_skip(tmp_path):
    """state=True: each sample carries the /sim/state (object and goal) of its frame's stamp; a frame
    without one is dropped and counted, a bag without the topic (recorded before it existed) skipped
    with the reason. state=9 adds the hand, and skips a bag recorded before the hand was."""
    _episode(tmp_path, "with", "push-v3", 7, 6, state=9)
    _episode(tmp_path, "without", "push-v3", 8, 4)
    plain = BagDataset(tmp_path, verbose=False)
    assert len(plain) == 10 and plain.state is None and "state" not in plain[0]
    with pytest.warns(RuntimeWarning, match="no /sim/state"):
        ds = BagDataset(tmp_path, chunk=2, verbose=False, state=True)
    assert [e.name for e in ds.episodes] == ["with"] and ds.skipped[0][0].name == "without"
    assert len(ds) == 5 and ds.dropped["missing_state"] == 1  # the first frame has none at or before it
    assert ds.state.dtype == np.float32 and ds.state.shape == (5, 6)
    for j in range(5):
        i = ds[j]["step"]
        assert i == j + 1
        np.testing.assert_allclose(ds[j]["state"], np.array([i, 2 * i, 3 * i, 7, 7, 0]) / 100, rtol=1e-6)
    b = collate([ds[0], ds[4]])
    assert b["state"].shape == (2, 6) and b["state"].dtype == torch.float32
    # state=9 adds the hand; a bag recorded before the hand was is skipped with the reason
    _episode(tmp_path, "old", "push-v3", 9, 4, state=6)
    with pytest.warns(RuntimeWarning):
        ds9 = BagDataset(tmp_path, chunk=2, verbose=False, state=9)
    assert [e.name for e in ds9.episodes] == ["with"] and ds9.state.shape == (5, 9)
    reasons = {p.name: str(r) for p, r in ds9.skipped}
    assert "hand_x" in reasons["old"], reasons
    np.testing.assert_allclose(ds9[0]["state"][6:], np.array([-1, 0, 1]) / 100, rtol=1e-6)
    with pytest.raises(ValueError, match="state"):
        BagDataset(tmp_path, verbose=False, state=10)
