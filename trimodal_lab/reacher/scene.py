"""gymnasium's Reacher model (``gymnasium/envs/mujoco/assets/reacher.xml``) as a joint-space robot.

The arm is commanded like a ros2_control arm with a joint_trajectory_controller: each control
period (50 ms) it gets absolute joint-position targets (rad) and a PD loop in the joint torques
tracks them over the period's 5 MuJoCo steps. The task: touch the target (success: fingertip within
``SUCCESS_RADIUS`` of it). A layout seeds the target position and the start joints; layouts are
split by number (``SPLITS``). One overhead camera; the target is drawn larger than gymnasium's so a
96-pixel frame shows it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

TASK = "reach-target"
INSTRUCTION = "touch the red target with the fingertip"
JOINT_NAMES = ("joint0", "joint1")
LINKS = (0.1, 0.11)                 # shoulder→elbow, elbow→fingertip (m), from the model
CONTROL_PERIOD = 0.05               # s: 5 MuJoCo steps of 10 ms
SUCCESS_RADIUS = 0.02               # m
MAX_STEPS = 60                      # 3 s
MAX_JOINT_STEP = 0.2                # rad per control period the scripted expert commands at most
KP, KD = 4.0, 0.15                  # PD in normalised torque (ctrl in [-1, 1], gear 200)
# Layout numbers per split: train 0-999, val 1000-1999, heldout 2000-2999, test 3000-3999.
SPLITS = {"train": 0, "val": 1000, "heldout": 2000, "test": 3000}
CAMERA = "overhead"


def layout_split(layout: int) -> str:
    for name, start in sorted(SPLITS.items(), key=lambda kv: -kv[1]):
        if start <= layout < start + 1000:
            return name
    raise ValueError(f"reacher layout {layout} is outside 0-3999")


def split_layouts(split: str, n: int) -> list:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: one of {sorted(SPLITS)}")
    return [SPLITS[split] + i for i in range(n)]


def layout_state(layout: int) -> Tuple[np.ndarray, np.ndarray]:
    """(target xy, start joints) of ``layout``: the target on a disc sector the arm reaches without
    wrapping its shoulder (|angle| ≤ 135°), the joints near straight."""
    layout_split(layout)
    rng = np.random.default_rng([int(layout), 7])
    r, a = rng.uniform(0.07, 0.19), rng.uniform(-0.75 * math.pi, 0.75 * math.pi)
    q = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-1.0, 1.0)])
    return np.array([r * math.cos(a), r * math.sin(a)]), q


def inverse_kinematics(xy: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Joint angles putting the fingertip at ``xy``: of the two elbow solutions, the nearer to ``near``."""
    l1, l2 = LINKS
    x, y = float(xy[0]), float(xy[1])
    c = np.clip((x * x + y * y - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1.0, 1.0)
    best = None
    for q1 in (math.acos(c), -math.acos(c)):
        q0 = math.atan2(y, x) - math.atan2(l2 * math.sin(q1), l1 + l2 * math.cos(q1))
        q0 += 2 * math.pi * round((near[0] - q0) / (2 * math.pi))  # the shoulder turns without wrapping
        q = np.array([q0, q1])
        if best is None or np.abs(q - near).sum() < np.abs(best - near).sum():
            best = q
    return best


def model_path() -> Path:
    import gymnasium

    return Path(os.path.dirname(gymnasium.__file__)) / "envs" / "mujoco" / "assets" / "reacher.xml"


class ReacherScene:
    """The scene interface ``sim.rollout.EpisodeStepper`` and ``sim_node`` step: ``reset(layout)``,
    ``joints()``, ``views()``, ``step(action) → (obs, info)``, ``time_ns``, ``dt_ns``, ``close()``."""

    task = TASK
    joint_names = list(JOINT_NAMES)
    action_low = np.array([-2 * math.pi, -3.0])
    action_high = np.array([2 * math.pi, 3.0])

    def __init__(self, size: int = 96, max_steps: int = MAX_STEPS, task: str = TASK):
        from trimodal_lab.sim.scenes import load_triton_before_mesa

        load_triton_before_mesa()
        import mujoco

        if task != TASK:
            raise ValueError(f"the reacher has one task, {TASK!r}, not {task!r}")
        self._mj = mujoco
        self.size, self.max_steps = int(size), int(max_steps)
        m = self.model = mujoco.MjModel.from_xml_path(str(model_path()))
        self.data = mujoco.MjData(m)
        self.substeps = int(round(CONTROL_PERIOD / m.opt.timestep))
        self.dt_ns = int(round(self.substeps * m.opt.timestep * 1e9))
        jid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in (*JOINT_NAMES, "target_x", "target_y")]
        self.qadr = np.array([m.jnt_qposadr[i] for i in jid])
        self.vadr = np.array([m.jnt_dofadr[i] for i in jid])
        self.tip = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "fingertip")
        self.target_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "target")
        m.geom_size[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "target")][0] = 0.016
        m.vis.quality.offsamples = 0
        m.vis.global_.offwidth = max(int(m.vis.global_.offwidth), self.size)
        m.vis.global_.offheight = max(int(m.vis.global_.offheight), self.size)
        self.renderer = mujoco.Renderer(m, self.size, self.size)
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.lookat[:] = (0.0, 0.0, 0.0)
        self.camera.distance, self.camera.elevation, self.camera.azimuth = 0.62, -90.0, 90.0
        self.layout, self.target = -1, np.zeros(2)
        self.reset(0)

    def reset(self, layout: int) -> Dict[str, np.ndarray]:
        self.layout = int(layout)
        self.target, q = layout_state(layout)
        self._mj.mj_resetData(self.model, self.data)
        self.data.qpos[self.qadr] = [q[0], q[1], self.target[0], self.target[1]]
        self._mj.mj_forward(self.model, self.data)
        return self.observation()

    @property
    def time_ns(self) -> int:
        return int(round(self.data.time * 1e9))

    def joints(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.data.qpos[self.qadr[:2]].copy(), self.data.qvel[self.vadr[:2]].copy()

    def fingertip(self) -> np.ndarray:
        return self.data.xpos[self.tip][:2].copy()

    def distance(self) -> float:
        return float(np.linalg.norm(self.fingertip() - self.target))

    def observation(self) -> Dict[str, np.ndarray]:
        """What the scripted expert sees: joints, target and fingertip positions."""
        q, v = self.joints()
        return {"q": q, "qd": v, "target": self.target.copy(), "fingertip": self.fingertip()}

    def views(self, names=None) -> Dict[str, np.ndarray]:
        self.renderer.update_scene(self.data, camera=self.camera)
        return {CAMERA: self.renderer.render().copy()}

    def step(self, action: np.ndarray):
        """Track the joint targets ``action`` (rad) for one control period."""
        target = np.clip(np.asarray(action, np.float64).reshape(2), self.action_low, self.action_high)
        for _ in range(self.substeps):
            q, v = self.joints()
            # fix the target joints (the target is a slide-jointed body in the model)
            self.data.qpos[self.qadr[2:]] = self.target
            self.data.qvel[self.vadr[2:]] = 0.0
            self.data.ctrl[:] = np.clip(KP * (target - q) - KD * v, -1.0, 1.0)
            self._mj.mj_step(self.model, self.data)
        d = self.distance()
        return self.observation(), {"success": float(d < SUCCESS_RADIUS), "distance": d}

    def close(self) -> None:
        self.renderer.close()


def as_sent(frame: np.ndarray) -> np.ndarray:
    """``frame`` as vla_node gets it from the spec's jpeg CompressedImage topic (encode, decode)."""
    from types import SimpleNamespace

    from trimodal_ros.decode import compressed_image_from_msg, encode_compressed

    fmt, data = encode_compressed(frame, "jpeg")
    return compressed_image_from_msg(SimpleNamespace(format=fmt, data=data), use_cv_bridge=False)


def expert_action(obs: Dict[str, np.ndarray]) -> np.ndarray:
    """The scripted expert: the IK joints of the target, approached at most ``MAX_JOINT_STEP`` per
    control period from where the arm is (absolute targets, as a trajectory controller takes them)."""
    q = obs["q"]
    goal = inverse_kinematics(obs["target"], q)
    return q + np.clip(goal - q, -MAX_JOINT_STEP, MAX_JOINT_STEP)


class ReacherSim:
    """``sim_node sim:=reacher``: the reacher on the topics of ``config/robots/gym_reacher.yaml``
    (``trimodal_lab.sim.scenes``)."""

    name = "reacher"

    def check(self, p) -> None:
        if p["task"] not in (TASK, "reach-v3"):  # reach-v3: sim_node's default task parameter
            raise ValueError(f"the reacher has one task, {TASK!r}, not {p['task']!r}")

    def robot(self, p):
        from trimodal_ros.robot import load_robot

        return load_robot("gym_reacher")

    def frame_ids(self, p):
        return {CAMERA: "reacher_overhead"}

    def check_layout(self, layout) -> int:
        if isinstance(layout, bool) or not isinstance(layout, (int, np.integer)):
            raise ValueError(f"layout must be an integer, got {layout!r}")
        layout_split(int(layout))  # ValueError outside 0-3999
        return int(layout)

    def scene(self, p):
        return ReacherScene(size=p["size"], max_steps=p["max_steps"])

    @property
    def heldout_layouts(self):
        return split_layouts("heldout", 100)

    def instruction(self, p, rng) -> str:
        return p["instruction"] or INSTRUCTION
