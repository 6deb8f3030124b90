"""The ROS 2 modules the node imports all come from this interpreter's own environment: one
distribution, not a mix. CI runs the node's ROS tests under Kilted's wheels too (scripts/setup_kilted.sh),
whose environment borrows torch and the rest from ./.venv, where Jazzy's wheels also lie."""

import importlib
import importlib.metadata
import os
import sys
from pathlib import Path

import pytest

NODE_ROS_MODULES = ("rclpy", "rcl_interfaces", "builtin_interfaces", "rosgraph_msgs", "sensor_msgs", "std_msgs",
                    "std_srvs", "trajectory_msgs", "diagnostic_msgs", "geometry_msgs", "lifecycle_msgs",
                    "action_msgs", "trimodal_ros_interfaces")
DISTROS = {"jazzy": "7.", "kilted": "9."}  # rclpy's major version in each


@pytest.mark.parametrize("name", NODE_ROS_MODULES)
def test_each_ros_module_lies_in_this_environment(name):
    where = Path(importlib.import_module(name).__file__).resolve()
    assert where.is_relative_to(Path(sys.prefix).resolve()), f"{name} comes from {where}, outside {sys.prefix}"


def test_rclpy_is_the_distribution_ci_asked_for():
    """TRIMODAL_ROS_DISTRO (set by CI for each run) names the distribution whose rclpy must be loaded."""
    distro = os.environ.get("TRIMODAL_ROS_DISTRO", "jazzy")
    import rclpy

    version = importlib.metadata.version(f"ros-{distro}-rclpy")
    assert version.startswith(DISTROS[distro]), (distro, version)
    dist = importlib.metadata.distribution(f"ros-{distro}-rclpy")
    assert Path(dist.locate_file("")).resolve().is_relative_to(Path(sys.prefix).resolve())
    assert Path(rclpy.__file__).resolve().is_relative_to(Path(sys.prefix).resolve())


def test_no_ros_package_the_node_loads_is_borrowed_from_another_environment():
    """Beyond the list above: after importing the node, no loaded top-level package that some other
    prefix installs as a ROS package (ament's share/<name>/package.xml beside its lib/) comes from
    outside this interpreter's environment (the Kilted venv borrows torch and the rest from .venv)."""
    import trimodal_ros.ros.vla_node  # noqa: F401  (everything the node imports)

    prefix, borrowed = Path(sys.prefix).resolve(), []
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if "." in name or not f or Path(f).resolve().is_relative_to(prefix):
            continue
        if any((parent / "share" / name / "package.xml").is_file() for parent in Path(f).resolve().parents):
            borrowed.append(f"{name}: {f}")
    assert not borrowed, borrowed
