import os

import numpy as np
import pytest
import torch

from trimodal_ros.config import load_config
from trimodal_ros.model import ActionTokenizer, TriModalModel
from trimodal_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cfg = load_config("cross_attention")
    torch.manual_seed(0)
    model = TriModalModel(cfg.model).eval()
    tok = ActionTokenizer([-1] * 4, [1] * 4)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model, cfg, tok, {"step": 7})
    return path, model, cfg


def test_round_trip_gives_identical_outputs(saved):
    path, model, cfg = saved
    loaded, tok, cfg2 = load_checkpoint(path, fusion="cross_attention")
    assert cfg2 == cfg and tok.bins == cfg.model.bins
    x = model.preprocess(np.full((1, 64, 64, 3), 100, np.uint8))
    p = torch.zeros(1, cfg.model.proprio_dim)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x, p, text_ids=model.tokenize(["go"])).logits,
                                   model(x, p, text_ids=model.tokenize(["go"])).logits)
    assert not list(path.parent.glob(".*.tmp")), "no temporary file left behind"
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask, "the usual file mode, not mkstemp's 0600"


def test_other_variant_and_config_mismatch_name_both(saved):
    path, _, _ = saved
    with pytest.raises(CheckpointError, match="'cross_attention'.*'qformer'"):
        load_checkpoint(path, fusion="qformer")
    with pytest.raises(CheckpointError, match="embed_dim"):
        load_checkpoint(path, expect=load_config("cross_attention", embed_dim=64))


def test_missing_and_corrupt_checkpoints(tmp_path, saved):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(saved[0].read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(CheckpointError, match="not a trimodal_ros checkpoint"):
        load_checkpoint(other)
