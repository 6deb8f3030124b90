"""The frozen-sentence-encoder screen: its items are the text screen's wordings, and its scoring
names tasks from embeddings that carry them and fails on embeddings that do not."""

import numpy as np

from trimodal_lab.probes import sentence_screen as S


def test_the_screen_scores_what_the_embeddings_know():
    from trimodal_ros.data.instructions import paraphrases, resolve_tasks

    tasks = resolve_tasks("lang")
    wordings = {tasks[0]: ["start the water"], tasks[3]: ["shove the drawer back in"]}
    its = S.items(tasks, wordings)
    kinds = [k for k, _, _ in its]
    assert kinds.count("validation") == 2 and kinds.count("noisy") == S.NOISY_COPIES * len(tasks)
    assert {t for k, i, t in its if k == "heldout" and i == 3} == set(paraphrases(tasks[3], "heldout"))
    rng = np.random.default_rng(0)
    y = np.array([i for _, i, _ in its])
    knowing = np.eye(len(tasks))[y] + 0.1 * rng.normal(size=(len(its), len(tasks)))  # the task, plus noise
    r = S.score(its, knowing, seeds=1, steps=100)
    assert r["zero_shot"]["validation"][:2] == (2, 2) and r["linear_s0"]["heldout"][:2] == (12, 12)
    blind = rng.normal(size=(len(its), 8))  # nothing of the task
    r = S.score(its, blind, seeds=1, steps=100)
    assert r["linear_s0"]["heldout"][0] <= 6 and len(r["linear_s0"]["heldout"][2]) >= 6
