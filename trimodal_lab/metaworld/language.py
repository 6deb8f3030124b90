"""A language-critical task's shared initial state in Meta-World (the groups themselves:
``trimodal_ros.data.language_tasks``): the anchor's placement, the hidden goal markers and the
mid state, applied by ``SawyerScene``."""

from __future__ import annotations

from trimodal_ros.data.language_tasks import base_task, group_of


def task_data(task: str, layout: int, benchmark):
    """The Meta-World ``Task`` that ``env.set_task`` takes for layout ``layout`` of ``task@lang``:
    the base task's own task data with the anchor's placement (``rand_vec``) of that layout.
    ``benchmark(name)`` returns ``MT1(name, seed=LAYOUT_SEED)`` (cached by the caller)."""
    import pickle

    from metaworld.types import Task

    group, base = group_of(task), base_task(task)
    own = benchmark(base).train_tasks[int(layout)]
    if base == group.anchor:
        return own
    data = pickle.loads(own.data)
    data["rand_vec"] = pickle.loads(benchmark(group.anchor).train_tasks[int(layout)].data)["rand_vec"].copy()
    return Task(env_name=own.env_name, data=pickle.dumps(data))


def prepare_model(task: str, model) -> None:
    """Make the group's task-specific goal markers transparent in this env's (own) model."""
    for name in group_of(task).hidden_sites:
        model.site_rgba[model.site(name).id, 3] = 0.0


def after_reset(task: str, env):
    """Put ``env`` (just reset by Meta-World) into the group's shared state; returns the
    observation of that state, built as ``SawyerXYZEnv.reset`` builds it."""
    import mujoco
    import numpy as np

    for name, qpos in group_of(task).joints:
        joint = env.data.joint(name)
        joint.qpos[:] = qpos
        joint.qvel[:] = 0.0
    mujoco.mj_forward(env.model, env.data)
    obs = np.asarray(env._get_obs(), dtype=np.float64)
    env._prev_obs = obs[:18].copy()  # SawyerXYZEnv.reset: the previous frame is the current one
    obs[18:36] = env._prev_obs
    return obs
