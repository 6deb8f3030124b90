"""trimodal_lab/probes/state_policy.py: behaviour cloning from the true state, the demonstrations' ceiling."""

import re

import numpy as np
import pytest


@pytest.fixture(scope="module")
def sp(load_probe):
    return load_probe("state_policy")


def test_the_mlp_fits_the_recorded_tokens_and_drives_the_scene(sp, small_bags, capsys):
    x, tokens, mask, norm, tasks, tok = sp.load(str(small_bags))
    assert tasks == ["drawer-close-v3", "reach-v3"]
    assert x.shape == (len(tokens), 9 + 18 + 2) and tokens.shape == (len(x), sp.CHUNK, 4) == mask.shape + (4,)
    assert np.allclose(x[:, :9].mean(0), 0, atol=1e-4)  # standardised true state
    for joints, width in (("positions", 9 + 9 + 2), ("none", 9 + 2)):
        xj = sp.load(str(small_bags), joints=joints)[0]
        assert xj.shape == (len(x), width) and np.allclose(xj[:, :9], x[:, :9]) and np.allclose(xj[:, -2:], x[:, -2:])
    _, before = sp.train(x, tokens, mask, steps=1, hidden=64)
    _, after = sp.train(x, tokens, mask, steps=300, hidden=64)
    assert before < 0.05 and after > 0.4  # it learns the few episodes' tokens (chance: 1/256)
    assert sp.main(["--data", str(small_bags), "--tasks", "reach-v3", "--steps", "20", "--episodes", "1",
                    "--max-steps", "10", "--joints", "positions"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"reach-v3 +[01]/1 \(val layouts, true state\)", out)
    with pytest.raises(SystemExit, match="push-v3"):
        sp.main(["--data", str(small_bags), "--tasks", "push-v3", "--steps", "1"])
