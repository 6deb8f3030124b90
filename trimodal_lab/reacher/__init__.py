"""A second robot, nobody here wrote: gymnasium's MuJoCo Reacher (a planar two-joint arm) driven in
joint space, recorded as rosbag2 bags in its own topic layout (``config/robots/gym_reacher.yaml``),
with a scripted expert. Nothing on this path imports Meta-World."""
