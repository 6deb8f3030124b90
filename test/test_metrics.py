import numpy as np
import pytest

from trimodal_lab.eval.metrics import (
    action_mae,
    all_pair_retrieval,
    chance_recall,
    mean_ci95,
    retrieval_metrics,
    token_metrics,
    wilson_interval,
)


def test_perfect_alignment_gives_recall_one():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 5)
    centers = rng.normal(size=(10, 32))
    emb = centers[labels] + 0.01 * rng.normal(size=(50, 32))
    r = retrieval_metrics(emb, emb + 0.01 * rng.normal(size=emb.shape), labels, labels)
    assert r["R@1"] == 1.0 and r["median_rank"] == 1.0
    res = all_pair_retrieval({"image": emb, "text": emb, "action": emb}, labels)
    assert len(res) == 7 and res["mean"]["R@1"] == 1.0


def test_random_embeddings_score_chance():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 40)  # 400 items, 10 tasks
    q, g = rng.normal(size=(400, 64)), rng.normal(size=(400, 64))
    r = retrieval_metrics(q, g, labels, labels)
    for k in (1, 5, 10):
        assert r[f"R@{k}"] == pytest.approx(chance_recall(labels, labels, k), abs=0.06)
    assert chance_recall(labels, labels, 1) == pytest.approx(0.1)


def test_identical_gallery_does_not_win_by_tie():
    labels = np.arange(4)
    r = retrieval_metrics(np.ones((4, 3)), np.ones((4, 3)), labels, labels)
    assert r["R@1"] == 0.0 and r["median_rank"] == 4.0


def test_token_and_action_metrics_with_mask():
    true = np.zeros((2, 3, 4), int)
    pred = true.copy()
    pred[0, 0, 1] = 5  # one wrong token in a valid step
    pred[1, 2] = 9  # wrong, but masked out
    mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
    m = token_metrics(pred, true, mask)
    assert m["token_accuracy"] == pytest.approx(1 - 1 / 20)
    assert m["token_accuracy_per_dim"][1] == pytest.approx(4 / 5)
    a = action_mae(np.ones((2, 3, 4)), np.zeros((2, 3, 4)), mask)
    assert a["action_mae"] == pytest.approx(1.0)


def test_intervals():
    m, h = mean_ci95([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.303 * 1 / np.sqrt(3), rel=1e-3)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo > 0.65


def test_cluster_bootstrap_resamples_episodes_not_frames():
    from trimodal_lab.eval.stats import cluster_ratio

    rng = np.random.default_rng(0)
    # 10 episodes of 100 frames; each episode is all right or all wrong: 10 effective samples
    ep = np.repeat(np.arange(10), 100)
    num = np.repeat((rng.random(10) < 0.5).astype(float), 100)
    r = cluster_ratio(num, np.ones_like(num), ep)
    naive_halfwidth = 1.96 * np.sqrt(0.25 / 1000)
    assert r["clusters"] == 10 and (r["hi"] - r["lo"]) / 2 > 3 * naive_halfwidth


def test_paired_delta_holm_anova_and_baselines():
    from trimodal_lab.eval import stats as S

    ep = np.repeat(np.arange(20), 5)
    a, b = np.ones(100), np.zeros(100)
    d = S.paired_cluster_delta(a, b, np.ones(100), ep)
    assert d["delta"] == 1.0 and d["lo"] == d["hi"] == 1.0 and d["p"] == 0.0
    assert S.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # a pure interaction: the row effect flips with the column
    rng = np.random.default_rng(1)
    v = {(r, c): list((1 if (r == "x") == (c == "p") else -1) + 0.1 * rng.normal(size=3))
         for r in ("x", "y") for c in ("p", "q")}
    an = S.two_way_anova(v)
    assert an["interaction"]["p"] < 1e-6 and an["rows"]["p"] > 0.05 and an["cols"]["p"] > 0.05
    tt = np.array([[[1, 2]], [[1, 3]], [[4, 5]]])  # (N=3, K=1, A=2)
    base = S.majority_baselines(tt, ["a", "a", "b"], np.array([[[1, 2]], [[4, 5]]]), ["a", "b"])
    assert base == {"most_common_token": 0.5, "most_common_token_per_task": 1.0}
    assert S.min_detectable_difference(50, 0.5) == pytest.approx(0.28, abs=0.01)
    r = S.paired_runs_delta({0: np.ones(10), 1: np.ones(10)}, {0: np.zeros(10), 1: np.ones(10)})
    assert r["delta"] == 0.5 and r["pairs"] == 2


def test_roc_auc_is_the_share_of_pairs_ranked_right():
    from trimodal_lab.eval.metrics import roc_auc

    assert roc_auc([3, 4], [1, 2]) == 1.0 and roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 2], [2, 3]) == 0.125  # of 4 pairs: one tie (half), none won
    assert roc_auc([5, 5], [5]) == 0.5 and np.isnan(roc_auc([], [1]))
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 300), rng.normal(0, 1, 400)
    brute = np.mean([(x > y) + 0.5 * (x == y) for x in a for y in b])
    assert roc_auc(a, b) == pytest.approx(brute)
