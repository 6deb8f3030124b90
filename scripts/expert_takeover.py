#!/usr/bin/env python3
"""Can the scripted expert finish from where a trained policy left the scene?

For each task and layout: the policy drives for N steps (as ``trimodal-ros rollout`` does, one
action per tick, the checkpoint's own temporal ensembling), then Meta-World's scripted expert takes
over until success or the step limit. An expert that cannot recover from the policy's states gives
no useful labels there, so DAgger- or DART-style data (expert labels on states the policy visits)
cannot teach the policy to recover on those tasks. Episodes the policy finishes before N are not
counted. ``--trace`` prints instead, every 8 steps of one policy-driven episode of the first task
on the first layout, the hand and object positions with the policy's action next to the action the
expert would take in that state.

    PYTHONPATH=. MUJOCO_GL=egl python scripts/expert_takeover.py --checkpoint runs/mt10_policy/last.pt \
        [--tasks push-v3,pick-place-v3,reach-v3,peg-insert-side-v3] [--layouts 35-39] [--after 40,80] [--trace]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def parse_layouts(spec: str):
    a, _, b = spec.partition("-")
    return list(range(int(a), int(b or a) + 1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--tasks", default="push-v3,pick-place-v3,reach-v3,peg-insert-side-v3")
    p.add_argument("--layouts", default="35-39", help="a range, e.g. 35-39 (the validation layouts)")
    p.add_argument("--after", default="40,80", help="policy steps before the expert takes over")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--trace", action="store_true", help="print one policy episode next to the expert's answers")
    args = p.parse_args()

    import torch

    from trimodal_ros.data.instructions import instruction_for
    from trimodal_ros.data.metaworld import SawyerScene, expert_policy, sim_camera_spec
    from trimodal_ros.policy import Policy

    torch.set_num_threads(1)
    policy = Policy.load(args.checkpoint)
    camera = sim_camera_spec(policy.model_config.cameras)
    afters = [int(n) for n in args.after.split(",")]
    if args.trace:
        return trace(policy, camera, args)
    print(f"{'task':20} " + " ".join(f"{'after ' + str(n):>12}" for n in afters))
    for task in args.tasks.split(","):
        scene = SawyerScene(task, camera=camera, size=args.size, max_steps=args.max_steps)
        expert = expert_policy(task)
        cells = []
        for n in afters:
            recovered = counted = 0
            for layout in parse_layouts(args.layouts):
                obs = scene.reset(layout)
                policy.reset(instruction_for(task, np.random.default_rng([layout, 5]), "train"))
                for t in range(args.max_steps):
                    if t < n:
                        pos, vel = scene.joints()
                        a = policy.act(scene.views(), pos, vel).actions[0]
                    else:
                        a = expert.get_action(obs)
                    obs, info = scene.step(np.clip(a, -1.0, 1.0))
                    if info.get("success", 0.0) >= 1.0:
                        break
                if t >= n or info.get("success", 0.0) < 1.0:  # the policy did not finish on its own
                    counted += 1
                    recovered += int(info.get("success", 0.0) >= 1.0)
            cells.append(f"{recovered:>5}/{counted:<6}")
        scene.close()
        print(f"{task:20} " + " ".join(f"{c:>12}" for c in cells), flush=True)
    return 0


def trace(policy, camera, args) -> int:
    from trimodal_ros.data.instructions import instruction_for
    from trimodal_ros.data.metaworld import SawyerScene, expert_policy

    task, layout = args.tasks.split(",")[0], parse_layouts(args.layouts)[0]
    scene = SawyerScene(task, camera=camera, size=args.size, max_steps=args.max_steps)
    expert = expert_policy(task)
    obs = scene.reset(layout)
    policy.reset(instruction_for(task, np.random.default_rng([layout, 5]), "train"))
    print(f"{task}, layout {layout}: hand xyz, gripper opening, object xyz | policy action | expert action")
    for t in range(args.max_steps):
        pos, vel = scene.joints()
        a = np.clip(policy.act(scene.views(), pos, vel).actions[0], -1.0, 1.0)
        if t % 8 == 0:
            e = np.clip(expert.get_action(obs), -1.0, 1.0)
            print(f"{t:4d} {np.round(obs[0:3], 3)} {obs[3]:.2f} {np.round(obs[4:7], 3)} | {np.round(a, 2)} | {np.round(e, 2)}")
        obs, info = scene.step(a)
        if info.get("success", 0.0) >= 1.0:
            print(f"success at step {t + 1}")
            break
    scene.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
