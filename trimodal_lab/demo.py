"""``trimodal-ros demo``: the whole pipeline on this machine, no robot needed.

1. generate a small Meta-World expert bag set (skipped when it is there),
2. train a tiny tri-modal model on its train layouts (skipped when the checkpoint is there),
3. evaluate it offline on held-out layouts and paraphrases,
4. bring up ``vla_node`` with it, replay a held-out bag through it over real DDS and print the live
   action tokens next to the expert's, then a summary.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

DEMO_TASKS = "reach-v3,button-press-topdown-v3,drawer-close-v3,window-open-v3"


def _header(i: int, text: str) -> None:
    print(f"\n=== [{i}/4] {text}", flush=True)


def register(sub) -> None:
    p = sub.add_parser("demo", help="generate bags, train a tiny model, evaluate it, run it live through vla_node")
    p.add_argument("--data", default="data/demo", help="bag folder (generated when missing)")
    p.add_argument("--run", default="runs/demo", help="run folder; RUN/<fusion>/last.pt is reused when present")
    p.add_argument("--fusion", default=None, help="fusion variant (default: the package default)")
    p.add_argument("--tasks", default=DEMO_TASKS)
    p.add_argument("--episodes", type=int, default=10, help="episodes per task")
    p.add_argument("--size", type=int, default=128, help="camera image size")
    p.add_argument("--steps", type=int, default=400, help="training steps")
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed")
    p.add_argument("--every", type=int, default=8, help="print every N-th frame")
    p.add_argument("--realtime", action="store_true",
                   help="replay at the bag's timing (default: lockstep, every frame answered)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args) -> int:
    logging.basicConfig(level=logging.WARNING)
    from trimodal_ros.config import ConfigError, config_from_dict, load_config
    from trimodal_lab.metaworld import generate, summarize
    from trimodal_lab.eval.evaluate import evaluate
    from trimodal_lab.ros.live_eval import live_evaluate
    from trimodal_ros.checkpoint import CheckpointError, read_checkpoint
    from trimodal_ros.train.trainer import train

    from trimodal_ros.model.configuration import DEFAULT_FUSION

    t_start = time.perf_counter()
    fusion = args.fusion or DEFAULT_FUSION
    data, run_dir = Path(args.data), Path(args.run) / fusion
    _header(1, f"Meta-World expert episodes → ROS 2 bags in {data}")
    rep = generate(args.tasks, episodes=args.episodes, out=data, size=args.size, seed=0, max_steps=150)
    summarize(rep)

    cfg = load_config(fusion)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=args.steps))
    ckpt = run_dir / "last.pt"
    _header(2, f"train {cfg.model.fusion} / {cfg.train.loss} for {cfg.train.steps} steps → {ckpt}")
    reuse = False
    if ckpt.exists() and not args.retrain:
        try:
            saved = read_checkpoint(ckpt)
            old = config_from_dict(saved["config"], retired_ok=True).to_dict()  # keys added since: defaults
            reuse = old == cfg.to_dict() and saved["step"] == cfg.train.steps
        except (CheckpointError, ConfigError):  # unreadable, or a variant this version no longer has
            reuse = False
    if reuse:
        print(f"reusing {ckpt} (--retrain to train again)")
    else:
        t = time.perf_counter()
        train(cfg, data, run_dir, device=args.device)
        print(f"trained in {time.perf_counter() - t:.0f} s")

    _header(3, "offline evaluation on held-out layouts (same preprocessing and alignment as the node)")
    rep_l = evaluate(ckpt, data, run_dir / "eval_heldout_layouts", split="heldout", instructions="train",
                     device=args.device, progress=False)
    rep_p = evaluate(ckpt, data, run_dir / "eval_heldout_paraphrases", split="heldout", instructions="heldout",
                     device=args.device, progress=False)
    chance = rep_l["retrieval_chance"]["R@1"]
    print(f"held-out layouts     : token accuracy {rep_l['token_accuracy']:.3f}, action MAE {rep_l['action_mae']:.3f}, "
          f"image→text R@1 {rep_l['retrieval']['image->text']['R@1']:.3f}, mean R@1 (6 pairs) "
          f"{rep_l['retrieval']['mean']['R@1']:.3f} (chance {chance:.3f})")
    print(f"+ held-out paraphrases: token accuracy {rep_p['token_accuracy']:.3f}, "
          f"text→image R@1 {rep_p['retrieval']['text->image']['R@1']:.3f}")
    print(f"report: {run_dir / 'eval_heldout_layouts' / 'report.md'}")

    from trimodal_ros.data.bags import find_bags
    from trimodal_ros.data.episodes import episode_meta

    held = [b for b in find_bags(data) if episode_meta(b).get("layout_split") == "heldout"]
    if not held:
        print("no held-out bag to replay: generate more episodes (--episodes)")
        return 1
    bag = held[0]
    meta = episode_meta(bag)
    _header(4, f"live: vla_node + replay of {bag.name} ({meta['task']}, layout {meta['layout']}) over DDS")
    print(f"instruction: \"{meta['instruction']}\"  ("
          + ("bag timing: the node drops frames it cannot keep up with" if args.realtime else
             "lockstep: each frame is published once the previous one was answered; --realtime for bag timing")
          + ")")
    print(f"{'frame':>5}  {'expert tokens (next action)':<28} {'live tokens':<28} match")
    shown = []

    def show(step, live, expert):
        if step % args.every == 0:
            e, lv = expert[0].tolist(), live[0].tolist()
            print(f"{step:5d}  {str(e):<28} {str(lv):<28} {sum(a == b for a, b in zip(e, lv))}/4", flush=True)
        shown.append(step)

    live = live_evaluate(ckpt, bag, rate=args.rate, device=args.device if args.device != "auto" else "cpu",
                         on_output=show, lockstep=not args.realtime)
    print("\n=== summary")
    print(f"live token accuracy      : {live['live_token_accuracy']:.3f} on {live['frames_answered']}/{live['frames']} "
          f"frames ({live['frames_dropped_by_node']} dropped by the node: a newer frame replaced them)")
    print(f"offline, same frames     : {live['offline_token_accuracy_same_frames']:.3f} "
          f"(live/offline token agreement {live['live_offline_token_agreement']:.3f})")
    print(f"retrieval (held-out)     : mean R@1 {rep_l['retrieval']['mean']['R@1']:.3f} vs chance {chance:.3f}")
    print(f"end-to-end latency       : p50 {live['end_to_end_latency_ms_p50']:.1f} ms, p95 "
          f"{live['end_to_end_latency_ms_p95']:.1f} ms (bag publish → action received, real DDS); the node's "
          f"model time p50 {live['node_model_latency_ms_p50']:.1f} ms in the same run")
    print(f"demo took {time.perf_counter() - t_start:.0f} s")
    return 0
