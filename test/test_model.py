"""The tri-modal model: every fusion variant and adapter runs, and every trainable parameter
gets a gradient from the training objective (contrastive + action-token cross-entropy)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trimodal_ros.config import load_config
from trimodal_ros.model import FUSIONS, TriModalModel
from trimodal_ros.model.encoders import LoRA
from trimodal_ros.model.losses import pairwise_infonce

B = 3
TEXTS = ["open the drawer", "push the red button on the table", "reach the goal"]


def make(**over):
    torch.manual_seed(0)
    return TriModalModel(load_config("weighted_sum", **over).model)


def batch(model):
    g = np.random.default_rng(0)
    frames = g.integers(0, 256, size=(B, 64, 64, 3), dtype=np.uint8)
    proprio = torch.randn(B, model.cfg.proprio_dim)
    return model.preprocess(frames), proprio, model.tokenize(TEXTS)


def objective(model, out):
    target = torch.randint(0, model.cfg.bins, out.logits.shape[:-1])
    ce = F.cross_entropy(out.logits.reshape(-1, model.cfg.bins), target.reshape(-1))
    return ce + pairwise_infonce([out.image, out.action, out.text], out.temperature)


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_every_fusion_shapes_and_gradients(fusion):
    model = make(fusion=fusion)
    images, proprio, ids = batch(model)
    out = model(images, proprio, text_ids=ids)
    cfg = model.cfg
    assert out.fused.shape == (B, cfg.embed_dim)
    assert out.logits.shape == (B, cfg.chunk, cfg.action_dim, cfg.bins)
    assert out.tokens().shape == (B, cfg.chunk, cfg.action_dim)
    objective(model, out).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"{fusion}: no gradient reaches {missing}"


@pytest.mark.parametrize("adapter", ["mlp", "qformer"])
def test_adapters_gradients(adapter):
    model = make(fusion="qformer", adapter=adapter)
    images, proprio, ids = batch(model)
    objective(model, model(images, proprio, text_ids=ids)).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_cached_text_features_give_the_same_output():
    model = make(fusion="early_fusion").eval()
    images, proprio, _ = batch(model)
    with torch.no_grad():
        cached = model.encode_instructions(["open the drawer"])  # batch 1, broadcast to B
        a = model(images, proprio, text=cached)
        b = model(images, proprio, text_ids=model.tokenize(["open the drawer"] * B))
        c = model(images, proprio, text=model.encode_instructions(["close the window"]))
    torch.testing.assert_close(a.logits, b.logits)
    assert not torch.allclose(a.fused, c.fused), "the instruction must change the fused embedding"


def test_weighted_sum_weights_are_a_convex_combination():
    model = make(fusion="weighted_sum")
    w = model.fusion.weights()
    assert w.shape == (3,) and torch.all(w > 0) and w.sum().item() == pytest.approx(1.0)


def test_lora_trains_only_low_rank_factors_and_starts_at_the_base_model():
    base = make(image_tuning="frozen", text_tuning="frozen").eval()
    lora = make(image_tuning="lora", text_tuning="lora", lora_rank=4).eval()
    lora.load_state_dict(base.state_dict(), strict=False)  # same W0 and heads
    images, proprio, ids = batch(base)
    with torch.no_grad():
        torch.testing.assert_close(lora(images, proprio, text_ids=ids).logits,
                                   base(images, proprio, text_ids=ids).logits)
    trainable = [n for n, p in lora.towers.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    n_lora = sum(p.numel() for n, p in lora.towers.named_parameters() if p.requires_grad)
    n_tower = sum(p.numel() for p in base.towers.parameters())
    assert n_lora < 0.1 * n_tower
    assert any(isinstance(m, LoRA) for m in lora.towers.visual.modules())
    objective(lora, lora(images, proprio, text_ids=ids)).backward()
    assert all(p.grad is not None for n, p in lora.towers.named_parameters() if "lora_A" in n)


def test_bitfit_trains_only_biases():
    model = make(image_tuning="bitfit", text_tuning="frozen")
    vis = [n for n, p in model.towers.visual.named_parameters() if p.requires_grad]
    assert vis and all(n.endswith("bias") for n in vis)
    assert not any(p.requires_grad for p in model.towers.text.parameters())


def test_preprocess_rejects_bad_frames():
    model = make()
    with pytest.raises(ValueError, match="RGB"):
        model.preprocess(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        model.preprocess(np.zeros((1, 32, 32, 3), np.float32))
    x = model.preprocess(np.zeros((1, 240, 320, 3), np.uint8))
    assert x.shape == (1, 3, model.image_size, model.image_size)


def test_two_cameras_go_through_one_tower_and_both_views_matter():
    model = make(cameras=["camera", "top_camera"]).eval()
    g = np.random.default_rng(1)
    views = g.integers(0, 256, size=(B, 2, 48, 64, 3), dtype=np.uint8)
    x = model.preprocess(views)
    assert x.shape == (B, 2, 3, model.image_size, model.image_size)
    proprio, ids = torch.randn(B, model.cfg.proprio_dim), model.tokenize(TEXTS)
    with torch.no_grad():
        torch.nn.init.normal_(model.view_embedding)  # a trained model's; zero at init
        out = model(x, proprio, text_ids=ids)
        assert out.fused.shape == (B, model.cfg.embed_dim)
        other = views.copy()
        other[:, 1] = 255 - other[:, 1]  # only the second camera changes
        assert not torch.allclose(out.fused, model(model.preprocess(other), proprio, text_ids=ids).fused)
        swapped = views[:, ::-1].copy()  # which camera is which matters too
        assert not torch.allclose(out.fused, model(model.preprocess(swapped), proprio, text_ids=ids).fused)
    with pytest.raises(ValueError, match="2 cameras"):
        model(x[:, 0], proprio, text_ids=ids)
    with pytest.raises(ValueError, match="got 3 camera views"):
        model(torch.cat([x, x[:, :1]], 1), proprio, text_ids=ids)
    assert not hasattr(make(), "view_merge")  # one camera: the model of before, no extra parameters


@pytest.mark.parametrize("head", ["pooled", "tokens", "proprio"])
def test_state_heads_shapes_gradients_and_refusals(head):
    """model.state_head: every head predicts the state (6-D, or 9-D with the hand) with one or two
    cameras and every one of its parameters learns; an unknown head, or the tokens head without
    state_input, is refused."""
    from trimodal_ros.schema import ConfigError

    for cameras, dim in ((["camera"], 6), (["camera", "top_camera"], 9)):
        model = make(state_input=dim, state_head=head, cameras=cameras)
        x, proprio, ids = batch(model)
        if len(cameras) > 1:
            x = torch.stack([x, x.flip(-1)], 1)  # (B, V, 3, S, S)
        out = model(x, proprio, text_ids=ids)
        assert out.state.shape == (B, dim)
        (objective(model, out) + out.state.square().mean()).backward()
        missing = [n for n, p in model.state_head.named_parameters() if p.grad is None or not p.grad.any()]
        assert not missing, missing
    with pytest.raises(ConfigError, match="state_head"):
        load_config("weighted_sum", state_head="tokens")  # the auxiliary head (state_input 0) is pooled
    with pytest.raises(ConfigError, match="state_head"):
        load_config("weighted_sum", state_input=6, state_head="spatial")
    with pytest.raises(ConfigError, match="state_input must be <= 9"):
        load_config("weighted_sum", state_input=12)


def test_proprio_state_head_reads_the_joints():
    """The proprio head's prediction moves with the joints alone (the hand is their forward
    kinematics); the pooled head's does not."""
    for head, moves in (("proprio", True), ("pooled", False)):
        model = make(state_input=9, state_head=head).eval()
        x, proprio, ids = batch(model)
        with torch.no_grad():
            a = model(x, proprio, text_ids=ids).state
            b = model(x, proprio + 1.0, text_ids=ids).state
        assert torch.allclose(a, b) != moves, head


@pytest.mark.parametrize("fusion", ["weighted_sum", "cross_attention", "qformer"])
def test_state_bottleneck_shows_the_action_head_only_the_predicted_state(fusion):
    """model.state_bottleneck: with the state head's output held fixed, a different image changes
    nothing the action head reads (no layout can be recognised from pixels and its demonstration
    replayed); without it the image reaches the head directly. Gradients of the action loss still
    reach the image tower, through the state. Refused without state_input and with early_fusion,
    which reads the CLIP patch tokens itself."""
    from trimodal_ros.schema import ConfigError

    for bottleneck in (True, False):
        model = make(fusion=fusion, state_input=9, state_head="proprio", state_bottleneck=bottleneck).eval()
        x, proprio, ids = batch(model)
        fixed = torch.randn(B, 9)
        model.state_head.forward = lambda *a, **k: fixed  # noqa: E731 - the state, held fixed
        with torch.no_grad():
            same = torch.allclose(model(x, proprio, text_ids=ids).logits,
                                  model(x.flip(-1), proprio, text_ids=ids).logits)
        assert same == bottleneck, (fusion, bottleneck)
    model = make(fusion=fusion, state_input=9, state_head="proprio", state_bottleneck=True)
    x, proprio, ids = batch(model)
    out = model(x, proprio, text_ids=ids)
    F.cross_entropy(out.logits.reshape(-1, model.cfg.bins),
                    torch.zeros(out.logits.shape[:-1], dtype=torch.long).reshape(-1)).backward()
    assert any(p.grad is not None and p.grad.any() for p in model.towers.visual.parameters())
    with pytest.raises(ConfigError, match="state_bottleneck"):
        load_config("weighted_sum", state_bottleneck=True)
    with pytest.raises(ConfigError, match="early_fusion"):
        load_config("early_fusion", state_input=6, state_bottleneck=True)


def test_token_state_head_finds_a_marker_the_pooled_embedding_blurs():
    """A marker token at a random one of 36 patch positions; tokens carry their position (as a ViT's
    do) and the target is a linear read-out of the marker's position vector. The mean-pooled vector
    keeps what the marker is but not where, so the pooled head stays at chance; the attention
    read-out of the tokens head learns it."""
    from trimodal_ros.model.heads import STATE_HEADS

    g = torch.Generator().manual_seed(0)
    n, e = 36, 16
    position, marker = torch.randn(n, e, generator=g), torch.randn(e, generator=g)
    readout = torch.randn(e, 2, generator=g)

    def sample(b):
        where = torch.randint(0, n, (b,), generator=g)
        tokens = position + 0.1 * torch.randn(b, n, e, generator=g)  # (B, N, E)
        tokens[torch.arange(b), where] += marker
        return tokens.mean(1), tokens, position[where] @ readout  # (B, E), (B, N, E), (B, 2)

    relative = {}
    for name in ("pooled", "tokens"):
        torch.manual_seed(0)
        head = STATE_HEADS.get(name)(e, 2, hidden=64, token_dim=e)
        opt = torch.optim.Adam(head.parameters(), lr=3e-3)
        for _ in range(300):
            pooled, tokens, target = sample(64)
            loss = head.loss(head(pooled, tokens), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pooled, tokens, target = sample(512)
            chance = (target - target.mean(0)).abs().mean()
            relative[name] = ((head(pooled, tokens) - target).abs().mean() / chance).item()
    assert relative["tokens"] < 0.75 and relative["pooled"] > 0.9, relative  # error / the mean's error


def test_image_dropout_drops_the_image_for_some_training_samples_only():
    """model.image_dropout: in training about that share of samples reaches the fusion without the
    image (their fused vector does not change with it), the rest with it; at evaluation every sample
    sees it. Refused out of [0, 1), with the state bottleneck and with early_fusion."""
    from trimodal_ros.schema import ConfigError

    model = make(state_input=6, image_dropout=0.5)
    x, proprio, ids = batch(model)
    x, proprio, ids = x.repeat(8, 1, 1, 1), proprio.repeat(8, 1), ids.repeat(8, 1)  # 8·B samples
    with torch.no_grad():
        torch.manual_seed(1)
        a = model.train()(x, proprio, text_ids=ids).fused
        torch.manual_seed(1)
        b = model(x.flip(-1), proprio, text_ids=ids).fused
        dropped = (a - b).abs().amax(1) < 1e-6  # the same draw: the same samples dropped both times
        assert 0.25 < dropped.float().mean() < 0.75, dropped
        model.eval()
        assert not torch.isclose(model(x, proprio, text_ids=ids).fused,
                                 model(x.flip(-1), proprio, text_ids=ids).fused).all(1).any()
    for bad in (dict(image_dropout=1.0), dict(image_dropout=0.5, state_input=6, state_bottleneck=True)):
        with pytest.raises(ConfigError, match="image_dropout"):
            load_config("weighted_sum", **bad)
    with pytest.raises(ConfigError, match="image_dropout"):
        load_config("early_fusion", image_dropout=0.5)

def test_gaussian_action_head_is_ordinal_and_learns_a_proportional_controller():
    """model.action_head gaussian: the logits peak at the bin of one predicted position (the token is
    the bin it falls in) and fall off with distance, so the same token cross-entropy trains it; fitted
    on 35 inputs of a saturating proportional controller it lands within a few bins of the target on
    inputs it never saw (an untrained head is ~85 bins off). An unknown head is refused."""
    from trimodal_ros.model.heads import ACTION_HEADS
    from trimodal_ros.schema import ConfigError

    torch.manual_seed(0)
    head = ACTION_HEADS.get("gaussian")(8, 64, 2, 3, 256)
    logits = head(torch.randn(5, 8))
    assert logits.shape == (5, 2, 3, 256)
    peak = logits.argmax(-1)  # (B, K, A): the one maximum, and monotone fall-off on both sides
    for b, k, a in [(0, 0, 0), (4, 1, 2)]:
        row, p = logits[b, k, a], int(peak[b, k, a])
        assert torch.all(row[1:p + 1] >= row[:p]) and torch.all(row[p + 1:] <= row[p:-1])

    g = torch.Generator().manual_seed(0)
    proj = torch.randn(2, 8, generator=g)

    def target(x):  # the bin of clip(3x, -1, 1) over [-1, 1]
        return ((torch.clamp(3 * x, -1, 1) + 1) / 2 * 255.999).floor().long()

    def features(x):
        return torch.cat([x, torch.ones_like(x)], 1) @ proj

    train_x, test_x = torch.rand(35, 1, generator=g) * 2 - 1, torch.linspace(-0.6, 0.6, 200)[:, None]
    head = ACTION_HEADS.get("gaussian")(8, 64, 1, 1, 256)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(600):
        loss = F.cross_entropy(head(features(train_x)).reshape(-1, 256), target(train_x).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        error = (head(features(test_x)).argmax(-1).reshape(-1) - target(test_x).reshape(-1)).abs().float().mean()
    assert error < 10, error
    with pytest.raises(ConfigError, match="action_head"):
        load_config("weighted_sum", action_head="diffusion")
    model = make(action_head="gaussian")  # the model's head, and its tokens as any head's
    x, proprio, ids = batch(model)
    out = model(x, proprio, text_ids=ids)
    assert out.logits.shape == (B, model.cfg.chunk, model.cfg.action_dim, 256) and out.tokens().max() < 256
