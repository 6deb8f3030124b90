"""Can the scripted expert finish from where a trained policy left the scene?

For each task and layout: the policy drives for N steps (as ``trimodal-ros rollout`` does, one
action per tick, the checkpoint's own temporal ensembling), then Meta-World's scripted expert takes
over until success or the step limit. An expert that cannot recover from the policy's states gives
no useful labels there, so DAgger- or DART-style data (expert labels on states the policy visits)
cannot teach the policy to recover on those tasks. Episodes the policy finishes before N are not
counted. ``--trace`` prints instead, every 8 steps of one policy-driven episode of the first task
on the first layout, the hand and object positions with the policy's action next to the action the
expert would take in that state.

    python -m trimodal_lab.probes.expert_takeover --checkpoint runs/mt10_policy/last.pt \
        [--tasks push-v3,pick-place-v3,reach-v3,peg-insert-side-v3] [--layouts 35-39] [--after 40,80] [--trace]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--tasks", default="push-v3,pick-place-v3,reach-v3,peg-insert-side-v3")
    p.add_argument("--layouts", default="35-39", help="a range, e.g. 35-39 (the validation layouts)")
    p.add_argument("--after", default="40,80", help="policy steps before the expert takes over")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--size", type=int, default=None, help="camera size (default: the training frames')")
    p.add_argument("--trace", action="store_true", help="print one policy episode next to the expert's answers")
    args = p.parse_args()

    import torch

    from trimodal_lab.metaworld import SawyerScene, expert_policy, parse_layouts, sim_camera_spec
    from trimodal_ros.policy import Policy

    torch.set_num_threads(1)
    policy = Policy.load(args.checkpoint)
    args.size = args.size or (policy.frame_size or (224,))[0]  # the run spec the checkpoint carries
    camera = sim_camera_spec(policy.model_config.cameras)
    tasks, layouts = args.tasks.split(","), parse_layouts(args.layouts)
    if args.trace:  # one episode of the first task and layout, driven by the policy throughout
        scene = SawyerScene(tasks[0], camera=camera, size=args.size, max_steps=args.max_steps)
        print(f"{tasks[0]}, layout {layouts[0]}: hand xyz, gripper opening, object xyz | policy action | "
              "expert action")
        ok, t = episode(scene, policy, expert_policy(tasks[0]), layouts[0], args.max_steps, args.max_steps,
                        trace=True)
        print(f"success at step {t + 1}" if ok else "no success")
        scene.close()
        return 0
    afters = [int(n) for n in args.after.split(",")]
    print(f"{'task':20} " + " ".join(f"{'after ' + str(n):>12}" for n in afters))
    for task in tasks:
        scene = SawyerScene(task, camera=camera, size=args.size, max_steps=args.max_steps)
        expert = expert_policy(task)
        cells = []
        for n in afters:
            recovered = counted = 0
            for layout in layouts:
                ok, t = episode(scene, policy, expert, layout, n, args.max_steps)
                if t >= n or not ok:  # the policy did not finish on its own
                    counted += 1
                    recovered += int(ok)
            cells.append(f"{recovered:>5}/{counted:<6}")
        scene.close()
        print(f"{task:20} " + " ".join(f"{c:>12}" for c in cells), flush=True)
    return 0


def episode(scene, policy, expert, layout: int, after: int, max_steps: int, trace: bool = False):
    """The policy drives ``layout`` for ``after`` steps, then the expert, through the rollouts' stepper
    (one action a tick, clipped to the scene's bounds); (success, last step). ``trace`` prints every
    8th state with the policy's action and the expert's answer to it."""
    from trimodal_lab.sim.rollout import EpisodeStepper
    from trimodal_ros.data.instructions import instruction_for

    stepper = EpisodeStepper(scene, max_steps)
    stepper.reset(layout)
    policy.reset(instruction_for(scene.task, np.random.default_rng([layout, 5]), "train"))
    while not stepper.done:
        t = stepper.steps
        if t < after:
            a = policy.act(*stepper.observe()).actions[:1]  # (1, A): this tick's action
        else:
            a = np.asarray(expert.get_action(scene.obs))[None]
        if trace and t % 8 == 0:
            o, mine, e = scene.obs, np.clip(a[0], -1.0, 1.0), np.clip(expert.get_action(scene.obs), -1.0, 1.0)
            print(f"{t:4d} {np.round(o[0:3], 3)} {o[3]:.2f} {np.round(o[4:7], 3)} | {np.round(mine, 2)} | "
                  f"{np.round(e, 2)}")
        stepper.apply(a)
    return stepper.success, stepper.steps - 1

if __name__ == "__main__":
    raise SystemExit(main())
