"""ros2 launch trimodal_ros vla.launch.py checkpoint:=/path/to/last.pt [lifecycle:=true]

The checkpoint carries everything else (fusion, cameras and topics, joint and action names, control
period: its robot spec). ``params_file:=``, ``remappings:='from:=to;...'``, ``namespace:=`` and
``log_level:=`` do what they do for any ROS node.

Arguments and nodes come from trimodal_ros/ros/params.py, the table ``trimodal-ros up`` and the
node's own parameter declarations read too, so none of them can drift apart. A wrong value fails
the launch with a message naming the argument. ``lifecycle:=true`` starts vla_node managed: drive
it with ``ros2 lifecycle set /vla_node configure`` and ``activate``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from trimodal_ros.ros.params import launch_arguments, node_specs


def _nodes(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in launch_arguments()}
    nodes = []
    for s in node_specs(values):  # ValueError names the argument: launch reports it and stops
        kind = LifecycleNode if s.managed else Node
        nodes.append(kind(package=s.package, executable=s.executable, name=s.name, namespace=s.namespace,
                          parameters=([s.params_file] if s.params_file else []) + [s.parameters],
                          remappings=s.remappings, arguments=["--ros-args", "--log-level", s.log_level],
                          output="screen", emulate_tty=True))
    return nodes


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                              **({"choices": a.choices} if a.choices else {}))
        for a in launch_arguments()
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)])
