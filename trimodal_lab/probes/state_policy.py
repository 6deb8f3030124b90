"""What can the demonstrations teach a policy that sees everything? A ceiling for the pixel policies.

Behaviour cloning from the simulator's true state: an MLP reads the recorded object, goal and hand
positions (``/sim/state``), the joints and the task's index, and predicts the recipe's action
tokens (4-step chunks, 256 bins, the same tokenizer fit); it is rolled out with the true state
every tick and ACT temporal ensembling, as ``trimodal-ros rollout`` runs the MT10 policy. Where
this policy fails, the demonstrations (not the camera, not the image tower) are what is missing:
with it the policy study traced reach's failures to bags that end at the expert's first success (and tried
``generate --after-success``) and saw the joint velocities' copycat shortcut (``--joints``). It
needs the simulator's state: a diagnostic, not a policy.

    python -m trimodal_lab.probes.state_policy --data data/mt10_192_hand \
        [--joints all|positions|none] [--tasks reach-v3,push-v3] [--steps 3000] [--split val] [--episodes 5]
"""

from __future__ import annotations

import argparse
import os
from types import SimpleNamespace

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from trimodal_ros.config import SAWYER_JOINTS, load_config  # noqa: E402

RECIPE = load_config("mt10_policy")  # the shipped recipe: the MLP copies its tokens and its ensembling
CHUNK, BINS = RECIPE.model.chunk, RECIPE.model.bins
JOINTS = {"all": slice(None), "positions": slice(0, len(SAWYER_JOINTS)), "none": slice(0, 0)}  # of pos + vel


def load(data: str, state: int = 9, joints: str = "all"):
    """(inputs (N, S + P + T) float32, tokens (N, K, A), mask (N, K), normalisation, task names, the
    tokenizer); ``joints`` picks what of the joint positions and velocities (P) the MLP reads."""
    from trimodal_ros.data.dataset import BagDataset
    from trimodal_ros.model.action_tokenizer import ActionTokenizer

    ds = BagDataset(data, chunk=CHUNK, split="train", images=False, state=state, verbose=False)
    if not len(ds):
        raise SystemExit(f"no train samples with a {state}-D /sim/state under {data}")
    items = [ds[i] for i in range(len(ds))]
    tasks = sorted({it["task"] for it in items})
    task = np.array([tasks.index(it["task"]) for it in items])
    tok = ActionTokenizer.fit(ds.actions, BINS)
    prop = ds.proprio[:, JOINTS[joints]]
    norm = (ds.state.mean(0), ds.state.std(0) + 1e-6, prop.mean(0), prop.std(0) + 1e-6)
    return (features(ds.state, prop, task, norm, len(tasks)), tok.encode(np.stack([it["actions"] for it in items])),
            np.stack([it["action_mask"] for it in items]), norm, tasks, tok)


def features(state, proprio, task, norm, n_tasks: int) -> np.ndarray:
    """(N, S + P + T): the standardised state and joints and the task's one-hot, as trained."""
    sm, ss, pm, ps = norm
    onehot = np.eye(n_tasks, dtype=np.float32)[np.asarray(task)]
    return np.concatenate([(state - sm) / ss, (proprio - pm) / ps, onehot], 1).astype(np.float32)


def train(x, tokens, mask, steps: int, hidden: int = 512, layers: int = 3, batch: int = 256, seed: int = 0,
          lr: float = 1e-3):
    """The MLP and its training-batch token accuracy at the end."""
    import torch
    import torch.nn as nn
    from tqdm import tqdm

    from trimodal_ros.model.objective import action_ce  # the recipe's own masked token loss

    torch.manual_seed(seed)
    a = tokens.shape[-1]
    dims = [x.shape[1]] + [hidden] * layers
    net = nn.Sequential(*[m for i, o in zip(dims, dims[1:]) for m in (nn.Linear(i, o), nn.GELU())],
                        nn.Linear(dims[-1], CHUNK * a * BINS))
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + np.cos(np.pi * t / steps)))  # cosine
    X, T, M = torch.as_tensor(x), torch.as_tensor(tokens), torch.as_tensor(mask, dtype=torch.float32)
    rng, acc = np.random.default_rng(seed), float("nan")
    for _ in tqdm(range(steps), desc="state policy", dynamic_ncols=True):
        i = torch.as_tensor(rng.integers(0, len(X), batch))
        logits = net(X[i]).view(len(i), CHUNK, a, BINS)  # (B, K, A, bins)
        loss = action_ce(SimpleNamespace(logits=logits), {"tokens": T[i], "mask": M[i]})
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        acc = float(((logits.argmax(-1) == T[i]).float().mean(-1) * M[i]).sum() / M[i].sum())
    return net.eval(), acc


class StatePolicy:
    """The ``Policy`` surface ``rollout_in_process`` drives, acting on ``scene.truth``."""

    model_config = SimpleNamespace(cameras=["camera"])
    execute = 1

    def __init__(self, net, tok, norm, tasks, joints: str = "all"):
        from trimodal_ros.policy import TemporalEnsembler

        self.net, self.tok, self.norm, self.tasks, self.joints = net, tok, norm, tasks, JOINTS[joints]
        self.ensembler = TemporalEnsembler(CHUNK, RECIPE.inference.ensemble)
        self.scene = self.task = None

    def reset(self, instruction, empty_ok=False):
        self.ensembler.reset()

    def act(self, views, pos, vel=None, stamp=None):
        import torch

        proprio = np.concatenate([pos, np.zeros_like(pos) if vel is None else vel])[None, self.joints]
        x = features(self.scene.truth[None, :len(self.norm[0])], proprio, [self.tasks.index(self.task)],
                     self.norm, len(self.tasks))
        with torch.no_grad():
            tokens = self.net(torch.as_tensor(x)).view(CHUNK, -1, BINS).argmax(-1).numpy()
        actions = self.tok.decode(tokens).copy()
        actions[0] = self.ensembler(actions)
        return SimpleNamespace(actions=actions)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="bags recorded by generate (with the hand in /sim/state)")
    p.add_argument("--tasks", default=None, help="tasks to roll out (default: every task in the bags)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--split", default="val")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--joints", choices=list(JOINTS), default="all", help="what the MLP reads of the joints: "
                   "positions and velocities, positions only, or nothing (the hand is in the state)")
    args = p.parse_args(argv)

    import torch

    from trimodal_lab.probes.oracle_state import TruthRecorder
    from trimodal_lab.metaworld import SawyerScene, sim_camera_spec
    from trimodal_lab.sim.rollout import RolloutSpec, rollout_in_process

    torch.set_num_threads(2)
    x, tokens, mask, norm, tasks, tok = load(args.data, joints=args.joints)
    roll = args.tasks.split(",") if args.tasks else tasks
    if set(roll) - set(tasks):
        raise SystemExit(f"no train bags of {sorted(set(roll) - set(tasks))} under {args.data}: nothing to learn")
    net, acc = train(x, tokens, mask, args.steps, seed=args.seed)
    print(f"trained on {len(x)} samples of {len(tasks)} tasks, {args.steps} steps: batch token accuracy {acc:.3f}")
    policy, camera, size = StatePolicy(net, tok, norm, tasks, args.joints), sim_camera_spec(["camera"]), 32
    total = 0
    for task in roll:
        policy.task = task
        policy.scene = TruthRecorder(SawyerScene(task, camera=camera, size=size, max_steps=args.max_steps))
        try:
            spec = RolloutSpec([task], args.episodes, args.split, max_steps=args.max_steps, size=size, camera=camera)
            r = rollout_in_process(policy, spec, scenes={(task, camera, size): policy.scene}, progress=False)
        finally:
            policy.scene.close()
        k = r["overall"]["successes"]
        total += k
        print(f"{task:22s} {k}/{args.episodes} ({args.split} layouts, true state)", flush=True)
    print(f"{'all':22s} {total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
