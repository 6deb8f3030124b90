"""Scripted reacher demonstrations as rosbag2 bags in the layout ``config/robots/gym_reacher.yaml``
describes (the topics come from the spec itself): per control period the joint states, the
jpeg-compressed overhead frame and the expert's JointTrajectory command, all stamped with the sim
time of the frame; the instruction once, latched; and, for state supervision in training, the
simulator's privileged state on ``/sim/state`` (the target as the "object" and "goal", the fingertip
as the "hand": ``interface.SIM_STATE_NAMES``; never served). ``episode.json`` holds task, layout, split
and outcome. Each bag is written under ``.partial-NAME`` and renamed when complete; a rerun keeps
the finished ones (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List

from tqdm import tqdm

from trimodal_ros.data.bags import BagWriter, finished_bag, write_sidecar
from trimodal_ros.data.messages import compressed_image_msg, joint_state_msg, joint_trajectory_msg, string_msg
from trimodal_ros.interface import SIM_STATE_NAMES, SIM_STATE_TOPIC, absolute
from trimodal_ros.robot import RobotSpec, load_robot

from . import scene as S

ROBOT = "gym_reacher"


def episode_name(layout: int) -> str:
    return f"reacher-{S.layout_split(layout)}-{layout:04d}"


def record_episode(scene: S.ReacherScene, robot: RobotSpec, layout: int, out: Path) -> Dict:
    with finished_bag(out, episode_name(layout)) as bag_dir:
        cam, act = robot.cameras[0], robot.action
        obs = scene.reset(layout)
        t0 = 1_000_000_000 + scene.time_ns  # bags start at 1 s: a zero stamp reads as "unset"
        success, steps = False, 0
        with BagWriter(bag_dir) as w:
            w.write(absolute(robot.instruction_topic), string_msg(S.INSTRUCTION), t0)
            for i in range(scene.max_steps):
                t = t0 + i * scene.dt_ns
                pos, vel = scene.joints()
                command = S.expert_action(obs)
                w.write(absolute(robot.joint_topics[0]), joint_state_msg(scene.joint_names, pos, vel, t))
                w.write(absolute(cam.topic), compressed_image_msg(scene.views()[S.CAMERA], t, "reacher_overhead"))
                w.write(absolute(act.topic), joint_trajectory_msg(act.names, [command], robot.control_period, t))
                (tx, ty), (fx, fy) = obs["target"], obs["fingertip"]
                w.write(absolute(SIM_STATE_TOPIC), joint_state_msg(
                    SIM_STATE_NAMES, [tx, ty, 0, tx, ty, 0, fx, fy, 0], None, t, "world"))
                obs, info = scene.step(command)
                steps = i + 1
                if info["success"]:
                    success = True
                    break
        meta = {"task": S.TASK, "layout": layout, "split": S.layout_split(layout), "instruction": S.INSTRUCTION,
                "success": success, "length": steps, "robot": robot.name, "image_size": [scene.size, scene.size],
                "control_period_ns": scene.dt_ns, "generator": "trimodal-reacher generate"}
        return write_sidecar(bag_dir, meta)


def generate(out, layouts: Iterable[int], size: int = 96, progress: bool = True) -> List[Dict]:
    """Record one expert episode per layout under ``out`` (kept ones are not redone)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    robot = load_robot(ROBOT)
    todo = [lay for lay in layouts if not (out / episode_name(lay) / "episode.json").is_file()]
    done = []
    scene = S.ReacherScene(size=size)
    try:
        for lay in tqdm(todo, desc="reacher bags", disable=not progress, dynamic_ncols=True):
            done.append(record_episode(scene, robot, lay, out))
    finally:
        scene.close()
    return done
