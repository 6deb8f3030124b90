"""``trimodal-ros sim``: the simulator as a ROS 2 robot (``ros.sim_node``) in this process;
``trimodal-ros rollout``: closed-loop success rates in Meta-World, in-process (``sim.rollout``) or
through ROS (``ros.rollout``, imported only for ``--through-ros`` / ``--compare``: it needs rclpy).
Argument handling only."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported anywhere


def register(sub) -> None:
    p = sub.add_parser("sim", help="run Meta-World as a ROS 2 robot (camera, joints, instruction, /clock; "
                                   "steps on trimodal/action)")
    p.add_argument("--task", required=True, help="Meta-World v3 task, e.g. reach-v3 or drawer-open-v3@lang")
    p.add_argument("--layout", type=int, default=-1, help="layout 0-49 (40-49 held out), 50 and up extra "
                   "train layouts; -1 cycles the held-out layouts 40-49")
    p.add_argument("--instructions", default="train", choices=["train", "heldout"], help="paraphrase set")
    p.add_argument("--instruction", default=None, help="this exact command instead of a paraphrase")
    p.add_argument("--episodes", type=int, default=0, help="episodes before exiting; 0 runs until Ctrl-C")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--size", type=int, default=224, help="square camera image size in pixels")
    p.add_argument("--camera", default="corner", help="Meta-World camera, or named cameras primary first for a "
                   "multi-camera model (corner,top_camera=topview publishes top_camera/image_raw too)")
    p.add_argument("--execute-steps", type=int, default=1, help="trajectory points executed per frame")
    p.add_argument("--action-timeout", type=float, default=5.0, help="wall seconds before a frame is re-sent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--namespace", default="")
    p.set_defaults(func=cli_sim)
    p = sub.add_parser("rollout", help="closed-loop success rate of a checkpoint in Meta-World "
                                       "(in-process or through ROS)")
    p.add_argument("--checkpoint", default=None, help="trained .pt; omit to run random weights (wiring)")
    p.add_argument("--fusion", default=None, help="fusion variant (must match the checkpoint, if any)")
    p.add_argument("--config", default=None, help="config for random weights (default: the fusion's)")
    p.add_argument("--tasks", required=True, help="comma list of Meta-World v3 tasks (or <task>@lang), "
                   "or mt10 / mt50 / lang")
    p.add_argument("--episodes", type=int, default=10, help="episodes (layouts) per task")
    p.add_argument("--through-ros", action="store_true", help="via sim_node <-> vla_node over DDS")
    p.add_argument("--compare", action="store_true", help="run both paths and compare their actions")
    p.add_argument("--split", default="heldout", choices=["heldout", "val", "train", "all"],
                   help="layouts (the test set is rolled out only by `trimodal-study run`)")
    p.add_argument("--layouts", default=None, help="explicit layouts for every task, e.g. 35-49 or 35,40-42 "
                   "(replaces --split and --episodes)")
    p.add_argument("--instructions", default="train", choices=["train", "heldout", "other_task", "empty"],
                   help="the task's train or held-out paraphrases, another task's instruction (the other task "
                   "of a language-critical group), or none (in-process only)")
    p.add_argument("--wordings", default=None, help="YAML file {task: [wording, ...]}: your own phrasings, "
                   "drawn per episode for the tasks it names")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--execute", type=int, default=None, help="actions of each predicted chunk executed "
                   "(default: the checkpoint's inference.execute_steps)")
    p.add_argument("--ensemble", type=float, default=None,
                   help="override the checkpoint's inference.ensemble (ACT temporal ensembling, m); in-process only")
    p.add_argument("--no-ensemble", action="store_true", help="switch the checkpoint's temporal ensembling off")
    p.add_argument("--size", type=int, default=None, help="camera image size (default: the training frames' "
                   "size the checkpoint records, else 224)")
    p.add_argument("--camera", default=None, help="Meta-World camera spec (e.g. corner,top_camera=topview); "
                   "default: the simulated cameras of the model's named cameras")
    p.add_argument("--seed", type=int, default=0, help="layout / instruction draw")
    p.add_argument("--model-seed", type=int, default=0, help="random-weight init (no checkpoint)")
    p.add_argument("--action-timeout", type=float, default=60.0, help="through ROS: wall s per model answer")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="folder for rollout.json")
    p.set_defaults(func=cli_rollout)


def cli_sim(args) -> int:
    """``trimodal-ros sim``: sim_node in this process until its episodes are done (or Ctrl-C)."""
    import rclpy
    from rclpy.parameter import Parameter

    from trimodal_lab.ros.sim_node import SimNode, spin_until_finished
    from trimodal_ros.ros import signals

    params = {"task": args.task, "layout": args.layout, "instructions": args.instructions,
              "instruction": args.instruction or "", "seed": args.seed, "max_steps": args.max_steps,
              "size": args.size, "camera": args.camera, "execute_steps": args.execute_steps,
              "action_timeout": args.action_timeout, "episodes": args.episodes, "autostart": True}
    signals.init()
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


def read_wordings(path) -> Dict[str, List[str]]:
    """A YAML file {task: [wording, ...]} (the user's own phrasings), checked."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"--wordings {path}: not a readable YAML file: {e}") from None
    ok = isinstance(data, dict) and all(isinstance(t, str) and isinstance(w, list) and w and
                                        all(isinstance(x, str) and x.strip() for x in w) for t, w in data.items())
    if not ok:
        raise ValueError(f"--wordings {path}: expected {{task: [non-empty wording, ...]}}")
    return data


def rollout_plan(tasks: List[str], args, allow_test: bool = False):
    """The episodes ``args`` ask for (``sim.rollout.episode_plan``); test layouts only for the study."""
    from trimodal_lab.metaworld import TEST_LAYOUTS, parse_layouts
    from trimodal_lab.sim.rollout import episode_plan

    layouts = parse_layouts(args.layouts) if args.layouts else None
    if not allow_test and layouts and set(layouts) & set(TEST_LAYOUTS):
        raise ValueError(f"layouts {TEST_LAYOUTS[0]}-{TEST_LAYOUTS[-1]} are the study's test set: they are rolled "
                         f"out once per pre-registered run, by `trimodal-study run`")
    if args.instructions == "empty" and (args.through_ros or args.compare):
        raise ValueError("an empty instruction stops vla_node: --instructions empty runs in-process only")
    wordings = read_wordings(args.wordings) if args.wordings else None
    unknown = sorted(set(wordings or {}) - set(tasks))
    if unknown:
        raise ValueError(f"--wordings names tasks not rolled out: {unknown}")
    return episode_plan(tasks, args.episodes, args.split, args.seed, args.instructions, layouts, wordings)


def cli_rollout(args) -> int:
    from trimodal_ros.config import ConfigError
    from trimodal_ros.model.configuration import DEFAULT_FUSION
    from trimodal_ros.data.instructions import resolve_tasks
    from trimodal_ros.checkpoint import CheckpointError, read_checkpoint
    from trimodal_ros.utils import pick_device

    try:
        tasks: List[str] = resolve_tasks(args.tasks)
    except ValueError as e:
        print(f"trimodal-ros rollout: {e}")
        return 1
    if (args.ensemble is not None or args.no_ensemble) and (args.through_ros or args.compare):
        print("trimodal-ros rollout: --ensemble/--no-ensemble change only the in-process policy; vla_node "
              "ensembles as the checkpoint's inference section says, so the paths would differ")
        return 1
    if not args.checkpoint:
        print(f"WARNING: no --checkpoint: fusion '{args.fusion or DEFAULT_FUSION}' with RANDOM WEIGHTS "
              f"(wiring check; expect ~0 success)")
    device = str(pick_device(args.device))
    fusion = args.fusion
    if args.checkpoint:  # what the run spec in the checkpoint says, unless given
        try:
            ck = read_checkpoint(args.checkpoint)
        except CheckpointError as e:
            print(f"trimodal-ros rollout: {e}")
            return 1
        fusion = fusion or ck["fusion"]
        args.size = args.size or (ck.get("frame_size") or [224])[0]
        args.execute = args.execute or ck["config"].get("inference", {}).get("execute_steps", 1)
    args.size, args.execute = args.size or 224, args.execute or 1
    try:
        plan = rollout_plan(tasks, args)
    except ValueError as e:
        print(f"trimodal-ros rollout: {e}")
        return 1
    common = dict(tasks=tasks, episodes=args.episodes, split=args.split, seed=args.seed, max_steps=args.max_steps,
                  execute=args.execute, size=args.size, camera=args.camera, instructions=args.instructions,
                  plan=plan)
    model = dict(checkpoint=args.checkpoint or "", fusion=fusion, config=args.config or "", device=device)
    settings = {k: v for k, v in common.items() if k != "plan"}
    settings.update(layouts=args.layouts, wordings=args.wordings)
    out: Dict[str, object] = {"settings": {**settings, **model, "model_seed": args.model_seed,
                                           "through_ros": args.through_ros, "compare": args.compare,
                                           "ensemble_override": "off" if args.no_ensemble else args.ensemble}}
    try:
        return _rollout(args, common, model, out)
    except (CheckpointError, ConfigError) as e:  # a wrong --checkpoint / --fusion / --config: say so
        print(f"trimodal-ros rollout: {e}")
        return 1


def _rollout(args, common, model, out) -> int:
    from trimodal_ros.io import atomic_write_json
    from trimodal_ros.policy import Policy
    from trimodal_lab.sim.rollout import RolloutSpec, rollout_in_process
    from trimodal_lab.ros.rollout import PolicySource, compare_traces, rollout_through_ros

    traces_ros: list = []
    traces_in: list = []
    t0 = time.perf_counter()
    if args.through_ros or args.compare:
        out["through_ros"] = rollout_through_ros(RolloutSpec(**common), PolicySource(**model, seed=args.model_seed),
                                                 traces=traces_ros, action_timeout=args.action_timeout)
        print(format_table(out["through_ros"], "through ROS (sim_node <-> vla_node)"))
    if not args.through_ros or args.compare:
        inference = {"ensemble": None} if args.no_ensemble else (
            {"ensemble": args.ensemble} if args.ensemble is not None else None)
        policy = Policy.load(seed=args.model_seed, execute=args.execute, inference=inference, **model)
        out["in_process"] = rollout_in_process(policy, RolloutSpec(**common), traces=traces_in)
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
