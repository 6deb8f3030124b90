"""Training on real (small) Meta-World bags: the loss goes down, resume is exact, DDP agrees."""

import csv
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from trimodal_ros.config import ConfigError, load_config
from trimodal_ros.data.dataset import BagDataset
from trimodal_ros.model import TriModalModel
from trimodal_ros.checkpoint import read_checkpoint
from trimodal_ros.model.action_tokenizer import ActionTokenizer
from trimodal_ros.model.preprocess import random_shift
from trimodal_ros.train.trainer import Batcher, TrainDataError, batch_indices, lr_lambda, train


def small_cfg(fusion="weighted_sum", loss="pairwise", steps=20, **train_over):
    cfg = load_config(fusion)
    over = dict(loss=loss, steps=steps, batch_size=8, warmup_steps=2, lr=1e-3, log_every=1, ckpt_every=5)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **{**over, **train_over}))


def test_schedule_and_data_order():
    assert lr_lambda(0, 10, 100) == pytest.approx(0.1)
    assert lr_lambda(9, 10, 100) == pytest.approx(1.0)
    assert lr_lambda(100, 10, 100) == pytest.approx(0.1)
    a, b = batch_indices(50, 8, 3, 0), batch_indices(50, 8, 3, 0)
    assert (a == b).all() and len(set(a.tolist())) == 8
    # one epoch covers distinct samples
    epoch = sum((batch_indices(48, 8, s, 0).tolist() for s in range(6)), [])
    assert len(set(epoch)) == 48


def test_random_shift_moves_each_image_by_at_most_pad_pixels():
    h = w = 12
    ramp = (torch.arange(h)[:, None] * 100 + torch.arange(w)[None, :]).float()  # pixel value encodes (row, col)
    x = ramp.expand(16, 3, h, w).clone()
    assert random_shift(x, 0) is x
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    shifts = set()
    for img in y:
        # the centre pixel now shows the pixel (row + dy, col + dx) of the original, |dy|, |dx| <= 2
        r, c = divmod(int(img[0, 6, 6]), 100)
        dy, dx = r - 6, c - 6
        assert abs(dy) <= 2 and abs(dx) <= 2
        assert torch.equal(img[:, 3:9, 3:9], x[0, :, 3 + dy:9 + dy, 3 + dx:9 + dx])  # a pure translation
        shifts.add((dy, dx))
    assert len(shifts) > 3  # images of a batch move independently
    assert torch.equal(y, random_shift(x, 2, torch.Generator().manual_seed(0)))  # seeded


def test_augment_shift_changes_training_batches_only(small_bags):
    cfg = load_config("weighted_sum")
    with pytest.raises(ConfigError, match="augment_shift"):
        dataclasses.replace(cfg.train, augment_shift=-1)
    ds = BagDataset.from_config(small_bags, cfg.model, split="all", verbose=False)
    torch.manual_seed(0)
    model = TriModalModel(cfg.model).eval()
    tok = ActionTokenizer.fit(ds.all_actions(), cfg.model.bins)
    idx = batch_indices(len(ds), 8, 0, 0)
    plain = Batcher(ds, tok, model, torch.device("cpu"), "bag", 0)(idx, 0)
    shifted = Batcher(ds, tok, model, torch.device("cpu"), "bag", 0, augment_shift=4)(idx, 0)
    again = Batcher(ds, tok, model, torch.device("cpu"), "bag", 0, augment_shift=4)(idx, 0)
    assert torch.equal(plain["images"], model.preprocess(ds.frames[idx]))  # what the node sees
    assert not torch.equal(shifted["images"], plain["images"])
    assert torch.equal(shifted["images"], again["images"])  # reproducible per step
    assert torch.equal(shifted["tokens"], plain["tokens"])  # labels untouched


def test_an_instruction_blind_batch_carries_no_words(small_bags):
    """train.instructions: empty (the study's instruction-blind baseline): every sample's text is the
    empty instruction's tokens; the recorded and paraphrased ones are not."""
    cfg = load_config("weighted_sum")
    ds = BagDataset.from_config(small_bags, cfg.model, split="all", verbose=False)
    model = TriModalModel(cfg.model).eval()
    tok = ActionTokenizer.fit(ds.all_actions(), cfg.model.bins)
    idx = batch_indices(len(ds), 8, 0, 0)
    blind = Batcher(ds, tok, model, torch.device("cpu"), "empty", 0)(idx, 0)["text_ids"]
    assert torch.equal(blind, model.tokenize([""] * 8))
    assert not torch.equal(Batcher(ds, tok, model, torch.device("cpu"), "bag", 0)(idx, 0)["text_ids"], blind)


@pytest.mark.slow
def test_a_few_steps_lower_the_loss(small_bags, tmp_path):

    ds = BagDataset.from_config(small_bags, load_config("weighted_sum").model, split="all", verbose=False)
    cfg = small_cfg(steps=30, instructions="bag")
    train(cfg, small_bags, tmp_path, progress=False, dataset=ds)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    first = sum(float(r["loss"]) for r in rows[:5]) / 5
    last = sum(float(r["loss"]) for r in rows[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    ck = read_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 30 and ck["fusion"] == "weighted_sum" and ck["version"]
    assert len(ck["tokenizer"]["low"]) == 4
    assert any(r["grad_conflict"] not in ("nan", "") for r in rows)


@pytest.mark.slow
def test_resume_equals_uninterrupted(small_bags, tmp_path):
    ds = BagDataset.from_config(small_bags, load_config("cross_attention").model, split="all", verbose=False)
    cfg = small_cfg("cross_attention", steps=10, ckpt_every=4)
    full = train(cfg, small_bags, tmp_path / "full", progress=False, dataset=ds)
    crashed = tmp_path / "crashed"
    _train_until(cfg, small_bags, crashed, ds, stop_after=8)  # dies right after its step-8 checkpoint
    before = read_checkpoint(crashed / "last.pt")
    assert before["step"] == 8 and before["train_seconds"] > 0 and before["torch_threads"] >= 1
    import shutil

    from trimodal_ros.checkpoint import atomic_save

    old = tmp_path / "old"  # the same checkpoint as one written before it carried the training time
    shutil.copytree(crashed, old)
    atomic_save({k: v for k, v in before.items() if k != "train_seconds"}, old / "last.pt")
    atomic_save(dict(before, train_seconds=1000.0), crashed / "last.pt")  # as if the first 8 steps took 1000 s
    with open(crashed / "metrics.csv", "a") as f:  # rows logged after the step-8 checkpoint, before the crash
        f.write("9,1.0,1.0,0,0,0,0,nan,nan,nan,nan\n")
    resumed = train(cfg, small_bags, crashed, resume=True, progress=False, dataset=ds)
    steps = [int(r["step"]) for r in csv.DictReader(open(crashed / "metrics.csv"))]
    assert steps == [int(r["step"]) for r in csv.DictReader(open(tmp_path / "full" / "metrics.csv"))] == \
        list(range(1, 11))  # step 9 once, as the resumed run logged it
    assert resumed.seconds > 1000.0 and read_checkpoint(crashed / "last.pt")["train_seconds"] == resumed.seconds
    unknown = train(cfg, small_bags, old, resume=True, progress=False, dataset=ds)
    assert unknown.seconds is None and read_checkpoint(old / "last.pt")["train_seconds"] is None  # not a guess
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    with pytest.raises(ValueError, match="another config"):
        train(small_cfg("cross_attention", steps=12, ckpt_every=4), small_bags, crashed, resume=True,
              progress=False, dataset=ds)


def _train_until(cfg, data, out, ds, stop_after):
    """Run ``cfg`` but abort right after the checkpoint of step ``stop_after`` (a crash)."""
    import trimodal_ros.train.trainer as T

    real = T.save_checkpoint

    class Crash(Exception):
        pass

    def save_then_crash(path, model, cfg_, tok, extra):
        p = real(path, model, cfg_, tok, extra)
        if extra["step"] >= stop_after:
            raise Crash
        return p

    T.save_checkpoint = save_then_crash
    try:
        with pytest.raises(Crash):
            train(cfg, data, out, progress=False, dataset=ds)
    finally:
        T.save_checkpoint = real


DDP_SCRIPT = """
import dataclasses, sys, torch
from trimodal_ros.config import load_config
from trimodal_ros.train.trainer import train
data, out = sys.argv[1], sys.argv[2]
cfg = load_config("qformer")
cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=3, batch_size=8, warmup_steps=1,
                          log_every=1, ckpt_every=3, instructions="bag"))
r = train(cfg, data, out + "/run", device="cpu", progress=False)
torch.save(r.model.state_dict(), out + f"/rank{r.rank}.pt")
"""


@pytest.mark.slow
def test_two_process_gloo_ddp_keeps_ranks_identical(small_bags, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(small_bags), str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], msg=k)
    saved = read_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["step"] == 3
    for k in w0:  # rank 0 checkpointed what both ranks hold
        torch.testing.assert_close(saved["model"][k], w0[k], msg=k)
    # and it was a real run: the parameters moved away from the (seeded) initialisation
    torch.manual_seed(saved["config"]["train"]["seed"])
    fresh = TriModalModel(load_config("qformer").model)
    assert any(not torch.equal(p, w0[n]) for n, p in fresh.named_parameters())


def test_train_cli_overrides_reach_the_config(monkeypatch, tmp_path):
    """`trimodal-ros train --steps/--loss/--augment-shift` replace the config's values (checked like the YAML)."""
    import trimodal_ros.train.trainer as trainer
    from trimodal_ros.cli import main

    seen = {}

    def fake_train(cfg, data, out, **kw):
        seen["cfg"] = cfg
        return dataclasses.make_dataclass("R", [("rank", int), ("checkpoint", str)])(0, str(tmp_path / "last.pt"))

    monkeypatch.setattr(trainer, "train", fake_train)
    argv = ["train", "--config", "mt10_policy", "--data", str(tmp_path), "--out", str(tmp_path)]
    assert main(argv + ["--steps", "7", "--loss", "joint", "--augment-shift", "4", "--ema", "0.99",
                        "--label-sigma", "2", "--state-weight", "0.5"]) == 0
    t = seen["cfg"].train
    assert (t.steps, t.loss, t.augment_shift, t.ema, t.label_sigma, t.state_weight) == (7, "joint", 4, 0.99, 2, 0.5)
    with pytest.raises(ConfigError, match="label_sigma"):
        main(argv + ["--label-sigma", "-1"])
    with pytest.raises(ConfigError, match="ema"):
        main(argv + ["--ema", "1.5"])
    assert seen["cfg"].model.cameras == ["camera"]
    with pytest.raises(ConfigError, match="augment_shift"):
        main(argv + ["--augment-shift", "-1"])
    assert main(argv + ["--cameras", "camera, wrist_camera"]) == 0
    assert seen["cfg"].model.cameras == ["camera", "wrist_camera"]
    assert main(argv + ["--cameras", "camera,camera"]) == 2  # refused with the reason, nothing trained


def test_weight_average_is_served_and_resumes_exactly(small_bags, tmp_path):
    """train.ema: last.pt serves the moving average (a different, smoother model than the last step's
    raw weights, saved as raw.pt); a resumed run restores both and ends where the uninterrupted one does."""
    ds = BagDataset.from_config(small_bags, load_config("weighted_sum").model, split="all", verbose=False)
    cfg = small_cfg(steps=12, ckpt_every=4, ema=0.9, instructions="bag")
    full = tmp_path / "full"
    result = train(cfg, small_bags, full, progress=False, dataset=ds)
    served, raw = read_checkpoint(full / "last.pt"), read_checkpoint(full / "raw.pt")
    assert served["step"] == raw["step"] == 12
    for k, v in result.model.state_dict().items():  # train() returns the model last.pt serves
        torch.testing.assert_close(v, served["model"][k], msg=k)
    for k, v in raw["model"].items():  # raw.pt holds the weights training resumes from
        torch.testing.assert_close(served["train_model"][k], v, msg=k)
    moved = [k for k, v in raw["model"].items() if v.is_floating_point() and not torch.equal(v, served["model"][k])]
    assert len(moved) > 10, "the served weights are not an average"
    torch.manual_seed(cfg.train.seed)
    init = TriModalModel(cfg.model).state_dict()
    k = "heads.0.weight" if "heads.0.weight" in init else next(n for n in moved if n in init and "weight" in n)
    # an average of the trajectory lies between the start and the end of it
    d_avg, d_raw = (served["model"][k] - init[k]).norm(), (raw["model"][k] - init[k]).norm()
    assert 0 < d_avg < d_raw, (k, d_avg, d_raw)
    crashed = tmp_path / "crashed"
    _train_until(cfg, small_bags, crashed, ds, stop_after=8)
    train(cfg, small_bags, crashed, resume=True, progress=False, dataset=ds)
    again = read_checkpoint(crashed / "last.pt")
    for k, v in served["model"].items():
        torch.testing.assert_close(again["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    with pytest.raises(ConfigError, match="ema"):
        small_cfg(ema=1.0)


def test_the_state_loss_needs_the_models_state_head_and_the_recorded_state(small_bags, tmp_path):
    """train.state_weight trains the model's own state head: without model.state_input, or on a
    dataset without the recorded /sim/state, training is refused before a step; the CLI says why and
    writes nothing."""
    from trimodal_ros.cli import main

    mc = load_config("weighted_sum").model
    cfg = small_cfg(steps=4, loss="none", instructions="bag", state_weight=1.0)
    with pytest.raises(TrainDataError, match="set model.state_input"):
        train(cfg, small_bags, tmp_path / "aux", progress=False)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, state_input=6))
    plain = BagDataset.from_config(small_bags, mc, split="all", verbose=False)
    with pytest.raises(TrainDataError, match="sim/state"):
        train(cfg, small_bags, tmp_path / "plain", progress=False, dataset=plain)
    (tmp_path / "empty").mkdir()
    assert main(["train", "--config", "mt10_policy_concat", "--data", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none" / "last.pt").exists()


def test_hl_gauss_targets_train_the_token_head(small_bags, tmp_path):
    """train.label_sigma: soft targets around the demonstrated bin; the head still learns the bins
    (token accuracy rises well above chance) and the cross-entropy falls."""

    ds = BagDataset.from_config(small_bags, load_config("weighted_sum").model, split="all", verbose=False)
    train(small_cfg(steps=30, loss="none", instructions="bag", label_sigma=2.0), small_bags, tmp_path,
          progress=False, dataset=ds)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    ce = [float(r["action_ce"]) for r in rows]
    assert sum(ce[-5:]) < 0.8 * sum(ce[:5]), ce
    assert float(rows[-1]["token_acc"]) > 0.05  # chance is 1/256


@pytest.mark.parametrize("dim", [6, 9])
def test_state_input_model_predicts_the_state_and_its_action_head_reads_it(small_bags, tmp_path, dim):
    """model.state_input: the state head (6-D, or 9-D with the hand) is the model's own (served, and
    its prediction moves the actions), trained by train.state_weight: its error falls; without that
    weight, or with another width, refused."""

    from trimodal_ros.policy import Policy

    cfg = small_cfg(steps=30, loss="none", instructions="bag", state_weight=1.0, ckpt_every=30)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, state_input=dim))
    ds = BagDataset.from_config(small_bags, cfg.model, split="all", verbose=False, state=dim)
    result = train(cfg, small_bags, tmp_path, progress=False, dataset=ds)
    mse = [float(r["state_mse"]) for r in csv.DictReader(open(tmp_path / "metrics.csv"))]
    assert sum(mse[-5:]) < 0.65 * sum(mse[:5]), mse  # untrained it stays near 1 (std units)
    ck = read_checkpoint(tmp_path / "last.pt")
    assert "state_head" not in ck and "state_head.mlp.0.weight" in ck["model"]
    torch.testing.assert_close(ck["model"]["state_head.mean"], torch.as_tensor(ds.state.mean(0)))
    model = result.model.eval()
    b = [ds[i] for i in range(4)]
    images = model.preprocess(np.stack([x["image"] for x in b]))
    proprio = torch.as_tensor(np.stack([x["proprio"] for x in b]))
    with torch.no_grad():
        out = model(images, proprio, text_ids=model.tokenize([x["instruction"] for x in b]))
        assert out.state.shape == (4, dim)
        model.state_to_head.weight.zero_()  # the same model with the predicted state cut off
        model.state_to_head.bias.zero_()
        cut = model(images, proprio, text_ids=model.tokenize([x["instruction"] for x in b]))
    assert not torch.allclose(out.logits, cut.logits)
    policy = Policy.load(str(tmp_path / "last.pt"))
    policy.reset("reach the goal")
    assert policy.act(b[0]["image"], b[0]["proprio"][:9], b[0]["proprio"][9:18]).actions.shape == (cfg.model.chunk, 4)
    for bad in (dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, state_weight=0.0)),
                dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, state_input=3))):
        with pytest.raises(TrainDataError, match="state_input"):
            train(bad, small_bags, tmp_path / "bad", progress=False, dataset=ds)
    with pytest.raises(ConfigError, match="state_input"):
        dataclasses.replace(cfg.model, state_input=-1)


def test_language_training_options_reach_the_batch(small_bags):
    """train.text_alignment gives each sample a second phrasing of its task, train.instruction_noise
    edits some words, and every batch carries the task ids that train.positives: task groups by."""
    from trimodal_ros.data.instructions import paraphrases, task_id

    cfg = load_config("weighted_sum")
    ds = BagDataset.from_config(small_bags, cfg.model, split="all", verbose=False)
    model = TriModalModel(cfg.model).eval()
    tok = ActionTokenizer.fit(ds.all_actions(), cfg.model.bins)
    idx = batch_indices(len(ds), 8, 0, 0)
    tasks = [ds[int(i)]["task"] for i in idx]
    plain = Batcher(ds, tok, model, torch.device("cpu"), "train", 0)(idx, 0)
    assert plain["task_ids"].tolist() == [task_id(t) for t in tasks] and "paraphrase_ids" not in plain
    both = Batcher(ds, tok, model, torch.device("cpu"), "train", 0, paraphrases=True)(idx, 0)
    assert torch.equal(both["text_ids"], plain["text_ids"])  # the first phrasing is the same draw
    assert both["paraphrase_ids"].shape == plain["text_ids"].shape
    allowed = {t: {tuple(model.tokenize([p])[0].tolist()) for p in paraphrases(t)} for t in set(tasks)}
    assert all(tuple(r.tolist()) in allowed[t] for r, t in zip(both["paraphrase_ids"], tasks))
    noisy = Batcher(ds, tok, model, torch.device("cpu"), "train", 0, instruction_noise=0.9)(idx, 0)["text_ids"]
    edited = sum(tuple(r.tolist()) not in allowed[t] for r, t in zip(noisy, tasks))
    assert edited >= 3, edited
    with pytest.raises(ConfigError, match="need train.instructions: train"):
        dataclasses.replace(cfg.train, instructions="bag", text_alignment=1.0)
    with pytest.raises(ConfigError, match="positives"):
        dataclasses.replace(cfg.train, positives="episode")


@pytest.mark.slow
@pytest.mark.parametrize("text_tower", ["wordllama", "wordllama_mean"])
def test_text_alignment_pulls_a_tasks_phrasings_together(small_bags, tmp_path, text_tower):
    """With a wordllama tower, task positives and the text–text term, a short run lowers the
    text–text loss and its checkpoint serves: the two tasks' held-out phrasings then sit nearer
    their own task's training phrasings than the other task's (with the full tower)."""

    from trimodal_ros.checkpoint import load_checkpoint
    from trimodal_ros.data.instructions import paraphrases

    cfg = small_cfg(fusion="concat_mlp", loss="clip", steps=40, positives="task", text_alignment=1.0,
                    instruction_noise=0.2)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, text_tower=text_tower))
    ds = BagDataset.from_config(small_bags, cfg.model, split="all", verbose=False)
    train(cfg, small_bags, tmp_path, progress=False, dataset=ds)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    tt = [float(r["text_text"]) for r in rows]
    assert sum(tt[-5:]) / 5 < 0.7 * sum(tt[:5]) / 5, tt
    model = load_checkpoint(tmp_path / "last.pt")[0].eval()
    with torch.no_grad():
        def emb(texts):
            f = model.encode_instructions(texts)
            return torch.nn.functional.normalize(model.text_adapter(f.pooled, f.tokens, f.mask)[0], dim=-1)
        tasks = ["reach-v3", "drawer-close-v3"]
        cent = torch.nn.functional.normalize(torch.stack([emb(paraphrases(t)).mean(0) for t in tasks]), dim=-1)
        for i, t in enumerate(tasks):
            hits = (emb(paraphrases(t, "heldout")) @ cent.T).argmax(1) == i
            # the full tower only: with the bag of words "bring the end effector to the red dot" still
            # sits nearer drawer-close's phrasings after 40 steps
            assert hits.all() or text_tower != "wordllama"
    # trained with an image–text loss, the agreement the node publishes tells the right instruction
    # from the other task's on the same frames
    from trimodal_lab.eval.evaluate import language
    from trimodal_ros.policy import Policy

    auc = language(Policy.load(str(tmp_path / "last.pt")), ds, batch_size=32)["agreement"]["auc_recorded_vs_other_task"]
    print("agreement AUC", auc)
    assert auc > 0.75, auc


def test_the_action_chunk_as_the_third_modality_trains_resumes_and_stays_out_of_the_checkpoint(small_bags, tmp_path):
    """train.align_action: chunk — the alignment term reads the demonstrated chunk (its loss moves
    with the batch's tokens, unlike with proprio), a short run lowers it, resume restores the chunk
    encoder exactly, and the served model is the plain model (a robot has no future actions)."""

    from trimodal_ros.checkpoint import load_checkpoint
    from trimodal_ros.model.objective import TriModalObjective

    with pytest.raises(ConfigError, match="align_action"):
        small_cfg("concat_mlp", loss="clip", align_action="chunk")
    cfg = small_cfg("concat_mlp", loss="joint", steps=40, align_action="chunk")
    ds = BagDataset.from_config(small_bags, cfg.model, split="all", verbose=False)
    torch.manual_seed(0)
    model = TriModalModel(cfg.model).eval()
    batch = Batcher(ds, ActionTokenizer.fit(ds.all_actions(), cfg.model.bins), model, torch.device("cpu"), "bag",
                    0)(batch_indices(len(ds), 8, 0, 0), 0)
    flipped = {**batch, "tokens": batch["tokens"].flip(0), "mask": batch["mask"].flip(0)}  # others' chunks
    for align, moves in (("chunk", True), ("proprio", False)):
        objective = TriModalObjective(model, dataclasses.replace(cfg.train, align_action=align)).eval()
        with torch.no_grad():
            a, b = objective(batch)[1]["contrastive"], objective(flipped)[1]["contrastive"]
        assert (abs(float(a - b)) > 1e-4) == moves, (align, float(a), float(b))

    train(cfg, small_bags, tmp_path / "full", progress=False, dataset=ds)
    con = [float(r["contrastive"]) for r in csv.DictReader(open(tmp_path / "full" / "metrics.csv"))]
    assert sum(con[-5:]) / 5 < 0.8 * sum(con[:5]) / 5, con
    saved = read_checkpoint(tmp_path / "full" / "last.pt")
    assert not any("chunk" in k for k in saved["model"]) and "chunk_encoder" in saved
    load_checkpoint(tmp_path / "full" / "last.pt")  # serves as any checkpoint does
    from trimodal_lab.eval.evaluate import evaluate

    report = evaluate(tmp_path / "full" / "last.pt", None, None, dataset=ds, progress=False)
    assert report["retrieval_action"] == "demonstrated chunk"  # what its alignment aligned, not the joints
    assert report["retrieval"]["action->image"]["R@1"] > report["retrieval_chance"]["R@1"], report["retrieval"]

    # with a weight average the chunk encoder is averaged beside the model it embeds for; both resume
    short = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=10, ckpt_every=4, ema=0.9))
    straight = train(short, small_bags, tmp_path / "straight", progress=False, dataset=ds)
    _train_until(short, small_bags, tmp_path / "crashed", ds, stop_after=8)
    resumed = train(short, small_bags, tmp_path / "crashed", resume=True, progress=False, dataset=ds)
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)
    want, got = (read_checkpoint(tmp_path / d / "last.pt") for d in ("straight", "crashed"))
    assert any(not torch.equal(v, want["train_chunk_encoder"][k]) for k, v in want["chunk_encoder"].items())
    for part in ("chunk_encoder", "train_chunk_encoder"):
        for k, v in got[part].items():
            torch.testing.assert_close(v, want[part][k], rtol=1e-5, atol=1e-6, msg=(part, k))
