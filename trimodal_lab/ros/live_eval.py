"""Live evaluation: replay a bag through the running ``vla_node`` over real DDS, collect what it
publishes, and score it against the expert — next to the offline evaluation of the same frames.

The node's trajectory carries the camera frame's stamp, so every output is matched to the bag
frame it answers; tokens are recovered exactly from the decoded actions (bin centres re-encode
to their own bin). Frames the node dropped (a newer frame replaced them) are reported, not scored.
"""

from __future__ import annotations

import threading
import time
from typing import Dict

import numpy as np

from trimodal_ros import interface as I
from trimodal_ros.utils import wait_for
from trimodal_lab.eval.metrics import token_metrics


def live_evaluate(checkpoint, bag, namespace: str = "live_eval", rate: float = 1.0, device: str = "cpu",
                  settle: float = 2.0, on_output=None, lockstep: bool = False) -> Dict[str, object]:
    """Replay ``bag`` (one episode folder) through a vla_node running ``checkpoint``.

    ``lockstep`` publishes each camera frame only once the previous one was answered (up to 2 s):
    it measures agreement on every frame, on a machine too busy to keep up with the bag's rate."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from trajectory_msgs.msg import JointTrajectory

    from trimodal_ros.data.dataset import BagDataset
    from trimodal_ros.policy import Policy
    from trimodal_lab.eval.evaluate import run_inference
    from trimodal_ros.ros.bringup import Bringup
    from trimodal_ros.ros.conversions import trajectory_to_numpy
    from trimodal_ros.ros.replay import replay

    policy = Policy.load(str(checkpoint), device=device)
    tokenizer, cfg = policy.tokenizer, policy.config
    ds = BagDataset.from_config(bag, cfg.model, robot=cfg.robot, split="all", verbose=False)
    if len(ds) == 0:
        raise ValueError(f"{bag}: no aligned frames to evaluate")
    offline = run_inference(policy, ds, batch_size=64, progress=False)
    ep = ds.episodes[0]
    stamps = ep.meta["start_ns"] + ds.steps * ep.meta["control_period_ns"]  # (N,) each sample's frame stamp
    index_of = {int(s): i for i, s in enumerate(stamps)}

    ctx = Context()
    rclpy.init(context=ctx)
    up = None
    received: Dict[int, np.ndarray] = {}
    recv_wall: Dict[int, float] = {}
    sent_wall: Dict[int, float] = {}
    listener = rclpy.create_node("live_eval_listener", namespace=namespace, context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    try:
        up = Bringup({"checkpoint": str(checkpoint), "fusion": cfg.model.fusion, "device": device,
                      "namespace": namespace, "image_qos_reliability": "reliable", "image_qos_depth": "10",
                      "max_input_age": "0.5"}, context=ctx).start()

        def on_traj(msg: JointTrajectory) -> None:
            s = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            received[s] = trajectory_to_numpy(msg)
            recv_wall[s] = time.monotonic()
            if on_output is not None and s in index_of:
                i = index_of[s]
                on_output(int(ds.steps[i]), tokenizer.encode(received[s]), offline["true"][i])

        sub = listener.create_subscription(JointTrajectory, I.ACTION_TOPIC, on_traj, 100)
        ex.add_node(listener)
        spin = threading.Thread(target=ex.spin, daemon=True)
        spin.start()
        cam, *others = (I.absolute(I.image_topic(c), namespace) for c in cfg.model.cameras)
        if not wait_for(lambda: listener.count_subscribers(cam) > 0 and sub.get_publisher_count() > 0, 30.0):
            raise RuntimeError("vla_node's camera subscription and action publisher did not appear within 30 s")

        def on_msg(topic: str, stamp_ns: int) -> None:
            if topic == cam:
                sent_wall[stamp_ns] = time.monotonic()
                if lockstep:
                    wait_for(lambda: stamp_ns in received, 2.0, every=0.002)

        t0 = time.monotonic()
        replay(bag, rate=rate, namespace=namespace, context=ctx, delay=0.5, on_message=on_msg,
               require_subscribers=[cam, *others] + [I.absolute(t, namespace) for t in (I.JOINTS_TOPIC,
                                                                                       I.INSTRUCTION_TOPIC)])
        wait_for(lambda: len(received) >= len(sent_wall), settle)
        wall = time.monotonic() - t0
        counters = up.nodes[0].ledger.snapshot()
        node_model_ms = up.nodes[0].ledger.latencies_ms()
    finally:
        ex.shutdown()
        if up is not None:
            up.shutdown()
        listener.destroy_node()
        rclpy.try_shutdown(context=ctx)

    got = [index_of[s] for s in received if s in index_of]
    if not got:
        raise RuntimeError("the node published no action for any frame of the bag")
    got = np.array(sorted(got))
    live_tokens = np.stack([tokenizer.encode(received[int(stamps[i])]) for i in got])
    off = token_metrics(offline["pred"][got], offline["true"][got], offline["mask"][got])
    live = token_metrics(live_tokens, offline["true"][got], offline["mask"][got])
    lat = np.array([recv_wall[int(stamps[i])] - sent_wall[int(stamps[i])] for i in got
                    if int(stamps[i]) in sent_wall]) * 1e3
    return {
        "bag": str(bag), "frames": len(ds), "frames_answered": int(len(got)),
        "frames_dropped_by_node": int(len(ds) - len(got)),
        "live_token_accuracy": live["token_accuracy"], "offline_token_accuracy_same_frames": off["token_accuracy"],
        "live_offline_token_agreement": float((live_tokens == offline["pred"][got]).mean()),
        "end_to_end_latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "end_to_end_latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
        "model_only_ms_per_sample_offline_batched": 1e3 * offline["seconds_model"] / len(ds),
        "node_model_latency_ms_p50": float(np.percentile(node_model_ms, 50)) if node_model_ms.size else float("nan"),
        "wall_seconds": wall,
        "node_counters": {k: v for k, v in counters.items() if v},
    }
