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
