"""The Meta-World Sawyer scene a recorder, a rollout or ``sim_node`` steps: one env of one task on a
layout, its cameras rendered with ``mujoco.Renderer`` (shadows, reflections and MSAA off, ~4x faster
than the default; cameras whose up axis points down, all ``corner*``, are rotated 180°)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco / metaworld are imported anywhere

from typing import Dict, Optional, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from trimodal_ros import interface as I  # noqa: E402
from trimodal_ros.data import language_tasks as LT  # noqa: E402
from trimodal_ros.data.instructions import task_id  # noqa: E402
from trimodal_lab.metaworld import language  # noqa: E402
from trimodal_lab.metaworld.layouts import benchmark, layout_task  # noqa: E402


def camera_spec(spec: str) -> Dict[str, str]:
    """``--camera`` → {ROS camera name: MuJoCo camera}, primary first: ``corner`` → {camera: corner};
    ``corner,top_camera=topview`` → {camera: corner, top_camera: topview} (each further camera
    needs a name; camera NAME is recorded and published on ``NAME/image_raw``)."""
    out: Dict[str, str] = {}
    for i, part in enumerate(p.strip() for p in str(spec).split(",")):
        name, _, cam = part.rpartition("=")
        if not name and i == 0:
            name = I.PRIMARY_CAMERA
        if not name or not cam or name in out:
            raise ValueError(f"camera spec {spec!r}: give MUJOCO_CAM[,NAME=MUJOCO_CAM...] with distinct names "
                             f"(e.g. corner,top_camera=topview)")
        out[name] = cam
    return out


# The MuJoCo camera that stands in for a model camera of this name in simulation (rollouts,
# sim_node) when no ``--camera`` spec is given.
SIM_CAMERAS = {I.PRIMARY_CAMERA: "corner", "top_camera": "topview", "wrist_camera": "gripperPOV",
               "side_camera": "corner2"}


def sim_camera_spec(cameras) -> str:
    """The ``camera_spec`` that feeds a model's named ``cameras`` in simulation:
    ["camera", "top_camera"] → "corner,top_camera=topview"."""
    unknown = [c for c in cameras if c not in SIM_CAMERAS]
    if unknown:
        raise ValueError(f"no simulated camera for {unknown}: give --camera NAME=MUJOCO_CAM for each "
                         f"(known: {SIM_CAMERAS})")
    first, *rest = cameras
    return ",".join([SIM_CAMERAS[first] if first == I.PRIMARY_CAMERA else f"{first}={SIM_CAMERAS[first]}"]
                    + [f"{c}={SIM_CAMERAS[c]}" for c in rest])


class SawyerScene:
    """One Meta-World task env with a fast offscreen renderer and named-joint readout. ``task`` is
    a Meta-World v3 name or a language-critical ``<task>@lang`` (``language_tasks``): the same env
    started from its group's shared state (``reset``), its task-specific goal markers hidden.
    ``camera`` is a ``camera_spec``: one MuJoCo camera, or several named ones (``views``)."""

    action_low, action_high = -1.0, 1.0  # Meta-World's action box (end-effector displacement, gripper)

    def __init__(self, task: str, camera: str = "corner", size: int = 224, max_steps: int = 500):
        from trimodal_lab.sim.scenes import load_triton_before_mesa

        load_triton_before_mesa()
        import mujoco

        task_id(task)  # unknown task: clear error before the slow import
        self.cameras = camera_spec(camera)
        self.primary = next(iter(self.cameras))
        self.task, self.camera, self.size = task, camera, int(size)
        self.base_task = LT.base_task(task)
        self.language_critical = LT.is_variant(task)
        self.bench = benchmark(self.base_task)
        self.env = self.bench.train_classes[self.base_task]()
        self.env.max_path_length = max(int(self.env.max_path_length), int(max_steps))
        self.env.set_task(self.bench.train_tasks[0])
        self.env.reset()
        m, d = self.model, self.data = self.env.model, self.env.data
        self.dt_ns = int(round(m.opt.timestep * self.env.frame_skip * 1e9))
        self.cam_ids = {n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, c) for n, c in self.cameras.items()}
        if min(self.cam_ids.values()) < 0:
            names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(m.ncam)]
            raise ValueError(f"camera {camera!r} not in the Meta-World model; cameras: {names}")
        self.cam_id = self.cam_ids[self.primary]
        # joint name -> qpos / dof address, straight from the model
        self.joint_names = list(I.SAWYER_JOINTS)
        ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in self.joint_names]
        if min(ids) < 0:
            raise RuntimeError(f"joints {[n for n, i in zip(self.joint_names, ids) if i < 0]} not in model")
        self.qpos_adr = np.array([m.jnt_qposadr[i] for i in ids])
        self.dof_adr = np.array([m.jnt_dofadr[i] for i in ids])
        if self.language_critical:
            language.prepare_model(task, m)  # this env's own model: hide the group's goal markers
        # fast rendering: no shadows / reflections / MSAA
        m.vis.quality.offsamples = 0
        m.vis.global_.offwidth = max(int(m.vis.global_.offwidth), self.size)
        m.vis.global_.offheight = max(int(m.vis.global_.offheight), self.size)
        self.renderer = mujoco.Renderer(m, self.size, self.size)
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        mujoco.mj_forward(m, d)
        # a camera whose image "up" (its y axis) points down in the world renders upside down
        self.flipped = {n: bool(d.cam_xmat[c].reshape(3, 3)[2, 1] < 0) for n, c in self.cam_ids.items()}
        self.upside_down = self.flipped[self.primary]

    def reset(self, layout: int) -> np.ndarray:
        """Start layout ``layout`` (``layout_task``); for a language-critical task, in its group's
        shared state. Returns the observation the scripted expert takes."""
        self.env.set_task(layout_task(self.task, layout))
        obs, _ = self.env.reset()
        if self.language_critical:
            obs = language.after_reset(self.task, self.env)
        self.obs = obs  # the latest observation: what a scripted expert reads next
        return obs

    @property
    def time_ns(self) -> int:
        return int(round(self.data.time * 1e9))

    def joints(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.data.qpos[self.qpos_adr].copy(), self.data.qvel[self.dof_adr].copy()

    def render_raw(self, cam_id: Optional[int] = None) -> np.ndarray:
        self.renderer.update_scene(self.data, camera=self.cam_id if cam_id is None else cam_id)
        return self.renderer.render()

    def render(self, name: Optional[str] = None) -> np.ndarray:
        """Upright uint8 (size, size, 3) RGB frame of camera ``name`` (default: the primary)."""
        name = self.primary if name is None else name
        img = self.render_raw(self.cam_ids[name])
        return np.ascontiguousarray(img[::-1, ::-1]) if self.flipped[name] else img

    def views(self, names=None) -> Dict[str, np.ndarray]:
        """{camera name: upright frame} of ``names`` (default: every camera), in that order."""
        return {n: self.render(n) for n in (self.cam_ids if names is None else names)}

    def state(self, obs: np.ndarray) -> np.ndarray:
        """(9,) the object, goal and hand positions (``SIM_STATE_NAMES``) in the observation ``obs``."""
        o = np.asarray(obs, np.float64)
        return np.concatenate([o[4:7], o[-3:], o[0:3]])

    def step(self, action: np.ndarray):
        obs, _, _, _, info = self.env.step(action)
        self.obs = obs
        return obs, info

    def close(self) -> None:
        self.renderer.close()
        self.env.close()


