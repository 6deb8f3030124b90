#!/usr/bin/env bash
# Build trimodal_ros_interfaces (ament_cmake + rosidl) into the virtual environment PREFIX with that
# environment's ROS 2 wheels; a ROS install builds it with colcon instead (README). Log: build/<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
V=$(cd "$1" && pwd)
name=${2:-interfaces}
rm -rf "build/$name" && mkdir -p build
cmake -S trimodal_ros_interfaces -B "build/$name" -DCMAKE_INSTALL_PREFIX="$V" -DCMAKE_PREFIX_PATH="$V" \
  -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF >"build/$name.log" 2>&1 &&
  cmake --build "build/$name" -j"$(nproc)" >>"build/$name.log" 2>&1 &&
  cmake --install "build/$name" >>"build/$name.log" 2>&1 ||
  { echo "[setup] building trimodal_ros_interfaces into $V failed; see build/$name.log" >&2; exit 1; }
