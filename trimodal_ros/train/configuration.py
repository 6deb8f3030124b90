"""TrainConfig: the optimisation of one run (not part of what a checkpoint must match)."""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import ConfigError, non_negative, one_of, positive


@dataclass
class TrainConfig:
    loss: str = "pairwise"              # key of model.losses.CONTRASTIVE_LOSSES
    contrastive_weight: float = 1.0
    uncertainty_weighting: bool = False
    batch_size: int = 32
    steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    amp: bool = True                    # bf16 autocast on CUDA; ignored on CPU
    seed: int = 0
    log_every: int = 10
    conflict_every: int = 50            # steps between gradient-conflict measurements (4 extra backward passes);
                                        # 0 never
    ckpt_every: int = 200
    instructions: str = "train"         # bag: the recorded command; train: a fresh train paraphrase per sample;
                                        # empty: none (an instruction-blind baseline)
    augment_shift: int = 0              # DrQ random shift of each training image by up to ± this many pixels
                                        # of the model's input (0: none); evaluation and serving never shift
    ema: float = 0.0                    # decay of an exponential moving average of the weights, which the
                                        # checkpoint then serves (0: none; raw weights kept for resume)
    state_weight: float = 0.0           # weight of the error of predicting the recorded object and goal
                                        # positions (/sim/state) from the image embedding (0: off); the head
                                        # is auxiliary, or the model's own with model.state_input
    label_sigma: float = 0.0            # HL-Gauss action targets: a Gaussian of this many bins around the
                                        # demonstrated bin instead of one-hot (0: one-hot cross-entropy)
    positives: str = "sample"           # the contrastive loss's positives: sample (only the sample's own other
                                        # modalities) or task (every sample of the same task in the batch,
                                        # which "sample" pushes apart as negatives)
    text_alignment: float = 0.0         # weight of a text–text InfoNCE between two paraphrases of each sample's
                                        # task, all phrasings of a task positives for each other (0: off)
    instruction_noise: float = 0.0      # share of training instructions given one random word-level edit
                                        # (a dropped, swapped or misspelt word, a filler); 0: none
    align_action: str = "proprio"       # what plays "action" in the alignment term: proprio (the model's
                                        # proprio/action encoder, whose input is the joints) or chunk (the
                                        # demonstrated action chunk through a training-only encoder: the
                                        # image-action-text triplet proper; needs loss pairwise or joint)

    def __post_init__(self) -> None:
        from ..model.losses import CONTRASTIVE_LOSSES

        one_of("loss", self.loss, CONTRASTIVE_LOSSES.names())
        one_of("instructions", self.instructions, ("bag", "train", "empty"))
        positive(self, "batch_size", "steps", "lr", "log_every", "ckpt_every")
        non_negative(self, "contrastive_weight", "weight_decay", "warmup_steps", "grad_clip", "conflict_every",
                     "augment_shift", "label_sigma", "state_weight")
        one_of("positives", self.positives, ("sample", "task"))
        non_negative(self, "text_alignment")
        if not 0.0 <= self.instruction_noise < 1.0:
            raise ConfigError(f"train.instruction_noise must be in [0, 1), got {self.instruction_noise}")
        if (self.text_alignment or self.instruction_noise) and self.instructions != "train":
            raise ConfigError("train.text_alignment and train.instruction_noise draw paraphrases: they need "
                              f"train.instructions: train, not {self.instructions!r}")
        one_of("align_action", self.align_action, ("proprio", "chunk"))
        if self.align_action == "chunk" and self.loss not in ("pairwise", "joint"):
            raise ConfigError(f"train.align_action: chunk aligns the action chunk with image and text: it needs "
                              f"train.loss pairwise or joint, not {self.loss!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"train.ema must be in [0, 1) (0: no weight averaging), got {self.ema}")
