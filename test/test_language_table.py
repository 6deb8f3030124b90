"""The language-critical table: per-condition success from rollout.json files, and the wordings that
failed, matched to their episodes through the rollout's own episode plan."""

import json

from trimodal_lab.probes.language_table import by_wording, table
from trimodal_lab.sim.rollout import episode_plan

TASKS = ["drawer-open-v3@lang", "drawer-close-v3@lang"]


def write(path, instructions, fail_text=None):
    plan = episode_plan(TASKS, 0, instructions=instructions, layouts=[35, 36, 37, 38])
    eps = [{"task": t, "layout": lay, "success": text != fail_text} for t, lay, text in plan]
    k = sum(e["success"] for e in eps)
    path.mkdir(parents=True)
    (path / "rollout.json").write_text(json.dumps({
        "settings": {"tasks": TASKS, "episodes": 0, "split": "val", "seed": 0, "instructions": instructions,
                     "layouts": "35-38", "wordings": None},
        "in_process": {"overall": {"episodes": len(eps), "successes": k, "success_rate": k / len(eps),
                                   "ci95": [0.0, 1.0]}, "episodes": eps}}))
    return plan


def test_table_and_failed_wordings(tmp_path):
    write(tmp_path / "run_a" / "train", "train")
    bad = episode_plan(TASKS, 0, instructions="heldout", layouts=[35])[0][2]  # fails wherever it was drawn
    plan = write(tmp_path / "run_a" / "heldout", "heldout", fail_text=bad)
    got = by_wording(tmp_path / "run_a" / "heldout" / "rollout.json")
    assert sum(n for _, n in got.values()) == 8
    assert got[(plan[0][0], bad)][0] == 0 and all(k == n for (t, w), (k, n) in got.items() if w != bad)
    row = [line for line in table(tmp_path).splitlines() if line.startswith("| run_a")][0]
    n_bad = sum(text == bad for _, _, text in plan)
    assert "1.00 [0.00, 1.00] (8/8)" in row and f"({8 - n_bad}/8)" in row and "—" in row  # no user/other/empty
    assert row.endswith(f" | {(8 - n_bad) / 8:.2f} | — |")  # held-out / train; no user wordings: no ratio
