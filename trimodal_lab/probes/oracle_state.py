"""Does a ``state_input`` policy fail because it misplaces things, or because it does not act on
where they are?

Rolls the policy out as ``trimodal-ros rollout`` does (same episodes, same temporal ensembling),
once as trained and once with its state head's prediction replaced, every tick, by the simulator's
true state (``SIM_STATE_NAMES``: the object, the goal and, for 9-D models, the hand). If the
oracle does no better, the limit is how the action head uses the state, not how well the image
features estimate it. The oracle needs the simulator: it is a diagnostic, not a policy.

    python -m trimodal_lab.probes.oracle_state --checkpoint runs/mt10_policy/last.pt \
        [--tasks reach-v3,push-v3,pick-place-v3,peg-insert-side-v3] [--split heldout] [--episodes 10]
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager, nullcontext

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


class TruthRecorder:
    """A ``SawyerScene`` that keeps the true state of its latest observation (``truth``)."""

    def __init__(self, scene):
        self._scene, self.truth = scene, None

    def __getattr__(self, name):
        return getattr(self._scene, name)

    def reset(self, layout: int):
        obs = self._scene.reset(layout)
        self.truth = self._scene.state(obs)
        return obs

    def step(self, action):
        obs, info = self._scene.step(action)
        self.truth = self._scene.state(obs)
        return obs, info


@contextmanager
def true_state(head, truth):
    """Within the block the state head ``head`` answers with the standardised first S values of
    ``truth()`` (the simulator's state now) instead of its own prediction: a forward hook that
    replaces its output, removed on leaving."""
    import torch

    def replace(module, inputs, pred):  # pred: (B, S) standardised
        true = torch.as_tensor(truth()[:pred.shape[1]], dtype=pred.dtype, device=pred.device)
        return ((true - module.mean) / module.std).expand_as(pred)

    handle = head.register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--tasks", default="reach-v3,push-v3,pick-place-v3,peg-insert-side-v3")
    p.add_argument("--split", default="heldout")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--size", type=int, default=None, help="camera size (default: the training frames')")
    p.add_argument("--max-steps", type=int, default=150)
    args = p.parse_args(argv)

    import torch

    from trimodal_lab.metaworld import SawyerScene, sim_camera_spec
    from trimodal_ros.policy import Policy
    from trimodal_lab.sim.rollout import RolloutSpec, rollout_in_process

    torch.set_num_threads(1)
    policy = Policy.load(args.checkpoint)
    args.size = args.size or (policy.frame_size or (224,))[0]  # the run spec the checkpoint carries
    if not policy.model_config.state_input:
        print(f"{args.checkpoint} has no state head (model.state_input 0): nothing to replace")
        return 1
    head, camera, tasks = policy.model.state_head, sim_camera_spec(policy.model_config.cameras), args.tasks.split(",")
    scenes = {(t, camera, args.size): TruthRecorder(SawyerScene(t, camera=camera, size=args.size,
                                                                max_steps=args.max_steps)) for t in tasks}
    results = {"predicted": {}, "true": {}}
    try:
        for task in tasks:
            scene = scenes[(task, camera, args.size)]
            for mode in results:  # the same episodes, as trained and with the true state
                with true_state(head, lambda: scene.truth) if mode == "true" else nullcontext():
                    spec = RolloutSpec([task], args.episodes, args.split, max_steps=args.max_steps,
                                       size=args.size, camera=camera)
                    r = rollout_in_process(policy, spec, scenes=scenes, progress=False)
                results[mode][task] = [e["success"] for e in r["episodes"]]
    finally:
        for s in scenes.values():
            s.close()
    print(f"{'task':22s} {'predicted state':>16s} {'true state':>11s}   (successes of {args.episodes}, "
          f"{args.split} layouts)")
    for task in tasks:
        a, b = results["predicted"][task], results["true"][task]
        print(f"{task:22s} {sum(a):>16d} {sum(b):>11d}")
    a, b = (np.concatenate([results[m][t] for t in tasks]) for m in ("predicted", "true"))
    print(f"{'all':22s} {int(a.sum()):>16d} {int(b.sum()):>11d}   only predicted {int((a & ~b).sum())}, "
          f"only true {int((b & ~a).sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
