"""Offline evaluation and the ablation grid on real (small) bags."""

import json

import pytest

from trimodal_ros.cli import main
from trimodal_lab.eval.ablate import run_grid
from trimodal_lab.eval.evaluate import evaluate
from trimodal_ros.checkpoint import CheckpointError


@pytest.mark.slow
def test_evaluate_writes_report_and_plots(small_bags, tiny_checkpoint, tmp_path):
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--bags", str(small_bags), "--out",
                 str(tmp_path), "--split", "all", "--batch-size", "16"]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    pairs = {"image->text", "text->image", "image->action", "action->image", "text->action", "action->text"}
    assert pairs | {"mean"} == set(rep["retrieval"])
    for v in rep["retrieval"].values():
        assert 0 <= v["R@1"] <= v["R@5"] <= v["R@10"] <= 1 and v["median_rank"] >= 1
    assert rep["retrieval_chance"]["R@1"] == pytest.approx(0.5, abs=0.2)  # two tasks
    assert 0 <= rep["token_accuracy"] <= 1 and len(rep["token_accuracy_per_dim"]) == 4
    assert rep["action_mae"] >= 0 and set(rep["per_task"]) == {"reach-v3", "drawer-close-v3"}
    assert rep["model_only_samples_per_s"] >= rep["throughput_samples_per_s"] > 0
    lo, hi = rep["token_accuracy_ci95"]
    assert lo <= rep["token_accuracy"] <= hi and rep["episodes"] == 6  # episodes resampled, not frames
    b = rep["baselines"]
    assert 0 <= b["most_common_token"] <= b["most_common_token_per_task"] <= 1 and b["mean_action_mae"] > 0
    lang = rep["language"]
    assert set(lang["conditions"]) == {"recorded", "train_paraphrase", "heldout_paraphrase", "other_task", "empty"}
    d = lang["reliance"]["recorded - other_task"]
    assert d["lo"] <= d["delta"] <= d["hi"] and 0 <= d["p"] <= 1
    assert d["delta"] == pytest.approx(lang["conditions"]["recorded"]["token_accuracy"]
                                       - lang["conditions"]["other_task"]["token_accuracy"])
    assert 0 <= lang["agreement"]["auc_recorded_vs_other_task"] <= 1
    o = rep["ood"]  # every frame against the training frames (a part of them): no separation to speak of
    assert 0 <= o["auc_evaluated_vs_train"] <= 1 and o["train_frames"] > 0 and o["median_train"] > 0
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# Evaluation") and "most common token" in md and "reliance" in md and "ROC AUC" in md
    assert "Out-of-distribution score" in md
    for png in ("retrieval.png", "per_task.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_refuses_other_variant_and_missing_checkpoint(small_bags, tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="'weighted_sum'.*'qformer'"):
        evaluate(tiny_checkpoint, small_bags, tmp_path, fusion="qformer")
    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate(tmp_path / "none.pt", small_bags, tmp_path)


@pytest.mark.slow
def test_ablate_two_stage_grid_scores_closed_loop_and_resumes(small_bags, tmp_path):
    kw = dict(budget="tiny", fusions=["weighted_sum", "concat_mlp"], losses=["pairwise", "none"])
    res = run_grid(str(small_bags), tmp_path, confounds=True, **kw)
    cells = res["cells"]
    assert set(cells) == {"weighted_sum/pairwise", "weighted_sum/none", "concat_mlp/pairwise", "concat_mlp/none"}
    for c in cells.values():
        assert 0 <= c["wilson95"][0] <= c["success"] <= c["wilson95"][1] <= 1 and c["seeds"] == 2
    top = res["top_cells_by_validation"]
    assert len(top) == 1 and cells[top[0]]["episodes"] == 2 * 2 * 2  # confirmed: 2 seeds × 2 tasks × 2 episodes
    others = [c for k, c in cells.items() if k not in top]
    assert all(c["episodes"] == 2 * 2 * 1 for c in others)  # screened: 1 episode per task and seed
    names = [c["contrast"] for c in res["contrasts"]]
    assert "concat_mlp − weighted_sum | loss pairwise" in names and "pairwise − none | fusion concat_mlp" in names
    assert all(c["p_holm"] >= c["p"] for c in res["contrasts"])
    assert set(res["anova"]) >= {"rows", "cols", "interaction"}
    assert {c["setting"] for c in res["confounds"]} == {"1x steps", "4x steps", "contrastive_weight 0.1"}
    assert 0 <= res["expert_success"] <= 1 and res["detectable_difference"]["comparisons"] == len(names)
    md = (tmp_path / "ablation.md").read_text()
    for part in ("## Verdict", "## Paired contrasts", "Holm", "## What the names mean", "proprioception"):
        assert part in md
    table = [line for line in md.split("## Paired contrasts")[1].split("\n## ")[0].splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(names) and {line.count("|") for line in table} == {8}  # 7 columns in every row
    for png in ("ablation_success.png", "ablation_offline_vs_closed_loop.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    # a second call finds every run's summary: nothing is trained or rolled out again
    before = {p: p.stat().st_mtime for p in tmp_path.glob("runs/*/*")}
    again = run_grid(str(small_bags), tmp_path, confounds=True, **kw)
    assert before == {p: p.stat().st_mtime for p in tmp_path.glob("runs/*/*")}
    same = lambda r: json.dumps(r["cells"], sort_keys=True, default=str)  # noqa: E731 (NaN-safe)
    assert same(again) == same(res)
    assert again["seconds"] == res["seconds"]  # nothing ran: the report keeps the time the grid took


def test_single_seed_screening_is_reported_as_such():
    """`--budget small` screens every cell with one seed: no ANOVA, no seed interval shown as if it were
    one (no "± 0.000"), language reliance counted only where a seed interval exists, and the report says so."""
    import dataclasses

    import numpy as np

    from trimodal_lab.eval.ablate import BUDGETS, analyse, report_md

    rng = np.random.default_rng(0)
    fusions, losses = ["weighted_sum", "qformer"], ["pairwise", "none"]
    b = BUDGETS["small"]
    assert b.seeds == 1 and b.confirm_seeds >= 2

    def run(f, loss, s):
        held = [["reach-v3", 40 + k, bool(rng.random() < 0.3)] for k in range(6)]
        return {"fusion": f, "loss": loss, "seed": s, "heldout": held, "val": [["reach-v3", 35, True]],
                "token_accuracy": 0.4 + 0.01 * s, "action_mae": 0.5, "retrieval_r1": 0.5,
                "language_reliance": 0.05 + 0.01 * s,
                "empty_instruction_drop": 0.0, "wording_robustness": 0.0, "grad_conflict": float("nan"),
                "grad_conflict_null": float("nan"),
                "baselines": {"most_common_token": 0.3, "most_common_token_per_task": 0.4, "mean_action_mae": 0.5,
                              "mean_action_mae_per_task": 0.4}}

    runs = [run(f, loss, 0) for f in fusions for loss in losses] + [run("qformer", "none", s) for s in (1, 2)]
    res = analyse(runs, fusions, losses, b)
    assert res["anova"] is None and res["cells"]["qformer/none"]["seeds"] == 3
    res.update(budget="small", budget_spec=dataclasses.asdict(b), top_cells_by_validation=["qformer/none"],
               tasks=["reach-v3"], train_samples=1, heldout_samples=1, seconds=60.0, expert_success=1.0, runs=runs)
    md = report_md(res)
    assert "not tested (the two-way ANOVA needs ≥ 2 seeds" in md and "one seed" in md
    assert "1/1 cells with ≥ 2 seeds above 0" in md and "4/4 cells above 0" in md
    rows = {line.split(" | ")[0][2:]: line for line in md.splitlines() if line.startswith("| ") and "/" in line[:25]}
    assert "± 0.000" not in rows["weighted_sum/none"] and " ± " in rows["qformer/none"]
    one_loss = analyse([r for r in runs if r["loss"] == "none"], fusions, ["none"], b)  # the language set's shape
    one_loss.update({k: res[k] for k in ("budget", "budget_spec", "top_cells_by_validation", "tasks", "train_samples",
                                         "heldout_samples", "seconds", "expert_success", "runs")})
    assert "interaction" not in report_md(one_loss)  # no second factor: nothing to say about an ANOVA
