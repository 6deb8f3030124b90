"""A cheap screen of how the text tower is trained for new wording, before a policy is trained with it.

The wordllama text tower (``model.text_tower: wordllama``) with a linear task head learns to name
the task from the training phrasings under the training's word noise (``perturb_instruction``),
optionally with two further edits: a distractor (one word of another task's training phrasings,
inserted anywhere: "close the open drawer" is still a close) and word dropout (each word dropped
with a probability). It is then asked to name the task of wordings it never saw: the choice is made
on ``--wordings`` (validation wordings); the held-out phrasings are only printed beside them.
A few minutes per seed on one CPU thread.

    python -m trimodal_lab.probes.text_screen [--tasks lang] [--distractors 0.3] [--word-dropout 0.15]
        [--pooling mean|mean_without_prior|prior_only|attention] [--steps 400] [--seeds 3]
        [--wordings docs/results/language/validation_wordings.yaml]
"""

from __future__ import annotations

import argparse
import time
from typing import Dict, List, Sequence

import numpy as np
import yaml


def distractor_words(tasks: Sequence[str]) -> Dict[str, List[str]]:
    """Per task, the words of the other tasks' training phrasings that none of its own has."""
    from trimodal_ros.data.instructions import paraphrases

    words = {t: {w for p in paraphrases(t, "train") for w in p.split()} for t in tasks}
    return {t: sorted(set().union(*(words[u] for u in tasks if u != t)) - words[t]) for t in tasks}


def insert_word(text: str, rng: np.random.Generator, words: Sequence[str]) -> str:
    """``text`` with one of ``words`` at a random place."""
    w = text.split()
    w.insert(int(rng.integers(len(w) + 1)), words[int(rng.integers(len(words)))])
    return " ".join(w)


def drop_words(text: str, rng: np.random.Generator, q: float) -> str:
    """Each word dropped with probability ``q``; a text that would lose every word stays whole."""
    kept = [w for w in text.split() if rng.random() >= q]
    return " ".join(kept) if kept else text


POOLINGS = ("mean", "mean_without_prior", "prior_only", "attention")


def tower(pooling: str = "mean", out_dim: int = 128):
    """The wordllama tower as the policy has it ("mean": its tokens' mean plus wordllama's own
    mean-pooled vector, projected), without that prior, that prior alone, or pooled by a learned query's attention
    over the tokens (plus the prior) instead of their mean."""
    import torch

    from trimodal_ros.model.text_towers import WordLlamaText

    class Screened(WordLlamaText):
        def __init__(self):
            super().__init__(out_dim)
            self.query = torch.nn.Parameter(torch.zeros(out_dim))  # zero: attention starts as the mean

        def forward(self, ids):
            pooled, tokens, mask = super().forward(ids)  # (B, E), (B, L, E), (B, L)
            if pooling == "mean":
                return pooled, tokens, mask
            prior = self.prior(self._embed(ids, tokens.dtype)[3])  # (B, E): wordllama's pooled vector, projected
            if pooling == "mean_without_prior":
                return pooled - prior, tokens, mask
            if pooling == "prior_only":  # the frozen mean-pooled vector, projected: no trained word order
                return prior, tokens, mask
            a = (tokens @ self.query).masked_fill(~mask, float("-inf")).softmax(1)  # (B, L)
            return (a.unsqueeze(-1) * tokens).sum(1) + prior, tokens, mask

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return Screened()


def screen(tasks: Sequence[str], wordings: Dict[str, List[str]], seed: int, steps: int = 400,
           noise: float = 0.2, distractors: float = 0.0, word_dropout: float = 0.0,
           pooling: str = "mean") -> Dict[str, object]:
    """Train tower + head for ``steps`` batches of 64; count the task named right for ``wordings``
    and the held-out phrasings, and list the misnamed wordings."""
    import torch

    from trimodal_ros.data.instructions import paraphrases, perturb_instruction

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    text, head = tower(pooling), torch.nn.Linear(128, len(tasks))
    opt = torch.optim.AdamW([*text.parameters(), *head.parameters()], 1e-3, weight_decay=0.01)
    other = distractor_words(tasks)
    for _ in range(steps):
        y = rng.integers(len(tasks), size=64)
        texts = []
        for k in y:
            ph = paraphrases(tasks[k], "train")
            t = perturb_instruction(ph[int(rng.integers(len(ph)))], rng, noise)
            if word_dropout:
                t = drop_words(t, rng, word_dropout)
            if distractors and rng.random() < distractors:
                t = insert_word(t, rng, other[tasks[k]])
            texts.append(t)
        loss = torch.nn.functional.cross_entropy(head(text(text.tokenize(texts))[0]), torch.as_tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    text.eval()
    out: Dict[str, object] = {}
    with torch.no_grad():
        for name, source in (("validation", wordings), ("heldout", {t: paraphrases(t, "heldout") for t in tasks})):
            items = [(i, w) for i, t in enumerate(tasks) for w in source.get(t, [])]
            if not items:
                continue
            pred = head(text(text.tokenize([w for _, w in items]))[0]).argmax(1).tolist()
            out[name] = sum(p == i for p, (i, _) in zip(pred, items)), len(items)
            out[f"{name}_wrong"] = [w for p, (i, w) in zip(pred, items) if p != i]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="lang")
    ap.add_argument("--wordings", default="docs/results/language/validation_wordings.yaml")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--noise", type=float, default=0.2, help="train.instruction_noise")
    ap.add_argument("--distractors", type=float, default=0.0, help="share of texts given another task's word")
    ap.add_argument("--word-dropout", type=float, default=0.0, help="each word dropped with this probability")
    ap.add_argument("--pooling", default="mean", choices=POOLINGS, help="how the tower pools its tokens")
    a = ap.parse_args(argv)

    import torch

    from trimodal_ros.data.instructions import resolve_tasks

    torch.set_num_threads(1)
    tasks = resolve_tasks(a.tasks)
    with open(a.wordings) as f:
        wordings = yaml.safe_load(f) or {}
    totals = [0, 0]
    for seed in range(a.seeds):
        t0 = time.time()
        r = screen(tasks, wordings, seed, a.steps, a.noise, a.distractors, a.word_dropout, a.pooling)
        (vr, vn), (hr, hn) = r.get("validation", (0, 0)), r["heldout"]
        totals = [totals[0] + vr, totals[1] + vn]
        print(f"seed {seed}: validation {vr}/{vn}, held-out {hr}/{hn} ({time.time() - t0:.0f} s); "
              f"validation misnamed: {r.get('validation_wrong', [])}", flush=True)
    print(f"validation over {a.seeds} seeds: {totals[0]}/{totals[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
