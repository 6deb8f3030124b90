"""Policy: where a camera frame becomes an action.

One object owns everything between "a frame, the joints and an instruction arrived" and "here is
the action chunk": loading a checkpoint (or random weights for wiring tests), the per-instruction
text-feature cache, the action history, assembling the proprio vector, the forward pass and
decoding the tokens. ``vla_node``, the in-process and through-ROS rollouts, the live and the
offline evaluation all call it, so they cannot drift apart. Pure torch/numpy: no rclpy.

Action history (``action_history`` > 0 in the model config): the actions the policy *commanded*,
the first ``execute`` rows of each chunk (what the controller executes before the next frame),
oldest first, zero-filled at the start of a task and cleared by ``reset``. That is the history the
expert's episodes give the model in training (every executed action).
"""

from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .accel import Tick
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from .config import Config, load_config
from .model.action_tokenizer import ActionTokenizer
from .model.configuration import DEFAULT_FUSION
from .model.encoders import TextFeatures
from .model.preprocess import proprio_vector
from .model.trimodal import TriModalModel
from .scores import EmbeddingStats, agreement

TEXT_CACHE_SIZE = 32  # instructions whose text encoding is kept (a robot has a handful of commands)


class TemporalEnsembler:
    """ACT's temporal ensembling (Zhao et al. 2023) of action chunks, one tick per control step.

    Every tick predicts K actions for steps t … t+K-1. The action for step t is the weighted mean
    of every stored prediction for it: row (t − t_j) of the chunks of the last ``horizon`` ticks,
    oldest first with weight exp(−m·i) (m > 0 favours older predictions, 0 is the plain mean,
    m < 0 the newest). Pure numpy."""

    def __init__(self, chunk: int, m: float = 0.01, horizon: Optional[int] = None):
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk, self.m = int(chunk), float(m)
        self.horizon = self.chunk if horizon is None else int(horizon)
        if not 1 <= self.horizon <= self.chunk:
            raise ValueError(f"horizon must be in [1, chunk={chunk}], got {horizon}")
        self._chunks: collections.deque = collections.deque(maxlen=self.horizon)  # newest last

    def reset(self) -> None:
        self._chunks.clear()

    def __call__(self, chunk) -> np.ndarray:
        """Store this tick's (K, A) chunk; return the (A,) action for this tick's step."""
        c = np.asarray(chunk, np.float64)
        if c.ndim != 2 or c.shape[0] != self.chunk:
            raise ValueError(f"expected a ({self.chunk}, A) chunk, got {c.shape}")
        self._chunks.append(c)
        n = len(self._chunks)
        preds = np.stack([ck[n - 1 - j] for j, ck in enumerate(self._chunks)])  # oldest first
        w = np.exp(-self.m * np.arange(n))
        return (w[:, None] * preds).sum(0) / w.sum()


@dataclass
class Step:
    """What one tick produces."""

    embedding: np.ndarray  # (D,) the fused image–text–proprio embedding
    tokens: np.ndarray     # (K, A) int64 action-token bins (argmax)
    actions: np.ndarray    # (K, A) float32 chunk to execute: row k for control step k (row 0 ensembled
                           # over the previous ticks' chunks when the config's inference.ensemble is set)
    seconds: float         # model time: text lookup + forward + decode
    agreement: float = float("nan")  # instruction–scene cosine in the joint space (scores.py)
    ood: float = float("nan")        # distance from the training embeddings; 1 = their 99th percentile
    refused: bool = False            # agreement below act's min_agreement: not to be executed, and the
                                     # action history and ensembling did not take it


@dataclass
class BatchOutput:
    """``Policy.infer`` on a batch (offline evaluation): every embedding and the tokens."""

    image: np.ndarray      # (B, D)
    text: np.ndarray       # (B, D)
    action: np.ndarray     # (B, D) the proprio/action-history embedding
    fused: np.ndarray      # (B, D)
    tokens: np.ndarray     # (B, K, A)
    actions: np.ndarray    # (B, K, A) decoded
    seconds: float         # model time (synchronised on CUDA)


class Policy:
    def __init__(self, model: TriModalModel, tokenizer: ActionTokenizer, config: Config,
                 random_weights: bool = False, execute: int = 1, source: str = "",
                 stats: Optional[EmbeddingStats] = None, precision: str = "fp32", cuda_graph: bool = False):
        self.model, self.tokenizer, self.config = model.eval(), tokenizer, config
        self.tick = Tick(self.model, precision, cuda_graph)  # the forward pass: fp32, autocast, CUDA graph
        self.stats = stats  # the training embeddings' statistics (ood score); None: not in the checkpoint
        self.frame_size: Optional[tuple] = None  # (H, W) of the training frames, from the checkpoint
        self.random_weights, self.source = bool(random_weights), source
        mc, inf = config.model, config.inference
        self._history: collections.deque = collections.deque(maxlen=max(1, mc.action_history))
        self._text: "collections.OrderedDict[str, TextFeatures]" = collections.OrderedDict()
        self._instruction: Optional[str] = None
        self.ensembler = (None if inf.ensemble is None else
                          TemporalEnsembler(mc.chunk, inf.ensemble, inf.ensemble_horizon))
        self.execute = execute

    @property
    def execute(self) -> int:
        """Actions of each chunk the robot executes before the next tick (1 with temporal ensembling)."""
        return self._execute

    @execute.setter
    def execute(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"execute must be >= 1, got {n}")
        if self.ensembler is not None and n != 1:
            raise ValueError("temporal ensembling (inference.ensemble) needs one executed action per tick "
                             f"(execute_steps 1), got {n}")
        self._execute = int(n)

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def load(cls, checkpoint: str = "", fusion: Optional[str] = None, config: Union[str, Config] = "",
             device: Union[str, torch.device] = "cpu", seed: int = 0, execute: Optional[int] = None,
             inference: Optional[dict] = None, precision: str = "fp32", cuda_graph: bool = False) -> "Policy":
        """A checkpoint's policy (``fusion`` and an explicit ``config`` must match it), or with no
        checkpoint the configured architecture (``config``: a name, a YAML or a ``Config``; default
        ``config/<fusion>.yaml``) with random
        weights drawn after ``torch.manual_seed(seed)`` and a tokenizer over [-1, 1] per dimension
        (Meta-World's action range): for wiring tests, never for a robot. ``inference`` overrides
        fields of the config's inference section (e.g. ``{"ensemble": 0.0}`` for an experiment);
        ``execute`` (None: the config's ``inference.execute_steps``) the actions executed per tick.
        ``frame_size``: the (height, width) of the frames it was trained on (None: unknown).
        ``precision`` / ``cuda_graph``: how each tick runs (``accel.Tick``), not what the weights are."""
        run = {"precision": precision, "cuda_graph": cuda_graph}
        given = config if isinstance(config, Config) else (load_config(config, fusion=fusion) if config else None)

        def settle(cfg: Config) -> Config:
            return cfg if not inference else dataclasses.replace(
                cfg, inference=dataclasses.replace(cfg.inference, **inference))

        if checkpoint:
            expect = given
            payload = read_checkpoint(checkpoint)
            model, tok, cfg = load_checkpoint(checkpoint, fusion=fusion, expect=expect, device=device,
                                              payload=payload)
            try:
                stats = EmbeddingStats.from_dict(payload.get("embedding_stats"), cfg.model.embed_dim)
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(f"checkpoint {checkpoint}: embedding_stats: {e}") from None
            cfg = settle(cfg)
            policy = cls(model, tok, cfg, execute=execute or cfg.inference.execute_steps, source=str(checkpoint),
                         stats=stats, **run)
            policy.frame_size = tuple(payload["frame_size"]) if payload.get("frame_size") else None
            return policy
        cfg = settle(given or load_config(fusion or DEFAULT_FUSION, fusion=fusion))
        torch.manual_seed(seed)
        model = TriModalModel(dataclasses.replace(cfg.model, pretrained=None)).to(device)
        a = cfg.model.action_dim
        tok = ActionTokenizer(-np.ones(a), np.ones(a), cfg.model.bins)
        return cls(model, tok, cfg, random_weights=True, execute=execute or cfg.inference.execute_steps,
                   source=f"random weights (seed {seed})", **run)

    # --- properties --------------------------------------------------------------------------------
    @property
    def model_config(self):
        return self.config.model

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def instruction(self) -> Optional[str]:
        """The task in force (None: none yet, or stopped)."""
        return self._instruction

    def describe(self) -> str:
        mc = self.config.model
        ens = "off" if self.ensembler is None else f"m={self.ensembler.m} horizon={self.ensembler.horizon}"
        return (f"fusion={mc.fusion} clip={mc.clip_model} embed_dim={mc.embed_dim} chunk={mc.chunk} "
                f"action_dim={mc.action_dim} ensembling={ens} device={self.device} precision={self.tick.precision}"
                f"{' cuda_graph' if self.tick.cuda_graph else ''} weights={self.source or 'given'} {self.tokenizer}")

    # --- the task --------------------------------------------------------------------------------
    def reset(self, instruction: Optional[str], empty_ok: bool = False) -> None:
        """Start a task (clears the action history and encodes the text now, so the first tick is
        not slower than the others); ``None`` or ``""`` stops: ``act`` refuses until the next one.
        With ``empty_ok`` an empty instruction is a task of its own (a rollout asking what the
        policy does without words)."""
        self._history.clear()
        if self.ensembler is not None:
            self.ensembler.reset()
        self._instruction = instruction if (instruction or (empty_ok and instruction == "")) else None
        if self._instruction is not None:
            with torch.inference_mode():
                self.text_features([self._instruction])

    def text_features(self, instructions: Sequence[str]) -> TextFeatures:
        """Text-tower outputs for ``instructions`` (batch order), each encoded once while it stays
        among the last TEXT_CACHE_SIZE used: the tower runs per command, not per frame."""
        missing = [t for t in dict.fromkeys(instructions) if t not in self._text]
        if missing:
            f = self.model.encode_instructions(missing)
            for i, t in enumerate(missing):
                self._text[t] = TextFeatures(f.pooled[i:i + 1], f.tokens[i:i + 1], f.mask[i:i + 1])
        for t in dict.fromkeys(instructions):
            self._text.move_to_end(t)
        parts = [self._text[t] for t in instructions]
        while len(self._text) > TEXT_CACHE_SIZE:  # evict after use: a batch may hold more than fit
            self._text.popitem(last=False)
        if len(parts) == 1:
            return parts[0]
        return TextFeatures(torch.cat([p.pooled for p in parts]), torch.cat([p.tokens for p in parts]),
                            torch.cat([p.mask for p in parts]))

    def proprio(self, joint_positions, joint_velocities=None) -> np.ndarray:
        """(P,) float32: positions [+ velocities] [+ the action history], the training layout."""
        mc = self.config.model
        return proprio_vector(joint_positions, joint_velocities, list(self._history), mc.use_velocities,
                              mc.action_history, mc.action_dim)

    # --- inference ---------------------------------------------------------------------------------
    def views(self, image) -> np.ndarray:
        """What ``act`` feeds the model: a uint8 (H, W, 3) frame, or a {camera name: frame} mapping
        holding the model's cameras (``ModelConfig.cameras``) → (H, W, 3), or (V, H, W, 3) in the
        model's camera order for a multi-camera model."""
        cams = self.config.model.cameras
        if isinstance(image, Mapping):
            missing = [c for c in cams if c not in image]
            if missing:
                raise ValueError(f"no frame from camera(s) {missing}; the model sees {cams}, got {list(image)}")
            frames = [np.asarray(image[c]) for c in cams]
            return frames[0] if len(frames) == 1 else np.stack(frames)
        image = np.asarray(image)
        if len(cams) > 1 and image.ndim != 4:
            raise ValueError(f"the model sees {len(cams)} cameras {cams}: give (V, H, W, 3) or a mapping")
        return image

    def bounded(self, actions: np.ndarray) -> np.ndarray:
        """Never outside the bounds the checkpoint carries: the tokenizer's range (bin centres and their
        means are inside it; the clip makes it a guarantee) and the robot spec's action low / high."""
        a = np.clip(actions, self.tokenizer.low, self.tokenizer.high)
        spec = self.config.robot.action
        if spec.low is not None or spec.high is not None:
            a = np.clip(a, -np.inf if spec.low is None else np.asarray(spec.low),
                        np.inf if spec.high is None else np.asarray(spec.high))
        return a.astype(np.float32)

    @torch.inference_mode()
    def act(self, image, joint_positions, joint_velocities=None, stamp: Optional[int] = None,
            min_agreement: float = -2.0) -> Step:
        """One tick: uint8 (H, W, 3) RGB frame (or the cameras' frames, see ``views``) + joints →
        ``Step``. ``stamp`` (ns, the frame's time) is recorded as ``last_stamp``; the instruction
        is the one of the last ``reset``. A frame whose instruction–scene agreement is below
        ``min_agreement`` comes back ``refused``, leaving the action history and the ensembling as
        they were (the robot will not execute it)."""
        if self._instruction is None:
            raise RuntimeError("no instruction: call reset(instruction) first")
        t0 = time.perf_counter()
        p = torch.from_numpy(self.proprio(joint_positions, joint_velocities)).unsqueeze(0).to(self.device)
        out = self.tick(self.model.preprocess(self.views(image)[None]), p, self.text_features([self._instruction]))
        fused = out.fused[0].float().cpu().numpy()
        tokens = out.tokens()[0].cpu().numpy()  # (K, A)
        actions = self.tokenizer.decode(tokens)  # (K, A)
        ag = float(agreement(out.image[0].float().cpu().numpy(), out.text[0].float().cpu().numpy()))
        ood = float(self.stats.ood(fused)) if self.stats is not None else float("nan")
        self.last_stamp = stamp
        if ag < min_agreement:
            return Step(fused, tokens, self.bounded(actions), time.perf_counter() - t0, ag, ood, refused=True)
        if self.ensembler is not None:  # the command for this step: every stored prediction for it
            actions = actions.copy()
            actions[0] = self.ensembler(actions)
        actions = self.bounded(actions)
        if self.config.model.action_history:
            self._history.extend(actions[:self.execute])
        return Step(fused, tokens, actions, time.perf_counter() - t0, ag, ood)

    @torch.inference_mode()
    def infer(self, frames: np.ndarray, proprio: np.ndarray, instructions: List[str]) -> BatchOutput:
        """A batch (offline evaluation): uint8 (B, H, W, 3) frames, (B, P) proprio vectors (as the
        dataset assembled them), one instruction per frame. No action history is touched."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        out = self.tick(self.model.preprocess(frames), torch.as_tensor(proprio, device=self.device),
                        self.text_features(list(instructions)))
        tokens = out.tokens()
        sync()
        seconds = time.perf_counter() - t0
        get: Dict[str, np.ndarray] = {k: getattr(out, k).float().cpu().numpy()
                                      for k in ("image", "text", "action", "fused")}
        tok = tokens.cpu().numpy()
        return BatchOutput(tokens=tok, actions=self.tokenizer.decode(tok), seconds=seconds, **get)
