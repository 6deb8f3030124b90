"""The chunk executor: late chunks skip their past rows, consecutive chunks blend, a model further
behind than a chunk is long starves the executor (the last command is held), and closed-loop on the
reacher an expert planner 3 control periods slow still succeeds asynchronously."""

import numpy as np
import pytest

from trimodal_ros.executor import ChunkExecutor


def chunk(start, k=4, step=1.0):
    return (start + step * np.arange(k, dtype=np.float64))[:, None]  # (K, 1): row j = start + j·step


def test_a_late_chunk_skips_its_past_rows_and_ensembling_averages_overlaps():
    ex = ChunkExecutor(4, "ensemble", m=0.0)
    assert ex.action(0) is None  # nothing yet: the caller holds
    ex.add(chunk(10), origin=0, now=2)  # computed at tick 0, arrived at tick 2
    assert ex.action(2)[0] == 12.0 and ex.action(3)[0] == 13.0  # rows 2, 3: the ticks they were for
    ex.add(chunk(20), origin=3, now=3)
    assert ex.action(3)[0] == pytest.approx((13 + 20) / 2)  # both cover tick 3
    assert ex.action(4)[0] == 21.0
    assert ex.action(7)[0] == 21.0 and ex.counts["starved"] == 1  # past every chunk: hold the last
    ex.add(chunk(0), origin=1, now=8)  # wholly in the past
    ex.add(chunk(0), origin=2)  # older than the newest stored
    assert ex.counts["stale_chunks"] == 2 and ex.counts["chunks"] == 2
    with pytest.raises(ValueError, match="finite"):
        ex.add(np.full((4, 1), np.nan), origin=9)
    ex.reset()
    assert ex.action(9) is None


def test_latest_cross_fades_into_a_new_chunk():
    hard, soft = ChunkExecutor(4, "latest", crossfade=0), ChunkExecutor(4, "latest", crossfade=3)
    got = {}
    for name, ex in (("hard", hard), ("soft", soft)):
        ex.add(chunk(0, step=0.0), origin=0)
        out = [ex.action(0)[0], ex.action(1)[0]]
        ex.add(chunk(8, step=0.0), origin=2)
        out += [ex.action(t)[0] for t in (2, 3, 4, 5)]
        got[name] = out
    assert got["hard"] == [0, 0, 8, 8, 8, 8]
    assert got["soft"] == pytest.approx([0, 0, 2, 4, 6, 8])  # the jump spread over the cross-fade
    with pytest.raises(ValueError, match="blend"):
        ChunkExecutor(4, "rtc")


@pytest.mark.parametrize("k,delay,want", [(8, 3, "success"), (8, 0, "success"), (4, 3, "starved"),
                                          (2, 3, "stale")])
def test_an_expert_planner_three_periods_slow_executes_asynchronously(k, delay, want):
    """The reacher's scripted expert as a chunked planner (row j: the target approached j+1 steps):
    with 8-step chunks a model 3 periods slow keeps every episode successful; 4-step chunks run out
    before the next one arrives (starved ticks), 2-step ones arrive wholly in the past (stale)."""
    from trimodal_lab.reacher import scene as S
    from trimodal_lab.sim.rollout import run_episode_async

    def plan(views, q, qd):
        goal = S.inverse_kinematics(S.layout_state(sc.layout)[0], q)
        return np.stack([q + np.clip(goal - q, -(j + 1) * S.MAX_JOINT_STEP, (j + 1) * S.MAX_JOINT_STEP)
                         for j in range(k)])

    sc = S.ReacherScene(size=16)
    ex = ChunkExecutor(k, "ensemble")
    try:
        outs = [run_episode_async(sc, plan, lay, S.MAX_STEPS, delay, ex, hold=lambda q: q)
                for lay in S.split_layouts("val", 6)]
    finally:
        sc.close()
    if want == "success":
        assert all(o.success for o in outs) and ex.counts["starved"] == 0 and ex.counts["stale_chunks"] == 0
    elif want == "starved":
        assert ex.counts["starved"] > 0 and ex.counts["stale_chunks"] == 0
    else:
        assert not any(o.success for o in outs) and ex.counts["chunks"] == 0 and ex.counts["stale_chunks"] > 0


def test_forecast_infers_on_the_targets_commanded_for_the_arrival_tick():
    ex = ChunkExecutor(4, "ensemble")
    q = np.array([0.5, 7.0])  # joint 0 is commanded by action 0; joint 1 is not commanded
    assert ex.forecast(q, tick=0, delay=3, joints=[(0, 0)])[0] == 3  # nothing planned: counted from arrival
    assert ex.forecast(q, tick=0, delay=3, joints=[(0, 0)])[1].tolist() == [0.5, 7.0]  # ... on where it is
    ex.add(chunk(10), origin=3, now=3)
    before = dict(ex.counts)
    origin, q_in = ex.forecast(q, tick=3, delay=2, joints=[(0, 0)])
    assert origin == 5 and q_in.tolist() == [11.0, 7.0]  # the command for tick 4, the last before arrival
    assert ex.counts == before and q.tolist() == [0.5, 7.0]  # counts nothing, copies
    assert ex.forecast(q, tick=3, delay=0, joints=[(0, 0)])[0] == 3  # synchronous: as it is
    assert ex.forecast(q, tick=3, delay=9, joints=[(0, 0)])[1][0] == 13.0  # past the chunks: the last row
    assert ex.planned(20)[0] == 13.0  # past every chunk: the last row, which the executor holds
    ex.reset()
    assert ex.planned(3) is None


def test_forecast_starts_the_first_chunk_at_its_first_row():
    """The reacher's expert planner 3 periods slow: without forecasting, the first chunk arrives with its
    first three rows gone and the command jumps four steps from the held start pose; with it, the
    chunk is planned from where the arm is when it arrives, and every command moves at most one step."""
    from trimodal_lab.reacher import scene as S
    from trimodal_lab.sim.rollout import action_jumps, run_episode_async

    def plan(views, q, qd):
        goal = S.inverse_kinematics(S.layout_state(sc.layout)[0], q)
        return np.stack([q + np.clip(goal - q, -(j + 1) * S.MAX_JOINT_STEP, (j + 1) * S.MAX_JOINT_STEP)
                         for j in range(8)])

    sc, first = S.ReacherScene(size=16), {}
    try:
        for forecast in (None, [(0, 0), (1, 1)]):
            ex, trace, bounds = ChunkExecutor(8, "ensemble"), [], []
            start = sc.reset(S.split_layouts("val", 1)[0])["q"]
            out = run_episode_async(sc, plan, S.split_layouts("val", 1)[0], S.MAX_STEPS, 3, ex, hold=lambda q: q,
                                    trace=trace, boundaries=bounds, forecast=forecast)
            assert out.success and ex.counts["stale_chunks"] == 0
            first[bool(forecast)] = np.abs(trace[bounds[0]] - start).max()
            assert max(action_jumps(trace, bounds)[0]) <= (4 if not forecast else 1) * S.MAX_JOINT_STEP + 1e-9
    finally:
        sc.close()
    assert first[True] <= S.MAX_JOINT_STEP + 1e-9 < 3 * S.MAX_JOINT_STEP < first[False]
