"""trimodal_lab/probes/expert_takeover.py: the policy drives, then the expert, through the rollouts' stepper."""

import numpy as np


def test_the_expert_takes_over_where_the_policy_left_the_scene(load_probe):
    from trimodal_lab.metaworld import SawyerScene, expert_policy
    from trimodal_lab.sim.rollout import expert_episode
    from trimodal_ros.policy import Policy

    probe = load_probe("expert_takeover")
    scene = SawyerScene("reach-v3", camera="corner", size=32, max_steps=150)
    policy, expert = Policy.load(config="mt10_policy_concat", seed=0), expert_policy("reach-v3")
    calls = []
    act = policy.act
    policy.act = lambda *a, **k: calls.append(1) or act(*a, **k)
    try:
        alone = expert_episode(scene, expert.get_action, 36, 150)
        assert alone.success  # the scripted expert reaches on this layout
        ok, last = probe.episode(scene, policy, expert, 36, after=0, max_steps=150)
        assert (ok, last) == (True, alone.length - 1) and not calls  # after 0 steps: the expert's own episode
        ok, last = probe.episode(scene, policy, expert, 36, after=5, max_steps=150)
        assert len(calls) == 5 and last >= 5  # five ticks of the (untrained) policy, then the expert
        assert np.all(np.abs(scene.obs[:3]) < 2.0)  # the scene's latest observation, which the expert read
    finally:
        scene.close()
