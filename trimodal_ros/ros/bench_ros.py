"""``trimodal-ros bench ros``: what the ROS edge costs on top of the model, measured over real DDS.

vla_node runs in its own process (``python -m trimodal_ros.ros.vla_node``, random weights), so
image → output crosses process boundaries as on a robot. Three figures:

1. closed-loop latency: publish a joint state + a 224×224 rgb8 frame, wait for the action carrying
   that frame's stamp (published right after the tokens), repeat: p50/p95 with no queueing;
2. the node's model-only latency over the same frames (from its /diagnostics) and the ratio;
3. open loop at rising camera rates: the highest rate at which every frame gave an output
   (no frame replaced while the model was busy, none lost).
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from ..model.configuration import DEFAULT_FUSION

NS = "/trimodal_bench"
RATES = (5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0)


class _Client:
    def __init__(self, context):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String
        from trajectory_msgs.msg import JointTrajectory

        from .. import interface as I
        from .conversions import qos_profile

        LATCHED = qos_profile(I.LATCHED)
        self.node = rclpy.create_node("bench_ros_client", context=context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.instruction = self.node.create_publisher(String, f"{NS}/instruction", LATCHED)
        self.joints = self.node.create_publisher(JointState, f"{NS}/joint_states", reliable)
        self.image = self.node.create_publisher(Image, f"{NS}/camera/image_raw", reliable)
        self.arrivals: Dict[int, float] = {}  # camera stamp (ns) → time.perf_counter() at arrival
        self.diag: Optional[dict] = None
        self.cv = threading.Condition()
        self.node.create_subscription(JointTrajectory, f"{NS}/trimodal/action", self._on_action, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_action(self, msg) -> None:
        now = time.perf_counter()
        with self.cv:
            self.arrivals[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = now
            self.cv.notify_all()

    def _on_diag(self, msg) -> None:
        for s in msg.status:
            if s.name.startswith(f"{NS}/vla_node"):
                with self.cv:
                    self.diag = {kv.key: kv.value for kv in s.values}
                    self.diag["_at"] = time.monotonic()
                    self.cv.notify_all()

    def send(self, stamp_ns: int, rgb: np.ndarray, joints: List[str]) -> float:
        from .conversions import image_to_msg, joints_to_msg, sec_to_stamp

        stamp = sec_to_stamp(stamp_ns * 1e-9)
        self.joints.publish(joints_to_msg(joints, np.zeros(len(joints)), np.zeros(len(joints)), stamp))
        msg = image_to_msg(rgb, stamp)
        t = time.perf_counter()
        self.image.publish(msg)
        return t

    def wait(self, pred, timeout: float) -> bool:
        with self.cv:
            return self.cv.wait_for(pred, timeout)

    def fresh_diag(self, timeout: float = 5.0) -> Optional[dict]:
        t = time.monotonic()
        self.wait(lambda: self.diag is not None and self.diag["_at"] > t, timeout)
        return self.diag


def bench(fusion: str = DEFAULT_FUSION, device: str = "cpu", iters: int = 20, rates=RATES,
          size: int = 224, startup_timeout: float = 180.0, log=print) -> dict:
    """Run the benchmark; returns the figures it printed."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from ..config import load_config
    from .bringup import spawn
    from .params import node_specs

    joints = load_config(fusion).model.joint_names
    spec = node_specs({"fusion": fusion, "device": device, "image_qos_reliability": "reliable",
                       "max_input_age": "1.0", "allow_random_weights": "true", "namespace": NS})[0]
    proc = spawn(spec, log_level="warn", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    client = _Client(ctx)
    ex.add_node(client.node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    rgb = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    stamp = [1_000_000_000_000]

    def next_stamp() -> int:
        stamp[0] += 1_000_000  # 1 ms apart: always fresh w.r.t. the joint state sent with it
        return stamp[0]

    result: dict = {"fusion": fusion, "device": device}
    try:
        client.instruction.publish(String(data="pick up the puck and place it at the goal"))
        t_end = time.monotonic() + startup_timeout
        while client.fresh_diag(1.0) is None:
            if proc.poll() is not None or time.monotonic() > t_end:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.poll() is not None else ""
                raise RuntimeError(f"vla_node did not come up: {err or 'timeout'}")
        log(f"vla_node up (fusion={fusion}, device={device}, {size}x{size} rgb8 frames over DDS, "
            f"separate process)")
        for _ in range(3):  # warm-up: first text encoding, allocator, DDS buffers
            s = next_stamp()
            client.send(s, rgb, joints)
            client.wait(lambda: s in client.arrivals, 30.0)

        lat = []
        for _ in range(iters):
            s = next_stamp()
            t0 = client.send(s, rgb, joints)
            if client.wait(lambda: s in client.arrivals, 30.0):
                lat.append((client.arrivals[s] - t0) * 1e3)
        d = client.fresh_diag() or {}
        e2e = np.asarray(lat)
        model50, model95 = float(d.get("latency_p50_ms", "nan")), float(d.get("latency_p95_ms", "nan"))
        result.update(e2e_p50_ms=float(np.percentile(e2e, 50)), e2e_p95_ms=float(np.percentile(e2e, 95)),
                      model_p50_ms=model50, model_p95_ms=model95, lost=iters - len(lat))
        result["ratio_p50"] = result["e2e_p50_ms"] / model50 if model50 > 0 else float("nan")
        log(f"image publish -> action tokens + trajectory received ({len(lat)}/{iters} frames): "
            f"p50 {result['e2e_p50_ms']:.1f} ms, p95 {result['e2e_p95_ms']:.1f} ms")
        log(f"model only (same run, node's own timing):  p50 {model50:.1f} ms, p95 {model95:.1f} ms")
        log(f"end-to-end / model p50 ratio: {result['ratio_p50']:.2f}")

        sustained = 0.0
        for rate in rates:
            n = int(max(10, min(100, 3 * rate)))
            d0 = client.fresh_diag() or {}
            sent = []
            t_next = time.perf_counter()
            for _ in range(n):
                t_next += 1.0 / rate
                s = next_stamp()
                client.send(s, rgb, joints)
                sent.append(s)
                time.sleep(max(0.0, t_next - time.perf_counter()))
            client.wait(lambda: all(s in client.arrivals for s in sent), 2.0 + 3 * model95 / 1e3)
            got = sum(s in client.arrivals for s in sent)
            d1 = client.fresh_diag() or {}
            replaced = int(d1.get("dropped_frames", 0)) - int(d0.get("dropped_frames", 0))
            ok = got == n
            log(f"camera {rate:5.1f} Hz: {got}/{n} frames gave an output, {replaced} replaced while busy"
                f"{'' if ok else '  <- drops'}")
            result.setdefault("rates", []).append({"rate_hz": rate, "frames": n, "outputs": got,
                                                   "replaced": replaced})
            if not ok:
                break
            sustained = rate
        result["max_rate_hz"] = sustained
        log(f"highest camera rate without drops: {sustained:g} Hz"
            f"{' (the highest tried)' if sustained == rates[-1] else ''}")
    finally:
        ex.shutdown()
        spin.join(timeout=5)
        client.node.destroy_node()
        rclpy.shutdown(context=ctx)
        proc.send_signal(2)  # SIGINT: the node's clean shutdown path
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return result


def run(args) -> int:
    """Entry for ``trimodal-ros bench ros`` (args: fusion, device, iters)."""
    try:
        bench(fusion=getattr(args, "fusion", None) or DEFAULT_FUSION, device=getattr(args, "device", "cpu"),
              iters=int(getattr(args, "iters", 20)))
    except RuntimeError as e:
        print(f"bench ros: {e}")
        return 1
    return 0
