import math

import numpy as np
import pytest
import torch

from trimodal_ros.model.losses import (
    CONTRASTIVE_LOSSES,
    UncertaintyWeighting,
    clip_loss,
    gradient_conflict,
    joint_infonce,
    pairwise_infonce,
)


def _lecture_embeddings():
    # the lecture's N=2 example: I1=[0.8,0.6], I2=[0.6,0.8], T1=[0.7,0.7], T2=[0.7,-0.7], τ=0.07
    return torch.tensor([[0.8, 0.6], [0.6, 0.8]]), torch.tensor([[0.7, 0.7], [0.7, -0.7]])


def test_clip_loss_lecture_example_by_hand():
    img, txt = _lecture_embeddings()
    tau = 0.07
    n = lambda v: [x / math.hypot(*v) for x in v]  # noqa: E731
    I = [n(v) for v in img.tolist()]
    T = [n(v) for v in txt.tolist()]
    s = [[sum(a * b for a, b in zip(I[i], T[j])) / tau for j in range(2)] for i in range(2)]
    row = [-(s[i][i] - math.log(sum(math.exp(x) for x in s[i]))) for i in range(2)]
    col = [-(s[j][j] - math.log(sum(math.exp(s[i][j]) for i in range(2)))) for j in range(2)]
    expected = (sum(row) + sum(col)) / 4  # 1/(2N) Σ over both directions
    assert clip_loss(img, txt, tau).item() == pytest.approx(expected, rel=1e-5)
    # the lecture's own numbers: L_CE(I1) ≈ 0 and L_CE(T2) ≈ 4.0
    assert row[0] == pytest.approx(0.0, abs=1e-4)
    assert col[1] == pytest.approx(4.0, abs=0.1)


def test_clip_loss_symmetric_permutation_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    base = clip_loss(a, b, 0.1)
    assert clip_loss(b, a, 0.1).item() == pytest.approx(base.item(), rel=1e-6)
    perm = torch.randperm(8, generator=g)
    assert clip_loss(a[perm], b[perm], 0.1).item() == pytest.approx(base.item(), rel=1e-6)
    assert clip_loss(3.0 * a, 0.5 * b, 0.1).item() == pytest.approx(base.item(), rel=1e-5)
    # breaking the pairing makes the loss worse for aligned data
    assert clip_loss(a, a + 0.01 * b, 0.1) < clip_loss(a, a[perm] + 0.01 * b, 0.1)


def test_clip_loss_perfect_alignment_goes_to_zero_and_rejects_bad_shapes():
    e = torch.eye(4)
    assert clip_loss(e, e, 0.01).item() < 1e-6
    with pytest.raises(ValueError):
        clip_loss(torch.randn(4, 3), torch.randn(5, 3))


def test_pairwise_is_mean_of_the_three_pairs():
    g = torch.Generator().manual_seed(1)
    i, a, t = (torch.randn(6, 8, generator=g) for _ in range(3))
    expected = (clip_loss(i, a, 0.2) + clip_loss(i, t, 0.2) + clip_loss(a, t, 0.2)) / 3
    assert pairwise_infonce([i, a, t], 0.2).item() == pytest.approx(expected.item(), rel=1e-6)
    assert pairwise_infonce([i, t], 0.2).item() == pytest.approx(clip_loss(i, t, 0.2).item(), rel=1e-6)


def _joint_bruteforce(embs, tau):
    z = [e / np.linalg.norm(e, axis=1, keepdims=True) for e in embs]
    z = np.concatenate(z).astype(np.float64)
    n, b = len(z), len(embs[0])
    total = 0.0
    for r in range(n):
        num = sum(math.exp(z[r] @ z[k] / tau) for k in range(n) if k != r and k % b == r % b)
        den = sum(math.exp(z[r] @ z[k] / tau) for k in range(n) if k != r)
        total += -math.log(num / den)
    return total / n


def test_joint_infonce_matches_bruteforce_definition():
    rng = np.random.default_rng(0)
    embs = [rng.normal(size=(5, 4)) for _ in range(3)]
    got = joint_infonce([torch.tensor(e) for e in embs], 0.5).item()
    assert got == pytest.approx(_joint_bruteforce(embs, 0.5), rel=1e-9)


def test_joint_infonce_is_stable_at_tiny_temperature_and_permutation_invariant():
    g = torch.Generator().manual_seed(2)
    embs = [torch.randn(8, 16, generator=g) for _ in range(3)]
    v = joint_infonce(embs, 1e-3)
    assert torch.isfinite(v)
    perm = torch.randperm(8, generator=g)
    assert joint_infonce([e[perm] for e in embs], 0.1).item() == pytest.approx(joint_infonce(embs, 0.1).item(), rel=1e-5)
    # modality order does not matter either
    assert joint_infonce(embs[::-1], 0.1).item() == pytest.approx(joint_infonce(embs, 0.1).item(), rel=1e-5)
    # perfect tri-modal agreement: each row's positives dominate
    e = torch.eye(8)
    assert joint_infonce([e, e, e], 0.01).item() < 1e-6


def test_registry_losses_and_none():
    g = torch.Generator().manual_seed(3)
    emb = {k: torch.randn(4, 8, generator=g, requires_grad=True) for k in ("image", "action", "text")}
    assert CONTRASTIVE_LOSSES.get("clip")(emb, 0.1).item() == pytest.approx(
        clip_loss(emb["image"], emb["text"], 0.1).item())
    assert CONTRASTIVE_LOSSES.get("none")(emb, 0.1).item() == 0.0
    with pytest.raises(KeyError, match="pairwise"):
        CONTRASTIVE_LOSSES.get("tripletz")


def test_uncertainty_weighting_and_gradient_conflict():
    w = UncertaintyWeighting(2)
    l1, l2 = torch.tensor(2.0), torch.tensor(3.0)
    assert w([l1, l2]).item() == pytest.approx(5.0)  # s = 0: plain sum
    with torch.no_grad():
        w.log_vars.fill_(math.log(2.0))
    assert w([l1, l2]).item() == pytest.approx(2.5 + 2 * math.log(2.0))

    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    la, lb = (p**2).sum(), -(p**2).sum()
    assert gradient_conflict(la, la, [p]) == pytest.approx(1.0)
    assert gradient_conflict(la, lb, [p]) == pytest.approx(-1.0)
    q = torch.nn.Parameter(torch.tensor([1.0]))
    assert math.isnan(gradient_conflict(la, (q * 0).sum() + p.sum() * 0, [p]))
