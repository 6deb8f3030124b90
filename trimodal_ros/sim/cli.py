"""``trimodal-ros sim`` (Meta-World as a ROS 2 robot) and ``trimodal-ros rollout`` (closed-loop
success rates, in-process or through ROS). Argument handling only; the work is in sim_node,
rollout and ros_rollout."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported anywhere


def cli_sim(args) -> int:
    import rclpy
    from rclpy.parameter import Parameter

    from ..ros.sim_node import SimNode, spin_until_finished

    params = {"task": args.task, "layout": args.layout, "instructions": args.instructions,
              "instruction": args.instruction or "", "seed": args.seed, "max_steps": args.max_steps,
              "size": args.size, "camera": args.camera, "execute_steps": args.execute_steps,
              "action_timeout": args.action_timeout, "episodes": args.episodes, "autostart": True}
    rclpy.init()
    try:
        try:
            node = SimNode(namespace=args.namespace or None,
                           parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        except Exception as e:
            print(f"trimodal-ros sim: cannot start: {type(e).__name__}: {e}")
            return 1
        print(f"simulating {args.task} as {node.get_fully_qualified_name()}; "
              f"{'Ctrl-C to stop' if args.episodes <= 0 else f'{args.episodes} episode(s)'}")
        try:
            spin_until_finished(node)
        finally:
            node.destroy_node()
        for o in node.outcomes:
            print(f"episode {o['episode']}: layout {o['layout']} {'success' if o['success'] else 'failure'} "
                  f"after {o['length']} steps")
    finally:
        rclpy.try_shutdown()
    return 0


def format_table(report: Dict[str, object], title: str) -> str:
    rows = [("task", "episodes", "success", "95% CI", "mean len", "control Hz")]
    blocks = list(report["per_task"].items()) + [("ALL", report["overall"])]
    for name, b in blocks:
        lo, hi = b["ci95"]
        rows.append((name, str(b["episodes"]), f"{b['success_rate']:.2f}", f"[{lo:.2f}, {hi:.2f}]",
                     f"{b['mean_length']:.1f}", f"{b['control_rate_hz']:.1f}"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title] + ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(2, "-" * len(lines[1]))
    return "\n".join(lines)


def cli_rollout(args) -> int:
    from ..config import ConfigError
    from ..data.instructions import resolve_tasks
    from ..model.checkpoint import CheckpointError, read_checkpoint
    from ..utils import pick_device

    try:
        tasks: List[str] = resolve_tasks(args.tasks)
    except ValueError as e:
        print(f"trimodal-ros rollout: {e}")
        return 1
    if not args.checkpoint:
        print(f"WARNING: no --checkpoint: fusion '{args.fusion or 'weighted_sum'}' with RANDOM WEIGHTS "
              f"(wiring check; expect ~0 success)")
    device = str(pick_device(args.device))
    fusion = args.fusion
    if args.checkpoint and not fusion:  # vla_node needs the fusion named: take the checkpoint's
        try:
            fusion = read_checkpoint(args.checkpoint)["fusion"]
        except CheckpointError as e:
            print(f"trimodal-ros rollout: {e}")
            return 1
    common = dict(tasks=tasks, episodes=args.episodes, split=args.split, seed=args.seed, max_steps=args.max_steps,
                  execute=args.execute, size=args.size, camera=args.camera, instructions=args.instructions)
    model = dict(checkpoint=args.checkpoint or "", fusion=fusion, config=args.config or "", device=device)
    out: Dict[str, object] = {"settings": {**common, **model, "model_seed": args.model_seed,
                                           "through_ros": args.through_ros, "compare": args.compare}}
    try:
        return _rollout(args, common, model, out)
    except (CheckpointError, ConfigError) as e:  # a wrong --checkpoint / --fusion / --config: say so
        print(f"trimodal-ros rollout: {e}")
        return 1


def _rollout(args, common, model, out) -> int:
    from ..io import atomic_write_json
    from .policy import build_policy
    from .rollout import rollout_in_process
    from .ros_rollout import compare_traces, rollout_through_ros

    traces_ros: list = []
    traces_in: list = []
    t0 = time.perf_counter()
    if args.through_ros or args.compare:
        out["through_ros"] = rollout_through_ros(**common, **model, model_seed=args.model_seed,
                                                 traces=traces_ros, action_timeout=args.action_timeout)
        print(format_table(out["through_ros"], "through ROS (sim_node <-> vla_node)"))
    if not args.through_ros or args.compare:
        policy = build_policy(seed=args.model_seed, **model)
        out["in_process"] = rollout_in_process(policy, **common, traces=traces_in)
        print(format_table(out["in_process"], "in-process"))
    if args.compare:
        out["agreement"] = a = compare_traces(traces_in, traces_ros)
        print(f"agreement: {a['identical_steps']}/{a['steps_compared']} steps identical, max |diff| "
              f"{a['max_abs_diff']:.3g}, episode lengths equal: {a['lengths_equal']}")
    out["seconds"] = time.perf_counter() - t0
    if args.out:
        path = atomic_write_json(Path(args.out) / "rollout.json", out)
        print(f"wrote {path}")
    return 0
