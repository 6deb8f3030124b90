import os
import subprocess
import sys
import time

import pytest
import torch

from trimodal_ros.model.encoders import CLIPTowers, PretrainedWeightsError, create_clip, packaged_architectures


def test_packaged_architectures_build():
    assert {"tiny-vit", "small-vit"} <= set(packaged_architectures())
    t = CLIPTowers("tiny-vit")
    pooled, tokens = t.encode_image(torch.zeros(2, 3, t.image_size, t.image_size))
    n = (t.image_size // 16) ** 2
    assert pooled.shape == (2, t.embed_dim) and tokens.shape == (2, n, t.embed_dim)
    txt = t.encode_text(t.tokenize(["pick up the block", "open"]))
    assert txt.pooled.shape == (2, t.embed_dim) and txt.tokens.shape == (2, t.context_length, t.embed_dim)
    assert txt.mask[1].sum() < txt.mask[0].sum()  # the shorter command has fewer real tokens


def test_local_checkpoint_file_and_folder_load_the_same_weights(tmp_path):
    torch.manual_seed(1)
    src = create_clip("tiny-vit")
    torch.save(src.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    for where in (tmp_path / "open_clip_pytorch_model.bin", tmp_path):
        loaded = create_clip("tiny-vit", str(where))
        torch.testing.assert_close(loaded.visual.conv1.weight, src.visual.conv1.weight)


def test_missing_file_and_unknown_tag_are_clear():
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        create_clip("tiny-vit", "/nonexistent/weights.bin")
    with pytest.raises(PretrainedWeightsError, match="not an open_clip pretrained tag"):
        create_clip("ViT-B-32", "no_such_tag")
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        create_clip("ViT-Z-99")


def test_uncached_pretrained_tag_fails_at_once_offline():
    """With HF_HUB_OFFLINE=1 a real tag that is not cached fails fast and says how to supply a file."""
    code = ("from trimodal_ros.model.encoders import create_clip\n"
            "create_clip('ViT-B-32', 'laion2b_s34b_b79k', cache_dir='/tmp/trimodal-empty-cache')\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME="/tmp/trimodal-empty-hf")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "PretrainedWeightsError" in r.stderr and "HF_HUB_OFFLINE" in r.stderr
    assert "open_clip_pytorch_model.bin" in r.stderr  # how to supply a local file
    print(f"offline failure after {time.monotonic() - t0:.1f} s (incl. interpreter start)")


def test_wordllama_text_tower_knows_unseen_wording_before_training():
    """The frozen wordllama embeddings, mean-pooled as its own sentence vector: most held-out MT10
    phrasings lie nearest their own task's training phrasings with no training at all (an
    embedding table learnt from these 50 phrasings could not: the held-out words are new)."""
    from trimodal_ros.data.instructions import MT10, paraphrases
    from trimodal_ros.model.text_towers import WordLlamaText

    tower = WordLlamaText(out_dim=16)
    assert "embedding" not in dict(tower.named_parameters())  # frozen: a buffer, never trained
    assert "embedding" in tower.state_dict() and tower.embedding.shape == (32000, 256)

    def sentence(texts):
        ids = tower.tokenize(texts)
        m = (ids != 0).float().unsqueeze(-1)
        return torch.nn.functional.normalize((tower.embedding[ids].float() * m).sum(1) / m.sum(1), dim=-1)

    centroids = torch.nn.functional.normalize(torch.stack([sentence(paraphrases(t)).mean(0) for t in MT10]), dim=-1)
    held = [(i, h) for i, t in enumerate(MT10) for h in paraphrases(t, "heldout")]
    nearest = (sentence([h for _, h in held]) @ centroids.T).argmax(1)
    hits = sum(int(j) == i for (i, _), j in zip(held, nearest))
    assert hits >= 14, f"{hits}/20 held-out phrasings nearest their own task"

    ids = tower.tokenize(["Close the drawer", "close the drawer", ""])
    assert ids.shape == (3, tower.context_length) and torch.equal(ids[0], ids[1])
    pooled, tokens, mask = tower(ids)
    assert pooled.shape == (3, 16) and tokens.shape == (3, tower.context_length, 16)
    assert torch.isfinite(pooled).all() and mask[2].sum() == 1  # the empty instruction: BOS only
    order = tower(tower.tokenize(["open the drawer then close the window", "close the drawer then open the window"]))[0]
    assert not torch.allclose(order[0], order[1], atol=1e-4)  # word order reaches the pooled vector


def test_the_mean_wordllama_tower_is_the_pooled_vector_projected():
    """model.text_tower: wordllama_mean: nothing trained reads word order, and an instruction's words
    each give a token for the fusions that attend over them."""
    from trimodal_ros.model.text_towers import WordLlamaMeanText

    torch.manual_seed(0)
    tower = WordLlamaMeanText(out_dim=16)
    assert {n for n, _ in tower.named_parameters()} == {"prior.weight", "prior.bias", "token_projection.weight",
                                                        "token_projection.bias"}
    ids = tower.tokenize(["open the drawer then close the window", "close the drawer then open the window", ""])
    pooled, tokens, mask = tower(ids)
    assert pooled.shape == (3, 16) and tokens.shape == (3, tower.context_length, 16)
    assert torch.allclose(pooled[0], pooled[1], atol=1e-5) and mask[2].sum() == 1  # a bag of words
    assert not torch.allclose(pooled[0], pooled[2], atol=1e-3)


@pytest.mark.parametrize("text_tower", ["wordllama", "wordllama_mean"])
def test_a_wordllama_model_carries_its_embeddings_in_the_checkpoint(tmp_path, text_tower):
    """model.text_tower: wordllama replaces the CLIP text tower (no unused one left behind); the
    frozen table is in the saved state, so a checkpoint encodes instructions the same on load."""
    from trimodal_ros.model.action_tokenizer import ActionTokenizer
    from trimodal_ros.model.configuration import ModelConfig
    from trimodal_ros.model.trimodal import TriModalModel
    from trimodal_ros.checkpoint import load_checkpoint, save_checkpoint
    from trimodal_ros.config import load_config
    import dataclasses
    import numpy as np

    cfg = load_config("concat_mlp")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, text_tower=text_tower))
    torch.manual_seed(0)
    model = TriModalModel(cfg.model).eval()
    assert not any(k.startswith("towers.text.transformer.resblocks") for k in model.state_dict())
    clip_params = TriModalModel(ModelConfig(fusion="concat_mlp")).trainable_parameters()
    assert model.trainable_parameters() < clip_params
    tok = ActionTokenizer.fit(np.random.default_rng(0).uniform(-1, 1, (50, 4)), cfg.model.bins)
    save_checkpoint(tmp_path / "w.pt", model, cfg, tok, {"step": 1})
    loaded = load_checkpoint(tmp_path / "w.pt")[0].eval()
    a = model.encode_instructions(["shut the tap"]).pooled
    b = loaded.encode_instructions(["shut the tap"]).pooled
    assert torch.allclose(a, b) and loaded.cfg.text_tower == text_tower
