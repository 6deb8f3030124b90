"""Language-critical tasks (data/language_tasks.py): the tasks of a group start from the same
first frame, their experts still succeed from it, only the instruction tells them apart; plain
Meta-World tasks (MT10) keep their layouts exactly."""

import json
import pickle
import warnings

import numpy as np
import pytest

from trimodal_ros.cli import main
from trimodal_ros.data import bags as B
from trimodal_ros.data import language_tasks as LT
from trimodal_lab import metaworld as mw
from trimodal_ros.data.instructions import MT50, paraphrases, resolve_tasks, task_id

SIZE = 48
LAYOUTS = (0, 17, 38, 45)  # train, train, val, held out
GROUPS = {g.name: g for g in LT.GROUPS}


def test_lang_set_names_and_instructions():
    assert resolve_tasks("lang") == LT.LANG == [t + "@lang" for g in LT.GROUPS for t in g.tasks]
    assert len(LT.LANG) == 6 and all(LT.base_task(t) in MT50 for t in LT.LANG)
    assert resolve_tasks("drawer-open-v3@lang, reach-v3") == ["drawer-open-v3@lang", "reach-v3"]
    for bad in ("reach-v3@lang", "drawer-open-v9@lang"):  # no group / no such task
        with pytest.raises(ValueError, match="language-critical"):
            resolve_tasks(bad)
    for g in LT.GROUPS:
        assert g.anchor in g.tasks and len(set(g.tasks)) == len(g.tasks) >= 2
        for t in g.tasks:
            v = t + "@lang"
            assert LT.group_of(v) is g and task_id(v) == task_id(t)
            assert paraphrases(v, "all") == paraphrases(t, "all") and len(paraphrases(v, "heldout")) == 2
        # the wording must tell the tasks of a group apart: no paraphrase is shared
        words = [set(paraphrases(t, "all")) for t in g.tasks]
        assert sum(map(len, words)) == len(set.union(*words)), g.name


def _first_frames(tasks, layout, scenes):
    out = {}
    for t in tasks:
        scenes[t].reset(layout)
        out[t] = (scenes[t].render(), np.concatenate(scenes[t].joints()))
    return out


@pytest.fixture(scope="module")
def scenes():
    made = {}

    def get(task):
        if task not in made:
            made[task] = mw.SawyerScene(task, "corner", SIZE, 200)
        return made[task]

    yield get
    for s in made.values():
        s.close()


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_first_frames_of_a_group_are_identical(group, scenes):
    g = GROUPS[group]
    lang = [t + "@lang" for t in g.tasks]
    seen = []
    for layout in LAYOUTS:
        frames = _first_frames(lang, layout, {t: scenes(t) for t in lang})
        (ref, ref_joints), rest = frames[lang[0]], [frames[t] for t in lang[1:]]
        for img, joints in rest:  # same pixels, same proprioception: nothing but words differ
            assert np.array_equal(img, ref) and np.array_equal(joints, ref_joints), (group, layout)
        assert ref.std() > 10
        seen.append(ref)
    assert not np.array_equal(seen[0], seen[1])  # the layout still moves the scene
    # without the shared start (Meta-World's own layout and reset), each task shows its own state
    plain = []
    for t in lang:
        s = scenes(t)
        s.env.set_task(mw.layout_task(LT.base_task(t), LAYOUTS[0]))
        s.env.reset()
        plain.append(s.render())
    assert not np.array_equal(plain[0], plain[1])


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_experts_succeed_from_the_shared_state_and_only_at_their_own_task(group, scenes):
    """Each expert completes its task from the shared state; its actions, replayed in the other
    task's env from the same state, never complete that one (a policy that ignores the
    instruction cannot score on both)."""
    lang = [t + "@lang" for t in GROUPS[group].tasks]
    for layout in (3, 44):
        for a in lang:
            obs = {t: scenes(t).reset(layout) for t in lang}
            pol = mw.expert_policy(a)
            done = {t: False for t in lang}
            for _ in range(150):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    act = np.clip(pol.get_action(obs[a]), -1, 1)
                for t in lang:
                    obs[t], info = scenes(t).step(act)
                    done[t] |= info["success"] >= 1.0
            assert done == {t: t == a for t in lang}, (a, layout, done)


def test_plain_layouts_are_meta_worlds_own(scenes):
    """MT10 is untouched: a plain task's layout is MT1(task, seed=0).train_tasks[layout], and its
    reset is Meta-World's own (no extra state setting or forward pass)."""
    golden = {"drawer-open-v3": [0.03412757392363189, 0.9, 0.0],
              "window-close-v3": [0.0, 0.7815573841610761, 0.2]}  # layout 7, before language_tasks
    for task, rand_vec in golden.items():
        t = mw.layout_task(task, 7)
        assert t is mw.benchmark(task).train_tasks[7]
        assert pickle.loads(t.data)["rand_vec"].tolist() == rand_vec
        s = scenes(task)
        obs = s.reset(7)
        frame = s.render()
        s.env.set_task(mw.benchmark(task).train_tasks[7])
        ref_obs, _ = s.env.reset()
        assert np.array_equal(obs, ref_obs) and np.array_equal(frame, s.render())
        assert s.model.site_rgba[s.model.site("goal").id, 3] > 0  # its goal marker is drawn
    # a variant hides the group's goal markers in its own model only
    v = scenes("drawer-open-v3@lang")
    assert v.model.site_rgba[v.model.site("goal").id, 3] == 0
    assert scenes("drawer-open-v3").model.site_rgba[v.model.site("goal").id, 3] > 0
    # plain episodes keep their layout sequence; a group's tasks share one
    assert mw.episode_layout("drawer-open-v3", 0, 0) == 47  # as recorded before language_tasks
    eps = [[mw.episode_layout(t, 0, e) for e in range(50)] for t in LT.LANG]
    assert eps[0] == eps[1] and sorted(eps[0]) == list(range(50))


def test_generate_lang_records_matched_first_frames(tmp_path):
    tasks = "drawer-open-v3@lang,drawer-close-v3@lang"
    assert main(["generate", "--tasks", tasks, "--episodes", "1", "--out", str(tmp_path), "--size", "32",
                 "--max-steps", "3", "--keep-failures", "--seed", "5"]) == 0
    firsts, metas = [], []
    for path in B.find_bags(tmp_path):
        meta = json.loads((path / "episode.json").read_text())
        metas.append(meta)
        assert meta["base_task"] == LT.base_task(meta["task"]) and meta["language_group"] == "drawer"
        assert meta["task_id"] == task_id(meta["base_task"])
        assert meta["instruction"] in paraphrases(meta["base_task"], meta["paraphrase_split"])
        from trimodal_ros.decode import image_from_msg

        firsts.append(image_from_msg(B.read_bag(path, [mw.TOPIC_IMAGE]).messages[mw.TOPIC_IMAGE][0]))
    assert sorted(m["task"] for m in metas) == sorted(tasks.split(","))
    assert metas[0]["layout"] == metas[1]["layout"]  # same layout, same first frame, other words
    assert np.array_equal(firsts[0], firsts[1]) and metas[0]["instruction"] != metas[1]["instruction"]
