"""trimodal_lab/probes/oracle_state.py: the state head answers with the simulator's true state, and only inside."""

import dataclasses

import numpy as np
import pytest
import torch

from trimodal_ros.config import load_config
from trimodal_ros.model.action_tokenizer import ActionTokenizer
from trimodal_ros.model.trimodal import TriModalModel
from trimodal_ros.policy import Policy


@pytest.fixture(scope="module")
def oracle(load_probe):
    return load_probe("oracle_state")


def test_true_state_replaces_the_prediction_with_the_scenes_state(oracle):
    """A 9-D state_input policy (random weights) on a real Meta-World scene: inside ``true_state``
    the model's state is the standardised truth the recorder kept (object, goal, hand: the hand is
    the observation's), and the actions change with it; outside, the head predicts again."""
    from trimodal_lab.metaworld import SawyerScene

    cfg = load_config("mt10_policy")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, state_input=9))
    torch.manual_seed(0)
    policy = Policy(TriModalModel(cfg.model), ActionTokenizer([-1.0] * 4, [1.0] * 4), cfg)
    head = policy.model.state_head
    with torch.no_grad():
        head.mean.copy_(torch.linspace(-0.1, 0.1, 9))
        head.std.copy_(torch.full((9,), 0.05))
    scene = oracle.TruthRecorder(SawyerScene("reach-v3", camera="corner", size=64, max_steps=10))
    try:
        obs = scene.reset(40)
        assert scene.truth.shape == (9,) and np.allclose(scene.truth[6:], obs[:3])
        frame, (pos, vel) = scene.render(), scene.joints()
        images = policy.model.preprocess(frame[None])
        proprio = torch.as_tensor(np.concatenate([pos, vel])[None], dtype=torch.float32)
        ids = policy.model.tokenize(["reach the goal"])
        with torch.no_grad():
            own = policy.model(images, proprio, text_ids=ids)
            with oracle.true_state(head, lambda: scene.truth):
                true = policy.model(images, proprio, text_ids=ids)
            again = policy.model(images, proprio, text_ids=ids)
        expected = (torch.as_tensor(scene.truth, dtype=torch.float32) - head.mean) / head.std
        torch.testing.assert_close(true.state[0], expected)
        assert not torch.allclose(own.state, true.state) and not torch.allclose(own.logits, true.logits)
        torch.testing.assert_close(again.state, own.state)
        assert not head._forward_hooks  # the hook is gone
    finally:
        scene.close()
