"""Closed-loop rollouts through ROS 2: sim_node (Meta-World, or another ``sim``) ↔ vla_node (the model), real topics
over DDS, both in this process on one executor; vla_node is started through ``ros.bringup``
with the launch arguments ``ros2 launch`` would get.

Runs the same ``RolloutSpec`` (layouts, instructions) as ``rollout_in_process`` and steps with
the same ``EpisodeStepper``, so with a deterministic model and synchronous stepping the two
paths execute the same actions; ``compare_traces`` measures how close they are.

Two things the topics alone cannot carry, done here through the in-process node handles:

* vla_node restarts its task (empty action history) when an instruction arrives, but an episode
  that repeats the previous instruction must not race that message: before each episode the
  driver calls ``VLANode.reset_history()`` (each in-process episode also starts from ``reset``).
* Frames must not reach vla_node before the episode's instruction does (topics are not ordered
  against each other); sim_node waits until vla_node holds the new instruction.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from trimodal_lab.sim.rollout import EpisodeOutcome, RolloutSpec, summarize

_RUNS = itertools.count()


def _holds(vla, instruction: str):
    want = " ".join(instruction.split())  # vla_node normalises whitespace
    return lambda: vla.instruction() == want


@dataclass(frozen=True)
class PolicySource:
    """What vla_node loads: a checkpoint, or (without one) random weights of a fusion or config."""

    checkpoint: str = ""
    fusion: Optional[str] = None
    config: str = ""
    device: str = "cpu"
    seed: int = 0


def rollout_through_ros(spec: RolloutSpec, source: PolicySource = PolicySource(), progress: bool = True,
                        traces: Optional[List[List[np.ndarray]]] = None, action_timeout: float = 60.0,
                        namespace: Optional[str] = None, sim: str = "metaworld") -> Dict[str, object]:
    """``rollout_in_process``'s report (plus a "ros" block of node counters), measured through
    sim_node and vla_node, on ``spec``'s episodes (another ``sim`` than Meta-World needs an explicit
    ``spec.plan``). ``traces``, if a list, receives each episode's executed actions."""
    import rclpy
    from rclpy.parameter import Parameter
    from tqdm import tqdm

    from trimodal_ros.ros.bringup import Bringup
    from trimodal_lab.ros.sim_node import SimNode  # its SawyerScene loads Triton before Mesa's EGL

    max_steps, execute, size, camera = spec.max_steps, spec.execute, spec.size, spec.camera
    ns = namespace or f"/rollout_{os.getpid()}_{next(_RUNS)}"
    plan = spec.episode_plan()
    if any(not text for _, _, text in plan):
        raise ValueError("an empty instruction stops vla_node: the empty condition runs in-process only")
    tasks = list(dict.fromkeys(t for t, _, _ in plan))
    context = rclpy.Context()
    rclpy.init(context=context)
    up, sims, outcomes, ros_counts = None, [], [], {}
    bar = tqdm(total=len(plan), desc="rollout (ROS)", disable=not progress, dynamic_ncols=True)
    try:
        # vla_node exactly as `ros2 launch ... use_sim_time:=true` starts it (the one parameter table)
        values = {"fusion": source.fusion, "config": source.config, "checkpoint": source.checkpoint,
                  "device": source.device, "seed": source.seed, "use_sim_time": True,
                  "image_qos_reliability": "reliable", "image_qos_depth": 2, "execute_steps": execute,
                  "allow_random_weights": not source.checkpoint, "namespace": ns}
        up = Bringup({k: v for k, v in values.items() if v is not None}, context=context).start()
        vla = up.nodes[0]
        if sim == "metaworld" and not camera:
            from trimodal_lab.metaworld import sim_camera_spec

            camera = sim_camera_spec(vla.policy.model_config.cameras)
        for task in tasks:  # one sim_node per task, on the simulator named by ``sim``
            node = SimNode("sim_node", namespace=ns, context=context, parameter_overrides=[
                Parameter(k, value=v) for k, v in {
                    "sim": sim, "task": task, "size": size, "camera": camera or "corner", "max_steps": max_steps,
                    "execute_steps": execute, "action_timeout": action_timeout, "autostart": False}.items()])
            sims.append(node)
            up.executor.add_node(node)
            _wait_matched(node)
            try:
                for i, (_, layout, instruction) in enumerate(e for e in plan if e[0] == task):
                    vla.reset_history()
                    node.start_episode(layout, instruction, ready=_holds(vla, instruction))
                    if not node.wait_episodes(i + 1, timeout=action_timeout * (max_steps + 2)):
                        raise TimeoutError(f"{task} layout {layout}: episode did not finish ({node.counts()})")
                    o = node.outcome(i)
                    outcomes.append(EpisodeOutcome(task, o["layout"], o["success"], o["length"], o["ticks"],
                                                   o["seconds"]))
                    if traces is not None:
                        traces.append(node.trace(i))
                    bar.update(1)
            finally:
                for k, v in node.counts().items():
                    ros_counts[f"sim.{k}"] = ros_counts.get(f"sim.{k}", 0) + v
                up.executor.remove_node(node)
                sims.remove(node)
                node.destroy_node()
        lat = vla.ledger.latencies_ms()
        ros_counts.update({f"vla.{k}": v for k, v in vla.ledger.snapshot().items()})
        ros_counts["vla.latency_p50_ms"] = float(np.percentile(lat, 50)) if lat.size else float("nan")
    finally:
        bar.close()
        if up is not None:
            up.shutdown()  # executor first: rclpy.shutdown() under a spinning executor aborts
        for n in sims:
            n.destroy_node()
        rclpy.try_shutdown(context=context)
    report = summarize(outcomes)
    report["ros"] = ros_counts
    return report


def _wait_matched(sim, timeout: float = 10.0) -> None:
    """Discovery: the first frame must not go out before vla_node's subscriptions match."""
    import time

    end = time.monotonic() + timeout
    pubs = (sim._pub_image, sim._pub_joints, sim._pub_instruction)
    while time.monotonic() < end and not all(p.get_subscription_count() > 0 for p in pubs):
        time.sleep(0.01)


def compare_traces(a: List[List[np.ndarray]], b: List[List[np.ndarray]]) -> Dict[str, object]:
    """Per-step agreement of two rollouts' executed actions (episode by episode, step by step)."""
    steps = identical = 0
    max_diff, first = 0.0, None
    lengths_equal = True
    for e, (x, y) in enumerate(zip(a, b)):
        lengths_equal &= len(x) == len(y)
        for s, (u, v) in enumerate(zip(x, y)):
            d = float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
            steps += 1
            identical += d == 0.0
            max_diff = max(max_diff, d)
            if d > 0 and first is None:
                first = [e, s]
    return {"episodes": min(len(a), len(b)), "steps_compared": steps, "identical_steps": identical,
            "max_abs_diff": max_diff, "first_difference": first, "lengths_equal": bool(lengths_equal)}
