"""ros2 launch trimodal_ros vla.launch.py fusion:=qformer checkpoint:=/path/to/last.pt [lifecycle:=true]

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
                          parameters=[s.parameters], output="screen", emulate_tty=True))
    return nodes


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                              **({"choices": a.choices} if a.choices else {}))
        for a in launch_arguments()
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)])
