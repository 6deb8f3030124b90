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


def test_bare_names_never_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qformer").mkdir()  # a stray folder named like a variant
    (tmp_path / "weighted_sum").write_text("model: {fusion: qformer}\n")  # and a stray file
    assert load_config("qformer").model.fusion == "qformer"
    assert load_config("weighted_sum").model.fusion == "weighted_sum"  # the package's, not ./weighted_sum
    with pytest.raises(ConfigError, match="is a directory"):
        load_config("./qformer")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("configs/none.yaml")


def test_a_missing_ament_index_is_named_not_reported_as_not_found(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ament(name, *a, **k):
        if name.startswith("ament_index_python"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ament)
    with pytest.raises(ConfigError, match="ament_index_python is not installed"):
        load_config("no-such-variant")
