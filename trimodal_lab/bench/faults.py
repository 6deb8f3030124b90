"""``trimodal-ros bench faults``: the faults a robot computer meets, one after another, against one
vla_node in its own process (under ``use_sim_time``, with ``/clock`` published as a bag player
would), printing what each did; figures, not a test.

1. the camera publisher destroyed and made again (a driver restart): the node goes STALE and holds,
   then answers again;
2. ``/clock`` and the stamps jump back 30 s (a bag played with ``--loop --clock``);
3. the checkpoint file replaced while running, then loaded by a lifecycle reconfigure
   (deactivate, cleanup, configure, activate);
4. an instruction flood (2000 messages as fast as one publisher sends);
5. three 53 MB frames (4200² rgb8), over the node's pixel cap, twice (a one-time growth of the
   middleware's buffers, or a leak?);
6. a DDS peer vanishing: another process publishing the camera is killed with SIGKILL;
7. ``~/stop`` called while frames stream (a frame may be in the model): each time, the hold must be
   the last thing the controller gets, never an action after it.

After each, frames are sent for a few seconds and the share answered is printed. At the end: the
node is still up, every frame it received is accounted for (``unaccounted`` = 0), its RSS growth
since the first phase, and its exit code on SIGINT.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from trimodal_ros import interface as I
from trimodal_lab.bench.ros_bench import NS, _Session, rss_mb

RATE = 20.0      # camera frames per second while driving
PHASE_S = 3.0    # seconds of frames after each fault

_PEER = """
import sys, time, numpy as np, rclpy
from sensor_msgs.msg import Image
from trimodal_ros.ros.conversions import image_to_msg, ns_to_stamp, qos_profile
from trimodal_ros import interface as I
rclpy.init()
n = rclpy.create_node("fault_peer")
pub = n.create_publisher(Image, sys.argv[1], qos_profile(I.RELIABLE))
rgb = np.zeros((224, 224, 3), np.uint8)
while True:
    pub.publish(image_to_msg(rgb, ns_to_stamp(time.time_ns())))
    time.sleep(0.05)
"""


def _checkpoints(folder: Path, fusion: str) -> List[Path]:
    """Two checkpoints of the same architecture with different random weights."""
    from trimodal_ros.checkpoint import save_checkpoint
    from trimodal_ros.policy import Policy

    out = []
    for seed in (1, 2):
        p = Policy.load(fusion=fusion, seed=seed)
        out.append(save_checkpoint(folder / f"seed{seed}.pt", p.model, p.config, p.tokenizer, {"step": 0}))
    return out


def faults(fusion: str = "weighted_sum", device: str = "cpu", log=print) -> Dict[str, object]:
    """The faults of the module docstring in turn; returns and prints their figures."""
    tmp = Path(tempfile.mkdtemp(prefix="trimodal_faults_"))
    try:
        return _faults(tmp, fusion, device, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _faults(tmp: Path, fusion: str, device: str, log) -> Dict[str, object]:
    from lifecycle_msgs.srv import ChangeState
    from rclpy.qos import QoSProfile
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from trimodal_ros.config import load_config
    from trimodal_ros.ros.conversions import ns_to_stamp, qos_profile

    live, spare = _checkpoints(tmp, fusion)
    joints = load_config(fusion).model.joint_names
    s = _Session(fusion, device, checkpoint=str(live), log=log, extra={"use_sim_time": "true"})
    c = s.client
    clock = c.node.create_publisher(Clock, "/clock", QoSProfile(depth=10))
    offset = {"ns": 0}  # stamps and /clock run this far from wall time (the bag's time)
    rgb = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    report: Dict[str, object] = {}

    def drive(seconds: float = PHASE_S) -> Dict[str, float]:
        sent, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            stamp = time.time_ns() + offset["ns"]
            clock.publish(Clock(clock=ns_to_stamp(stamp)))
            c.send(stamp, rgb, joints)
            sent.append(stamp)
            time.sleep(1.0 / RATE)
        c.wait(lambda: False, 1.0)
        got = sum(t in c.arrivals for t in sent)
        return {"sent": len(sent), "answered": got, "answered_pct": 100.0 * got / max(1, len(sent))}

    def phase(name: str, result: Dict[str, object]) -> None:
        after = drive()
        report[name] = {**result, "after": after}
        log(f"{name}: {result}; then {after['answered']}/{after['sent']} frames answered "
            f"({after['answered_pct']:.0f}%); node RSS {rss_mb(s.proc.pid):.0f} MB")

    def transition(label: str) -> bool:
        cli = c.node.create_client(ChangeState, f"{NS}/vla_node/change_state")
        if not cli.wait_for_service(timeout_sec=10):
            return False
        req = ChangeState.Request()
        req.transition.label = label
        fut = cli.call_async(req)
        end = time.monotonic() + 60
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.05)
        ok = fut.done() and fut.result().success
        c.node.destroy_client(cli)
        return bool(ok)

    try:
        c.instruction.publish(String(data="reach the goal"))
        report["baseline"] = drive()
        rss0 = rss_mb(s.proc.pid)
        log(f"baseline: {report['baseline']['answered']}/{report['baseline']['sent']} answered; node RSS {rss0:.0f} MB")

        # 1. the camera driver restarts
        c.node.destroy_publisher(c.image)
        time.sleep(3.0)
        d = c.fresh_diag() or {}
        c.image = c.node.create_publisher(Image, f"{NS}/{I.IMAGE_TOPIC}", qos_profile(I.RELIABLE))
        c.wait(lambda: c.image.get_subscription_count() > 0, 10)
        phase("camera restarted", {"diagnostics_during_gap": d.get("_message", "?"), "holds": d.get("holds")})

        # 2. a looped bag: /clock and the stamps jump back
        offset["ns"] -= 30_000_000_000
        phase("clock jumped back 30 s", {})

        # 3. the checkpoint file replaced, then a lifecycle reconfigure loads it
        os.replace(spare, live)
        t0 = time.perf_counter()
        ok = all(transition(t) for t in ("deactivate", "cleanup", "configure", "activate"))
        phase("checkpoint replaced + reconfigure", {"transitions_ok": ok,
                                                    "reconfigure_s": round(time.perf_counter() - t0, 2)})

        # 4. an instruction flood
        for k in range(2000):
            c.instruction.publish(String(data=("reach the goal", "push the puck", "reach the goal now")[k % 3]))
        c.instruction.publish(String(data="reach the goal"))
        phase("instruction flood (2000 messages)", {})

        # 5. frames far over the pixel cap
        big = np.zeros((4200, 4200, 3), np.uint8)
        for round_ in ("three 53 MB frames", "three more (does the growth repeat?)"):
            before = rss_mb(s.proc.pid)
            for _ in range(3):
                c.send(time.time_ns() + offset["ns"], big, joints)
            c.wait(lambda: False, 2.0)  # the node's 1 Hz timer hands the freed pages back
            phase(round_, {"rss_growth_mb": round(rss_mb(s.proc.pid) - before, 1)})

        # 6. another publisher of the camera vanishes without a goodbye
        peer = subprocess.Popen([sys.executable, "-c", _PEER, f"{NS}/{I.IMAGE_TOPIC}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(4.0)
        finally:
            peer.send_signal(signal.SIGKILL)
            peer.wait()
        phase("DDS peer killed", {})

        # 7. stops while frames stream
        from std_srvs.srv import Trigger

        stop = c.node.create_client(Trigger, f"{NS}/vla_node/stop")
        stop.wait_for_service(timeout_sec=10)
        rng, overtaken, trials = np.random.default_rng(1), 0, 10
        for k in range(trials):
            c.instruction.publish(String(data=("reach the goal", "push the puck")[k % 2]))  # a new task
            drive(0.5 + 0.3 * rng.random())
            fut = stop.call_async(Trigger.Request())
            mark = len(c.trail)
            drive(0.4)  # frames keep coming: none may be answered after the hold
            c.wait(lambda: fut.done(), 5.0)
            after = c.trail[mark:]
            overtaken += "hold" not in after or "action" in after[after.index("hold"):]
        c.node.destroy_client(stop)
        c.instruction.publish(String(data="reach the goal"))
        phase("stops while frames stream", {"stops": trials, "action_after_the_hold": overtaken})

        d = c.fresh_diag() or {}
        report["node_alive"] = s.proc.poll() is None
        report["unaccounted"] = int(d.get("unaccounted", -1))
        report["counters"] = {k: d.get(k) for k in ("frames_in", "outputs", "bad_image", "replaced", "holds",
                                                     "instructions", "inactive", "stale_image", "in_flight")}
        report["rss_growth_mb"] = rss_mb(s.proc.pid) - rss0
    finally:
        report["exit_code_after_sigint"] = s.close()
    log(f"node alive through all faults: {report.get('node_alive')}; unaccounted frames: {report.get('unaccounted')}; "
        f"stops overtaken by an action: {report.get('stops while frames stream', {}).get('action_after_the_hold')}; "
        f"RSS growth since the baseline: {report.get('rss_growth_mb', float('nan')):+.1f} MB; "
        f"exit code on SIGINT: {report['exit_code_after_sigint']}")
    log(f"node counters: {report.get('counters')}")
    return report
