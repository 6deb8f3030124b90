import os

import numpy as np
import pytest
import torch

from trimodal_ros.config import load_config
from trimodal_ros.model import ActionTokenizer, TriModalModel
from trimodal_ros.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


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


class _Boom:
    """A pickle that runs code when loaded the unsafe way."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_cannot_run_code(tmp_path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    torch.save({"format": "trimodal_ros.checkpoint/1", "model": _Boom(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_retired_train_keys_of_older_checkpoints_still_load(saved, tmp_path):
    path, _, _ = saved
    ck = torch.load(path, weights_only=True)
    ck["config"]["train"].update(eval_every=0, num_workers=0)  # what older versions wrote
    torch.save(ck, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")[2].train == load_checkpoint(path)[2].train
