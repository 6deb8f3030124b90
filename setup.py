"""ament_python package that also installs with plain pip (``pip install -e .[model,data,test]``)."""

from glob import glob

from setuptools import find_packages, setup

package_name = "trimodal_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={"trimodal_ros.model": ["configs/*.json"], "trimodal_ros.data": ["paraphrases.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml", "LICENSE"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/config/robots", glob("config/robots/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=["numpy", "pyyaml", "tqdm", "setuptools"],
    extras_require={
        # pins: see requirements.txt, the lock used by scripts/setup.sh and CI
        "model": ["torch==2.14.1", "torchvision==0.29.1", "open_clip_torch==3.3.0", "wordllama==0.4.0.post1"],
        "data": ["rosbags==0.11.9", "metaworld==3.1.1", "packaging", "matplotlib"],
        "test": ["pytest"],
    },
    zip_safe=True,
    maintainer="trimodal_ros maintainers",
    maintainer_email="maintainers@trimodal-ros.invalid",
    description="Vision-language-action front end for ROS 2 with a tri-modal CLIP model",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "trimodal-ros = trimodal_ros.cli:main",
            "trimodal-study = trimodal_lab.study.cli:main",
            "vla_node = trimodal_ros.ros.vla_node:main",
            "sim_node = trimodal_lab.ros.sim_node:main",
            "trimodal-reacher = trimodal_lab.reacher.cli:main",
        ],
    },
)
