"""A recording cut short (the recorder killed, the robot's power lost) stays readable up to its last
write: ``trimodal-ros record`` flushes its mcap chunk and rewrites ``metadata.yaml`` once a second
(``checkpoint``), and ``repair`` closes a cut mcap file where its last complete record ends, with
an mcap footer whose empty summary makes readers scan the records (what ``ros2 bag reindex`` is to
rosbag2). Plain Python on the mcap format: magic, then records of (opcode u8, length u64, body).
"""

from __future__ import annotations

import os
import struct
from io import StringIO
from pathlib import Path
from typing import Dict

MAGIC = b"\x89MCAP0\r\n"
OP_FOOTER, OP_DATA_END = 0x02, 0x0F


def checkpoint(writer) -> None:
    """Make what a rosbags ``Writer`` (mcap, open) has taken so far durable: the pending chunk goes
    to the file, and metadata.yaml lists the connections and counts so far."""
    from rosbags.rosbag2.metadata import dump_qos_v9
    from ruamel.yaml import YAML

    storage = writer.storage
    if storage.chunk.bio.tell():
        storage.close_chunk()
    storage.bio.flush()
    os.fsync(storage.bio.fileno())
    start, count = writer.min_timestamp, sum(writer.counts.values())
    duration = max(0, writer.max_timestamp - start)
    name = storage.path.name
    info = {
        "version": writer.version, "storage_identifier": "mcap", "relative_file_paths": [name],
        "duration": {"nanoseconds": duration}, "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": count,
        "topics_with_message_count": [
            {"topic_metadata": {"name": c.topic, "type": c.msgtype, "serialization_format": c.ext.serialization_format,
                                "offered_qos_profiles": dump_qos_v9(c.ext.offered_qos_profiles),
                                "type_description_hash": c.digest},
             "message_count": writer.counts[c.id]} for c in writer.connections],
        "compression_format": "", "compression_mode": "",
        "files": [{"path": name, "starting_time": {"nanoseconds_since_epoch": start},
                   "duration": {"nanoseconds": duration}, "message_count": count}],
        "custom_data": None, "ros_distro": "jazzy",
    }
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    text = StringIO()
    yaml.dump({"rosbag2_bagfile_information": info}, text)
    tmp = writer.metapath.with_suffix(".yaml.tmp")
    tmp.write_text(text.getvalue())
    tmp.replace(writer.metapath)


def _complete_end(f, size: int) -> int:
    """Offset just past the last complete record of an open mcap file's data section (the header
    included), stopping at a footer, a data-end record or the reserved opcode 0 (a zero-filled
    tail), by seeking from record header to record header."""
    f.seek(0)
    if f.read(len(MAGIC)) != MAGIC:
        raise ValueError("not an mcap file (no magic)")
    pos = len(MAGIC)
    while pos + 9 <= size:
        f.seek(pos)
        op, length = struct.unpack("<BQ", f.read(9))
        if op in (0, OP_FOOTER, OP_DATA_END) or pos + 9 + length > size:
            break
        pos += 9 + length
    return pos


def repair(bag) -> Dict[str, int]:
    """Close the cut mcap file(s) of ``bag`` (a rosbag2 folder) at their last complete record;
    a file that ends properly is left alone. Returns {file: bytes dropped} for those repaired."""
    repaired = {}
    for path in sorted(Path(bag).glob("*.mcap")):
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.seek(max(0, size - len(MAGIC)))
            if size >= 2 * len(MAGIC) and f.read() == MAGIC:
                continue  # it has its footer
            end = _complete_end(f, size)
            footer = bytes([OP_FOOTER]) + struct.pack("<QQQI", 20, 0, 0, 0) + MAGIC  # summary start 0: scan
            f.truncate(end)
            f.seek(end)
            f.write(bytes([OP_DATA_END]) + struct.pack("<QI", 4, 0) + footer)
        repaired[path.name] = size - end
    return repaired
