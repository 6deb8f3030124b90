"""Replaying a bag through the live node gives the offline evaluation's token accuracy."""

import pytest

from trimodal_lab.ros.live_eval import live_evaluate


@pytest.mark.slow
def test_live_replay_matches_offline_evaluation(small_bags, tiny_checkpoint):
    bag = sorted(p for p in small_bags.iterdir() if p.is_dir() and not p.name.startswith("."))[0]
    seen = []
    r = live_evaluate(tiny_checkpoint, bag, namespace="live_test", rate=0.5, settle=5.0, lockstep=True,
                      on_output=lambda step, live, expert: seen.append(step))
    # lockstep: every frame is answered, even on 2 busy cores (at full bag rate the node would
    # replace frames it cannot keep up with: counted, by design)
    assert r["frames_answered"] >= 0.95 * r["frames"], r
    assert seen and seen == sorted(seen)  # outputs arrive in frame order
    # the same frames through DDS + the node's single-frame path vs the batched offline path
    assert r["live_offline_token_agreement"] >= 0.98, r
    assert abs(r["live_token_accuracy"] - r["offline_token_accuracy_same_frames"]) <= 0.02, r
    assert r["end_to_end_latency_ms_p50"] > 0
