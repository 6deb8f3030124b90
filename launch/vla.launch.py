"""ros2 launch trimodal_ros vla.launch.py fusion:=qformer checkpoint:=/path/to/ckpt.pt

Arguments and nodes come from trimodal_ros/ros/launch_args.py, the table ``trimodal-ros up``
reads too, so the launch file and the in-process bringup cannot drift apart.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from trimodal_ros.ros.launch_args import launch_arguments, node_specs


def _nodes(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in launch_arguments()}
    return [
        Node(package=s.package, executable=s.executable, name=s.name, namespace=s.namespace,
             parameters=[s.parameters], output="screen", emulate_tty=True)
        for s in node_specs(values)
    ]


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                              **({"choices": a.choices} if a.choices else {}))
        for a in launch_arguments()
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)])
