"""``trimodal-reacher``: the second robot's data, expert and closed-loop scores.

    trimodal-reacher generate --out data/reacher --train 400 --val 50 --heldout 100
    trimodal-reacher expert --split heldout --episodes 100
    trimodal-reacher rollout --checkpoint runs/reacher/last.pt --split heldout --episodes 100 --ros

``rollout`` runs the policy in process, or with ``--ros`` through sim_node (``sim:=reacher``) and
vla_node over DDS, as a robot would; ``--out FILE`` writes the report (per-episode outcomes, success
with its 95% interval, the expert's on the same layouts) atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

import numpy as np

from . import scene as S


def expert_report(layouts: List[int], max_steps: int = S.MAX_STEPS) -> Dict[str, object]:
    """The scripted expert on ``layouts``: the ceiling the policy is compared to."""
    from trimodal_lab.sim.rollout import expert_episode, summarize

    scene = S.ReacherScene(max_steps=max_steps)
    try:
        outcomes = [expert_episode(scene, S.expert_action, lay, max_steps) for lay in layouts]
    finally:
        scene.close()
    return summarize(outcomes)


def _policy_on_camera(model: ThreadPoolExecutor, policy):
    """act(views, positions, velocities) → the chunk, on the model thread (torch off the EGL thread:
    sim/rollout.py), each frame first through the jpeg round trip of the camera topic (``scene.as_sent``)."""
    return lambda views, q, qd: model.submit(policy.act, {k: S.as_sent(f) for k, f in views.items()}, q,
                                             qd).result().actions


def rollout_in_process(checkpoint: str, layouts: List[int], device: str = "cpu", execute: int = 1,
                       max_steps: int = S.MAX_STEPS, progress: bool = True,
                       traces: Optional[List[List[np.ndarray]]] = None) -> Dict[str, object]:
    """The checkpoint's policy on ``layouts``, no ROS in between; each frame goes through the jpeg
    round trip the robot's compressed camera topic puts it through (``scene.as_sent``), so this path
    and the one through ROS execute the same actions. ``traces``, if a list, receives each
    episode's executed actions."""
    from tqdm import tqdm

    from trimodal_ros.policy import Policy
    from trimodal_lab.sim.rollout import run_episode, summarize

    policy = Policy.load(checkpoint, device=device, execute=execute)
    model = ThreadPoolExecutor(1, thread_name_prefix="policy")
    act = _policy_on_camera(model, policy)
    scene, outcomes = S.ReacherScene(max_steps=max_steps), []
    try:
        for lay in tqdm(layouts, desc="rollout", disable=not progress, dynamic_ncols=True):
            model.submit(policy.reset, S.INSTRUCTION, True).result()
            trace = [] if traces is not None else None
            outcomes.append(run_episode(scene, act, lay, max_steps, execute, trace))
            if traces is not None:
                traces.append(trace)
    finally:
        scene.close()
        model.shutdown()
    return summarize(outcomes)


def rollout_delayed(checkpoint: str, layouts: List[int], delay: int, blend: str = "ensemble", m: float = 0.0,
                    device: str = "cpu", max_steps: int = S.MAX_STEPS, progress: bool = True,
                    forecast: Optional[bool] = None) -> Dict[str, object]:
    """The policy with a model ``delay`` control periods slow, executed asynchronously by the chunk
    executor (``delay`` 0: a fresh chunk every tick, the synchronous case), in simulated time
    (``sim.rollout.run_episode_async``). Adds the action jumps at chunk hand-overs and elsewhere.
    ``forecast``: infer on the positions commanded for the chunk's arrival (default: the
    checkpoint's ``inference.forecast``)."""
    from tqdm import tqdm

    from trimodal_ros.executor import ChunkExecutor
    from trimodal_ros.policy import Policy
    from trimodal_lab.sim.rollout import action_jumps, run_episode_async, summarize

    policy = Policy.load(checkpoint, device=device, execute=1, inference={"ensemble": None})
    forecast = policy.config.inference.forecast if forecast is None else forecast
    joints = policy.config.forecast_targets() if forecast else None  # ConfigError: why it cannot
    ex = ChunkExecutor(policy.model_config.chunk, blend=blend, m=m)
    model = ThreadPoolExecutor(1, thread_name_prefix="policy")
    act = _policy_on_camera(model, policy)
    scene, outcomes, at, other = S.ReacherScene(max_steps=max_steps), [], [], []
    try:
        for lay in tqdm(layouts, desc=f"rollout delay={delay}", disable=not progress, dynamic_ncols=True):
            model.submit(policy.reset, S.INSTRUCTION, True).result()
            trace, bounds = [], []
            outcomes.append(run_episode_async(scene, act, lay, max_steps, delay, ex, hold=lambda pos: pos,
                                              trace=trace, boundaries=bounds, forecast=joints))
            a, o = action_jumps(trace, bounds)
            at, other = at + a, other + o
    finally:
        scene.close()
        model.shutdown()
    report = summarize(outcomes)
    report["execution"] = {"delay_periods": delay, "blend": blend, "m": m, "forecast": bool(forecast), **ex.counts,
                           "jump_at_handover_rad": float(np.mean(at)) if at else float("nan"),
                           "jump_elsewhere_rad": float(np.mean(other)) if other else float("nan")}
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="trimodal-reacher", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="scripted demonstrations as rosbag2 bags (the gym_reacher spec's layout)")
    g.add_argument("--out", required=True)
    for split, n in (("train", 400), ("val", 50), ("heldout", 0), ("test", 0)):
        g.add_argument(f"--{split}", type=int, default=n, help=f"episodes of {split} layouts (default {n})")
    g.add_argument("--size", type=int, default=96)
    for name in ("expert", "rollout"):
        r = sub.add_parser(name, help="the scripted expert's success" if name == "expert" else
                           "the policy's closed-loop success (in process, or --ros through sim_node and vla_node)")
        r.add_argument("--split", default="val", choices=sorted(S.SPLITS))
        r.add_argument("--episodes", type=int, default=50)
        r.add_argument("--max-steps", type=int, default=S.MAX_STEPS)
        r.add_argument("--out", default="", help="write the report here (JSON)")
        if name == "rollout":
            r.add_argument("--checkpoint", required=True)
            r.add_argument("--ros", action="store_true", help="through sim_node and vla_node over DDS")
            r.add_argument("--device", default="cpu")
            r.add_argument("--execute-steps", type=int, default=1)
            r.add_argument("--delay", type=int, default=-1, help="asynchronous execution with a model this many "
                           "control periods slow (simulated time; 0: a fresh chunk every tick)")
            r.add_argument("--blend", default="ensemble", choices=["ensemble", "latest"])
            r.add_argument("--forecast", default=None, action=argparse.BooleanOptionalAction,
                           help="with --delay: infer on the joint targets commanded for the chunk's arrival, not "
                                "the positions when inference starts (default: the checkpoint's inference.forecast)")
            r.add_argument("--m", type=float, default=0.0, help="the ensembling weight exp(-m·i) (i = 0: the oldest "
                                                               "chunk; m < 0 favours the newest)")
    a = ap.parse_args(argv)
    if a.cmd == "generate":
        from .record import generate

        layouts = [lay for split in S.SPLITS for lay in S.split_layouts(split, getattr(a, split))]
        done = generate(a.out, layouts, size=a.size)
        kept = sum(m["success"] for m in done)
        print(f"wrote {len(done)} bags ({kept} successful) under {a.out}; {len(layouts) - len(done)} were there")
        return 0
    layouts = S.split_layouts(a.split, a.episodes)
    expert = expert_report(layouts, a.max_steps)
    if a.cmd == "expert":
        report = expert
    elif a.delay >= 0:
        report = rollout_delayed(a.checkpoint, layouts, a.delay, a.blend, a.m, a.device, a.max_steps,
                                 forecast=a.forecast)
    elif a.ros:
        from trimodal_lab.ros.rollout import PolicySource, rollout_through_ros
        from trimodal_lab.sim.rollout import RolloutSpec

        spec = RolloutSpec(plan=[(S.TASK, lay, S.INSTRUCTION) for lay in layouts], max_steps=a.max_steps,
                           execute=a.execute_steps, size=96)
        report = rollout_through_ros(spec, PolicySource(checkpoint=a.checkpoint, device=a.device), sim="reacher",
                                     action_timeout=30.0)
    else:
        report = rollout_in_process(a.checkpoint, layouts, a.device, a.execute_steps, a.max_steps)
    o = report["overall"]
    e = expert["overall"]
    print(f"{a.cmd} {'through ROS ' if getattr(a, 'ros', False) else ''}on {a.split} layouts: "
          f"success {o['successes']}/{o['episodes']} = {o['success_rate']:.3f} "
          f"(95% CI {o['ci95'][0]:.3f}-{o['ci95'][1]:.3f}), mean length {o['mean_length']:.1f}; "
          f"expert {e['success_rate']:.3f}, ratio {o['success_rate'] / max(e['success_rate'], 1e-9):.3f}")
    if a.out:
        report = {"command": " ".join(["trimodal-reacher", *(argv if argv is not None else sys.argv[1:])]),
                  "split": a.split, "layouts": layouts, "expert": expert["overall"], **report}
        tmp = a.out + ".tmp"
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, a.out)
    return 0
