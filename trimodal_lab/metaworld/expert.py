"""Meta-World's scripted experts, the demonstrators of every recording."""

from __future__ import annotations

from trimodal_ros.data import language_tasks as LT


def expert_policy(task: str):
    """Meta-World's scripted expert of ``task`` (of its base task for ``<task>@lang``)."""
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[LT.base_task(task)]()
