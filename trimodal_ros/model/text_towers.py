"""Text towers other than open_clip's: ``model.text_tower`` picks one (``clip``: the CLIP model's own).

``wordllama``: the token embeddings of wordllama's ``l2_supercat_256`` (32 000 Llama-2 tokens × 256,
distilled from several LLMs' embedding tables, shipped inside the ``wordllama`` wheel), frozen, under
a small trainable transformer that restores what mean pooling loses (word order: "open" vs "close
the drawer, then open the window"). A text tower trained from scratch on five phrasings per task
knows nothing of words it never saw ("shut", "tap", "puck"); these embeddings do, offline. The
pooled output is the transformer's masked mean plus a projection of wordllama's own mean-pooled
vector, so training starts from the zero-shot representation instead of from noise. The
embeddings are a persistent buffer, so a checkpoint carries (and checks) the table it was trained
with; building the tower still needs the installed wheel (pinned in requirements.txt) for its
tokenizer and the table's shape.

``wordllama_mean``: the same frozen table without the transformer: wordllama's mean-pooled sentence
vector, linearly projected (and each token's embedding, for the fusions that attend over words).
"""

from __future__ import annotations

import importlib.util
import os
from typing import List, Tuple

import torch
from torch import nn

from ..registry import Registry

# Text towers that replace the CLIP model's own; ``clip`` (the default) is not in here: it is the
# open_clip tower that CLIPTowers already holds. Each takes the towers' embedding width E.
TEXT_TOWERS: Registry = Registry("text tower")

WORDLLAMA_MODEL = "l2_supercat_256"
WORDLLAMA_TOKENIZER = "l2_supercat_tokenizer_config.json"


def wordllama_files() -> Tuple[str, str]:
    """(tokenizer json, weights safetensors) inside the installed wordllama wheel. wordllama's own
    ``load()`` looks for the tokenizer in another folder and then tries to download it; nothing may
    download here, so the files are read directly."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("model.text_tower 'wordllama' needs the wordllama package "
                                  "(pip install wordllama==0.4.0.post1; requirements.txt pins it)")
    root = list(spec.submodule_search_locations)[0]
    tok = os.path.join(root, "tokenizers", WORDLLAMA_TOKENIZER)
    weights = os.path.join(root, "weights", f"{WORDLLAMA_MODEL}.safetensors")
    for f in (tok, weights):
        if not os.path.isfile(f):
            raise FileNotFoundError(f"the wordllama wheel lacks {f}: install wordllama==0.4.0.post1")
    return tok, weights


class _WordLlama(nn.Module):
    """wordllama's frozen token table and tokenizer, shared by the towers built on them. Padding id 0
    (Llama's <unk>, which the byte-fallback tokenizer never emits for real text)."""

    def __init__(self, context_length: int = 32):
        super().__init__()
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        tok_file, weights = wordllama_files()
        table = load_file(weights)["embedding.weight"]  # (32000, 256) float16
        self.register_buffer("embedding", table, persistent=True)
        self.tokenizer = Tokenizer.from_file(tok_file)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(context_length)
        self.context_length = context_length

    def tokenize(self, texts: List[str]) -> torch.Tensor:
        """texts → (B, L) int64 ids, 0-padded to the context length (BOS first, as wordllama encodes)."""
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, enc in enumerate(self.tokenizer.encode_batch([t.strip().lower() for t in texts])):
            ids = enc.ids[: self.context_length]
            out[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        return out

    def _embed(self, ids: torch.Tensor, dtype: torch.dtype):
        """(e (B, L, 256) frozen, mask (B, L), w (B, L, 1), mean (B, 256): wordllama's pooled sentence vector)."""
        mask = ids != 0  # (B, L)
        mask = mask | (torch.arange(ids.shape[1], device=ids.device) == 0)  # an empty text keeps its first slot
        e = self.embedding[ids].to(dtype)  # (B, L, 256)
        w = mask.unsqueeze(-1).to(e.dtype)  # (B, L, 1)
        return e, mask, w, (e * w).sum(1) / w.sum(1)


@TEXT_TOWERS.register("wordllama")
class WordLlamaText(_WordLlama):
    """ids (B, L) → pooled (B, E), tokens (B, L, E), in the towers' E-dim space."""

    def __init__(self, out_dim: int, width: int = 256, layers: int = 2, heads: int = 4, context_length: int = 32):
        super().__init__(context_length)
        d = self.embedding.shape[1]
        self.proj_in = nn.Linear(d, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Linear(width, out_dim)
        self.prior = nn.Linear(d, out_dim)  # wordllama's own mean-pooled sentence vector, projected

    def forward(self, ids: torch.Tensor):
        e, mask, w, mean = self._embed(ids, self.proj_in.weight.dtype)
        x = self.proj_in(e) + self.positional_embedding[: ids.shape[1]]  # (B, L, W)
        x = self.ln_final(self.transformer(x, src_key_padding_mask=~mask))  # (B, L, W)
        tokens = self.text_projection(x)  # (B, L, E)
        pooled = (tokens * w).sum(1) / w.sum(1) + self.prior(mean)  # (B, E)
        return pooled, tokens, mask


@TEXT_TOWERS.register("wordllama_mean")
class WordLlamaMeanText(_WordLlama):
    """ids (B, L) → pooled (B, E), tokens (B, L, E): wordllama's mean-pooled sentence vector and each
    token's embedding, each through one linear map; nothing trained reads word order, so no single
    word can be learnt to decide alone. A text-only screen (trimodal_lab/probes/text_screen.py,
    ``--pooling prior_only``) favoured it slightly; in closed loop it was no better than the tower
    above (docs/results/language/README.md)."""

    def __init__(self, out_dim: int, context_length: int = 32):
        super().__init__(context_length)
        d = self.embedding.shape[1]
        self.token_projection = nn.Linear(d, out_dim)  # read only by fusions over words (early_fusion, qformer)
        self.prior = nn.Linear(d, out_dim)

    def forward(self, ids: torch.Tensor):
        e, mask, _, mean = self._embed(ids, self.prior.weight.dtype)
        return self.prior(mean), self.token_projection(e), mask  # (B, E), (B, L, E), (B, L)
