#!/usr/bin/env bash
# The ROS 2 Kilted check's environment (CI runs the node's ROS tests in it; scripts/setup.sh first):
# build/kilted-venv holds Kilted's rclpy, message and rosidl wheels (requirements-kilted.txt) and
# trimodal_ros_interfaces built against them; everything else (torch, open_clip, rosbags, pytest, …)
# and this package come from ./.venv through a .pth line that sys.path reads *after* the venv's own
# site-packages, so every ROS module resolves to Kilted's (test/test_ros_install.py checks it there).
# Rebuilt only when requirements-kilted.txt, these scripts or the interface files changed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "[kilted] run scripts/setup.sh first" >&2; exit 1; }
K=build/kilted-venv
stamp=$K/.trimodal-kilted
want=$( (cat requirements-kilted.txt scripts/setup_kilted.sh scripts/build_interfaces.sh
        find trimodal_ros_interfaces -type f | sort | xargs cat) | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[kilted] building $K (~1 min)"
  rm -rf "$K"
  "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv "$K"
  "$K/bin/python" -m pip install -q -r requirements-kilted.txt
  bash scripts/build_interfaces.sh "$K" kilted-interfaces  # before the .pth: Kilted's generators only
  site=$("$K/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  printf '%s\n%s\n' "$PWD" "$("$PWD/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    > "$site/zz_trimodal_main_venv.pth"
  "$K/bin/python" -c 'import rclpy, torch, trimodal_ros_interfaces.msg, trimodal_ros.ros.vla_node' ||
    { echo "[kilted] $K cannot import the node" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
