"""Training: contrastive alignment + action-token cross-entropy, single process or torchrun DDP."""
