"""Check the language-critical groups (trimodal_ros/data/language_tasks.py) on many layouts.

For every group and layout: render the first frame of every task of the group (SawyerScene, the
path generate / rollout / sim_node use) and compare pixels; run each task's scripted expert from
that state (success, length); and replay each expert's actions in the *other* tasks' envs, in
lockstep from the same state, to see whether they complete the other task too ("cross-success":
what a policy that ignores the instruction and always does task A scores on task B).

    python -m trimodal_lab.probes.check_language_tasks [--layouts 0-49] [--size 128]
        [--max-steps 200] [--save-frames DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layouts", default="0-49")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--groups", default="", help="comma list of group names (default: all)")
    ap.add_argument("--save-frames", default="", help="folder for one PNG per group (first layout)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Constant", category=UserWarning)

    from trimodal_ros.data import language_tasks as LT
    from trimodal_lab.metaworld import SawyerScene, expert_policy, parse_layouts

    layouts = parse_layouts(args.layouts)
    groups = [g for g in LT.GROUPS if not args.groups or g.name in args.groups.split(",")]
    ok = True
    for g in groups:
        names = [t + LT.SUFFIX for t in g.tasks]
        scenes = {t: SawyerScene(t, "corner", args.size, args.max_steps) for t in names}
        diff_max, diff_px = 0, 0
        succ = {t: [] for t in names}
        lens = {t: [] for t in names}
        cross = {(a, b): 0 for a in names for b in names}
        t_sim = t_steps = 0
        try:
            for li, layout in enumerate(layouts):
                frames = {}
                for t in names:
                    scenes[t].reset(layout)
                    frames[t] = scenes[t].render()
                ref = frames[names[0]].astype(int)
                for t in names[1:]:
                    d = np.abs(frames[t].astype(int) - ref)
                    diff_max = max(diff_max, int(d.max()))
                    diff_px = max(diff_px, int((d.max(-1) > 0).sum()))
                if args.save_frames and li == 0:
                    from PIL import Image

                    os.makedirs(args.save_frames, exist_ok=True)
                    Image.fromarray(np.concatenate([frames[t] for t in names], 1)).save(
                        os.path.join(args.save_frames, f"{g.name}_layout{layout}.png"))
                for a in names:  # expert a drives its env; every other env replays its actions
                    obs = {t: scenes[t].reset(layout) for t in names}
                    pol = expert_policy(a)
                    hit = {t: False for t in names}
                    first = None
                    c = time.perf_counter()
                    for i in range(args.max_steps):
                        act = np.clip(np.asarray(pol.get_action(obs[a]), np.float64), -1, 1)
                        for t in names:
                            obs[t], info = scenes[t].step(act)
                            hit[t] |= info.get("success", 0.0) >= 1.0
                        if hit[a] and first is None:
                            first = i + 1
                    t_sim += time.perf_counter() - c
                    t_steps += args.max_steps * len(names)
                    succ[a].append(hit[a])
                    lens[a].append(first or args.max_steps)
                    for b in names:
                        cross[(a, b)] += hit[b]
        finally:
            for s in scenes.values():
                s.close()
        n = len(layouts)
        print(f"group {g.name} ({g.about}); anchor {g.anchor}; {n} layouts, {args.size}px")
        print(f"  first frames: max |pixel difference| {diff_max}, pixels that differ (worst layout) {diff_px}")
        for t in names:
            print(f"  expert {t}: {sum(succ[t])}/{n}, mean length to success {np.mean(lens[t]):.0f} steps")
        print("  cross-success (row: expert whose actions run, column: task whose success is counted):")
        for a in names:
            print(f"    {a:26s}" + "".join(f"{cross[(a, b)]:5d}" for b in names))
        print(f"  sim+expert {1e3 * t_sim / max(1, t_steps):.2f} ms per env step (no rendering)")
        ok &= diff_max == 0 and all(cross[(a, b)] == 0 for a in names for b in names if a != b)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
