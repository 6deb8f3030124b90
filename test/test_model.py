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


@pytest.mark.parametrize("fusion", ["concat_mlp", "early_fusion"])
def test_the_mean_wordllama_tower_trains_under_a_fusion(fusion):
    """model.text_tower: wordllama_mean: gradients reach its projections; the per-word one only where
    the fusion reads the words (early_fusion, qformer; idle under concat_mlp, weighted_sum and
    cross_attention, which read the pooled vector)."""
    model = make(fusion=fusion, text_tower="wordllama_mean")
    images, proprio, ids = batch(model)
    objective(model, model(images, proprio, text_ids=ids)).backward()
    missing = {n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)}
    idle = {"towers.text.token_projection.weight", "towers.text.token_projection.bias"}
    assert missing == (idle if fusion == "concat_mlp" else set()), missing


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


def test_without_proprio_input_the_joints_do_not_change_the_output():
    """model.proprio_input: false (the no-proprioception baseline): other joint readings, the same
    actions; with it on (the default) they differ."""
    for on in (True, False):
        model = make(fusion="concat_mlp", proprio_input=on).eval()
        images, proprio, text = batch(model)
        with torch.no_grad():
            a, b = model(images, proprio, text_ids=text), model(images, proprio + 3.0, text_ids=text)
        assert torch.equal(a.logits, b.logits) != on


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


def test_state_head_shapes_gradients_and_refusals():
    """model.state_input: the state head predicts the state (6-D, or 9-D with the hand) with one or
    two cameras, every one of its parameters learns, and the action head reads the prediction; a
    state wider than the recorded one, or an unknown action head, is refused."""
    from trimodal_ros.schema import ConfigError

    for cameras, dim in ((["camera"], 6), (["camera", "top_camera"], 9)):
        model = make(state_input=dim, cameras=cameras)
        x, proprio, ids = batch(model)
        if len(cameras) > 1:
            x = torch.stack([x, x.flip(-1)], 1)  # (B, V, 3, S, S)
        out = model(x, proprio, text_ids=ids)
        assert out.state.shape == (B, dim)
        (objective(model, out) + out.state.square().mean()).backward()
        missing = [n for n, p in model.state_head.named_parameters() if p.grad is None or not p.grad.any()]
        assert not missing, missing
        assert model.state_to_head.weight.grad.any()  # the action loss reaches the head through the state
    with pytest.raises(ConfigError, match="state_input must be <= 9"):
        load_config("weighted_sum", state_input=12)
    with pytest.raises(ConfigError, match="action_head"):
        load_config("weighted_sum", action_head="gaussian")  # removed: it did worse than the free bins


def test_a_checkpoint_from_before_the_removed_variants_loads_unless_it_used_one(tmp_path):
    """Older checkpoints carry model.state_head / state_bottleneck / image_dropout: with the values
    that switched those variants off they serve as before; one trained with a removed variant is
    refused with its key named, never served with a different architecture."""
    from trimodal_ros.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
    from trimodal_ros.policy import Policy

    p = Policy.load(config="mt10_policy_concat", seed=0)
    path = save_checkpoint(tmp_path / "new.pt", p.model, p.config, p.tokenizer, {"step": 0})
    ck = read_checkpoint(path)
    ck["config"]["model"].update(state_head="pooled", state_bottleneck=False, image_dropout=0.0)
    torch.save(ck, tmp_path / "old.pt")
    old = Policy.load(str(tmp_path / "old.pt"))
    assert old.model_config == p.model_config
    ck["config"]["model"]["state_bottleneck"] = True
    torch.save(ck, tmp_path / "bottleneck.pt")
    with pytest.raises(CheckpointError, match="model.state_bottleneck True is a variant"):
        Policy.load(str(tmp_path / "bottleneck.pt"))
