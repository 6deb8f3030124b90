"""The simulated robots ``sim_node`` can serve (parameter ``sim``), string-keyed: each says what the
node publishes (a robot spec), builds its scene on the sim thread, names its held-out layouts and its
instruction, and checks a requested layout. A scene steps like ``sim.rollout.EpisodeStepper``
expects: ``reset(layout)``, ``joints()``, ``views()``, ``step(action) → (obs, info)``, ``time_ns``,
``dt_ns``, ``joint_names``, ``task``, ``action_low`` / ``action_high``, ``close()``."""

from __future__ import annotations

import importlib
from typing import Any, Dict, List

import numpy as np

from trimodal_ros import interface as I
from trimodal_ros.robot import CameraSpec, RobotSpec

# name → "module:class"; imported on use, so serving one simulator never imports another's code
SIMS = {"metaworld": "trimodal_lab.sim.scenes:MetaWorldSim",
        "reacher": "trimodal_lab.reacher.scene:ReacherSim"}


def load_triton_before_mesa() -> None:
    """Mesa's EGL renderer (llvmpipe) and Triton (which torch/torchvision import) each bring an
    LLVM; loading Triton *after* Mesa has loaded its LLVM segfaults the process (seen with
    generate-then-train in one pytest run). Every scene calls this before it builds a renderer:
    loading Triton first is safe, and cheap (~0.3 s)."""
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - no triton (CPU-only torch builds): nothing to order
        pass


class MetaWorldSim:
    """Meta-World's Sawyer: cameras from the ``camera`` parameter (``NAME/image_raw`` each, raw)."""

    name = "metaworld"

    def check(self, p: Dict[str, Any]) -> None:
        from trimodal_ros.data.instructions import task_id

        task_id(p["task"])  # unknown task: fail at start, with the task list

    def robot(self, p: Dict[str, Any]) -> RobotSpec:
        from trimodal_lab.metaworld import camera_spec

        cams = camera_spec(p["camera"])
        return RobotSpec(cameras=[CameraSpec(c, I.image_topic(c)) for c in cams])

    def frame_ids(self, p: Dict[str, Any]) -> Dict[str, str]:
        from trimodal_lab.metaworld import camera_spec

        return camera_spec(p["camera"])

    def check_layout(self, layout) -> int:
        from trimodal_lab.metaworld import check_layout

        return check_layout(layout)

    def scene(self, p: Dict[str, Any]):
        from trimodal_lab.metaworld import SawyerScene

        return SawyerScene(p["task"], camera=p["camera"], size=p["size"], max_steps=p["max_steps"])

    @property
    def heldout_layouts(self) -> List[int]:
        from trimodal_lab.metaworld import HELDOUT_LAYOUTS

        return list(HELDOUT_LAYOUTS)

    def instruction(self, p: Dict[str, Any], rng: np.random.Generator) -> str:
        from trimodal_ros.data.instructions import instruction_for

        return instruction_for(p["task"], rng, p["instructions"])


def get_sim(name: str):
    if name not in SIMS:
        raise ValueError(f"unknown sim {name!r}; known: {sorted(SIMS)}")
    module, cls = SIMS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
