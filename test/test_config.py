import dataclasses

import pytest

from trimodal_ros.config import ConfigError, config_from_dict, config_names, load_config
from trimodal_ros.model import FUSIONS


def test_every_fusion_has_a_config_that_loads():
    assert set(FUSIONS.names()) <= set(config_names())
    for name in config_names():
        cfg = load_config(name)
        assert cfg.model.fusion in FUSIONS


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  fusion: qformer\n  embed_dimm: 64\n")
    with pytest.raises(ConfigError, match="embed_dimm") as e:
        load_config(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("model,match", [
    ({"fusion": "nope"}, "fusion"),
    ({"embed_dim": "big"}, "embed_dim"),
    ({"embed_dim": 130, "fusion_heads": 4}, "divisible"),
    ({"image_tuning": "half"}, "image_tuning"),
    ({"bins": 1}, "bins"),
    ({"joint_names": ["a", "a"]}, "joint_names"),
])
def test_bad_values_raise_clear_errors(model, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"model": model})


def test_bad_sections_and_train_keys():
    with pytest.raises(ConfigError, match="modle"):
        config_from_dict({"modle": {}})
    with pytest.raises(ConfigError, match="loss"):
        config_from_dict({"train": {"loss": "triplet"}})
    with pytest.raises(ConfigError, match="not found"):
        load_config("no-such-variant")


def test_overrides_win_and_proprio_dim():
    cfg = load_config("weighted_sum", fusion="qformer")
    assert cfg.model.fusion == "qformer"
    m = dataclasses.replace(cfg.model, action_history=2, use_velocities=True)
    assert m.proprio_dim == 9 * 2 + 2 * 4
