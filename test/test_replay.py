"""Bag replay and record over real DDS, with a small bag written here by rosbags."""

import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from trimodal_ros.config import SAWYER_JOINTS
from trimodal_ros.ros.record import record, resolve_name
from trimodal_ros.ros.replay import message_class, replay, resolve_topic, topic_qos
from trimodal_ros.interface import LATCHED as _LATCHED
from trimodal_ros.ros.conversions import qos_profile
from trimodal_ros.ros.vla_node import VLANode
from trimodal_ros.utils import wait_for

LATCHED = qos_profile(_LATCHED)

pytestmark = pytest.mark.ros

TS = get_typestore(Stores.ROS2_JAZZY)
T0 = 1_700_000_000_000_000_000  # bag start, ns


def write_bag(path, frames=8, period_ns=50_000_000):
    """/instruction once, then per step a joint state and a 32×32 camera frame with one stamp."""
    T = TS.types
    order = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        ci = w.add_connection("/instruction", "std_msgs/msg/String", typestore=TS)
        cj = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=TS)
        cc = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=TS)
        w.write(ci, T0, TS.serialize_cdr(T["std_msgs/msg/String"](data="close the drawer"), "std_msgs/msg/String"))
        order.append(("/instruction", 0))
        for k in range(frames):
            t = T0 + (k + 1) * period_ns
            sec, nsec = divmod(t, 1_000_000_000)
            header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                              frame_id=str(k))
            js = T["sensor_msgs/msg/JointState"](header=header, name=list(SAWYER_JOINTS),
                                                 position=np.full(9, k, np.float64), velocity=np.zeros(9),
                                                 effort=np.zeros(0))
            img = T["sensor_msgs/msg/Image"](header=header, height=32, width=32, encoding="rgb8", is_bigendian=0,
                                             step=96, data=np.full(32 * 96, k % 256, np.uint8))
            w.write(cj, t, TS.serialize_cdr(js, "sensor_msgs/msg/JointState"))
            w.write(cc, t + 1000, TS.serialize_cdr(img, "sensor_msgs/msg/Image"))
            order += [("/joint_states", k), ("/camera/image_raw", k)]
    return order


@pytest.fixture(scope="module")
def ros():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    ex = MultiThreadedExecutor(num_threads=2, context=ctx)
    client = rclpy.create_node("replay_client", context=ctx)
    ex.add_node(client)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    yield ctx, ex, client
    ex.shutdown()
    th.join(timeout=10)
    for n in ex.get_nodes():
        n.destroy_node()
    rclpy.shutdown(context=ctx)


def test_helpers():
    assert message_class("sensor_msgs/msg/Image") is Image and message_class("std_msgs/String") is String
    with pytest.raises(ValueError):
        message_class("nope_msgs/msg/Nothing")
    assert resolve_topic("/camera/image_raw", "r1") == "/r1/camera/image_raw"
    assert resolve_topic("/camera/image_raw", "") == "/camera/image_raw"
    assert resolve_name("trimodal/action", "/r1/") == "/r1/trimodal/action"
    assert resolve_name("/diagnostics", "r1") == "/diagnostics"
    assert topic_qos("/r1/instruction").durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert topic_qos("/joint_states").durability == DurabilityPolicy.VOLATILE
    # a bag's recorded offers decide (as `ros2 bag play`); disagreeing offers fall back to the name rule
    from trimodal_ros.data.bags import rosbag2_qos
    from trimodal_ros.interface import LATCHED, Qos

    best_effort = rosbag2_qos(Qos("best_effort", "volatile", 5))
    assert topic_qos("/camera/image_raw", [best_effort]).reliability == ReliabilityPolicy.BEST_EFFORT
    assert topic_qos("/status", [rosbag2_qos(LATCHED)]).durability == DurabilityPolicy.TRANSIENT_LOCAL
    mixed = [best_effort, rosbag2_qos(LATCHED)]
    assert topic_qos("/status", mixed).durability == DurabilityPolicy.VOLATILE
    assert topic_qos("/instruction", mixed).durability == DurabilityPolicy.TRANSIENT_LOCAL


def test_a_bag_cannot_make_replay_import_arbitrary_modules(tmp_path):
    """The type name comes from the bag: only <package>/msg/<Type> of a generated message package."""
    import sys

    evil = tmp_path / "evil_pkg"
    (evil / "msg").mkdir(parents=True)
    (evil / "__init__.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    (evil / "msg" / "__init__.py").write_text("class X: pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        for name in ("evil_pkg/msg/X", "os/msg/Path", "subprocess/msg/Popen", "sensor_msgs/srv/Image",
                     "sensor_msgs.msg/Image", "sensor_msgs/msg/__class__", "a/b/c/d"):
            with pytest.raises(ValueError):
                message_class(name)
        assert not (tmp_path / "ran").exists() and "evil_pkg" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))


def test_replay_of_a_corrupt_bag_is_a_clear_error(tmp_path, capsys):
    from trimodal_ros.cli import main

    write_bag(tmp_path / "bag")
    mcap = next((tmp_path / "bag").glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    for target in (tmp_path / "bag", tmp_path / "missing"):
        assert main(["replay", "--bag", str(target)]) == 1
        out = capsys.readouterr().out
        assert out.startswith("trimodal-ros replay: bag ") and str(target) in out and "Traceback" not in out


def test_replay_publishes_the_bag_in_order(ros, tmp_path):
    ctx, ex, client = ros
    order = write_bag(tmp_path / "bag")
    got = []
    lock = threading.Lock()

    def keep(topic, key):
        def cb(msg):
            with lock:
                got.append((topic, key(msg)))
        return cb

    client.create_subscription(String, "/rp/instruction", keep("/instruction", lambda m: 0), LATCHED)
    client.create_subscription(JointState, "/rp/joint_states", keep("/joint_states", lambda m: int(m.position[0])), 50)
    client.create_subscription(Image, "/rp/camera/image_raw", keep("/camera/image_raw", lambda m: m.data[0]), 50)
    published = []
    n = replay(tmp_path / "bag", rate=2.0, namespace="rp", context=ctx,
               on_message=lambda topic, t: published.append(topic))
    assert n == len(order) and published == ["/rp" + t for t, _ in order]  # publish order = bag order
    end = time.monotonic() + 10
    while len(got) < len(order) and time.monotonic() < end:
        time.sleep(0.02)
    assert sorted(got) == sorted(order)
    for topic in ("/joint_states", "/camera/image_raw"):  # each topic arrives in bag order
        assert [k for t, k in got if t == topic] == list(range(8))
    img = None

    def one_image(msg):
        nonlocal img
        img = msg
    # the raw CDR bytes arrive as a real message: full content intact
    client.create_subscription(Image, "/rp2/camera/image_raw", one_image, 50)
    replay(tmp_path / "bag", namespace="rp2", context=ctx, topics=["/camera/image_raw"])
    end = time.monotonic() + 5
    while img is None and time.monotonic() < end:
        time.sleep(0.02)
    assert img is not None and (img.height, img.width, img.encoding, len(img.data)) == (32, 32, "rgb8", 3072)


def test_loop_replays_until_stopped(ros, tmp_path):
    ctx, _, _ = ros
    order = write_bag(tmp_path / "bag", frames=2, period_ns=10_000_000)
    stop, seen = threading.Event(), []

    def on_message(topic, t):
        seen.append(topic)
        if len(seen) >= 3 * len(order):
            stop.set()
    n = replay(tmp_path / "bag", loop=True, rate=5.0, namespace="loop", delay=0.0, context=ctx, stop=stop,
               on_message=on_message)
    assert n == 3 * len(order)


def test_replay_publishes_clock_for_use_sim_time(ros, tmp_path):
    from rosgraph_msgs.msg import Clock

    ctx, ex, client = ros
    order = write_bag(tmp_path / "bag", frames=4)
    clocks = []
    client.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec), 50)
    time.sleep(0.3)
    replay(tmp_path / "bag", namespace="clk", clock=True, delay=0.5, context=ctx)
    assert wait_for(lambda: len(clocks) >= len(order), timeout=5)
    assert clocks[0] == T0 and clocks == sorted(clocks)  # the bag's log time, in order


def test_replay_selects_remaps_skips_and_ticks_the_clock_like_ros2_bag_play(ros, tmp_path):
    """--topics, --remap FROM:=TO, --start-offset and --clock HZ: only the camera, under another name,
    from the bag's 0.2nd second on, with /clock ticking at 50 Hz between frames 0.2 s apart."""
    from rosgraph_msgs.msg import Clock

    ctx, ex, client = ros
    write_bag(tmp_path / "bag", frames=6, period_ns=200_000_000)
    got, clocks, joints = [], [], []
    client.create_subscription(Image, "/cam/color", lambda m: got.append(int(m.header.frame_id)), 50)
    client.create_subscription(JointState, "/sel/joint_states", joints.append, 50)
    client.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec), 500)
    time.sleep(0.3)
    n = replay(tmp_path / "bag", namespace="sel", topics=["/camera/image_raw"],
               remap={"camera/image_raw": "/cam/color"}, start_offset=0.3, clock=True, clock_hz=50.0, delay=0.5,
               context=ctx)
    assert n == 5 and wait_for(lambda: len(got) == 5, timeout=5)
    assert got == [1, 2, 3, 4, 5] and joints == []  # frame 0 at 0.2 s skipped; joint states not selected
    assert wait_for(lambda: len(clocks) >= 5 * 5, timeout=5)  # ~10 ticks per 0.2 s gap, not one per message
    assert clocks == sorted(clocks) and clocks[0] >= T0 + 400_000_000


def test_replay_into_vla_node_and_record_its_outputs(ros, tmp_path):
    """The demo pipeline: bag → vla_node → mcap bag of actions stamped with the bag's camera stamps."""
    ctx, ex, client = ros
    write_bag(tmp_path / "in", frames=10)
    node = VLANode(namespace="/e2e", context=ctx, parameter_overrides=[
        Parameter("fusion", value="concat_mlp"), Parameter("image_qos_reliability", value="reliable"),
        Parameter("image_qos_depth", value=20), Parameter("allow_random_weights", value=True)])
    ex.add_node(node)
    latched = client.create_publisher(String, "/e2e/instruction", LATCHED)  # found in the graph by record
    latched.publish(String(data="close the drawer"))
    stop, ready, result = threading.Event(), threading.Event(), {}
    rec = threading.Thread(target=lambda: result.update(record(
        tmp_path / "out", namespace="e2e", topics=["trimodal/action", "trimodal/action_tokens", "/e2e/instruction"],
        context=ctx, stop=stop, ready=ready)))
    rec.start()
    assert ready.wait(10)
    replay(tmp_path / "in", namespace="e2e", context=ctx, delay=1.0)
    end = time.monotonic() + 20
    while node.ledger.snapshot()["outputs"] + node.ledger.snapshot()["replaced"] + \
            node.ledger.snapshot()["waiting_for_joint_state"] < 10 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    rec.join(10)
    assert node.ledger.snapshot()["outputs"] >= 1, node.ledger.snapshot()

    with Reader(tmp_path / "out") as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics["/e2e/trimodal/action"] == "trajectory_msgs/msg/JointTrajectory"
        cam_stamps = {T0 + (k + 1) * 50_000_000 for k in range(10)}
        actions = [TS.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages()
                   if c.topic == "/e2e/trimodal/action"]
    assert len(actions) == result["/e2e/trimodal/action"] >= 1
    for a in actions:
        assert a.header.stamp.sec * 1_000_000_000 + a.header.stamp.nanosec in cam_stamps
        assert len(a.points) == 4 and list(a.joint_names) == ["ee_dx", "ee_dy", "ee_dz", "gripper"]
    assert result["/e2e/trimodal/action_tokens"] == len(actions)
    assert result["/e2e/instruction"] >= 1 and topics["/e2e/instruction"] == "std_msgs/msg/String"

    # metadata.yaml as `ros2 bag record` (Jazzy) writes it: the publishers' own QoS offers and type hashes
    from rosbag2_jazzy import check_metadata, qos_of

    info = check_metadata(tmp_path / "out")
    qos = qos_of(info)
    assert [(q["reliability"], q["durability"]) for q in qos["/e2e/instruction"]] == [("reliable", "transient_local")]
    assert [(q["reliability"], q["durability"]) for q in qos["/e2e/trimodal/action"]] == [("reliable", "volatile")]
    graph = {t: str(client.get_publishers_info_by_topic(t)[0].topic_type_hash)
             for t in ("/e2e/instruction", "/e2e/trimodal/action")}
    assert {t["topic_metadata"]["name"]: t["topic_metadata"]["type_description_hash"]
            for t in info["topics_with_message_count"] if t["topic_metadata"]["name"] in graph} == graph


def test_a_cut_bag_is_closed_at_its_last_complete_record(tmp_path):
    """repair: an mcap file cut in the middle of a record (the recorder killed while writing) is
    closed where the last complete record ends and reads back every message before it; a bag
    that ends properly is left alone."""
    from trimodal_ros.data.bag_repair import repair
    from trimodal_ros.data.bags import read_bag

    write_bag(tmp_path / "whole", frames=900)  # 3 KB frames: several 1 MB chunks
    assert repair(tmp_path / "whole") == {}
    whole = read_bag(tmp_path / "whole", verify=False)
    f = next((tmp_path / "whole").glob("*.mcap"))
    data = f.read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "metadata.yaml").write_text((tmp_path / "whole" / "metadata.yaml").read_text())
    # the footer, summary and the end of the data section gone, as a kill leaves the file
    (cut / f.name).write_bytes(data[: len(data) // 2])
    dropped = repair(cut)
    assert list(dropped) == [f.name] and dropped[f.name] > 0
    part = read_bag(cut, verify=False)
    assert 0 < len(part) <= len(whole)
    def key(m):
        return m.header.frame_id if hasattr(m, "header") else m.data

    assert len(part) < len(whole)
    for topic, msgs in part.messages.items():  # what survived is the bag's beginning, intact
        assert [key(m) for m in msgs] == [key(m) for m in whole.messages[topic]][:len(msgs)]


def test_a_killed_recorder_leaves_a_bag_readable_up_to_its_last_second():
    """trimodal-ros record in its own process, killed with SIGKILL while 30 Hz frames and 100 Hz
    joint states arrive: after record --repair the bag holds every message but those of about
    the last second (the recorder makes the bag durable once a second)."""
    import tempfile
    from pathlib import Path

    from trimodal_lab.bench.record_bench import TOPICS, _session

    with tempfile.TemporaryDirectory() as d:
        # 6 s: once, with the machine loaded by a training beside the suite, 4 s left nothing in the bag
        r = _session(Path(d) / "killed", 6.0, kill=True, log=lambda *a: None)
    assert r["exit"] == -9
    for t in TOPICS:
        assert r[t]["in_bag"] > 0 and r[t]["in_bag"] + r[t]["missing"] == r[t]["published"], r
        assert r[t]["missing_from_the_last_s"] <= 1.6, r[t]  # only the tail is lost


def test_a_bag_from_another_robot_is_inspected_and_replayed_without_its_vendor_types(ros, tmp_path, capsys):
    """A bag with /tf and a vendor message type that is not installed here: inspect lists every
    topic with its rate and says the vendor type's definition comes from the bag and that it
    cannot be replayed; replay plays the rest instead of aborting."""
    from rosbags.typesys import get_types_from_msg

    from trimodal_ros.cli import main
    from trimodal_ros.data.inspect import inspect_bag

    ctx, _, client = ros
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg("float64 width\nbool grasped\n", "acme_msgs/msg/GripperState"))
    T = store.types
    with Writer(tmp_path / "other", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        tf = w.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=store)
        grip = w.add_connection("/gripper/state", "acme_msgs/msg/GripperState", typestore=store)
        js = w.add_connection("/arm/joint_states", "sensor_msgs/msg/JointState", typestore=store)
        for k in range(10):
            t = T0 + k * 100_000_000
            w.write(tf, t, store.serialize_cdr(T["tf2_msgs/msg/TFMessage"](transforms=[]), "tf2_msgs/msg/TFMessage"))
            w.write(grip, t, store.serialize_cdr(T["acme_msgs/msg/GripperState"](width=0.04, grasped=False),
                                                 "acme_msgs/msg/GripperState"))
            header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=k, nanosec=0), frame_id="")
            w.write(js, t, store.serialize_cdr(T["sensor_msgs/msg/JointState"](
                header=header, name=["j1"], position=np.zeros(1), velocity=np.zeros(0), effort=np.zeros(0)),
                "sensor_msgs/msg/JointState"))
    r = inspect_bag(tmp_path / "other")
    assert set(r["topics"]) == {"/tf", "/gripper/state", "/arm/joint_states"}
    g = r["topics"]["/gripper/state"]
    assert g["messages"] == 10 and g["rate_hz"] == pytest.approx(10.0) and g["type_known"] == "from the bag"
    assert g["replay"].startswith("no") and r["topics"]["/arm/joint_states"]["replay"] == "yes"
    assert r["dataset"]["/camera/image_raw"].startswith("missing") and r["dataset"]["/tf"].startswith("not read")
    from trimodal_ros.robot import robot_from_dict

    arm = robot_from_dict({"cameras": ["wrist"], "joint_topics": ["/arm/joint_states"], "joint_names": ["j1"],
                           "action": {"source": "joint_positions", "names": ["j1"]}})
    r2 = inspect_bag(tmp_path / "other", arm)  # what that robot's spec reads of it
    assert r2["dataset"]["/arm/joint_states"].startswith("found") and r2["dataset"]["/wrist/image_raw"].startswith(
        "missing") and "/expert/action" not in r2["dataset"]
    assert main(["inspect", str(tmp_path / "other")]) == 0
    assert "not replayable here" in capsys.readouterr().out
    got = []
    client.create_subscription(JointState, "/other/arm/joint_states", got.append, 50)
    n = replay(tmp_path / "other", namespace="other", context=ctx, delay=0.5, rate=5.0)
    # what inspect said can be replayed here is what was (tf2_msgs may or may not be installed)
    assert n == sum(t["messages"] for t in r["topics"].values() if t["replay"] == "yes") >= 10
    assert wait_for(lambda: len(got) == 10, timeout=10)
