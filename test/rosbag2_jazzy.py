"""What ``ros2 bag info`` / ``ros2 bag play`` of ROS 2 Jazzy require of a bag folder's
``metadata.yaml`` (there is no rosbag2 here to ask): the rules of rosbag2_storage's ``yaml.hpp``
(``BagMetadata``, ``TopicInformation``, ``TopicMetadata``, ``FileInformation`` decode) and
``qos.cpp`` (``Rosbag2QoS`` decode) for metadata version 9, the version Jazzy writes, plus the
values rosbag2 itself would write for an mcap bag (storage-level chunk compression leaves
``compression_*`` empty).

``check_metadata(bag)`` returns the parsed ``rosbag2_bagfile_information`` after asserting each
rule; a message names the field.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

KEYS = {"version", "storage_identifier", "duration", "starting_time", "message_count", "topics_with_message_count",
        "compression_format", "compression_mode", "relative_file_paths", "files", "custom_data", "ros_distro"}
TOPIC_KEYS = {"name", "type", "serialization_format", "offered_qos_profiles", "type_description_hash"}
QOS_KEYS = {"history", "depth", "reliability", "durability", "deadline", "lifespan", "liveliness",
            "liveliness_lease_duration", "avoid_ros_namespace_conventions"}
# version 9 writes policies as rmw's strings (rmw_qos_*_policy_to_str, "unknown" for UNKNOWN)
HISTORY = {"system_default", "keep_last", "keep_all", "unknown"}
RELIABILITY = {"system_default", "reliable", "best_effort", "unknown", "best_available"}
DURABILITY = {"system_default", "transient_local", "volatile", "unknown", "best_available"}
LIVELINESS = {"system_default", "automatic", "manual_by_topic", "unknown", "best_available"}
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*/msg/[A-Z][A-Za-z0-9]*$")
RIHS01 = re.compile(r"^RIHS01_[0-9a-f]{64}$")


def _uint(value, what: str) -> int:
    assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, \
        f"{what} must be an unsigned int: {value!r}"
    return value


def _time(node, key: str, what: str) -> int:
    assert isinstance(node, dict) and set(node) == {key}, f"{what} must be {{{key}: N}}: {node!r}"
    return _uint(node[key], f"{what}.{key}")


def check_qos(q: dict, what: str) -> None:
    assert isinstance(q, dict) and set(q) == QOS_KEYS, f"{what}: QoS keys {sorted(q) if isinstance(q, dict) else q!r}"
    assert q["history"] in HISTORY, f"{what}.history {q['history']!r}"
    _uint(q["depth"], f"{what}.depth")
    assert q["reliability"] in RELIABILITY, f"{what}.reliability {q['reliability']!r}"
    assert q["durability"] in DURABILITY, f"{what}.durability {q['durability']!r}"
    assert q["liveliness"] in LIVELINESS, f"{what}.liveliness {q['liveliness']!r}"
    for k in ("deadline", "lifespan", "liveliness_lease_duration"):
        assert isinstance(q[k], dict) and set(q[k]) == {"sec", "nsec"}, f"{what}.{k} must be {{sec, nsec}}: {q[k]!r}"
        _uint(q[k]["sec"], f"{what}.{k}.sec")
        _uint(q[k]["nsec"], f"{what}.{k}.nsec")
    assert isinstance(q["avoid_ros_namespace_conventions"], bool), f"{what}.avoid_ros_namespace_conventions"


def check_metadata(bag) -> dict:
    bag = Path(bag)
    doc = yaml.safe_load((bag / "metadata.yaml").read_text())
    assert isinstance(doc, dict) and set(doc) == {"rosbag2_bagfile_information"}, "one top-level key"
    info = doc["rosbag2_bagfile_information"]
    assert isinstance(info, dict) and set(info) == KEYS, f"keys {sorted(info)}"
    assert info["version"] == 9, "Jazzy writes metadata version 9"
    assert info["storage_identifier"] == "mcap"
    duration = _time(info["duration"], "nanoseconds", "duration")
    start = _time(info["starting_time"], "nanoseconds_since_epoch", "starting_time")
    total = _uint(info["message_count"], "message_count")

    topics = info["topics_with_message_count"]
    assert isinstance(topics, list) and topics, "topics_with_message_count must be a non-empty list"
    names = set()
    for i, t in enumerate(topics):
        what = f"topics_with_message_count[{i}]"
        assert isinstance(t, dict) and set(t) == {"topic_metadata", "message_count"}, what
        _uint(t["message_count"], f"{what}.message_count")
        md = t["topic_metadata"]
        assert isinstance(md, dict) and set(md) == TOPIC_KEYS, f"{what}.topic_metadata keys {sorted(md)}"
        assert isinstance(md["name"], str) and md["name"].startswith("/"), f"{what}.name {md['name']!r}"
        assert md["name"] not in names, f"{what}: topic {md['name']} listed twice"
        names.add(md["name"])
        assert TYPE_NAME.match(md["type"]), f"{what}.type {md['type']!r}"
        assert md["serialization_format"] == "cdr", f"{what}.serialization_format"
        # version >= 9: a YAML list of profiles (before: one YAML string holding the list)
        assert isinstance(md["offered_qos_profiles"], list) and md["offered_qos_profiles"], \
            f"{what}.offered_qos_profiles must be a non-empty list"
        for j, q in enumerate(md["offered_qos_profiles"]):
            check_qos(q, f"{md['name']}.offered_qos_profiles[{j}]")
        assert isinstance(md["type_description_hash"], str) and RIHS01.match(md["type_description_hash"]), \
            f"{what}.type_description_hash {md['type_description_hash']!r}"
    assert sum(t["message_count"] for t in topics) == total, "message_count is the sum over topics"

    assert info["compression_mode"] in ("", "file", "message") and isinstance(info["compression_format"], str)
    assert (info["compression_mode"] == "") == (info["compression_format"] == ""), \
        "compression mode and format go together"
    paths = info["relative_file_paths"]
    assert isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths)
    for p in paths:
        assert (bag / p).is_file(), f"relative_file_paths: {p} is not in {bag}"
    files = info["files"]
    assert isinstance(files, list) and [f["path"] for f in files] == paths, "files[].path follow relative_file_paths"
    for f in files:
        assert set(f) == {"path", "starting_time", "duration", "message_count"}, f"files keys {sorted(f)}"
        f_start = _time(f["starting_time"], "nanoseconds_since_epoch", "files[].starting_time")
        f_dur = _time(f["duration"], "nanoseconds", "files[].duration")
        assert start <= f_start and f_start + f_dur <= start + duration, "a file lies inside the bag's time span"
    assert sum(_uint(f["message_count"], "files[].message_count") for f in files) == total
    cd = info["custom_data"]
    assert cd is None or (isinstance(cd, dict)
                          and all(isinstance(k, str) and isinstance(v, str) for k, v in cd.items())), \
        "custom_data is a map of strings (or ~)"
    assert info["ros_distro"] == "jazzy"
    return info


def qos_of(info: dict) -> dict:
    """topic → its offered QoS profiles."""
    return {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
            for t in info["topics_with_message_count"]}
