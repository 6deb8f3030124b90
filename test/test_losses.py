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
    # a worked N=2 example: I1=[0.8,0.6], I2=[0.6,0.8], T1=[0.7,0.7], T2=[0.7,-0.7], τ=0.07
    return torch.tensor([[0.8, 0.6], [0.6, 0.8]]), torch.tensor([[0.7, 0.7], [0.7, -0.7]])


def test_clip_loss_lecture_example_by_hand():
    img, txt = _lecture_embeddings()
    tau = 0.07
    n = lambda v: [x / math.hypot(*v) for x in v]  # noqa: E731
    img_u = [n(v) for v in img.tolist()]
    T = [n(v) for v in txt.tolist()]
    s = [[sum(a * b for a, b in zip(img_u[i], T[j])) / tau for j in range(2)] for i in range(2)]
    row = [-(s[i][i] - math.log(sum(math.exp(x) for x in s[i]))) for i in range(2)]
    col = [-(s[j][j] - math.log(sum(math.exp(s[i][j]) for i in range(2)))) for j in range(2)]
    expected = (sum(row) + sum(col)) / 4  # 1/(2N) Σ over both directions
    assert clip_loss(img, txt, tau).item() == pytest.approx(expected, rel=1e-5)
    # its hand-computed values: L_CE(I1) ≈ 0 and L_CE(T2) ≈ 4.0
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
    assert joint_infonce([e[perm] for e in embs], 0.1).item() == pytest.approx(joint_infonce(embs, 0.1).item(),
                                                                               rel=1e-5)
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
    assert gradient_conflict(la, la, [p])["conflict"] == pytest.approx(1.0)
    assert gradient_conflict(la, lb, [p])["conflict"] == pytest.approx(-1.0)
    q = torch.nn.Parameter(torch.tensor([1.0]))
    assert math.isnan(gradient_conflict(la, (q * 0).sum() + p.sum() * 0, [p])["conflict"])


def test_gradient_conflict_is_measured_over_shared_parameters_only():
    """A parameter only one loss reaches (a head, the temperature) must not dilute the cosine."""
    shared = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    head = torch.nn.Parameter(torch.ones(1000))  # only loss a reaches it: huge and orthogonal
    la = (shared * torch.tensor([1.0, 0.0])).sum() + (head ** 2).sum()
    lb = (shared * torch.tensor([1.0, 0.0])).sum()
    r = gradient_conflict(la, lb, [shared, head], null_pair=(2 * shared.sum(), shared[0] * 3))
    assert r["conflict"] == pytest.approx(1.0)  # over all parameters it would be ~0.02
    assert r["shared_parameters"] == 2
    assert r["null"] == pytest.approx(1 / math.sqrt(2))  # (2, 2) vs (3, 0) over the same shared parameters


DDP_LOSS_SCRIPT = r'''
import sys, torch, torch.distributed as dist
from trimodal_ros.model.losses import CONTRASTIVE_LOSSES, gather_batch
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
enc = torch.nn.ModuleDict({k: torch.nn.Linear(6, 5) for k in ("image", "action", "text")})
x = torch.randn(3, 8, 6)  # the global batch: 8 samples, one input per modality
rows = slice(rank * 4, (rank + 1) * 4)  # this rank's shard
out = {}
for name in ("pairwise", "joint", "clip"):
    enc.zero_grad()
    emb = {k: enc[k](x[i, rows]) for i, k in enumerate(("image", "action", "text"))}
    loss = CONTRASTIVE_LOSSES.get(name)(gather_batch(emb), 0.1)
    loss.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in enc.parameters()]
    for g in grads:  # what DistributedDataParallel does with the gradients: average them
        dist.all_reduce(g)
        g /= world
    out[name] = (loss.detach(), grads)
if rank == 0:
    torch.save(out, sys.argv[1])
dist.barrier()  # as the trainer does: a rank that tears gloo down while its peer still works can abort
dist.destroy_process_group()
'''


def test_contrastive_batch_is_the_global_batch_under_ddp(tmp_path):
    """2 gloo processes with 4 samples each give the loss and gradients of one process on all 8."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp_loss.py"
    script.write_text(DDP_LOSS_SCRIPT)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(tmp_path / "ddp.pt")], env=dict(os.environ, OMP_NUM_THREADS="1"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(tmp_path / "ddp.pt")
    torch.manual_seed(0)
    enc = torch.nn.ModuleDict({k: torch.nn.Linear(6, 5) for k in ("image", "action", "text")})
    x = torch.randn(3, 8, 6)
    for name, (loss, grads) in got.items():
        enc.zero_grad()
        full = CONTRASTIVE_LOSSES.get(name)({k: enc[k](x[i]) for i, k in enumerate(("image", "action", "text"))}, 0.1)
        full.backward()
        torch.testing.assert_close(loss, full.detach(), msg=name)
        for g, p in zip(grads, enc.parameters()):
            torch.testing.assert_close(g, torch.zeros_like(p) if p.grad is None else p.grad, msg=name)
    # and without gathering, each rank's loss would differ from the global one: not vacuous
    half = CONTRASTIVE_LOSSES.get("pairwise")({k: enc[k](x[i, :4]) for i, k in enumerate(("image", "action", "text"))},
                                              0.1)
    assert not torch.isclose(half, got["pairwise"][0])


def test_hl_gauss_targets_are_a_discretised_gaussian():
    """Each row sums to 1, peaks at the demonstrated bin, is symmetric inside the range, renormalised
    at the edges, matches the Gaussian's mass per bin; sigma 0 is one-hot."""
    from trimodal_ros.model.losses import gaussian_bin_targets

    t = gaussian_bin_targets(torch.tensor([[10, 0], [255, 128]]), 256, 1.5)
    assert t.shape == (2, 2, 256)
    torch.testing.assert_close(t.sum(-1), torch.ones(2, 2))
    assert t.argmax(-1).tolist() == [[10, 0], [255, 128]]
    row = t[0, 0]
    torch.testing.assert_close(row[10 - 3:10], row[11:14].flip(0))
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    assert abs(row[10].item() - (phi(0.5 / 1.5) - phi(-0.5 / 1.5))) < 1e-5
    assert t[0, 1, 0] > row[10]  # the mass past the range's end is renormalised over it
    assert torch.equal(gaussian_bin_targets(torch.tensor([3]), 8, 0.0), torch.eye(8)[3:4])


def test_task_positives_stop_pushing_a_tasks_samples_apart():
    """Two samples of one task with the same embedding: as negatives of each other (positives
    'sample') they cost log 2 per row; as positives ('task') nothing. Groups of one sample each are
    the plain loss."""
    e = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    tau = 0.01
    plain = clip_loss(e, e, tau).item()
    assert plain == pytest.approx(2 * math.log(2) / 3, rel=1e-3)
    assert clip_loss(e, e, tau, groups=torch.tensor([4, 4, 9])).item() < 1e-6
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    assert clip_loss(a, b, 0.1, groups=torch.arange(6)).item() == pytest.approx(clip_loss(a, b, 0.1).item(), rel=1e-5)
    embs = [torch.randn(6, 5) for _ in range(3)]
    assert joint_infonce(embs, 0.1, groups=torch.arange(6)).item() == pytest.approx(
        joint_infonce(embs, 0.1).item(), rel=1e-5)
    assert joint_infonce([e, e, e], tau, groups=torch.tensor([1, 1, 2])).item() < 1e-6
    assert joint_infonce([e, e, e], tau).item() > 0.3  # the other sample of the task is a negative
    emb = {"image": e, "action": e, "text": e}
    for name in ("pairwise", "joint", "clip"):
        assert CONTRASTIVE_LOSSES.get(name)(emb, tau, torch.tensor([4, 4, 9])).item() < 1e-6
    with pytest.raises(ValueError, match="groups"):
        clip_loss(e, e, tau, groups=torch.tensor([1, 2]))
