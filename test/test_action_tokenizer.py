import numpy as np
import pytest

from trimodal_ros.model.action_tokenizer import ActionTokenizer


def test_round_trip_within_half_a_bin_for_chunks():
    tok = ActionTokenizer([-1, -1, -1, -1], [1, 1, 1, 1], bins=256)
    x = np.random.default_rng(0).uniform(-1, 1, size=(32, 4, 4))  # (B, K, dims)
    t = tok.encode(x)
    assert t.shape == (32, 4, 4) and t.dtype == np.int64
    assert t.min() >= 0 and t.max() <= 255
    err = np.abs(tok.decode(t) - x)
    assert np.all(err <= tok.bin_width / 2 + 1e-6)


def test_out_of_range_goes_to_end_bins_and_bins_are_uniform():
    tok = ActionTokenizer([0.0, -2.0], [1.0, 2.0], bins=4)
    assert tok.encode([[5.0, -9.0]]).tolist() == [[3, 0]]
    assert tok.encode([[0.26, 0.1]]).tolist() == [[1, 2]]
    np.testing.assert_allclose(tok.decode([[0, 3]]), [[0.125, 1.5]])


def test_fit_uses_percentiles_and_serialises():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(10000, 3))
    a[0] = 1e6  # an outlier must not stretch the bins
    tok = ActionTokenizer.fit(a, bins=256)
    np.testing.assert_allclose(tok.low, np.percentile(a, 1, axis=0))
    assert tok.high.max() < 10
    again = ActionTokenizer.from_dict(tok.to_dict())
    np.testing.assert_array_equal(again.encode(a[:50]), tok.encode(a[:50]))


def test_constant_dimension_and_errors():
    tok = ActionTokenizer([0.5], [0.5])
    assert tok.decode(tok.encode([[0.5]]))[0, 0] == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(ValueError, match="high"):
        ActionTokenizer([1.0], [0.0])
    with pytest.raises(ValueError, match="last axis"):
        tok.encode(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        tok.encode([[np.nan]])
    with pytest.raises(ValueError, match="tokens"):
        tok.decode([[256]])
