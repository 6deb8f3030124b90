"""Bag helpers: message round trips, and clear errors for truncated / corrupt bags."""

import json
import shutil

import numpy as np
import pytest

from trimodal_ros.data import bags as B

from trimodal_ros.data import messages as M
from trimodal_ros.decode import BadInput, image_from_msg, joints_from_msg, stamp_ns
from trimodal_ros.interface import ACTION_NAMES


def _write(path, n=20, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    msgs = [("/instruction", M.string_msg("open the drawer"), 1_000_000_000)]
    for i in range(n):
        t = 1_000_000_000 + i * 12_500_000
        msgs += [("/camera/image_raw", M.image_msg(np.roll(img, i, axis=1), t, "corner")),
                 ("/joint_states", M.joint_state_msg(["a", "b", "c"], [i, 2 * i, 3 * i], [1, 2, 3], t)),
                 ("/expert/action", M.action_msg([0.1 * i, 0.2, -0.3, 1.0], t))]
    B.write_bag(path, msgs, {"k": "v"})
    (path / B.SIDECAR).write_text(json.dumps({"sha256": B.file_digests(path)}))
    return img


def test_roundtrip(tmp_path):
    img = _write(tmp_path / "bag")
    bag = B.read_bag(tmp_path / "bag")
    assert bag.msgtypes == {"/instruction": M.STRING, "/camera/image_raw": M.IMAGE,
                            "/joint_states": M.JOINT_STATE, "/expert/action": M.JOINT_STATE}
    assert bag.custom_data == {"k": "v"}
    stamps, images = bag.topic("/camera/image_raw")
    assert len(images) == 20 and np.all(np.diff(stamps) == 12_500_000)
    assert np.array_equal(image_from_msg(images[3]), np.roll(img, 3, axis=1))
    assert images[3].encoding == "rgb8" and images[3].header.frame_id == "corner"
    assert stamp_ns(images[3]) == stamps[3]
    js = bag.messages["/joint_states"][4]
    pos, vel = joints_from_msg(js, ["c", "a"])  # reordered by name
    assert pos.tolist() == [12.0, 4.0] and vel.tolist() == [3.0, 1.0] and pos.dtype == np.float32
    with pytest.raises(BadInput, match="zz") as e:
        joints_from_msg(js, ["a", "zz"])
    assert e.value.kind == "unknown_joint_names"  # "b" is not among the names asked for
    assert np.allclose(joints_from_msg(bag.messages["/expert/action"][5], ACTION_NAMES)[0], [0.5, 0.2, -0.3, 1.0])
    assert bag.messages["/instruction"][0].data == "open the drawer"
    with pytest.raises(B.BagError, match="no topic '/nope'"):
        bag.topic("/nope")
    only = B.read_bag(tmp_path / "bag", topics=["/nope"])  # no match means nothing, not everything
    assert len(only) == 0


def test_image_encodings_and_padding():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    msg = M.image_msg(rgb, 5)
    padded = M.msg_class(M.IMAGE)(header=msg.header, height=4, width=5, encoding="bgr8", is_bigendian=0,
                                  step=16, data=np.pad(rgb[..., ::-1].reshape(4, 15), ((0, 0), (0, 1))).reshape(-1))
    assert np.array_equal(image_from_msg(padded), rgb)
    msg.encoding = "mono16"
    with pytest.raises(BadInput, match="mono16"):
        image_from_msg(msg)
    with pytest.raises(ValueError, match="uint8"):
        M.image_msg(rgb.astype(np.float32), 0)


def test_truncated_bag_names_the_file(tmp_path):
    _write(tmp_path / "bag")
    mcap = tmp_path / "bag" / "bag.mcap"
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    with pytest.raises(B.BagError, match=r"bag\.mcap") as e:  # sha256 check names the file
        B.read_bag(tmp_path / "bag")
    assert str(tmp_path / "bag") in str(e.value)
    with pytest.raises(B.BagError, match="unreadable") as e:  # without the sidecar: the MCAP reader
        B.read_bag(tmp_path / "bag", verify=False)
    assert str(tmp_path / "bag") in str(e.value)


def test_flipped_bytes_are_caught_without_sidecar(tmp_path):
    _write(tmp_path / "bag")
    (tmp_path / "bag" / B.SIDECAR).unlink()
    mcap = tmp_path / "bag" / "bag.mcap"
    data = bytearray(mcap.read_bytes())
    pos = 8  # after the magic: records are opcode (1 byte), length (uint64 LE), body; 0x06 is a chunk
    while data[pos] != 0x06:
        pos += 9 + int.from_bytes(data[pos + 1:pos + 9], "little")
    mid = pos + 9 + int.from_bytes(data[pos + 1:pos + 9], "little") // 2  # the middle of the compressed messages
    data[mid:mid + 64] = bytes(64)
    mcap.write_bytes(bytes(data))
    with pytest.raises(B.BagError, match=str(tmp_path / "bag")):  # zstd frame checksum
        B.read_bag(tmp_path / "bag")


def test_folder_with_one_corrupt_bag(tmp_path):
    for name in ("a", "b", "c"):
        _write(tmp_path / name, seed=ord(name))
    mcap = tmp_path / "b" / "b.mcap"
    mcap.write_bytes(mcap.read_bytes()[:100])
    shutil.copytree(tmp_path / "a", tmp_path / f"{B.PARTIAL_PREFIX}d")  # being written: ignored
    (tmp_path / "e").mkdir()  # no metadata.yaml: not a bag
    assert [p.name for p in B.find_bags(tmp_path)] == ["a", "b", "c"]
    with pytest.warns(RuntimeWarning, match=r"skipping bag .*b:"):
        rep = B.read_bags(tmp_path)
    assert [b.path.name for b in rep.bags] == ["a", "c"]
    assert rep.n_skipped == 1 and rep.skipped[0][0] == tmp_path / "b"
    assert all(len(b.messages["/camera/image_raw"]) == 20 for b in rep.bags)


def test_missing_metadata_is_a_bag_error(tmp_path):
    _write(tmp_path / "bag")
    (tmp_path / "bag" / "metadata.yaml").unlink()
    with pytest.raises(B.BagError, match="no metadata.yaml"):
        B.read_bag(tmp_path / "bag")
    with pytest.raises(B.BagError, match="does not exist"):
        B.read_bag(tmp_path / "nothing")


def test_aborted_writer_leaves_no_finished_bag(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with B.BagWriter(tmp_path / "bag") as w:
            w.write("/instruction", M.string_msg("x"), 1)
            raise RuntimeError("boom")
    assert not B.is_bag(tmp_path / "bag")
    assert B.find_bags(tmp_path) == []


def _expected_qos(q):
    """An interface.Qos as metadata.yaml lists this package's publishers (no limits, automatic)."""
    inf = {"sec": 9223372036, "nsec": 854775807}
    return {"history": "keep_last", "depth": q.depth, "reliability": q.reliability, "durability": q.durability,
            "deadline": inf, "lifespan": inf, "liveliness": "automatic", "liveliness_lease_duration": inf,
            "avoid_ros_namespace_conventions": False}


def test_generated_bags_have_rosbag2_jazzy_metadata(small_bags):
    """What `trimodal-ros generate` writes is a bag `ros2 bag info/play` (Jazzy) read as they are: metadata
    version 9 in rosbag2's format, true counts and times, each topic offered with its publisher's QoS (the
    instruction latched, so `ros2 bag play` republishes it latched), the Jazzy type hashes; the mcap's own
    channel records (what `ros2 bag play` creates its publishers from) carry the same QoS."""
    from rosbags.rosbag2 import Reader

    from rosbag2_jazzy import check_metadata, qos_of
    from trimodal_ros import interface as I

    bags = B.find_bags(small_bags)
    assert bags
    for path in bags:
        info = check_metadata(path)
        bag = B.read_bag(path)
        counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
        assert counts == {t: len(m) for t, m in bag.messages.items()}
        stamps = np.concatenate(list(bag.stamps.values()))
        assert info["starting_time"]["nanoseconds_since_epoch"] == stamps.min()
        assert info["duration"]["nanoseconds"] == stamps.max() - stamps.min()
        assert info["relative_file_paths"] == [f"{path.name}.mcap"]
        qos = qos_of(info)
        assert qos["/instruction"] == [_expected_qos(I.LATCHED)]
        for topic in ("/camera/image_raw", "/joint_states", "/expert/action"):
            assert qos[topic] == [_expected_qos(I.RELIABLE)], topic
        for t in info["topics_with_message_count"]:
            md = t["topic_metadata"]
            assert md["type_description_hash"] == M.typestore().hash_rihs01(md["type"])
        assert "trimodal_ros.episode" in (info["custom_data"] or {})
        with Reader(path / info["relative_file_paths"][0]) as mcap_only:  # no metadata.yaml: the mcap's channels
            assert {c.topic: [q.durability.name.lower() for q in c.ext.offered_qos_profiles]
                    for c in mcap_only.connections} == {n: [q["durability"] for q in p] for n, p in qos.items()}


def test_bag_writer_offers_the_qos_it_is_given(tmp_path):
    from rosbag2_jazzy import check_metadata, qos_of
    from trimodal_ros.interface import Qos

    with B.BagWriter(tmp_path / "bag") as w:
        w.add_topic("/robot1/instruction", M.STRING)  # namespaced: still the instruction
        w.add_topic("/camera/image_raw", M.IMAGE, qos=Qos("best_effort", "volatile", 5))
        w.write("/robot1/instruction", M.string_msg("go"), 5)
        w.write("/camera/image_raw", M.image_msg(np.zeros((2, 2, 3), np.uint8), 7))
    info = check_metadata(tmp_path / "bag")
    assert info["custom_data"] is None and info["message_count"] == 2 and info["duration"]["nanoseconds"] == 2
    qos = qos_of(info)
    assert qos["/robot1/instruction"][0]["durability"] == "transient_local"
    assert qos["/camera/image_raw"][0]["reliability"] == "best_effort" and qos["/camera/image_raw"][0]["depth"] == 5
    text = (tmp_path / "bag" / "metadata.yaml").read_text()
    assert "\n      type_description_hash: RIHS01_" in text  # one line, as rosbag2 writes it
    assert text.index("version:") < text.index("storage_identifier:") < text.index("topics_with_message_count:")
