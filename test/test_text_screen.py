"""The text tower's screen (trimodal_lab.probes.text_screen): its edits, and that it learns."""

from collections import Counter

import numpy as np

from trimodal_lab.probes.text_screen import distractor_words, drop_words, insert_word, screen
from trimodal_ros.data.instructions import paraphrases, resolve_tasks


def test_the_screens_edits_keep_the_task_and_add_only_other_tasks_words():
    tasks = resolve_tasks("lang")
    other = distractor_words(tasks)
    close = "drawer-close-v3@lang"
    assert {"open", "pull"} <= set(other[close])  # the opposite task's verbs
    assert not {"drawer", "push", "shut"} & set(other[close])  # its own words never
    rng = np.random.default_rng(0)
    for _ in range(50):
        t = paraphrases(close)[int(rng.integers(5))]
        added = Counter(insert_word(t, rng, other[close]).split()) - Counter(t.split())
        assert sum(added.values()) == 1 and next(iter(added)) in other[close]
        assert drop_words(t, rng, 0.99)  # never empty
    assert drop_words("open the drawer", rng, 0.0) == "open the drawer"


def test_the_screen_learns_to_name_the_task_of_unseen_phrasings():
    """30 batches already name most held-out phrasings of the language-critical set (chance: 2 of 12)."""
    tasks = resolve_tasks("lang")
    r = screen(tasks, {tasks[0]: ["turn the faucet on please"]}, seed=0, steps=30, distractors=0.3,
               word_dropout=0.1, pooling="attention")
    right, n = r["heldout"]
    assert n == 12 and right >= 7, r
    assert r["validation"][1] == 1 and len(r["validation_wrong"]) == 1 - r["validation"][0]


def test_the_screens_poolings_start_from_the_policys_tower():
    """Attention pooling starts as the plain mean (a zero query); dropping the prior changes it."""
    import torch

    from trimodal_lab.probes.text_screen import tower

    torch.manual_seed(0)
    mean = tower("mean")
    ids = mean.tokenize(["open the drawer", "close the window please"])
    with torch.no_grad():
        plain = mean(ids)[0]
        for pooling, same in (("attention", True), ("mean_without_prior", False)):
            other = tower(pooling)
            other.load_state_dict(mean.state_dict())
            assert torch.allclose(other(ids)[0], plain, atol=1e-5) == same, pooling
