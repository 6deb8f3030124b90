"""The pre-registered study: the plan checks itself, runs resume and are refused where the rules say
so, results are one small file each, the report's statistics are right; the fresh test layouts are
never recorded and only the study rolls them out."""

import json
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
import yaml

from trimodal_lab.study import plan as P
from trimodal_lab.study import report as R
from trimodal_lab.study import runner as S
from trimodal_lab.metaworld import TEST_LAYOUTS, episode_layout, layout_split, parse_layouts
from trimodal_ros.schema import ConfigError
from trimodal_lab.sim.rollout import episode_plan


def test_the_committed_plan_validates_and_lists_its_runs_seed_major():
    plan = P.load_plan()
    runs = plan.runs()
    assert len(runs) == len(set(runs)) == sum(len(c.seeds) for c in plan.cells.values())
    firsts = [r for r in runs[:len(plan.cells)]]
    assert {c for c, _ in firsts} == set(plan.cells)  # every cell's first seed before any second one
    for t, ref in plan.primary:
        assert len(plan.cells[t].seeds) >= 3 and len(plan.cells[ref].seeds) >= 3
    assert parse_layouts(plan.layouts) == list(TEST_LAYOUTS) and len(TEST_LAYOUTS) * 10 == 200
    lang = plan.runs(["lang.*"])  # a machine with only the language arm's bags does that arm alone
    assert lang == [r for r in runs if r[0].startswith("lang.")] and lang[0] == ("lang.concat_mlp", 100)
    two = plan.runs(["lang.concat_mlp", "lang.expert"])
    assert two == [("lang.concat_mlp", 100), ("lang.expert", 0), ("lang.concat_mlp", 101)]
    with pytest.raises(ConfigError, match="no cell of the plan matches 'lang.nope'"):
        plan.runs(["lang.nope"])


def _plan(tmp_path, **change):
    d = yaml.safe_load(P.PLAN.read_text())
    d.update(change)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.parametrize("change, words", [
    ({"primary": [["concat_mlp", "nope"]]}, "primary contrast"),
    ({"secondary": [["concat_mlp"]]}, "secondary contrast"),
    ({"cells": {"a": {"seeds": [1], "colour": "red"}}}, "unknown key"),
    ({"cells": {"a": {"seeds": [1, 1]}}}, "distinct"),
    ({"cells": {"a": {"seeds": [1], "overrides": {"model.fusion": "nope"}}}, "primary": [], "secondary": []}, "fusion"),
    ({"cells": {"a": {"seeds": [1], "overrides": {"fusion": "qformer"}}}, "primary": [], "secondary": []},
     "<section>.<key>"),
    ({"cells": {"A b": {"seeds": [1]}}, "primary": [], "secondary": []}, "name"),
    ({"analysis": {"alpha": 0.05, "effect": 0.05, "bootstrap": 100, "resample": "layout"}}, "resample"),
])
def test_a_bad_plan_is_refused_with_the_reason(tmp_path, change, words):
    with pytest.raises(ConfigError, match=words):
        P.load_plan(_plan(tmp_path, **change))


def test_cell_config_is_the_base_with_one_change_and_the_seed():
    plan = P.load_plan()
    base, cell = P.cell_config(plan, "concat_mlp", 100), P.cell_config(plan, "qformer", 101)
    assert cell.model.fusion == "qformer" and cell.train.seed == 101 and base.train.seed == 100
    assert cell.model.head_hidden == base.model.head_hidden == 512  # the same head in every cell
    assert {k for k in vars(base.model) if getattr(base.model, k) != getattr(cell.model, k)} == {"fusion"}


def test_test_layouts_are_their_own_split_never_recorded_and_refused_by_rollout(capsys):
    assert {layout_split(x) for x in TEST_LAYOUTS} == {"test"}
    assert layout_split(999) == layout_split(1020) == "train" and layout_split(45) == "heldout"
    with pytest.raises(ValueError, match="never recorded"):
        episode_layout("reach-v3", 0, TEST_LAYOUTS[0])
    assert parse_layouts("35,40-42") == [35, 40, 41, 42] and parse_layouts("val") == list(range(35, 40))
    with pytest.raises(ValueError, match="look like"):
        parse_layouts("35-x")
    from trimodal_ros.cli import main

    assert main(["rollout", "--tasks", "reach-v3", "--layouts", "40,1005"]) == 1
    assert "study's test set" in capsys.readouterr().out


def test_episode_plan_conditions_other_task_empty_and_own_wordings():
    lang = episode_plan(["drawer-open-v3@lang"], 2, "val", 0, "other_task")
    from trimodal_ros.data.instructions import paraphrases

    assert all(text in paraphrases("drawer-close-v3", "train") for _, _, text in lang)
    mt = episode_plan(["reach-v3", "push-v3"], 1, "val", 0, "other_task")
    assert mt[0][2] in paraphrases("push-v3", "train") and mt[1][2] in paraphrases("reach-v3", "train")
    assert [e[2] for e in episode_plan(["reach-v3"], 3, "val", 0, "empty")] == ["", "", ""]
    own = episode_plan(["reach-v3"], 0, layouts=[35, 36], wordings={"reach-v3": ["touch the dot"]})
    assert own == [("reach-v3", 35, "touch the dot"), ("reach-v3", 36, "touch the dot")]
    # the train wording is drawn as before the conditions existed: earlier paired results still pair
    assert episode_plan(["reach-v3"], 2, "val", 0, "train") == episode_plan(["reach-v3"], 2, "val", 0)


@pytest.fixture
def study(tmp_path, monkeypatch):
    """The study's folders moved under tmp_path, a tiny plan (2 test layouts of one task, 3 steps),
    the plan counted as committed."""
    d = yaml.safe_load(P.PLAN.read_text())
    d["test"].update(tasks="reach-v3", layouts="1000-1001", wordings=["train", "heldout"], max_steps=3, size=64)
    d["base"] = "weighted_sum"
    d["cells"] = {"random_weights": {"kind": "random_weights", "seeds": [5, 6]}, "expert": {"kind": "expert",
                                                                                          "seeds": [0]}}
    d["primary"] = [["random_weights", "expert"]]
    d["secondary"] = [["expert", "random_weights"]]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(d))
    monkeypatch.setattr(S, "STUDY", tmp_path)
    monkeypatch.setattr(R, "STUDY", tmp_path)
    monkeypatch.setattr(S, "WORK", tmp_path / "work")
    monkeypatch.setattr(S, "committed", lambda path: "abc" if path == tmp_path / "plan.yaml" else P.committed(path))
    return P.load_plan(path)


def test_a_run_writes_one_result_file_resumes_and_is_not_repeated(study, tmp_path, monkeypatch):
    out = S.run("random_weights", 5, study, device="cpu", progress=False)
    r = json.loads(Path(out).read_text())
    assert r["cell"] == "random_weights" and r["seed"] == 5 and r["commit"] and r["torch_threads"] >= 1
    assert [(e["task"], e["layout"], e["wording"], e["split"]) for e in r["episodes"]] == [
        ("reach-v3", 1000, "train", "test"), ("reach-v3", 1001, "train", "test"),
        ("reach-v3", 1000, "heldout", "test"), ("reach-v3", 1001, "heldout", "test")]
    with pytest.raises(S.RunRefused, match="already"):
        S.run("random_weights", 5, study, device="cpu", progress=False)
    with pytest.raises(S.RunRefused, match="not in the committed plan"):
        S.run("random_weights", 7, study, device="cpu", progress=False)
    # an interrupted test rollout resumes: the finished (wording, task) blocks are not rolled out again
    work = S.WORK / "random_weights_s6"
    work.mkdir(parents=True)
    kept = [{"task": "reach-v3", "layout": x, "wording": "train", "split": "test", "success": True}
            for x in (1000, 1001)]
    (work / "test_progress.json").write_text(json.dumps({"checkpoint_sha256": "", "done": {"train/reach-v3": kept}}))
    calls = []
    import trimodal_lab.sim.rollout as ro

    orig = ro.rollout_in_process
    monkeypatch.setattr(ro, "rollout_in_process", lambda policy, spec, **k: calls.append(spec.plan) or
                        orig(policy, spec, **k))
    r6 = json.loads(Path(S.run("random_weights", 6, study, device="cpu", progress=False)).read_text())
    assert len(calls) == 1 and r6["episodes"][:2] == kept  # only the held-out wording's block ran
    # a run some live process holds is skipped by `next`, which does the expert instead
    assert [c for c, _ in S.missing(study)] == ["expert"]


def test_a_run_records_retrieval_on_the_held_out_layouts_of_its_training_bags(study, small_bags, tmp_path,
                                                                               monkeypatch):
    """Did a shared space form? Each run's file says, from the training bags' held-out layouts (never
    the test set); without such layouts it says why there is no figure."""
    import trimodal_ros.data.dataset as dataset

    d = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    d["data"] = str(small_bags)
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(d))
    plan = P.load_plan(tmp_path / "plan.yaml")
    r = json.loads(Path(S.run("random_weights", 5, plan, device="cpu", progress=False)).read_text())
    off = r["offline"]
    assert off["split"] == "heldout" and off["samples"] > 0 and 0 < off["chance_R@1"] <= 1, off
    assert {"image->text", "text->action", "image->action"} <= set(off["R@1"]) and 0 <= off["token_accuracy"] <= 1
    monkeypatch.setattr(dataset, "episode_split", lambda meta: "train")  # now no bag is of a held-out layout
    r = json.loads(Path(S.run("random_weights", 6, plan, device="cpu", progress=False)).read_text())
    assert r["offline"] == {"skipped": f"no held-out layouts in {small_bags}"}
    text = Path(R.write_report(plan)).read_text()
    assert "| random_weights | 1 | 1.00 |" in text and f"No figure: no held-out layouts in {small_bags}." in text


def test_wordings_that_repeat_a_rollout_are_rolled_out_once(study, tmp_path, monkeypatch):
    """No words at all under each wording, or the expert (which reads none): one rollout per task,
    counted under every wording."""
    import trimodal_lab.sim.rollout as ro

    d = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    d["cells"]["blind"] = {"kind": "random_weights", "seeds": [5], "rollout_instructions": "empty"}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(d))
    plan = P.load_plan(tmp_path / "plan.yaml")
    calls = []
    for name in ("rollout_in_process", "expert_success_on"):
        orig = getattr(ro, name)
        monkeypatch.setattr(ro, name, lambda *a, _f=orig, _n=name, **k: calls.append(_n) or _f(*a, **k))
    for cell, seed, fn in (("blind", 5, "rollout_in_process"), ("expert", 0, "expert_success_on")):
        r = json.loads(Path(S.run(cell, seed, plan, device="cpu", progress=False)).read_text())
        assert calls.count(fn) == 1, calls  # one task, two wordings: one rollout
        by = {w: [e["success"] for e in r["episodes"] if e["wording"] == w] for w in ("train", "heldout")}
        assert len(by["train"]) == 2 and by["train"] == by["heldout"]


def test_a_locked_run_is_refused_and_a_dead_holders_lock_taken_over(study):
    import os
    import socket

    work = S.WORK / "expert_s0"
    work.mkdir(parents=True)
    (work / "lock").write_text(f"{socket.gethostname()} {os.getppid()}")  # alive: pytest's parent
    with pytest.raises(S.RunRefused, match="being run"):
        S.run("expert", 0, study, progress=False)
    (work / "lock").write_text(f"{socket.gethostname()} 999999999")
    assert Path(S.run("expert", 0, study, progress=False)).exists() and not (work / "lock").exists()
    with S._Lock(work), pytest.raises(S.RunLocked):  # a second taker in this very process is refused too
        S._Lock(work).__enter__()


def test_only_the_committed_file_a_plan_was_read_from_lets_it_run(study, tmp_path):
    """A plan from another file is checked against that file, not the default plan.yaml."""
    import dataclasses

    other = tmp_path / "elsewhere.yaml"
    other.write_text(study.path.read_text())
    with pytest.raises(ConfigError, match="outside the repository"):
        S.run("expert", 0, P.load_plan(other), progress=False)
    with pytest.raises(S.RunRefused, match="read from a committed file"):
        S.run("expert", 0, dataclasses.replace(study, path=None), progress=False)
    assert not S.result_path("expert", 0).exists()


def test_a_run_finished_while_waiting_for_its_lock_is_not_done_again(study, monkeypatch):
    """The result is looked for again once the lock is held: the holder before may have just written it."""
    out = S.result_path("expert", 0)

    class Finished(S._Lock):  # the lock is got just after another process wrote the result
        def __enter__(self):
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("{}")
            return super().__enter__()

    monkeypatch.setattr(S, "_Lock", Finished)
    with pytest.raises(S.RunRefused, match="rolled out on the test set already"):
        S.run("expert", 0, study, progress=False)
    assert out.read_text() == "{}"


def test_a_difference_of_exactly_the_effect_size_counts():
    """0.70 - 0.65 is 0.0499999... in floats: still an effect of 0.05, and an interval reaching -0.05 is not
    'no effect'."""
    plan = P.load_plan()
    row = {"complete": True, "p_holm": 0.001, "diff": 0.70 - 0.65, "lo": 0.02, "hi": 0.08}
    assert plan.effect == 0.05 and 0.70 - 0.65 < 0.05 and R._verdict(row, plan) == "effect"
    row = {"complete": True, "p_holm": 0.5, "diff": 0.0, "lo": 0.65 - 0.70, "hi": 0.01}
    assert R._verdict(row, plan) == "undecided"
    assert R._verdict({**row, "lo": -0.04}, plan) == "no effect ≥ 0.05"


def test_holm_and_the_paired_bootstrap():
    assert R.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    rng = np.random.default_rng(0)
    b = (rng.random((3, 400)) < 0.5).astype(float)
    a = np.maximum(b, (rng.random((3, 400)) < 0.2))  # a succeeds wherever b does, and more
    boot = R.paired_bootstrap(a, b, 2000)
    d = a.mean() - b.mean()
    assert d > 0.05 and np.quantile(boot, 0.025) > 0 and abs(boot.mean() - d) < 0.01
    same = R.paired_bootstrap(b[:1], b[:1], 500)
    assert np.all(same == 0)  # one seed each, the same outcomes: no difference in any resample of the cases
    spread = R.paired_bootstrap(b, b, 500)  # three seeds each: resampling the seeds adds their spread
    assert abs(spread.mean()) < 0.01 and spread.std() > 0
    # seeds that fail, succeed, fail everywhere: the mean of three has standard error sqrt((1/3) / 3) = 1/3
    # (unbiased variance), not the plug-in sqrt((2/9) / 3) = 0.27 that plain resampling of three seeds gives
    seeds = np.repeat(np.array([[0.0], [1.0], [0.0]]), 50, axis=1)
    assert R.paired_bootstrap(seeds, np.zeros((1, 50)), 4000).std() == pytest.approx(1 / 3, rel=0.05)
    # a scene's two wordings succeed together: resampling scenes sees the doubled-up outcomes as one
    scene = (rng.random((1, 200)) < 0.5).astype(float)
    twice, none = np.repeat(scene, 2, axis=1), np.zeros((1, 400))
    by_case = R.paired_bootstrap(twice, none, 2000).std()
    by_scene = R.paired_bootstrap(twice, none, 2000, groups=np.repeat(np.arange(200), 2)).std()
    assert 1.25 < by_scene / by_case < 1.6  # about sqrt(2)
    cases = [(t, x, w) for w in ("train", "empty") for t in ("drawer-open-v3@lang", "drawer-close-v3@lang",
                                                            "reach-v3") for x in (1000, 1001)]
    ids = R.scene_ids(cases)  # one first frame: every wording, and both tasks of a language pair
    assert len(set(ids)) == 4 and ids[0] == ids[2] == ids[6] == ids[8] and ids[0] != ids[4]
    with pytest.raises(ValueError, match="unequal size"):
        R.paired_bootstrap(twice[:, :3], none[:, :3], 10, groups=np.array([0, 0, 1]))


def test_the_projected_standard_error_at_the_planned_seeds():
    """Whether the planned seeds will do: a true per-scene difference stays, a cell's seed variance
    and the episodes' noise go as one over its seeds."""
    rng = np.random.default_rng(0)
    offsets = np.array([[0.1], [0.0], [-0.1]])
    a, b = np.zeros((3, 40)) + offsets, np.zeros((3, 40))  # seeds apart, no noise, no per-case differences
    for n in (3, 4, 10):
        assert R.projected_se(a, b, None, n, n) == pytest.approx(np.sqrt(0.01 / n))
    d = rng.random(40) * 0.2  # a true per-case difference, seeds alike, no noise: more seeds do not help
    pairs = d.reshape(20, 2).mean(1)
    for n in (3, 10 ** 9):
        assert R.projected_se(b + d, b, np.repeat(np.arange(20), 2), n, n) == pytest.approx(
            pairs.std(ddof=1) / np.sqrt(20))
    noise = (rng.random((6, 400)) < 0.5).astype(float)  # the episodes' noise only: it goes as 1/n
    ratio = R.projected_se(noise[:3], noise[3:], None, 3, 3) / R.projected_se(noise[:3], noise[3:], None, 12, 12)
    assert ratio == pytest.approx(2.0, rel=0.1)
    one = noise[:1]  # one seed: no variance of its own, borrowed from the other cell
    comp = R.variance_components(one, noise[3:], None)
    assert comp["a"] is None and R.projected_se(one, noise[3:], None, 3, 3) == pytest.approx(
        R.components_error(dict(comp, a=comp["b"]), 3, 3)[0])
    assert np.isnan(R.projected_se(one, noise[3:4], None, 3, 3))
    # Satterthwaite's degrees of freedom where one mean square carries the error: the scenes' ...
    assert R.components_error(R.variance_components(b + d, b, None), 3, 3)[1] == pytest.approx(39)
    # ... or the seeds' (the seeds' n - 1)
    assert R.components_error(R.variance_components(a, b, None), 3, 3)[1] == pytest.approx(2)


def _simulated_errors(seeds: int, seed_sd: float, sims: int = 120, scenes: int = 100):
    """(the difference's spread over simulated studies, the bootstrap's mean standard error, the
    moment estimate's, the moment interval's coverage of 0) for two cells with the same per-case
    success (drawn as the study's: many near 0 or 1), each seed shifted by N(0, seed_sd)."""
    rng = np.random.default_rng(7)
    p = rng.beta(0.4, 0.3, scenes * 2)
    groups = np.repeat(np.arange(scenes), 2)
    study = SimpleNamespace(alpha=0.05)  # all the moment contrast reads of a plan
    diffs, boot, moments, covered = [], [], [], 0
    for i in range(sims):
        a, b = ((rng.random((seeds, len(p))) < np.clip(p + rng.normal(0, seed_sd, (seeds, 1)), 0, 1)).astype(float)
                for _ in range(2))
        diffs.append(a.mean() - b.mean())
        boot.append(R.paired_bootstrap(a, b, 200, seed=i, groups=groups).std())
        c = R.components_contrast(a, b, groups, study, 7)
        moments.append(c["se"])
        covered += c["lo"] <= 0 <= c["hi"]
    return np.std(diffs, ddof=1), np.mean(boot), np.mean(moments), covered / sims


def test_the_moment_interval_covers_at_its_level():
    """The sensitivity analysis's 95% t interval (Satterthwaite's df) holds a zero difference about
    95% of the time, seeds alike or apart."""
    rng = np.random.default_rng(3)
    p = rng.beta(0.4, 0.3, 400)
    groups = np.repeat(np.arange(200), 2)
    for seeds, seed_sd in ((3, 0.0), (4, 0.04)):
        covered = 0
        for _ in range(600):
            a, b = ((rng.random((seeds, 400)) < np.clip(p + rng.normal(0, seed_sd, (seeds, 1)), 0, 1)).astype(float)
                    for _ in range(2))
            c = R.components_contrast(a, b, groups, SimpleNamespace(alpha=0.05), 7)
            covered += c["lo"] <= 0 <= c["hi"]
        assert 0.93 <= covered / 600 <= 0.995, (seeds, seed_sd, covered / 600)


def test_the_bootstrap_counts_the_episodes_noise_twice_the_moment_estimate_once():
    """The report's sensitivity figures: with no difference the moment estimate's standard error is
    near the difference's actual spread (above it where seeds hardly differ: a seed variance
    estimated below 0 counts as 0); the crossed bootstrap's runs well above it."""
    spread, boot, moments, coverage = _simulated_errors(seeds=3, seed_sd=0.0)  # 1.87x, 1.31x here
    assert boot / spread > 1.6 and 1.0 < moments / spread < 1.45 and coverage >= 0.9
    spread, boot, moments, coverage = _simulated_errors(seeds=5, seed_sd=0.03)  # 1.34x, 1.01x
    assert boot / spread > 1.2 and 0.85 < moments / spread < 1.15 and coverage >= 0.9


def test_the_report_says_what_is_missing_and_tests_the_contrasts(study, tmp_path):
    for seed in (5, 6):
        S.result_path("random_weights", seed).parent.mkdir(parents=True, exist_ok=True)
        S.result_path("random_weights", seed).write_text(json.dumps({"cell": "random_weights", "seed": seed,
                                                                     "episodes": [
            {"task": "reach-v3", "layout": x, "wording": w, "split": "test", "success": False}
            for w in ("train", "heldout") for x in (1000, 1001)]}))
    text = Path(R.write_report(study)).read_text()
    assert "expert_s0" in text and "waiting for runs" in text  # the reference has no run yet
    episodes = [{"task": "reach-v3", "layout": x, "wording": w, "split": "test", "success": True}
                for w in ("train", "heldout") for x in (1000, 1001)]
    for bad, words in (({"cell": "expert", "seed": 1, "episodes": episodes}, "not its name's"),
                       ({"cell": "expert", "seed": 0, "episodes": episodes + episodes[:1]}, "3 distinct|4 distinct"),
                       ({"cell": "expert", "seed": 0, "episodes": episodes[:3]}, "test set has 4"),
                       ({"cell": "expert", "seed": 0, "episodes": [dict(e, layout=e["layout"] + 7) for e in episodes]},
                        "cases outside its test set")):
        S.result_path("expert", 0).write_text(json.dumps(bad))  # a file that would be counted wrongly
        with pytest.raises(ConfigError, match=words):
            R.write_report(study)
    S.result_path("expert", 0).write_text(json.dumps({"cell": "expert", "seed": 0, "episodes": episodes,
                                                      "config_sha256": "a config the plan no longer has"}))
    text = Path(R.write_report(study)).read_text()
    assert "another config than the plan resolves to now** (the base config or a cell's overrides changed " \
           "after the run): expert_s0" in text and "Config not recorded: 2 run(s)" in text
    S.result_path("expert", 0).write_text(json.dumps({"cell": "expert", "seed": 0, "episodes": episodes,
                                                      "config_sha256": ""}))
    text = Path(R.write_report(study)).read_text()
    assert "another config" not in text
    assert "| random_weights − expert | -1.000 |" in text and "Missing runs (0 of 3)" in text
    assert "Not in the plan" not in text
    S.result_path("expert", 9).write_text(S.result_path("expert", 0).read_text())  # a seed the plan lacks
    assert "**Not in the plan, not counted**: expert_s9.json." in Path(R.write_report(study)).read_text()
    S.result_path("expert", 9).unlink()
    header, row = (next(line for line in text.splitlines() if line.startswith(start))
                   for start in ("| treatment − reference | difference | 95% interval | p (Holm)",
                                 "| random_weights − expert |"))
    cols = dict(zip(header.split(" | "), row.split(" | ")))
    assert cols["95% interval"] == "[-1.000, -1.000]" and cols["rules out \\|d\\| >"] == "1.000"
    assert "![the contrasts' differences and intervals](report_contrasts.png)" in text
    assert (tmp_path / "report_contrasts.png").stat().st_size > 10_000  # the plot beside the report
    assert "| < 0.0002 |" in text and "| harm |" in text  # every planned seed in: a verdict; p never 0
    per_wording = text.split("### The primary contrasts per wording")[1].split("## Secondary")[0]
    assert "| train: difference [95% interval] | heldout: difference [95% interval] |" in per_wording
    assert "| random_weights − expert | -1.000 [-1.000, -1.000] | -1.000 [-1.000, -1.000] |" in per_wording
    assert "| expert − random_weights | +1.000 |" in text.split("## Secondary contrasts")[1]
    from trimodal_ros.data.instructions import paraphrases

    table = text.split("| phrasing | random_weights |")[1].split("\n\n")[0]  # the words each case was given
    assert {row.split(" | ")[0].strip("| ") for row in table.strip().splitlines()[1:]} <= set(
        paraphrases("reach-v3", "heldout")) and "| 0.00 |" in table
    d = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    d["cells"]["expert"]["seeds"] = [0, 1]
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(d))
    text = Path(R.write_report(P.load_plan(tmp_path / "plan.yaml"))).read_text()
    assert "none yet: 1 of 2 seeds done" in text  # no interim verdict


def test_an_arm_has_its_own_test_set_and_training_bags_and_pairs_only_within_itself(study, tmp_path, monkeypatch):
    """A cell with ``arm:`` trains on the arm's bags and is rolled out on the arm's cases and wordings;
    the report tables it apart; a contrast across test sets is refused."""
    d = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    d["arms"] = {"other": {"data": "data/elsewhere", "tasks": "push-v3", "layouts": "1000-1001",
                           "wordings": ["train", "empty"], "scored": ["train"], "max_steps": 3, "size": 64,
                           "wording_seed": 0}}
    d["cells"]["other.random_weights"] = {"kind": "random_weights", "seeds": [5], "arm": "other"}
    d["cells"]["other.expert"] = {"kind": "expert", "seeds": [0], "arm": "other"}
    d["secondary"] = [["other.expert", "other.random_weights"]]
    for bad, words in (({"other.expert": {"seeds": [0], "arm": "nope"}}, "not one of the plan's arms"),
                       (None, "different test sets"), ("scored", "'scored' must be")):
        if bad == "scored":
            broken = dict(d, arms={"other": {**d["arms"]["other"], "scored": ["heldout"]}})
        else:
            broken = dict(d, cells={**d["cells"], **bad}) if bad else dict(d, primary=[["other.expert", "expert"]])
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(broken))
        with pytest.raises(ConfigError, match=words):
            P.load_plan(tmp_path / "bad.yaml")
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(d))
    plan = P.load_plan(tmp_path / "plan.yaml")
    assert plan.test("other.expert").data == "data/elsewhere" and plan.test("expert").data == plan.data
    r = json.loads(Path(S.run("other.random_weights", 5, plan, device="cpu", progress=False)).read_text())
    assert [(e["task"], e["layout"], e["wording"]) for e in r["episodes"]] == [
        ("push-v3", 1000, "train"), ("push-v3", 1001, "train"), ("push-v3", 1000, "empty"), ("push-v3", 1001, "empty")]
    S.result_path("other.expert", 0).write_text(json.dumps({"cell": "other.expert", "seed": 0, "episodes": [
        # done when told, not when not
        {"task": "push-v3", "layout": x, "wording": w, "split": "test", "success": w == "train"}
        for w in ("train", "empty") for x in (1000, 1001)]}))
    S.run("expert", 0, plan, progress=False)
    text = Path(R.write_report(plan)).read_text()
    arm = text.split("## Arm: other")[1].split("## Primary")[0]
    assert "| cell | seeds done | success | train | empty | per seed |" in arm
    assert "| other.expert | 1/1 | 1.000 | 1.000 | 0.000 | 1.000 |" in arm  # success pools the scored wording only
    assert "other.expert" not in text.split("## Arm: other")[0]  # the main table holds the main test set's cells
    assert "| other.expert − other.random_weights | +" in text.split("## Secondary contrasts")[1]


def test_a_runs_config_hash_is_its_resolved_config():
    """What a result records to show a config changed after it: the seed and each override count."""
    plan = P.load_plan()
    h = P.config_sha256(plan, "concat_mlp", 100)
    assert len(h) == 64 and h == P.config_sha256(plan, "concat_mlp", 100)
    assert h != P.config_sha256(plan, "concat_mlp", 101) and h != P.config_sha256(plan, "concat_mlp+clip", 100)
    assert P.config_sha256(plan, "expert", 0) == ""  # trains nothing


def test_a_trained_run_records_its_config_and_data_and_the_report_names_what_changed(study, small_bags, tmp_path,
                                                                                      monkeypatch):
    """A result carries the resolved config and a digest of the bags it trained on; the report names
    the field that changed since, tells a field the code gained from a change, and flags runs trained
    on different copies of the data."""
    from trimodal_lab.study.runner import dataset_digest
    from trimodal_ros.policy import Policy

    d = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    d["data"] = str(small_bags)
    d["cells"]["ws"] = {"seeds": [1, 2, 3]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(d))
    plan = P.load_plan(tmp_path / "plan.yaml")
    monkeypatch.setattr(S, "_policy", lambda plan, cell, seed, *a: (Policy.load(config=plan.base), 0.0, "ck"))
    monkeypatch.setattr(S, "_offline", lambda *a: {})
    r = json.loads(Path(S.run("ws", 1, plan, device="cpu", progress=False)).read_text())
    assert r["config"] == P.resolved_config(plan, "ws", 1) and r["config"]["train"]["seed"] == 1
    assert r["config_sha256"] == P.config_sha256(plan, "ws", 1) and r["data_files_sha256"] == dataset_digest(small_bags)
    assert r["commit"] == r["finished_commit"] == S._commit() and "data_files_sha256_at_finish" not in r
    # a resumed run: what it began with (another commit, other bags) is what its result says trained
    (S.WORK / "ws_s3").mkdir(parents=True)
    (S.WORK / "ws_s3" / "provenance.json").write_text(json.dumps(
        {"commit": "abc", "config": P.resolved_config(plan, "ws", 3), "data": "d" * 64}))
    r3 = json.loads(Path(S.run("ws", 3, plan, device="cpu", progress=False)).read_text())
    assert (r3["commit"], r3["finished_commit"]) == ("abc", S._commit())
    assert r3["data_files_sha256"] == "d" * 64 and r3["data_files_sha256_at_finish"] == dataset_digest(small_bags)
    S.result_path("ws", 3).unlink()
    text = Path(R.write_report(plan)).read_text()
    assert "another config" not in text and "Config fields added" not in text and "copies of the data" not in text
    old = json.loads(json.dumps(r))
    old["config"]["train"]["lr"] = 0.5  # trained with another learning rate than the base config has now
    del old["config"]["model"]["text_tower"]  # a field the code had not yet
    S.result_path("ws", 1).write_text(json.dumps(old))
    text = Path(R.write_report(plan)).read_text()
    lr = P.resolved_config(plan, "ws", 1)["train"]["lr"]
    assert f"ws_s1 (train.lr: 0.5 → {lr!r})" in text and "model.text_tower = " in text  # a change, and an addition
    del old["config"]["train"]["lr"]
    S.result_path("ws", 1).write_text(json.dumps(old))
    text = Path(R.write_report(plan)).read_text()
    assert "another config" not in text and "Config fields added since 1 run(s)" in text
    assert "model.text_tower = " in text and "train.lr = " in text
    other = dict(r, seed=2, data_files_sha256="f" * 64, config=P.resolved_config(plan, "ws", 2))
    S.result_path("ws", 2).write_text(json.dumps(other))
    text = Path(R.write_report(plan)).read_text()
    assert f"different copies of {small_bags}** (digest of the bags' bytes): {r['data_files_sha256'][:12]}: ws_s1; " \
           f"ffffffffffff: ws_s2" in text


def test_data_copies_are_told_apart_per_training_folder_not_across_arms():
    plan = P.load_plan()  # MT10 cells train on data/mt10_192, the language arm's on data/lang_192
    results = {("concat_mlp", 100): {"data_files_sha256": "a"}, ("lang.concat_mlp", 100): {"data_files_sha256": "b"},
               ("concat_mlp", 101): {}, ("expert", 0): {}}
    data, unrecorded = R._data_copies(plan, results)
    assert data == {plan.data: {"a": [("concat_mlp", 100)]},
                    plan.arms["language"].data: {"b": [("lang.concat_mlp", 100)]}}
    assert unrecorded == 1  # the expert trains on nothing
    results[("concat_mlp", 102)] = {"data_files_sha256": "c"}
    assert R._data_copies(plan, results)[0][plan.data] == {"a": [("concat_mlp", 100)], "c": [("concat_mlp", 102)]}


def test_a_config_value_of_another_type_is_a_change():
    assert P.config_diff({"t": {"x": True, "y": 0}}, {"t": {"x": 1, "y": 0.0}})["changed"] == ["t.x: True → 1",
                                                                                           "t.y: 0 → 0.0"]
    assert P.config_diff({"t": {"x": [1, 2]}}, {"t": {"x": [1, 2]}}) == {"changed": [], "added": []}


def test_the_detectable_difference_at_planned_seeds_is_todays_once_they_are_done():
    plan = P.load_plan()
    rng = np.random.default_rng(1)
    n = len(plan.cells["weighted_sum"].seeds)
    assert n == len(plan.cells["concat_mlp"].seeds)
    a, b = ((rng.random((n, 200)) < p).astype(float) for p in (0.6, 0.5))
    groups = np.repeat(np.arange(100), 2)
    done = R._primary(plan, a, b, groups, "weighted_sum", "concat_mlp")
    assert done["mde_planned"] == pytest.approx(done["mde"])
    part = R._primary(plan, a[:2], b[:3], groups, "weighted_sum", "concat_mlp")
    assert part["mde_planned"] < part["mde"]  # more seeds to come: a smaller difference detectable
    assert part["mde_planned"] == pytest.approx(part["mde"] * R.projected_se(a[:2], b[:3], groups, n, n)
                                                / R.projected_se(a[:2], b[:3], groups, 2, 3))
    # one seed so far: the bootstrap saw no seed variance in that cell; the planned seeds will have some
    one = R._primary(plan, a[:1], b[:3], groups, "weighted_sum", "concat_mlp")
    assert one["mde_planned"] == pytest.approx(one["mde"] * R.projected_se(a[:1], b[:3], groups, n, n)
                                               / R.projected_se(a[:1], b[:3], groups, 1, 3, borrow=False))
    apart = b[:3] + np.array([[0.05], [0.0], [-0.05]])  # seeds apart: a one-seed cell borrows their variance
    assert R.projected_se(a[:1], apart, groups, 1, 3, borrow=False) < R.projected_se(a[:1], apart, groups, 1, 3)


def test_the_data_digest_is_the_bags_bytes(small_bags, tmp_path):
    import shutil

    from trimodal_ros.data.bags import find_bags
    from trimodal_lab.study.runner import dataset_digest

    copy = tmp_path / "copy"
    shutil.copytree(small_bags, copy)
    digest = dataset_digest(small_bags)
    assert dataset_digest(copy) == digest
    bag = find_bags(copy)[0]
    storage = next(bag.glob("*.mcap"))
    raw = bytearray(storage.read_bytes())
    raw[len(raw) // 2] ^= 1  # one bit of one message, its sidecar untouched
    storage.write_bytes(bytes(raw))
    assert dataset_digest(copy) != digest
    shutil.copytree(small_bags, copy, dirs_exist_ok=True)
    assert dataset_digest(copy) == digest
    sidecar = json.loads((bag / "episode.json").read_text())
    (bag / "episode.json").write_text(json.dumps(dict(sidecar, split="heldout" if sidecar.get("split") != "heldout"
                                                      else "train")))  # relabelled, same bytes of the bag
    assert dataset_digest(copy) != digest
    shutil.rmtree(bag)  # one episode fewer
    assert dataset_digest(copy) != digest


def test_a_deleted_result_file_does_not_open_a_second_rollout(study, monkeypatch, tmp_path):
    """A result once committed stays done: the runner asks git's history, not only the folder."""
    committed_result = P.REPO / "docs/results/study/runs/concat_mlp_s100.json"
    assert S._ever_committed(committed_result)
    assert not S._ever_committed(committed_result.with_name("concat_mlp_s999.json"))
    assert not S._ever_committed(Path("/tmp/outside/the/repository.json"))
    monkeypatch.setattr(S, "REPO", tmp_path)  # no git history to read: refused, not taken for "never"
    with pytest.raises(S.RunRefused, match="cannot read the repository's history"):
        S._ever_committed(tmp_path / "runs" / "x.json")
    monkeypatch.setattr(S, "_ever_committed", lambda path: path.name == "random_weights_s5.json")
    with pytest.raises(S.RunDone, match="in the repository's history"):  # as if its file had been deleted here
        S.run("random_weights", 5, study, device="cpu", progress=False)
    monkeypatch.setattr(S, "load_plan", lambda: study)
    out = S.next_run(device="cpu", progress=False, cells=["random_weights"])  # skips it, does the next
    assert Path(out).name == "random_weights_s6.json"


def test_the_new_words_interval_covers_a_difference_that_varies_by_phrasing():
    """With the treatment's effect drawn per phrasing (mean 0 over phrasings; 7 and 13 scenes per
    task's two), the interval that takes the phrasings as a sample holds 0 at about its level, also
    where the seeds' spread dominates; the crossed moment interval, which holds these phrasings
    fixed, does not: it answers another question."""
    rng = np.random.default_rng(5)
    tasks = np.repeat([f"task{k}" for k in range(10)], 20)
    phrasing = np.arange(10).repeat(20) * 2 + np.tile(np.r_[np.zeros(7), np.ones(13)], 10).astype(int)
    words = [f"words{p}" for p in phrasing]
    for phrasing_sd, seed_sd, fixed_at_most in ((1.5, 0.2, 0.9), (0.3, 0.8, 1.0)):  # 0.97, 0.79; 0.95, 0.95
        covered = fixed = 0
        for _ in range(300):
            scene = rng.normal(0, 1.5, 200)  # new scenes too: the difference is 0 on average
            shift = rng.normal(0, phrasing_sd, 20)[phrasing]  # the treatment's gain or loss on each phrasing
            a, b = ((rng.random((4, 200)) < 1 / (1 + np.exp(-(scene + u + rng.normal(0, seed_sd, (4, 1))))))
                    .astype(float) for u in (shift, 0.0))
            c = R.phrasing_contrast(a, b, words, list(tasks), R.variance_components(a, b, None))
            covered += c["lo"] <= 0 <= c["hi"]
            m = R.components_contrast(a, b, None, SimpleNamespace(alpha=0.05), 7)
            fixed += m["lo"] <= 0 <= m["hi"]
        assert 0.93 <= covered / 300 <= 0.995 and fixed / 300 <= fixed_at_most, (covered / 300, fixed / 300)


def test_the_new_words_interval_needs_two_phrasings_per_task_and_borrows_a_seed_variance():
    """No interval where a task has one phrasing (its spread unknown); a one-seed cell borrows the
    other cell's seed variance, as the moment estimate does."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((3, 40)) < 0.6).astype(float), (rng.random((3, 40)) < 0.5).astype(float)
    tasks = ["t0"] * 20 + ["t1"] * 20
    two = [f"w{i // 10}" for i in range(40)]
    c = R.phrasing_contrast(a, b, two, tasks, R.variance_components(a, b, None))
    assert c["phrasings"] == 4 and c["lo"] < c["diff"] < c["hi"] and c["df"] > 0
    one = ["w0"] * 20 + ["w2"] * 10 + ["w3"] * 10  # t0 worded one way only
    c = R.phrasing_contrast(a, b, one, tasks, R.variance_components(a, b, None))
    assert np.isnan(c["lo"]) and np.isnan(c["se"]) and not np.isnan(c["diff"])
    c1 = R.phrasing_contrast(a[:1], b, two, tasks, R.variance_components(a[:1], b, None))
    assert c1["se"] > 0 and c1["df"] > 0
    d, uneven = a.mean(0) - b.mean(0), ["t0"] * 30 + ["t1"] * 10  # one text in two tasks: each its own cases
    c = R.phrasing_contrast(a, b, ["w"] * 40, uneven, R.variance_components(a, b, None))
    assert c["phrasings"] == 2 and c["diff"] == pytest.approx((d[:30].mean() + d[30:].mean()) / 2)


def test_a_second_implementation_from_the_run_files_agrees_with_the_report():
    """docs/results/study/recompute.py (json, numpy and PyYAML only) gets the report's success per
    cell, primary differences and, drawing the same resamples, intervals exactly."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("recompute", P.STUDY / "recompute.py")
    rc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rc)
    plan = P.load_plan()
    a = R.analyse(plan)
    raw, outcomes = rc.load()
    assert set(outcomes) == {c for c in a["cells"] if not plan.cells[c].arm} and len(outcomes) >= 3
    for cell, seeds in outcomes.items():
        assert rc.success(seeds, raw["test"]["wordings"]) == pytest.approx(a["cells"][cell]["success"], abs=1e-12)
    assert len(a["contrasts"]) >= 1
    for row in a["contrasts"]:
        d, lo, hi = rc.contrast(outcomes[row["treatment"]], outcomes[row["reference"]], raw["test"]["wordings"],
                                reps=plan.bootstrap)
        assert (d, lo, hi) == pytest.approx((row["diff"], row["lo"], row["hi"]), abs=1e-12)
    for row in a["counted_once"]:
        d, se, df = rc.moments(outcomes[row["treatment"]], outcomes[row["reference"]], raw["test"]["wordings"])
        assert (d, se, df) == pytest.approx((row["diff"], row["se"], row["df"]), rel=1e-9)
    assert len(a["by_wording"]) == len(a["contrasts"]) * len(raw["test"]["wordings"])
    for row in a["contrasts"]:  # as many cases per wording: the pooled difference is their mean
        parts = [r["diff"] for r in a["by_wording"] if (r["treatment"], r["reference"]) == (row["treatment"],
                                                                                          row["reference"])]
        assert np.mean(parts) == pytest.approx(row["diff"], abs=1e-12)
        gap = next(r for r in a["gap"] if (r["treatment"], r["reference"]) == (row["treatment"], row["reference"]))
        assert gap["diff"] == pytest.approx(parts[1] - parts[0], abs=1e-12)  # held-out minus train
        d, lo, hi = rc.contrast(rc.gap(outcomes[row["treatment"]]), rc.gap(outcomes[row["reference"]]), ["gap"],
                                reps=plan.bootstrap)
        assert (d, lo, hi) == pytest.approx((gap["diff"], gap["lo"], gap["hi"]), abs=1e-12)
    for row in a["by_wording"]:
        d, lo, hi = rc.contrast(outcomes[row["treatment"]], outcomes[row["reference"]], [row["wording"]],
                                reps=plan.bootstrap)
        assert (d, lo, hi) == pytest.approx((row["diff"], row["lo"], row["hi"]), abs=1e-12)
    words = rc.load_words()
    assert words == R.heldout_words(plan.test()) and len(set(words.values())) == 20  # the committed file is today's
    assert len(a["new_phrasings"]) == len(a["contrasts"])
    for row in a["new_phrasings"]:
        t, ref = outcomes[row["treatment"]], outcomes[row["reference"]]
        for key, got in (("heldout", rc.new_words(t, ref, "heldout", words)),
                         ("gap", rc.new_words(rc.gap(t), rc.gap(ref), "gap", words))):
            assert got == pytest.approx(tuple(row[key][k] for k in ("diff", "se", "df")), rel=1e-9)


def test_status_says_who_holds_each_begun_run_and_how_far_it_got(study, tmp_path):
    import os
    import socket

    d = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    d["cells"]["ws"] = {"seeds": [1]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(d))
    plan = P.load_plan(tmp_path / "plan.yaml")
    assert S.status(plan) == ["0 of 4 runs have their result"]  # nothing begun here
    work = S.WORK / "random_weights_s6"
    work.mkdir(parents=True)
    (work / "lock").write_text(f"{socket.gethostname()} {os.getpid()}")
    (work / "test_progress.json").write_text(json.dumps({"checkpoint_sha256": "", "done": {"train/reach-v3": []}}))
    (S.WORK / "ws_s1").mkdir()
    (S.WORK / "ws_s1" / "metrics.csv").write_text("step,loss\n20,1.0\n40,0.9\n")
    (S.WORK / "ws_s1" / "lock").write_text(f"{socket.gethostname()} 999999999")  # its process died
    steps = P.cell_config(plan, "ws", 1).train.steps
    assert S.status(plan) == [  # in the plan's (seed-major) order
        f"ws_s1: stopped, training step 40/{steps}, test rollout 0/2 (wording, task) blocks",
        f"random_weights_s6: running ({socket.gethostname()} {os.getpid()}), no training, test rollout 1/2 "
        "(wording, task) blocks",
        "0 of 4 runs have their result"]
    (S.WORK / "ws_s1" / "lock").write_text("another-machine 12")
    (work / "lock").write_text("")  # its writer died before writing it
    assert S.status(plan)[:2] == [f"ws_s1: held by another-machine, training step 40/{steps}, test rollout 0/2 "
                                  "(wording, task) blocks",
                                  "random_weights_s6: stopped, no training, test rollout 1/2 (wording, task) blocks"]
