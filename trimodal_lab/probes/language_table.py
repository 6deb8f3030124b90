"""The language-critical closed-loop table: one row per trained run, one column per instruction
condition (``scripts/lang_eval.sh`` writes ``RUN/CONDITION/rollout.json``), with Wilson intervals,
the held-out / train ratio, and for ``other_task`` how often the *scene's* task still got done
(the policy following the scene, not the words; 0 means it did what the words said, since the two
tasks of a group start from the same state and one's actions never complete the other).

    python -m trimodal_lab.probes.language_table docs/results/language   # the tables of its README
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

CONDITIONS = ("train", "heldout", "user", "other_task", "empty")
HEADERS = {"train": "training phrasings", "heldout": "held-out phrasings", "user": "user wordings",
           "other_task": "paired task's instruction: scene task done", "empty": "no instruction"}


def cell(path: Path) -> str:
    if not path.is_file():
        return "—"
    o = json.loads(path.read_text())["in_process"]["overall"]
    lo, hi = o["ci95"]
    return f"{o['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] ({o['successes']}/{o['episodes']})"


def rate(path: Path) -> float:
    return json.loads(path.read_text())["in_process"]["overall"]["success_rate"] if path.is_file() else float("nan")


def ratio(num: Path, den: Path) -> str:
    """num's success over den's, "—" where either condition was not run."""
    a, b = rate(num), rate(den)
    return "—" if a != a or b != b or b == 0 else f"{a / b:.2f}"


def table(root: Path) -> str:
    runs = sorted(p for p in root.iterdir() if p.is_dir() and (p / "train" / "rollout.json").is_file())
    lines = ["| run | " + " | ".join(HEADERS[c] for c in CONDITIONS) + " | held-out / train | user / train |",
             "|---|" + "---|" * (len(CONDITIONS) + 2)]
    for r in runs:
        train = r / "train" / "rollout.json"
        ratios = " | ".join(ratio(r / c / "rollout.json", train) for c in ("heldout", "user"))
        lines.append(f"| {r.name} | " + " | ".join(cell(r / c / "rollout.json") for c in CONDITIONS) + f" | {ratios} |")
    return "\n".join(lines) + "\n"


def by_wording(path: Path) -> Dict[Tuple[str, str], List[int]]:
    """{(task, wording): [successes, episodes]} of one rollout, its episode plan rebuilt from its settings."""
    from trimodal_lab.sim.cli import read_wordings
    from trimodal_lab.sim.rollout import episode_plan
    from trimodal_lab.metaworld.layouts import parse_layouts

    d = json.loads(path.read_text())
    st, eps = d["settings"], d["in_process"]["episodes"]
    plan = episode_plan(st["tasks"], st["episodes"], st["split"], st["seed"], st["instructions"],
                        parse_layouts(st["layouts"]) if st["layouts"] else None,
                        read_wordings(st["wordings"]) if st["wordings"] else None)
    out: Dict[Tuple[str, str], List[int]] = {}
    for (task, layout, text), e in zip(plan, eps, strict=True):
        assert (e["task"], e["layout"]) == (task, layout), (e, task, layout)
        k = out.setdefault((task, text), [0, 0])
        k[0], k[1] = k[0] + int(e["success"]), k[1] + 1
    return out


def failures(root: Path) -> str:
    """The wordings of the held-out and user conditions that failed in some episode, per run."""
    lines = ["| run | condition | task | wording | successes |", "|---|---|---|---|---|"]
    for r in sorted(p for p in root.iterdir() if p.is_dir()):
        for cond in ("heldout", "user"):
            f = r / cond / "rollout.json"
            if f.is_file():
                lines += [f"| {r.name} | {cond} | {task} | {text} | {k}/{n} |"
                          for (task, text), (k, n) in by_wording(f).items() if k < n]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="folder of RUN/CONDITION/rollout.json")
    root = ap.parse_args(argv).root
    sys.stdout.write(table(root) + "\nWordings that failed in some episode:\n\n" + failures(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
