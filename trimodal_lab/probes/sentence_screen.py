"""The text-only screen (``text_screen``) for a frozen sentence encoder that runs outside Python.

``items`` writes the sentences to embed: each task's training phrasings, 40 copies under the
training's word noise, its held-out phrasings and its validation wordings. Embed them with any
encoder, in order, as ``{"embeddings": [[...], ...]}`` (``use_lite/embed.js`` does it with the
Universal Sentence Encoder lite of an npm package). ``score`` then names each wording's task zero-shot
(nearest mean of a task's training phrasings, by cosine) and with a linear head trained on the
training and noisy texts (three seeds, 400 batches of 64), as the wordllama recipes were screened.

    python -m trimodal_lab.probes.sentence_screen items /tmp/items.json
    NODE_PATH=<folder>/node_modules node trimodal_lab/probes/use_lite/embed.js /tmp/items.json /tmp/embeddings.json
    python -m trimodal_lab.probes.sentence_screen score /tmp/items.json /tmp/embeddings.json

``wordllama ITEMS OUT`` writes wordllama's own mean-pooled vectors of the same sentences, to score
beside them.
"""

from __future__ import annotations

import argparse
import json
from typing import Dict, List

import numpy as np
import yaml

NOISY_COPIES = 40


def items(tasks: List[str], wordings: Dict[str, List[str]], seed: int = 0) -> List[list]:
    """[kind, task index, text]: kind train, noisy, heldout or validation."""
    from trimodal_ros.data.instructions import paraphrases, perturb_instruction

    rng, out = np.random.default_rng(seed), []
    for i, t in enumerate(tasks):
        train = paraphrases(t, "train")
        out += [["train", i, p] for p in train]
        out += [["noisy", i, perturb_instruction(train[int(rng.integers(len(train)))], rng, 0.2)]
                for _ in range(NOISY_COPIES)]
        out += [["heldout", i, p] for p in paraphrases(t, "heldout")]
        out += [["validation", i, p] for p in wordings.get(t, [])]
    return out


def wordllama_vectors(texts: List[str]) -> np.ndarray:
    """(N, 256) wordllama's mean-pooled sentence vectors, as the wordllama tower's prior sees them."""
    import torch

    from trimodal_ros.model.text_towers import WordLlamaMeanText

    tower = WordLlamaMeanText(8)
    with torch.no_grad():
        return tower._embed(tower.tokenize(texts), torch.float32)[3].numpy()  # (N, 256)


def score(its: List[list], emb: np.ndarray, seeds: int = 3, steps: int = 400) -> Dict[str, list]:
    """{"zero_shot" | "linear_s<seed>": {kind: (right, of, [misnamed])}} for heldout and validation."""
    import torch

    e = torch.nn.functional.normalize(torch.as_tensor(emb, dtype=torch.float32), dim=1)  # (N, D)
    y = torch.as_tensor([i for _, i, _ in its])
    kinds = [k for k, _, _ in its]
    n_tasks = int(y.max()) + 1

    def judge(pred: torch.Tensor) -> Dict[str, tuple]:
        out = {}
        for kind in ("validation", "heldout"):
            idx = [j for j, k in enumerate(kinds) if k == kind]
            wrong = [its[j][2] for j in idx if pred[j] != y[j]]
            out[kind] = (len(idx) - len(wrong), len(idx), wrong)
        return out

    centroids = torch.stack([e[[j for j, k in enumerate(kinds) if k == "train" and y[j] == t]].mean(0)
                             for t in range(n_tasks)])  # (T, D)
    res = {"zero_shot": judge((e @ centroids.T).argmax(1))}
    train = torch.as_tensor([j for j, k in enumerate(kinds) if k in ("train", "noisy")])
    for seed in range(seeds):
        torch.manual_seed(seed)
        head = torch.nn.Linear(e.shape[1], n_tasks)
        opt = torch.optim.AdamW(head.parameters(), 1e-2, weight_decay=0.01)
        for _ in range(steps):
            b = train[torch.randint(len(train), (64,))]
            loss = torch.nn.functional.cross_entropy(head(e[b] * 10), y[b])  # unit vectors, scaled
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            res[f"linear_s{seed}"] = judge(head(e * 10).argmax(1))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a_items = sub.add_parser("items", help="write the sentences to embed")
    a_items.add_argument("out")
    a_items.add_argument("--tasks", default="lang")
    a_items.add_argument("--wordings", default="docs/results/language/validation_wordings.yaml")
    a_score = sub.add_parser("score", help="name the tasks from the embeddings")
    a_score.add_argument("items")
    a_score.add_argument("embeddings")
    a_wl = sub.add_parser("wordllama", help="write wordllama's mean-pooled vectors of the sentences")
    a_wl.add_argument("items")
    a_wl.add_argument("out")
    a = ap.parse_args(argv)
    if a.cmd == "wordllama":
        from trimodal_ros.io import atomic_write_json

        with open(a.items) as f:
            texts = json.load(f)["sentences"]
        atomic_write_json(a.out, {"sentences": texts, "embeddings": wordllama_vectors(texts).tolist()})
        print(f"wrote {len(texts)} wordllama vectors to {a.out}")
        return 0
    if a.cmd == "items":
        from trimodal_ros.data.instructions import resolve_tasks
        from trimodal_ros.io import atomic_write_json

        with open(a.wordings) as f:
            its = items(resolve_tasks(a.tasks), yaml.safe_load(f) or {})
        atomic_write_json(a.out, {"items": its, "sentences": [t for _, _, t in its]})
        print(f"wrote {len(its)} sentences to {a.out}")
        return 0
    with open(a.items) as f:
        its = json.load(f)["items"]
    with open(a.embeddings) as f:
        emb = np.asarray(json.load(f)["embeddings"], dtype=np.float32)
    if len(emb) != len(its):
        raise SystemExit(f"{a.embeddings} holds {len(emb)} embeddings for {len(its)} sentences")
    for name, r in score(its, emb).items():
        print(name, "; ".join(f"{k} {right}/{n}, misnamed {wrong}" for k, (right, n, wrong) in r.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
