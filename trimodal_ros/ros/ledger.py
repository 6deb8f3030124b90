"""vla_node's bookkeeping, without rclpy: every camera frame accounted for, counters of bad input,
latencies and rates, and the diagnostics level they add up to.

Every frame that arrives ends in exactly one outcome, so at any moment

    frames_in = outputs + replaced + bad_image + stale_image + stale_joint_state
                + waiting_for_instruction + waiting_for_joint_state + waiting_for_camera
                + stale_camera + inactive + paused + instruction_mismatch + inference_errors + in_flight

(``in_flight``: waiting in the one-slot mailbox or being inferred). A frame is one of the primary
camera; a multi-camera model's other cameras are inputs like joint states (``*_camera`` outcomes
when one has no frame at or before the tick, ``bad_secondary_image`` when one is undecodable).
``unaccounted`` reports the difference, which is 0 unless the node has a bug; ``/diagnostics``
publishes all of it.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

# why a frame got no output while inputs are missing or stale: (log text, level); the node also holds
WAITS = {"waiting_for_instruction": ("waiting for an instruction on 'instruction'", "info"),
         "waiting_for_joint_state": ("waiting for joint_states at or before the camera stamp", "info"),
         "stale_joint_state": ("joint_states older than the camera frame by more than max_input_age: "
                               "no output until fresh", "warning"),
         "waiting_for_camera": ("waiting for a frame of every camera the model sees at or before the primary's stamp",
                                "warning"),
         "stale_camera": ("another camera's latest frame is older than max_input_age: no output until fresh",
                          "warning")}


def input_events(node, topic: str):
    """rclpy event callbacks for ``node``'s subscription to ``topic``: a missed input deadline and a
    publisher whose QoS cannot connect are counted in ``node.ledger`` and logged."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    def deadline(event):
        node.ledger.count("input_deadline_missed")
        node._log("input_deadline_missed", f"{topic}: no message within input_deadline "
                  f"{node.params['input_deadline']} s ({event.total_count} misses)")

    def incompatible(event):
        node.ledger.count("incompatible_qos")
        node._log("incompatible_qos", f"{topic}: a publisher's QoS does not match this subscription "
                  f"(policy {event.last_policy_kind}): it is not connected", "error")
    return SubscriptionEventCallbacks(deadline=deadline, incompatible_qos=incompatible)


FRAME_OUTCOMES = ("outputs", "replaced", "bad_image", "stale_image", "stale_joint_state",
                  "waiting_for_instruction", "waiting_for_joint_state", "waiting_for_camera", "stale_camera",
                  "inactive", "paused", "overtaken", "instruction_mismatch", "inference_errors")
INPUT_COUNTERS = ("bad_joint_state", "nan_joints", "missing_joints", "unknown_joint_names", "bad_instruction",
                  "instructions", "superseded_instructions", "instruction_timeouts", "bad_secondary_image",
                  "holds", "input_deadline_missed", "incompatible_qos")
FAILURES = ("bad_image", "inference_errors", "stale_joint_state", "waiting_for_joint_state", "stale_image",
            "waiting_for_camera", "stale_camera", "instruction_mismatch")

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels


class Ledger:
    """Thread-safe counters. ``frame_in`` when a frame arrives, ``settle(outcome)`` when it ends;
    ``hold``/``release`` track the frames in flight."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: Dict[str, int] = {k: 0 for k in ("frames_in",) + FRAME_OUTCOMES + INPUT_COUNTERS}
        self.in_flight = 0
        self._latency = collections.deque(maxlen=500)  # model seconds
        self._arrivals = {k: collections.deque(maxlen=400) for k in ("image", "joint_states", "output")}
        self._history: collections.deque = collections.deque(maxlen=16)  # (time, counts) for windows

    def frame_in(self) -> None:
        with self._lock:
            self.counts["frames_in"] += 1
            self.in_flight += 1
            self._arrivals["image"].append(time.monotonic())

    def settle(self, outcome: str, latency: Optional[float] = None) -> None:
        """A frame in flight ended in ``outcome`` (one of FRAME_OUTCOMES)."""
        with self._lock:
            self.counts[outcome] += 1
            self.in_flight -= 1
            if outcome == "outputs":
                self._arrivals["output"].append(time.monotonic())
                if latency is not None:
                    self._latency.append(latency)

    def count(self, kind: str) -> int:
        with self._lock:
            self.counts[kind] += 1
            return self.counts[kind]

    def joint_state(self) -> None:
        with self._lock:
            self._arrivals["joint_states"].append(time.monotonic())

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            c = dict(self.counts, in_flight=self.in_flight)
        c["unaccounted"] = c["frames_in"] - sum(c[k] for k in FRAME_OUTCOMES) - c["in_flight"]
        return c

    def latencies_ms(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._latency, dtype=np.float64) * 1e3

    def rate(self, key: str, window: float = 5.0) -> float:
        now = time.monotonic()
        with self._lock:
            ts = [t for t in self._arrivals[key] if now - t <= window]
        return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0.0

    def age(self, key: str) -> float:
        with self._lock:
            a = self._arrivals[key]
            return time.monotonic() - a[-1] if a else float("nan")

    def values(self) -> Dict[str, str]:
        """Rates, ages, model latency and every counter, as diagnostics strings."""
        lat = self.latencies_ms()
        pct = lambda q: f"{np.percentile(lat, q):.2f}" if lat.size else "nan"  # noqa: E731
        return {"image_rate_hz": f"{self.rate('image'):.2f}",
                "joint_states_rate_hz": f"{self.rate('joint_states'):.2f}",
                "output_rate_hz": f"{self.rate('output'):.2f}", "image_age_s": f"{self.age('image'):.3f}",
                "joint_states_age_s": f"{self.age('joint_states'):.3f}", "latency_p50_ms": pct(50),
                "latency_p95_ms": pct(95), **{k: str(v) for k, v in self.snapshot().items()}}

    def window(self, seconds: float = 3.0) -> Dict[str, int]:
        """Counter increments over about the last ``seconds`` (from the snapshots kept by ``status``)."""
        now, c = time.monotonic(), self.snapshot()
        self._history.append((now, c))
        base = next((h for t, h in self._history if now - t <= seconds), c)
        return {k: c[k] - base.get(k, 0) for k in c}

    def status(self, active: bool, has_task: bool, random_weights: bool, stale_after: float) -> Tuple[int, str]:
        """(level, message) of the node's diagnostics right now.

        STALE: active but no camera frame for ``stale_after`` seconds (or none yet); ERROR: frames
        arrived lately and none gave an output because of bad images, model errors or missing/stale
        joint states; WARN: random weights, no task, inactive, or some frames failed."""
        w = self.window()
        problems: List[str] = []
        level = OK
        if random_weights:
            problems.append("RANDOM WEIGHTS (no checkpoint)")
            level = WARN
        if not active:
            return max(level, WARN), "; ".join(problems + ["inactive (lifecycle)"])
        if not has_task:
            problems.append("no instruction")
            level = WARN
        age = self.age("image")
        if not age <= stale_after:  # also nan: no frame yet
            problems.append("no camera frames" + ("" if age != age else f" for {age:.1f} s"))
            return STALE, "; ".join(problems)
        failed = {k: w[k] for k in FAILURES if w[k]}
        if w["frames_in"] and not w["outputs"] and failed:
            problems.append("every recent frame failed: " + ", ".join(f"{k} {v}" for k, v in failed.items()))
            return ERROR, "; ".join(problems)
        if failed:
            problems.append("some frames failed: " + ", ".join(f"{k} {v}" for k, v in failed.items()))
            level = WARN
        return level, "; ".join(problems) or "ok"
