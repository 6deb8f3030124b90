"""A fixed checkpoint's actions on fixed frames do not change (see ``frozen_numerics.py``): every
result measured with the package still stands after a refactor."""

import numpy as np
import pytest
import torch

from frozen_numerics import CONFIGS, HERE, checkpoint, run
from trimodal_ros.policy import Policy


@pytest.mark.parametrize("name", CONFIGS)
def test_fixed_checkpoint_gives_the_recorded_tokens_actions_and_embeddings(name, tmp_path):
    want = np.load(HERE / f"{name}.npz")
    assert len(np.unique(want["tokens"])) > 8  # the recording exercises the head, not one constant bin
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = run(Policy.load(str(checkpoint(name, tmp_path / f"{name}.pt"))))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(got["tokens"], want["tokens"])
    np.testing.assert_array_equal(got["actions"], want["actions"])  # decoded + ensembled: bit-identical
    # float32 sums may round differently on another CPU; on one machine they are identical too
    np.testing.assert_allclose(got["embeddings"], want["embeddings"], rtol=1e-5, atol=1e-6)
