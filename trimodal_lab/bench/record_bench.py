"""``trimodal-ros bench record``: does ``trimodal-ros record`` keep every message, and what is left
when it is killed? Figures, not a test.

1. ``--duration`` seconds (default 600) of 224² rgb8 frames at 30 Hz and joint states at 100 Hz
   (reliable, depth 100) into ``trimodal-ros record`` in its own process, next to ``--load N``
   busy processes; the recorder is stopped with SIGINT and the bag is read back: messages
   published vs in the bag, per topic.
2. The same for 10 s, then the recorder is killed with SIGKILL; ``record --repair`` closes the bag
   and it is read back: how many messages survived, and how many seconds of the end were lost.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import numpy as np

from trimodal_ros import interface as I
from trimodal_lab.bench.ros_bench import start_load, stop_processes

TOPICS = ("/bench_record/camera/image_raw", "/bench_record/joint_states")


def _session(out: Path, seconds: float, kill: bool, log) -> Dict[str, object]:
    """``trimodal-ros record`` in its own process, fed for ``seconds``, then stopped or killed."""
    rec = subprocess.Popen([sys.executable, "-m", "trimodal_ros.cli", "record", "--out", str(out), "--topics", *TOPICS],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _drive(rec, out, seconds, kill, log)
    finally:
        if rec.poll() is None:
            rec.kill()
            rec.wait()


def _drive(rec, out: Path, seconds: float, kill: bool, log) -> Dict[str, object]:
    import rclpy
    from sensor_msgs.msg import Image, JointState

    from trimodal_ros.data.bag_repair import repair
    from trimodal_ros.data.bags import read_bag
    from trimodal_ros.ros.conversions import image_to_msg, joints_to_msg, ns_to_stamp, qos_profile

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("bench_record_publisher", context=ctx)
    qos = qos_profile(I.Qos("reliable", depth=100))
    image, joints = node.create_publisher(Image, TOPICS[0], qos), node.create_publisher(JointState, TOPICS[1], qos)
    t0 = time.monotonic()
    while (image.get_subscription_count() == 0 or joints.get_subscription_count() == 0) and time.monotonic() - t0 < 120:
        time.sleep(0.1)
    rgb = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    names = list(I.SAWYER_JOINTS)
    sent = {TOPICS[0]: [], TOPICS[1]: []}
    start = time.perf_counter()
    nxt = {"image": start, "joints": start}
    while (now := time.perf_counter()) < start + seconds:
        stamp = time.time_ns()
        if now >= nxt["joints"]:
            joints.publish(joints_to_msg(names, np.zeros(9), np.zeros(9), ns_to_stamp(stamp)))
            sent[TOPICS[1]].append(stamp)
            nxt["joints"] += 0.01
        if now >= nxt["image"]:
            image.publish(image_to_msg(rgb, ns_to_stamp(stamp)))
            sent[TOPICS[0]].append(stamp)
            nxt["image"] += 1 / 30
        time.sleep(max(0.0, min(nxt.values()) - time.perf_counter()))
    if kill:  # mid-stream: what had not reached the file yet is lost
        rec.send_signal(signal.SIGKILL)
    else:
        time.sleep(1.0)  # the last messages reach the recorder
        rec.send_signal(signal.SIGINT)
    code = rec.wait(timeout=60)
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)
    cut = repair(out) if kill else {}
    bag = read_bag(out)
    r = {"seconds": seconds, "exit": code, "repaired": cut}
    for t in TOPICS:
        got = {int(m.header.stamp.sec) * 1_000_000_000 + int(m.header.stamp.nanosec) for m in bag.messages.get(t, [])}
        lost = [s for s in sent[t] if s not in got]
        r[t] = {"published": len(sent[t]), "in_bag": len(got), "missing": len(lost),
                "missing_from_the_last_s": (sent[t][-1] - lost[0]) / 1e9 if lost else 0.0}
    log(f"{'SIGKILL' if kill else 'SIGINT'} after {seconds:.0f} s (recorder exit {code}"
        f"{', repaired: ' + str(cut) if kill else ''}): " +
        "; ".join(f"{t}: {r[t]['in_bag']}/{r[t]['published']} in the bag"
                  + (f", the missing ones from the last {r[t]['missing_from_the_last_s']:.2f} s" if r[t]['missing']
                     else "") for t in TOPICS))
    return r


def bench(duration: float = 600.0, load: int = 1, log=print) -> Dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="bench_record_"))
    busy = start_load(load)
    try:
        log(f"recording 30 Hz 224² frames and 100 Hz joint states, {load} busy process(es), "
            f"{__import__('os').cpu_count()} cores")
        full = _session(folder / "full", duration, kill=False, log=log)
        killed = _session(folder / "killed", 10.0, kill=True, log=log)
    finally:
        stop_processes(busy)
        shutil.rmtree(folder, ignore_errors=True)
    return {"full": full, "killed": killed}
