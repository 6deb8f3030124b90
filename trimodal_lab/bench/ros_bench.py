"""``trimodal-ros bench ros`` and ``bench soak``: what the ROS edge costs on top of the model,
measured over real DDS with vla_node in its own process (started from the parameter table, as
``ros2 launch`` starts it), optionally next to ``--load N`` competing busy processes.

``bench ros``:
1. closed-loop latency: publish a joint state + a 224×224 rgb8 frame, wait for the action carrying
   that frame's stamp, repeat: p50/p95 with no queueing;
2. the node's model-only latency over the same frames (its /diagnostics) and the ratio;
3. open loop at rising camera rates: the highest rate at which every frame gave an output.

``bench soak``: a robot computer's day in ``--duration`` seconds: 224² rgb8 frames at ``--rate``
(reliable, depth 10), joint states at 100 Hz, a new instruction every 30 s, one malformed input per
second (a bad image encoding, NaN joints, an over-long instruction, in turn). It prints the share
of good frames answered, publish → action latency p50/p95/p99 next to the model's own p50 from
the same run, the node's RSS at 20% of the run and at the end, its frame ledger, and whether it
stopped cleanly on SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from trimodal_ros import interface as I
from trimodal_ros.model.configuration import DEFAULT_FUSION

NS = "/trimodal_bench"
RATES = (5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0)
INSTRUCTIONS = ("pick up the puck and place it at the goal", "push the red button down")


def start_load(n: int) -> List[subprocess.Popen]:
    """``n`` processes that each keep one core busy (a planner, a perception stack...)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, n))]


def stop_processes(procs) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return float("nan")


class _Client:
    """The robot's side: publishes the node's inputs and records when each answer arrives."""

    def __init__(self, context, reliability: str = "reliable", depth: int = 10):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String
        from trajectory_msgs.msg import JointTrajectory

        from trimodal_ros.ros.conversions import qos_profile

        self.node = rclpy.create_node("bench_ros_client", context=context)
        ns = NS + "/"
        self.instruction = self.node.create_publisher(String, ns + I.INSTRUCTION_TOPIC, qos_profile(I.LATCHED))
        self.joints = self.node.create_publisher(JointState, ns + I.JOINTS_TOPIC, qos_profile(I.RELIABLE))
        self.image = self.node.create_publisher(Image, ns + I.IMAGE_TOPIC, qos_profile(I.Qos(reliability, depth=depth)))
        self.arrivals: Dict[int, float] = {}  # camera stamp (ns) → time.perf_counter() at arrival
        self.trail: List[str] = []  # what reached the controller, in order: "action" or "hold"
        self.diag: Optional[dict] = None
        self.cv = threading.Condition()
        self.node.create_subscription(JointTrajectory, ns + I.ACTION_TOPIC, self._on_action, 100)
        self.node.create_subscription(DiagnosticArray, I.DIAGNOSTICS_TOPIC, self._on_diag, 10)

    def _on_action(self, msg) -> None:
        now = time.perf_counter()
        with self.cv:
            self.trail.append("action" if msg.points else "hold")
            self.arrivals[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = now
            self.cv.notify_all()

    def _on_diag(self, msg) -> None:
        for s in msg.status:
            if s.name.startswith(f"{NS}/vla_node"):
                with self.cv:
                    self.diag = {kv.key: kv.value for kv in s.values}
                    self.diag.update(_at=time.monotonic(), _message=s.message)
                    self.cv.notify_all()

    def send_joints(self, stamp_ns: int, names: List[str], positions=None) -> None:
        from trimodal_ros.ros.conversions import joints_to_msg, ns_to_stamp

        n = len(names)
        pos = np.zeros(n) if positions is None else positions
        self.joints.publish(joints_to_msg(names, pos, np.zeros(n), ns_to_stamp(stamp_ns)))

    def send(self, stamp_ns: int, rgb: np.ndarray, joints: Optional[List[str]] = None, encoding="rgb8") -> float:
        from trimodal_ros.ros.conversions import image_to_msg, ns_to_stamp

        if joints is not None:
            self.send_joints(stamp_ns, joints)
        msg = image_to_msg(rgb, ns_to_stamp(stamp_ns))
        msg.encoding = encoding  # a wrong one makes a malformed frame
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


class _Session:
    """vla_node in its own process, a client in this one, ``load`` busy processes beside them."""

    def __init__(self, fusion: str, device: str, checkpoint: str = "", load: int = 0, log=print,
                 startup_timeout: float = 180.0, extra: Optional[dict] = None):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from trimodal_ros.ros.bringup import spawn
        from trimodal_ros.ros.params import node_specs

        values = {"fusion": fusion, "device": device, "checkpoint": checkpoint, "image_qos_reliability": "reliable",
                  "max_input_age": "1.0", "allow_random_weights": "true", "namespace": NS, **(extra or {})}
        self.spec = node_specs(values)[0]
        self.proc = spawn(self.spec, log_level="warn", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.load = start_load(load)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.client = _Client(self.ctx)
        self.ex.add_node(self.client.node)
        self.spin = threading.Thread(target=self.ex.spin, daemon=True)
        self.spin.start()
        self.client.instruction.publish(__import__("std_msgs.msg", fromlist=["String"]).String(data=INSTRUCTIONS[0]))
        t_end = time.monotonic() + startup_timeout
        while self.client.fresh_diag(1.0) is None:
            if self.proc.poll() is not None or time.monotonic() > t_end:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.poll() is not None else ""
                self.close()
                raise RuntimeError(f"vla_node did not come up: {err or 'timeout'}")
        log(f"vla_node up in its own process (fusion={fusion}, device={device}, "
            f"torch_threads={self.client.diag.get('torch_threads')}, "
            f"{'checkpoint' if checkpoint else 'random weights'}), "
            f"{load} competing busy process(es), {os.cpu_count()} cores")

    def close(self) -> Optional[int]:
        """Stop everything; returns the node's exit code after SIGINT (None if it had to be killed)."""
        self.ex.shutdown()
        self.spin.join(timeout=5)
        self.client.node.destroy_node()
        import rclpy

        rclpy.try_shutdown(context=self.ctx)
        stop_processes(self.load)
        code = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # the node's clean shutdown path
            try:
                code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            code = self.proc.returncode
        return code


def echo_main() -> None:
    """``python -m trimodal_lab.bench.ros_bench``: a node with no model that answers each camera frame
    with an empty trajectory carrying its stamp. Its round trip is the floor any ROS 2 Python node
    pays for moving the frame in and the answer out; ``bench ros`` reports it beside the node's."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from trajectory_msgs.msg import JointTrajectory

    from trimodal_ros.ros.conversions import qos_profile

    rclpy.init()
    node = rclpy.create_node("echo", namespace=NS)
    pub = node.create_publisher(JointTrajectory, I.ACTION_TOPIC, qos_profile(I.RELIABLE))

    def on_image(msg):
        np.frombuffer(msg.data, np.uint8)  # what the node does with the bytes before decoding
        out = JointTrajectory()
        out.header.stamp = msg.header.stamp
        pub.publish(out)

    node.create_subscription(Image, I.IMAGE_TOPIC, on_image, qos_profile(I.RELIABLE))
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def transport_floor(size: int = 224, iters: int = 40) -> float:
    """p50 ms of publish → answer through the echo node (no model), in its own process."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    proc = subprocess.Popen([sys.executable, "-m", "trimodal_lab.bench.ros_bench"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    c = _Client(ctx)
    ex.add_node(c.node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    rgb = np.zeros((size, size, 3), np.uint8)
    lat = []
    try:
        c.wait(lambda: c.image.get_subscription_count() > 0, 60.0)
        for k in range(iters + 5):
            t = 2_000_000_000_000 + k
            t0 = c.send(t, rgb)
            if c.wait(lambda: t in c.arrivals, 5.0) and k >= 5:
                lat.append((c.arrivals[t] - t0) * 1e3)
            time.sleep(0.01)
    finally:
        ex.shutdown()
        th.join(timeout=5)
        c.node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return _pct(lat, 50)


def _pct(a, q) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def bench(fusion: str = DEFAULT_FUSION, device: str = "cpu", iters: int = 20, rates=RATES, size: int = 224,
          load: int = 0, log=print) -> dict:
    """Closed-loop latency, ratio to the model, highest loss-free camera rate; returns the figures."""
    from trimodal_ros.config import load_config

    joints = load_config(fusion).model.joint_names
    s = _Session(fusion, device, load=load, log=log)
    client = s.client
    rgb = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    stamp = [1_000_000_000_000]

    def next_stamp() -> int:
        stamp[0] += 1_000_000  # 1 ms apart: always fresh w.r.t. the joint state sent with it
        return stamp[0]

    result: dict = {"fusion": fusion, "device": device, "load": load}
    try:
        result["floor_p50_ms"] = transport_floor(size)
        log(f"transport floor (an rclpy node with no model echoing each {size}x{size} frame): "
            f"p50 {result['floor_p50_ms']:.2f} ms")
        for _ in range(3):  # warm-up: first text encoding, allocator, DDS buffers
            t = next_stamp()
            client.send(t, rgb, joints)
            client.wait(lambda: t in client.arrivals, 30.0)
        lat = []
        for _ in range(iters):
            t = next_stamp()
            t0 = client.send(t, rgb, joints)
            if client.wait(lambda: t in client.arrivals, 30.0):
                lat.append((client.arrivals[t] - t0) * 1e3)
        d = client.fresh_diag() or {}
        model50, model95 = float(d.get("latency_p50_ms", "nan")), float(d.get("latency_p95_ms", "nan"))
        result.update(e2e_p50_ms=_pct(lat, 50), e2e_p95_ms=_pct(lat, 95), model_p50_ms=model50, model_p95_ms=model95,
                      lost=iters - len(lat))
        result["ratio_p50"] = result["e2e_p50_ms"] / model50 if model50 > 0 else float("nan")
        log(f"image publish -> action received ({len(lat)}/{iters} frames): p50 {result['e2e_p50_ms']:.1f} ms, "
            f"p95 {result['e2e_p95_ms']:.1f} ms")
        log(f"model only (same run, node's own timing):  p50 {model50:.1f} ms, p95 {model95:.1f} ms")
        log(f"end-to-end / model p50 ratio: {result['ratio_p50']:.2f}; node overhead beyond the floor "
            f"{result['e2e_p50_ms'] - model50 - result['floor_p50_ms']:.2f} ms")
        sustained = 0.0
        for rate in rates:
            n = int(max(10, min(100, 3 * rate)))
            d0 = client.fresh_diag() or {}
            sent, t_next = [], time.perf_counter()
            for _ in range(n):
                t_next += 1.0 / rate
                t = next_stamp()
                client.send(t, rgb, joints)
                sent.append(t)
                time.sleep(max(0.0, t_next - time.perf_counter()))
            client.wait(lambda: all(x in client.arrivals for x in sent), 2.0 + 3 * model95 / 1e3)
            got = sum(x in client.arrivals for x in sent)
            d1 = client.fresh_diag() or {}
            replaced = int(d1.get("replaced", 0)) - int(d0.get("replaced", 0))
            ok = got == n
            log(f"camera {rate:5.1f} Hz: {got}/{n} frames gave an output, {replaced} replaced while busy"
                f"{'' if ok else '  <- drops'}")
            result.setdefault("rates", []).append({"rate_hz": rate, "frames": n, "outputs": got, "replaced": replaced})
            if not ok:
                break
            sustained = rate
        result["max_rate_hz"] = sustained
        log(f"highest camera rate without drops: {sustained:g} Hz"
            f"{' (the highest tried)' if sustained == rates[-1] else ''}")
    finally:
        s.close()
    return result


def soak(duration: float = 600.0, rate: float = 30.0, load: int = 0, checkpoint: str = "", fusion: str = DEFAULT_FUSION,
         device: str = "cpu", size: int = 224, joint_rate: float = 100.0, instruction_every: float = 30.0,
         log=print) -> dict:
    """The soak described in the module docstring; returns its figures."""
    from std_msgs.msg import String

    from trimodal_ros.config import load_config

    joints = load_config(fusion).model.joint_names
    s = _Session(fusion, device, checkpoint=checkpoint, load=load, log=log,
                 extra={"image_qos_reliability": "reliable", "image_qos_depth": "10"})
    c = s.client
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(4)]
    sent: Dict[int, float] = {}
    bad_sent = {"bad_image": 0, "nan_joints": 0, "bad_instruction": 0}
    rss: Dict[str, float] = {}
    d0 = c.fresh_diag() or {}
    t_start = time.perf_counter()
    nxt = {"frame": t_start, "joints": t_start, "bad": t_start + 0.5, "instruction": t_start + instruction_every}
    k = 0
    try:
        while (now := time.perf_counter()) < t_start + duration:
            stamp = time.time_ns()
            if now >= nxt["joints"]:
                c.send_joints(stamp, joints)
                nxt["joints"] += 1.0 / joint_rate
            if now >= nxt["frame"]:
                sent[stamp] = c.send(stamp, frames[k % len(frames)])
                k += 1
                nxt["frame"] += 1.0 / rate
            if now >= nxt["bad"]:
                kind = list(bad_sent)[sum(bad_sent.values()) % 3]
                if kind == "bad_image":
                    c.send(stamp + 1, frames[0][:8, :8], encoding="yuv422")
                elif kind == "nan_joints":
                    c.send_joints(stamp, joints, np.full(len(joints), np.nan))
                else:
                    c.instruction.publish(String(data="x" * 10_000))
                bad_sent[kind] += 1
                nxt["bad"] += 1.0
            if now >= nxt["instruction"]:
                c.instruction.publish(String(data=INSTRUCTIONS[int((now - t_start) // instruction_every) % 2]))
                nxt["instruction"] += instruction_every
            if "at_20" not in rss and now - t_start >= 0.2 * duration:
                rss["at_20"] = rss_mb(s.proc.pid)
            time.sleep(max(0.0, min(nxt["frame"], nxt["joints"], nxt["bad"]) - time.perf_counter()))
        c.wait(lambda: False, 2.0)  # let the last answers arrive
        rss["end"] = rss_mb(s.proc.pid)
        d = c.fresh_diag() or {}
    finally:
        code = s.close()
    answered = [t for t in sent if t in c.arrivals]
    lat = np.array([(c.arrivals[t] - sent[t]) * 1e3 for t in answered])
    counts = {k: int(d[k]) - int(d0.get(k, 0)) for k in ("frames_in", "outputs", "replaced", "bad_image",
                                                         "stale_image", "stale_joint_state", "waiting_for_joint_state",
                                                         "waiting_for_instruction", "inference_errors", "nan_joints",
                                                         "bad_instruction", "in_flight") if k in d}
    model50 = float(d.get("latency_p50_ms", "nan"))
    r = {"duration_s": duration, "rate_hz": rate, "load": load, "good_frames": len(sent),
         "answered": len(answered), "answered_pct": 100.0 * len(answered) / max(1, len(sent)),
         "e2e_p50_ms": _pct(lat, 50), "e2e_p95_ms": _pct(lat, 95), "e2e_p99_ms": _pct(lat, 99),
         "model_p50_ms": model50, "rss_mb_at_20pct": rss.get("at_20", float("nan")), "rss_mb_end": rss["end"],
         "malformed_sent": bad_sent, "node_counters": counts, "exit_code_after_sigint": code}
    r["p99_over_model_p50"] = r["e2e_p99_ms"] / model50 if model50 > 0 else float("nan")
    r["rss_growth_mb"] = r["rss_mb_end"] - r["rss_mb_at_20pct"]
    log(f"soak {duration:.0f} s at {rate:g} Hz, {load} busy process(es): {len(answered)}/{len(sent)} good frames "
        f"answered ({r['answered_pct']:.2f}%)")
    log(f"publish -> action: p50 {r['e2e_p50_ms']:.1f} ms, p95 {r['e2e_p95_ms']:.1f} ms, p99 {r['e2e_p99_ms']:.1f} ms; "
        f"model p50 {model50:.1f} ms (p99 / model p50 = {r['p99_over_model_p50']:.2f})")
    log(f"node RSS: {r['rss_mb_at_20pct']:.0f} MB at 20%, {r['rss_mb_end']:.0f} MB at the end "
        f"(growth {r['rss_growth_mb']:+.1f} MB)")
    log(f"malformed inputs sent {bad_sent}; node counted bad_image {counts.get('bad_image')}, nan_joints "
        f"{counts.get('nan_joints')}, bad_instruction {counts.get('bad_instruction')}")
    log(f"frame ledger over the run: {counts}")
    log(f"SIGINT: node exited with code {code}" + ("" if code == 0 else "  <- not a clean exit"))
    return r


def run(args) -> int:
    """Entry for ``trimodal-ros bench ros`` / ``bench soak``."""
    fusion = getattr(args, "fusion", None) or DEFAULT_FUSION
    try:
        if getattr(args, "checkpoint", None):
            from trimodal_ros.checkpoint import read_checkpoint

            fusion = read_checkpoint(args.checkpoint)["fusion"]
        load = args.load if args.load is not None else (1 if args.what == "record" else 0)
        if args.what == "record":
            from trimodal_lab.bench.record_bench import bench as bench_record

            bench_record(duration=args.duration, load=load)
        elif args.what == "faults":
            from trimodal_lab.bench.faults import faults

            faults(fusion=fusion, device=args.device)
        elif args.what == "soak":
            soak(duration=args.duration, rate=args.rate, load=load, checkpoint=args.checkpoint or "",
                 fusion=fusion, device=args.device)
        else:
            bench(fusion=fusion, device=args.device, iters=int(args.iters), load=load)
    except (RuntimeError, ValueError) as e:  # CheckpointError is a RuntimeError
        print(f"bench {args.what}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    echo_main()
