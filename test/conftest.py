"""Shared test set-up: one DDS domain per test process, so parallel runs never cross-talk,
and few torch threads on the 2-core CI machine."""

import os
import random

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI: idle OpenMP threads sleep, not spin

import torch  # noqa: E402

torch.set_num_threads(2)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def load_probe():
    """``load_probe(name)``: the probe module ``trimodal_lab.probes.<name>``."""
    import importlib

    return lambda name: importlib.import_module(f"trimodal_lab.probes.{name}")


@pytest.fixture(scope="session")
def small_bags(tmp_path_factory):
    """Real Meta-World expert episodes, small and short: 2 tasks × 3 episodes, 64² frames, ≤ 40
    steps (failures kept, so the set never comes out empty). ~10 s, shared by the whole session."""
    from trimodal_lab.metaworld import generate

    out = tmp_path_factory.mktemp("bags")
    generate(["reach-v3", "drawer-close-v3"], episodes=3, out=out, size=64, seed=0, max_steps=40,
             keep_failures=True, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(small_bags, tmp_path_factory):
    """A weighted_sum checkpoint trained for a few steps on ``small_bags`` (~10 s)."""
    import dataclasses

    from trimodal_ros.config import load_config
    from trimodal_ros.train.trainer import train

    cfg = load_config("weighted_sum")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=8, batch_size=8, warmup_steps=1,
                                                             log_every=2, ckpt_every=8))
    return train(cfg, small_bags, tmp_path_factory.mktemp("run"), progress=False).checkpoint


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """vla_node sets the process's torch threads for inference (1 for the tiny model); a node
    made in one test must not slow the training tests that follow in the same process."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
