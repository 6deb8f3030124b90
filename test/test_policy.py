"""The one Policy: what vla_node, the rollouts and both evaluations call to turn a frame into an
action. Pure torch/numpy: no rclpy here."""

import dataclasses

import numpy as np
import pytest
import torch

from trimodal_ros.checkpoint import CheckpointError, save_checkpoint
from trimodal_ros.config import load_config
from trimodal_ros.policy import TEXT_CACHE_SIZE, Policy


def frame(seed=0, size=40):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_act_shapes_and_reset():
    p = Policy.load(fusion="concat_mlp", seed=0)
    mc = p.model_config
    assert p.random_weights and mc.fusion == "concat_mlp"
    with pytest.raises(RuntimeError, match="reset"):
        p.act(frame(), np.zeros(9), np.zeros(9))
    p.reset("open the drawer")
    s = p.act(frame(), np.zeros(9), np.zeros(9), stamp=123)
    assert s.embedding.shape == (mc.embed_dim,) and s.tokens.shape == s.actions.shape == (mc.chunk, mc.action_dim)
    np.testing.assert_allclose(p.tokenizer.decode(s.tokens), s.actions)
    assert s.seconds > 0 and p.last_stamp == 123
    p.reset("")  # stop
    assert p.instruction is None
    with pytest.raises(RuntimeError):
        p.act(frame(), np.zeros(9))


def test_action_history_is_the_commanded_actions_and_reset_clears_it(monkeypatch):
    cfg = load_config("weighted_sum")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, action_history=3))
    monkeypatch.setattr("trimodal_ros.policy.load_config", lambda *a, **k: cfg)
    p = Policy.load(seed=0, execute=2)
    p.reset("push the puck")
    first = p.proprio(np.ones(9), np.zeros(9))
    assert first.shape == (9 + 9 + 3 * 4,) and not first[18:].any()  # zero-filled at the start
    s1 = p.act(frame(1), np.ones(9), np.zeros(9))
    s2 = p.act(frame(2), np.ones(9), np.zeros(9))
    hist = p.proprio(np.ones(9), np.zeros(9))[18:].reshape(3, 4)
    # the last 3 of the 4 commanded actions (2 per tick), oldest first
    np.testing.assert_allclose(hist, np.stack([s1.actions[1], s2.actions[0], s2.actions[1]]))
    p.reset("push the puck")
    assert not p.proprio(np.ones(9), np.zeros(9))[18:].any()


def test_text_is_encoded_once_per_instruction(monkeypatch):
    p = Policy.load(seed=0)
    calls = []
    real = p.model.encode_instructions
    monkeypatch.setattr(p.model, "encode_instructions", lambda texts: calls.append(list(texts)) or real(texts))
    p.reset("a")
    for _ in range(3):
        p.act(frame(), np.zeros(9), np.zeros(9))
    p.infer(np.stack([frame(1), frame(2)]), np.zeros((2, 18), np.float32), ["a", "b"])
    assert calls == [["a"], ["b"]]
    p.text_features([f"t{i}" for i in range(TEXT_CACHE_SIZE + 5)])
    assert len(p._text) == TEXT_CACHE_SIZE  # bounded


def test_batched_infer_equals_one_tick_at_a_time():
    """Offline evaluation (batched) and the node (one frame) run the same forward pass."""
    p = Policy.load(fusion="cross_attention", seed=3)
    frames = np.stack([frame(i) for i in range(4)])
    q = np.random.default_rng(0).normal(size=(4, 9)).astype(np.float32)
    texts = ["open the door", "close the window", "open the door", "reach the goal"]
    out = p.infer(frames, np.concatenate([q, np.zeros_like(q)], 1), texts)
    for i in range(4):
        p.reset(texts[i])
        s = p.act(frames[i], q[i], None)
        np.testing.assert_array_equal(s.tokens, out.tokens[i])
        np.testing.assert_allclose(s.embedding, out.fused[i], atol=1e-5)


def test_checkpoint_round_trip_and_wrong_variant(tmp_path):
    a = Policy.load(fusion="qformer", seed=1)
    path = save_checkpoint(tmp_path / "q.pt", a.model, a.config, a.tokenizer)
    b = Policy.load(str(path), device="cpu")
    assert not b.random_weights and b.model_config == a.model_config
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    with pytest.raises(CheckpointError, match="qformer"):
        Policy.load(str(path), fusion="weighted_sum")


def test_temporal_ensembler_hand_computed_example():
    import math

    from trimodal_ros.policy import TemporalEnsembler

    # K = 3, 1-D actions; tick t's chunk predicts steps t, t+1, t+2
    chunks = [np.array([[1.0], [2.0], [3.0]]), np.array([[10.0], [20.0], [30.0]]),
              np.array([[100.], [200.], [300.]]), np.array([[7.0], [8.0], [9.0]])]
    e = TemporalEnsembler(3, m=0.5)
    w0, w1, w2 = 1.0, math.exp(-0.5), math.exp(-1.0)  # oldest prediction first
    assert e(chunks[0]) == pytest.approx([1.0])
    assert e(chunks[1]) == pytest.approx([(w0 * 2 + w1 * 10) / (w0 + w1)])
    assert e(chunks[2]) == pytest.approx([(w0 * 3 + w1 * 20 + w2 * 100) / (w0 + w1 + w2)])
    assert e(chunks[3]) == pytest.approx([(w0 * 30 + w1 * 200 + w2 * 7) / (w0 + w1 + w2)])  # tick 0 out of reach
    e.reset()
    assert e(chunks[3]) == pytest.approx([7.0])
    two = TemporalEnsembler(4, m=0.0, horizon=2)
    a = np.arange(8, dtype=float).reshape(4, 2)
    two(a)
    assert two(a + 10) == pytest.approx((a[1] + (a[0] + 10)) / 2)  # only the 2 newest chunks
    with pytest.raises(ValueError):
        TemporalEnsembler(4, horizon=5)


def test_policy_ensembles_from_its_config_and_reset_forgets():
    raw = Policy.load(fusion="weighted_sum", seed=0)
    ens = Policy.load(fusion="weighted_sum", seed=0, inference={"ensemble": 0.0})
    assert ens.ensembler is not None and raw.ensembler is None
    with pytest.raises(ValueError, match="one executed action"):
        Policy.load(fusion="weighted_sum", seed=0, execute=2, inference={"ensemble": 0.0})
    with pytest.raises(ValueError, match="one executed action"):  # as a rollout sets it, too
        ens.execute = 2
    raw.execute = 2
    raw.execute = 1
    for p in (raw, ens):
        p.reset("reach the goal")
    c0 = raw.act(frame(0), np.zeros(9), np.zeros(9))
    c1 = raw.act(frame(1), np.zeros(9), np.zeros(9))
    a0 = ens.act(frame(0), np.zeros(9), np.zeros(9))
    a1 = ens.act(frame(1), np.zeros(9), np.zeros(9))
    np.testing.assert_array_equal(a0.tokens, c0.tokens)  # tokens stay the model's own
    assert a0.actions[0] == pytest.approx(c0.actions[0])
    assert a1.actions[0] == pytest.approx((c0.actions[1] + c1.actions[0]) / 2, abs=1e-6)
    np.testing.assert_allclose(a1.actions[1:], c1.actions[1:])
    ens.reset("reach the goal")  # a new task forgets the old chunks
    assert ens.act(frame(1), np.zeros(9), np.zeros(9)).actions[0] == pytest.approx(c1.actions[0])



def test_act_takes_named_camera_frames_in_the_model_order():
    """A two-camera model takes {name: frame} (any order, extra cameras ignored) or (V, H, W, 3) in
    its camera order; a missing camera or a lone frame is a clear error."""
    p = Policy.load(fusion="weighted_sum", config="mt10_two_cameras", seed=0)
    assert p.model_config.cameras == ["camera", "top_camera"]
    a, b = frame(1), frame(2)
    out = []
    for views in ({"top_camera": b, "camera": a, "wrist": frame(3)}, np.stack([a, b]), {"camera": b, "top_camera": a}):
        p.reset("reach the goal")
        out.append(p.act(views, np.zeros(9), np.zeros(9)).embedding)
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.allclose(out[0], out[2])
    p.reset("reach the goal")
    with pytest.raises(ValueError, match="top_camera"):
        p.act({"camera": a}, np.zeros(9))
    with pytest.raises(ValueError, match="2 cameras"):
        p.act(a, np.zeros(9))


def test_an_empty_instruction_stops_unless_asked_for_as_a_task():
    """reset("") stops (vla_node's empty message); reset("", empty_ok=True) is a task without words,
    which a rollout's empty condition needs."""
    p = Policy.load(config="weighted_sum", seed=0)
    p.reset("")
    with pytest.raises(RuntimeError, match="no instruction"):
        p.act(np.zeros((32, 32, 3), np.uint8), np.zeros(9))
    p.reset("", empty_ok=True)
    assert p.act(np.zeros((32, 32, 3), np.uint8), np.zeros(9)).tokens.shape == (4, 4)


def test_a_trained_checkpoint_scores_frames_and_flags_unlike_inputs(tiny_checkpoint, small_bags):
    """Training fits the fused embedding's statistics on training samples and the checkpoint
    carries them: training frames score near 1 (their 99th percentile), a frame of pure noise far
    above; the agreement is a cosine. A policy with random weights has no ood score."""
    from trimodal_ros.data.dataset import BagDataset

    policy = Policy.load(str(tiny_checkpoint))
    assert policy.stats is not None and policy.stats.samples > 0
    assert set(policy.stats.agreement_q) == {0.01, 0.05, 0.5}
    ds = BagDataset.from_config(small_bags, policy.model_config, split="all", verbose=False)
    policy.reset("reach the goal")
    seen = []
    for i in range(0, len(ds), max(1, len(ds) // 12)):
        it = ds[i]
        n = len(policy.model_config.joint_names)
        step = policy.act(it["image"], it["proprio"][:n], it["proprio"][n:2 * n])
        assert -1.0 <= step.agreement <= 1.0
        seen.append(step.ood)
    noise = np.random.default_rng(0).integers(0, 256, ds[0]["image"].shape, dtype=np.uint8)
    n = len(policy.model_config.joint_names)
    odd = policy.act(noise, np.full(n, 3.0), np.full(n, 5.0)).ood
    assert np.median(seen) < 1.5 and odd > 3 * np.median(seen), (seen, odd)
    rnd = Policy.load(fusion="weighted_sum")
    rnd.reset("reach the goal")
    assert rnd.stats is None and np.isnan(rnd.act(noise, np.zeros(n), np.zeros(n)).ood)


def test_the_checkpoint_carries_its_run_spec_to_the_rollout(tiny_checkpoint, tmp_path):
    """Training records the frames' size and the config's execute_steps; the policy and
    `trimodal-ros rollout` take them from the checkpoint when not told (no --size, no --execute)."""
    import json

    from trimodal_ros.cli import main
    from trimodal_ros.config import ConfigError, InferenceConfig

    policy = Policy.load(str(tiny_checkpoint))
    assert policy.frame_size == (64, 64) and policy.execute == policy.config.inference.execute_steps == 1
    assert Policy.load(str(tiny_checkpoint), execute=3).execute == 3  # told: the caller's
    with pytest.raises(ConfigError, match="execute_steps 1"):
        InferenceConfig(ensemble=0.01, execute_steps=2)
    assert main(["rollout", "--checkpoint", str(tiny_checkpoint), "--tasks", "reach-v3", "--layouts", "35",
                 "--max-steps", "2", "--out", str(tmp_path)]) == 0
    settings = json.loads((tmp_path / "rollout.json").read_text())["settings"]
    assert settings["size"] == 64 and settings["execute"] == 1


def test_a_refused_frame_leaves_history_and_ensembling_alone():
    """Below min_agreement a tick comes back refused and the ensembler has not taken its chunk (the
    robot never executes it); the next accepted tick is as if the refused one never happened."""
    policy = Policy.load(fusion="weighted_sum", inference={"ensemble": 0.0})
    policy.reset("reach the goal")
    img, q = np.zeros((64, 64, 3), np.uint8), np.zeros(len(policy.model_config.joint_names))
    refused = policy.act(img, q, q, min_agreement=1.5)
    assert refused.refused and -1 <= refused.agreement <= 1 and len(policy.ensembler._chunks) == 0
    first = policy.act(img, q, q)
    assert not first.refused and len(policy.ensembler._chunks) == 1
    policy.reset("reach the goal")
    np.testing.assert_array_equal(policy.act(img, q, q).actions, first.actions)


def test_actions_stay_inside_the_robot_specs_bounds():
    """The robot spec's action low / high clamp every published action, inside the tokenizer's range."""
    import dataclasses

    p = Policy.load(fusion="concat_mlp", seed=0)
    p.reset("reach the goal")
    free = p.act(frame(), np.zeros(9), np.zeros(9)).actions
    lo, hi = np.quantile(free, 0.6, axis=0), np.quantile(free, 0.4, axis=0) + 1.0
    lo = np.minimum(lo, hi - 1e-3)
    p.config = dataclasses.replace(p.config, robot=dataclasses.replace(p.config.robot, action=dataclasses.replace(
        p.config.robot.action, low=[float(x) for x in lo], high=[float(x) for x in hi])))
    p.reset("reach the goal")
    bounded = p.act(frame(), np.zeros(9), np.zeros(9)).actions
    assert np.all(bounded >= lo.astype(np.float32) - 1e-6) and np.all(bounded <= hi.astype(np.float32) + 1e-6)
    assert np.any(free < lo)  # the bounds did cut something
    np.testing.assert_allclose(bounded, np.clip(free, lo, hi), atol=1e-6)


def _ticks(policy, n=8, seed=3):
    from frozen_numerics import frozen_weights

    frozen_weights(policy.model)  # weights with structure: logits far enough apart to compare precisions
    rng = np.random.default_rng(seed)
    policy.reset("open the drawer")
    return [policy.act(rng.integers(0, 256, (72, 72, 3), dtype=np.uint8), rng.uniform(-1, 1, 9), np.zeros(9))
            for _ in range(n)]


def test_a_bf16_tick_keeps_the_tokens_and_a_mode_the_device_cannot_run_is_refused():
    """precision bf16 (CPU autocast): the same checkpoint's tokens on the same frames stay those of
    fp32 almost everywhere and the actions stay inside the bounds; fp16 and CUDA graphs need CUDA and
    are refused on the CPU with the reason, as is an unknown precision."""
    fp32 = _ticks(Policy.load(config="mt10_policy_concat", seed=0))
    bf16 = _ticks(Policy.load(config="mt10_policy_concat", seed=0, precision="bf16"))
    same = np.mean([np.mean(a.tokens == b.tokens) for a, b in zip(fp32, bf16)])
    assert same >= 0.9, same
    assert not np.array_equal(fp32[0].embedding, bf16[0].embedding)  # it did run in bf16
    assert all(np.isfinite(s.actions).all() and np.abs(s.actions).max() <= 1.0 for s in bf16)
    for bad, why in ((dict(precision="fp16"), "fp16 needs a CUDA device"),
                     (dict(cuda_graph=True), "cuda_graph needs a CUDA device"),
                     (dict(precision="int8"), "precision must be one of")):
        with pytest.raises(ValueError, match=why):
            Policy.load(config="mt10_policy_concat", **bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_a_cuda_graph_tick_gives_the_eager_ticks_tokens():
    """On CUDA the captured graph replays the eager tick: the same tokens, embeddings to float
    rounding, in fp32 and in bf16."""
    for precision in ("fp32", "bf16"):
        eager = _ticks(Policy.load(config="mt10_policy_concat", seed=0, device="cuda", precision=precision))
        graph = _ticks(Policy.load(config="mt10_policy_concat", seed=0, device="cuda", precision=precision,
                                   cuda_graph=True))
        assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(eager, graph)), precision
        np.testing.assert_allclose(np.stack([a.embedding for a in eager]), np.stack([b.embedding for b in graph]),
                                   rtol=1e-3, atol=1e-3)
