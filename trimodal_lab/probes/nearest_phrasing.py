"""Would mapping new wording onto the nearest training phrasing (SayCan-style grounding on a skill
library) fix held-out wording? Zero-shot, in wordllama's mean-pooled space: for each task set, how
often a training phrasing's nearest *other* training phrasing belongs to its own task (leave one
out: does the space separate the tasks at all?), and which held-out phrasings and user wordings land
on another task's phrasing.

    python -m trimodal_lab.probes.nearest_phrasing [--wordings docs/results/language/user_wordings.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List

import numpy as np
import yaml


def embedder():
    """texts → (N, 256) unit vectors: the mean of wordllama's token embeddings."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    from trimodal_ros.model.text_towers import wordllama_files

    tok_file, weights = wordllama_files()
    table, tok = load_file(weights)["embedding.weight"].astype(np.float32), Tokenizer.from_file(tok_file)

    def embed(texts: List[str]) -> np.ndarray:
        v = np.stack([table[e.ids].mean(0) for e in tok.encode_batch([t.lower() for t in texts])])
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return embed


def probe(tasks: List[str], extra: Dict[str, List[str]], embed) -> List[str]:
    from trimodal_ros.data.instructions import paraphrases

    known = [(t, p) for t in tasks for p in paraphrases(t, "train")]
    vec = embed([p for _, p in known])
    sim = vec @ vec.T
    np.fill_diagonal(sim, -np.inf)
    loo = sum(known[int(np.argmax(row))][0] == t for row, (t, _) in zip(sim, known))
    lines = [f"training phrasings whose nearest other training phrasing is their own task's: {loo}/{len(known)}"]
    for kind, source in (("held-out", {t: paraphrases(t, "heldout") for t in tasks}), ("user", extra)):
        texts = [(t, w) for t in tasks for w in source.get(t, [])]
        if not texts:
            continue
        s = embed([w for _, w in texts]) @ vec.T
        wrong = [(t, w, known[int(np.argmax(r))][1], float(r.max())) for r, (t, w) in zip(s, texts)
                 if known[int(np.argmax(r))][0] != t]
        lines.append(f"{kind} wordings nearest a phrasing of their own task: {len(texts) - len(wrong)}/{len(texts)}")
        lines += [f"  {t}: '{w}' -> '{p}' ({c:.3f})" for t, w, p, c in wrong]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordings", default="docs/results/language/user_wordings.yaml",
                    help="YAML {task@lang: [wording, ...]} tried on the language-critical set")
    args = ap.parse_args(argv)
    from trimodal_ros.data.instructions import resolve_tasks

    embed = embedder()
    user = yaml.safe_load(Path(args.wordings).read_text()) if args.wordings else {}
    for name in ("mt10", "lang"):
        tasks = resolve_tasks(name)
        print(f"## {name}")
        print("\n".join(probe(tasks, {t: v for t, v in user.items() if t in tasks}, embed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
