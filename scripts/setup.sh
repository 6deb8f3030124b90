#!/usr/bin/env bash
# One-time (and idempotent) set-up on a fresh Debian 12 machine with Python 3.11:
# Debian packages for headless MuJoCo rendering, then a virtual environment in ./.venv with the
# pinned requirements and this package in editable mode; where ../shared/ros2-wheels exists (CI),
# also the real ROS 2 command-line tools (requirements-ros2-tools.txt). Re-running it is cheap: it
# reinstalls only when requirements.txt or setup.py (or those wheels and their requirements) changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
need_apt=()
for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libglib2.0-0 cmake g++; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.trimodal-setup
want=$(cat requirements.txt setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  echo "[setup] installing pinned requirements into .venv (first time: ~3-5 min, ~6 GB)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
  echo "[setup] done"
fi

# The package's messages and action (trimodal_ros_interfaces, an ament_cmake package): generated
# with the rosidl wheels and installed into .venv itself, whose lib/ and site-packages the ROS
# wheels already search. A ROS install builds them with colcon instead (README). Rebuilt only when
# the interface files or their build requirements changed.
if_stamp=.venv/.trimodal-interfaces
if_want=$( (cat requirements-interfaces.txt; find trimodal_ros_interfaces -type f | sort | xargs cat) | sha256sum | cut -d' ' -f1)
if [ ! -f "$if_stamp" ] || [ "$(cat "$if_stamp")" != "$if_want" ]; then
  echo "[setup] building trimodal_ros_interfaces into .venv (~20 s)"
  .venv/bin/python -m pip install -q -r requirements-interfaces.txt
  bash scripts/build_interfaces.sh .venv
  echo "$if_want" > "$if_stamp"
fi

# The real ROS 2 command-line tools (launch, ros2cli and its verbs, colcon) for test/test_ros2_cli.py,
# where their wheels lie beside the repository (CI: ../shared/ros2-wheels; TRIMODAL_ROS2_WHEELS names
# another folder). Elsewhere those tests skip; a ROS 2 install has the tools already. Same rule: a
# second run returns at once unless the wheels or requirements-ros2-tools.txt changed.
wheels=${TRIMODAL_ROS2_WHEELS:-../shared/ros2-wheels}
if compgen -G "$wheels/*.whl" >/dev/null; then
  tools_stamp=.venv/.trimodal-ros2-tools
  tools_want=$( (cat requirements-ros2-tools.txt; cd "$wheels" && sha256sum ./*.whl) | sha256sum | cut -d' ' -f1)
  if [ ! -f "$tools_stamp" ] || [ "$(cat "$tools_stamp")" != "$tools_want" ]; then
    echo "[setup] installing the ROS 2 command-line tools from $wheels into .venv"
    .venv/bin/python -m pip install -q -r requirements-ros2-tools.txt
    # not launch_testing(_ros): nothing here uses them, and their pytest plugins fail pytest 9's start-up.
    # Last and --no-deps, so no later resolve reports launch_ros's ament_index_python as missing.
    tool_wheels=()
    for w in "$wheels"/*.whl; do
      case "$(basename "$w")" in launch_testing*) ;; *) tool_wheels+=("$w") ;; esac
    done
    .venv/bin/python -m pip install -q --no-deps "${tool_wheels[@]}"
    echo "$tools_want" > "$tools_stamp"
  fi
fi
