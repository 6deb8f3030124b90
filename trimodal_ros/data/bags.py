"""Pure helpers over ``rosbags`` (no rclpy): read and write ROS 2 bag folders (the messages they
hold, built from numpy: ``messages``).

Bags are rosbag2 folders (``metadata.yaml`` + one ``.mcap`` file) readable by ``ros2 bag
info/play``. Message classes come from the rosbags ROS 2 Jazzy typestore, so the helpers work
on the same objects ``rosbags`` deserialises. Stamps are integer nanoseconds; ``*_s`` arrays are
float seconds (what ``align.select_latest`` takes).

Anything wrong with a bag on disk (truncated file, bad CDR, missing metadata) is raised as
``BagError`` naming the bag, never returned as partial data. ``read_bags`` skips such bags with
a warning and counts them so one bad file cannot take a whole dataset down.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..decode import stamp_ns
from ..interface import Qos, publisher_qos
from .messages import typestore

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
PARTIAL_PREFIX = ".partial-"  # a bag being written; never read as a finished bag
SIDECAR = "episode.json"  # optional JSON next to the bag files; its "sha256" map is verified
CUSTOM_DATA_KEY = "trimodal_ros.episode"  # the same episode metadata in metadata.yaml's custom_data
SPLITS = ("train", "val", "heldout", "test")  # what an episode's metadata "split" may say


class BagError(RuntimeError):
    """A bag that cannot be read (missing, truncated, corrupt, unexpected content)."""

    def __init__(self, path: PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"bag {self.path}: {reason}")


# --- rosbag2 metadata -------------------------------------------------------------------------

ROS_DISTRO = "jazzy"  # the message definitions and type hashes bags are written with (Stores.ROS2_JAZZY)
RMW_DURATION_INFINITE = (9223372036, 854775807)  # (sec, nsec): what the graph reports for "no limit"


def rosbag2_qos(q: Qos):
    """An ``interface.Qos`` (keep-last, no deadline/lifespan, automatic liveliness: how this
    package's publishers are made) → the rosbags QoS that metadata.yaml lists as an offered profile."""
    from rosbags.interfaces import Qos as RQos
    from rosbags.interfaces import QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    inf = QosTime(*RMW_DURATION_INFINITE)
    return RQos(history=QosHistory.KEEP_LAST, depth=q.depth,
                reliability=QosReliability[q.reliability.upper()], durability=QosDurability[q.durability.upper()],
                deadline=inf, lifespan=inf, liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=inf,
                avoid_ros_namespace_conventions=False)


# rosbag2's own key order (rosbag2_storage yaml.hpp), so the file reads like one `ros2 bag record` wrote
_META_KEYS = ("version", "storage_identifier", "duration", "starting_time", "message_count",
              "topics_with_message_count", "compression_format", "compression_mode", "relative_file_paths",
              "files", "custom_data", "ros_distro")
_TOPIC_KEYS = ("name", "type", "serialization_format", "offered_qos_profiles", "type_description_hash")
_QOS_KEYS = ("history", "depth", "reliability", "durability", "deadline", "lifespan", "liveliness",
             "liveliness_lease_duration", "avoid_ros_namespace_conventions")
_FILE_KEYS = ("path", "starting_time", "duration", "message_count")


def finish_metadata(path: PathLike) -> None:
    """Rewrite the metadata.yaml rosbags wrote as rosbag2 Jazzy writes it: rosbag2's key order, one
    line per value (rosbags folds a long type hash over two lines), ``ros_distro: jazzy`` (rosbags
    puts its own name there)."""
    import yaml

    from ..io import atomic_write_text

    info = bag_info(path)

    def ordered(d, keys):
        return {**{k: d[k] for k in keys if k in d}, **{k: v for k, v in d.items() if k not in keys}}

    def qos(q):
        return ordered({k: ordered(v, ("sec", "nsec")) if isinstance(v, dict) else v for k, v in q.items()},
                       _QOS_KEYS)

    topics = []
    for t in info.get("topics_with_message_count") or []:
        md = dict(t["topic_metadata"])
        md["offered_qos_profiles"] = [qos(q) for q in md.get("offered_qos_profiles") or []]
        topics.append({"topic_metadata": ordered(md, _TOPIC_KEYS), "message_count": t["message_count"]})
    files = [ordered(f, _FILE_KEYS) for f in info.get("files") or []]
    info = ordered(dict(info, topics_with_message_count=topics, files=files, ros_distro=ROS_DISTRO), _META_KEYS)
    text = yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False, width=1 << 16,
                          default_flow_style=False)
    atomic_write_text(Path(path) / "metadata.yaml", text)


# --- writing ----------------------------------------------------------------------------------

class BagWriter:
    """Write a rosbag2 folder with MCAP storage (zstd-compressed chunks, which ``ros2 bag`` reads
    natively) and a rosbag2 Jazzy ``metadata.yaml`` (version 9) listing each topic's offered QoS
    (``interface.publisher_qos``: the instruction latched, the rest reliable). Topics are declared on
    first write. Use as a context manager: an exception inside the block aborts the bag (no
    metadata.yaml, so it never looks finished)."""

    def __init__(self, path: PathLike, compress: bool = True):
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        self.path = Path(path)
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        if compress:
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._conns: Dict[str, object] = {}
        self._open = False

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        self._open = True
        storage = self._writer.storage
        if getattr(storage, "compression", "") == "zstd" and hasattr(storage, "compressor"):
            # zstd frames carry no checksum by default, so a flipped byte would decode to wrong
            # pixels; with the checksum flag any reader's decompressor rejects the chunk instead.
            from functools import partial

            try:
                from compression import zstd  # Python >= 3.14
            except ImportError:
                from backports import zstd
            storage.compressor = partial(zstd.compress,
                                         options={zstd.CompressionParameter.checksum_flag: 1})
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def set_custom_data(self, key: str, value: str) -> None:
        """A string pair in metadata.yaml's ``custom_data`` (``ros2 bag info`` shows it)."""
        self._writer.set_custom_data(key, value)

    def add_topic(self, topic: str, msgtype: str, qos: Optional[Qos] = None) -> None:
        """Declare ``topic``, offered with ``qos`` (default: how this package publishes it)."""
        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(
                topic, msgtype, typestore=typestore(),
                offered_qos_profiles=[rosbag2_qos(qos if qos is not None else publisher_qos(topic))])

    def write(self, topic: str, msg, stamp: Optional[int] = None) -> None:
        """Serialise ``msg`` to CDR on ``topic``; the log time defaults to its header stamp."""
        msgtype = msg.__msgtype__
        self.add_topic(topic, msgtype)
        t = stamp_ns(msg) if stamp is None else int(stamp)
        self._writer.write(self._conns[topic], t, typestore().serialize_cdr(msg, msgtype))

    def close(self) -> None:
        if self._open:
            self._writer.close()
            self._open = False
            finish_metadata(self.path)

    def abort(self) -> None:
        if self._open:
            self._writer.abort()
            self._open = False


@contextmanager
def finished_bag(out: PathLike, name: str):
    """Write a bag folder ``out/name`` atomically: the block gets ``out/.partial-name/name`` to write
    into (the storage files take the final name); on leaving it the folder is moved into place, on an
    exception removed, so a bag folder under ``out`` is always complete."""
    import os
    import shutil

    partial = Path(out) / f"{PARTIAL_PREFIX}{name}"
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
    partial.mkdir(parents=True)
    try:
        yield partial / name
        os.replace(partial / name, Path(out) / name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def write_bag(path: PathLike, messages: Iterable[Tuple[str, object]],
              custom_data: Optional[Dict[str, str]] = None, compress: bool = True) -> Path:
    """Write ``(topic, msg)`` pairs (log time = header stamp; String has none: use
    ``(topic, msg, stamp_ns)``) into a new bag folder ``path``."""
    with BagWriter(path, compress=compress) as w:
        for k, v in (custom_data or {}).items():
            w.set_custom_data(k, v)
        for item in messages:
            w.write(*item)
    return Path(path)


# --- reading ----------------------------------------------------------------------------------

@dataclass
class Bag:
    """A bag read into memory: per topic, the log stamps (int64 ns) and the typed messages."""

    path: Path
    msgtypes: Dict[str, str]
    stamps: Dict[str, np.ndarray]
    messages: Dict[str, list]
    custom_data: Dict[str, str] = field(default_factory=dict)

    def topic(self, name: str) -> Tuple[np.ndarray, list]:
        if name not in self.messages:
            raise BagError(self.path, f"no topic {name!r} (has {sorted(self.messages)})")
        return self.stamps[name], self.messages[name]

    def header_stamps_s(self, name: str) -> np.ndarray:
        """Header stamps (float seconds) of a stamped topic, in log order."""
        _, msgs = self.topic(name)
        return np.array([stamp_ns(m) for m in msgs], dtype=np.int64) / 1e9

    def __len__(self) -> int:
        return sum(len(v) for v in self.messages.values())


def is_bag(path: PathLike) -> bool:
    """A finished bag folder: has metadata.yaml and is not being written."""
    p = Path(path)
    return p.is_dir() and (p / "metadata.yaml").is_file() and not p.name.startswith(PARTIAL_PREFIX)


def find_bags(root: PathLike) -> List[Path]:
    """Finished bag folders under ``root`` (``root`` itself if it is one), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {root}")
    if is_bag(root):
        return [root]
    return sorted(p.parent for p in root.rglob("metadata.yaml")
                  if is_bag(p.parent) and not any(part.startswith(PARTIAL_PREFIX) for part in p.parts))


def file_digests(path: PathLike) -> Dict[str, str]:
    """sha256 of each storage file of a bag folder (what the sidecar's "sha256" records)."""
    from ..io import sha256_file

    return {f.name: sha256_file(f) for f in sorted(Path(path).glob("*.mcap")) + sorted(Path(path).glob("*.db3"))}


def write_sidecar(path: PathLike, meta: Dict) -> Dict:
    """Write ``meta`` as the bag folder's ``episode.json``, with the sha256 of its storage files
    added (into ``meta`` too, which is returned)."""
    import json

    meta["sha256"] = file_digests(path)
    (Path(path) / SIDECAR).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def read_sidecar(path: PathLike) -> Dict:
    """The bag folder's ``episode.json`` as a dict ({} when there is none)."""
    import json

    f = Path(path) / SIDECAR
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise BagError(path, f"{SIDECAR} is unreadable: {e}") from None


def verify_bag(path: PathLike) -> None:
    """Check the storage files against the sidecar's sha256 map (if any); BagError on mismatch."""
    want = read_sidecar(path).get("sha256") or {}
    if not want:
        return
    have = file_digests(path)
    for name, digest in want.items():
        if name not in have:
            raise BagError(path, f"storage file {name} is missing")
        if have[name] != digest:
            raise BagError(path, f"{name} is corrupt (sha256 differs from {SIDECAR}; truncated or "
                                 "modified after recording)")


def read_bag(path: PathLike, topics: Optional[Sequence[str]] = None, deserialize: bool = True,
             verify: bool = True) -> Bag:
    """Read every message of ``topics`` (default: all) from a bag folder or ``.mcap`` file.

    ``deserialize=False`` keeps raw CDR bytes (cheap when only stamps are needed). ``verify``
    checks the sidecar's sha256 first (if the bag has one). Raises ``BagError`` naming the bag
    for anything unreadable.
    """
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise BagError(path, "does not exist")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(path, "no metadata.yaml (not a bag folder, or an unfinished recording)")
    if verify and path.is_dir():
        verify_bag(path)
    ts = typestore()
    try:
        with Reader(path) as reader:
            conns = [c for c in reader.connections if topics is None or c.topic in topics]
            msgtypes = {c.topic: c.msgtype for c in conns}
            for c in conns:
                if c.msgtype not in ts.types:  # a type we do not know: register it from the bag
                    from rosbags.typesys import get_types_from_msg

                    ts.register(get_types_from_msg(c.msgdef.data, c.msgtype))
            stamps: Dict[str, list] = {t: [] for t in msgtypes}
            msgs: Dict[str, list] = {t: [] for t in msgtypes}
            # an empty connection list means "all" to rosbags: only read when something matched
            for conn, t, raw in (reader.messages(connections=conns) if conns else ()):
                stamps[conn.topic].append(t)
                msgs[conn.topic].append(ts.deserialize_cdr(raw, conn.msgtype) if deserialize else bytes(raw))
    except BagError:
        raise
    except Exception as e:  # rosbags raises ReaderError, struct errors, KeyError, ... on bad files
        raise BagError(path, f"unreadable ({type(e).__name__}: {e})") from e
    custom = _custom_data_from_yaml(path) if path.is_dir() else {}
    order = {t: np.argsort(np.asarray(s, dtype=np.int64), kind="stable") for t, s in stamps.items()}
    return Bag(path=path, msgtypes=msgtypes,
               stamps={t: np.asarray(s, dtype=np.int64)[order[t]] for t, s in stamps.items()},
               messages={t: [m[i] for i in order[t]] for t, m in msgs.items()},
               custom_data=custom)


def bag_info(path: PathLike) -> Dict:
    """``rosbag2_bagfile_information`` of a bag folder's metadata.yaml (C YAML loader: fast)."""
    import yaml

    meta = Path(path) / "metadata.yaml"
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        info = yaml.load(meta.read_text(), Loader=loader)["rosbag2_bagfile_information"]
        if not isinstance(info, dict):
            raise TypeError("rosbag2_bagfile_information is not a mapping")
        return info
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise BagError(path, f"metadata.yaml unreadable: {type(e).__name__}: {e}") from None


def topic_message_count(path: PathLike, topic: str) -> int:
    """Messages on ``topic`` according to metadata.yaml (no decoding)."""
    try:
        return sum(int(t["message_count"]) for t in bag_info(path)["topics_with_message_count"]
                   if t["topic_metadata"]["name"] == topic)
    except (KeyError, TypeError, ValueError) as e:
        raise BagError(path, f"metadata.yaml has no valid topic list: {e}") from None


def _custom_data_from_yaml(path: Path) -> Dict[str, str]:
    if not (Path(path) / "metadata.yaml").is_file():
        return {}
    return {str(k): str(v) for k, v in (bag_info(path).get("custom_data") or {}).items()}


@dataclass
class ReadReport:
    bags: List[Bag]
    skipped: List[Tuple[Path, str]]  # (bag, reason) of each unreadable bag

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


def read_bags(root: PathLike, topics: Optional[Sequence[str]] = None) -> ReadReport:
    """Read every finished bag under ``root``; an unreadable one is skipped with a warning and
    listed in ``skipped`` instead of failing the whole folder."""
    bags, skipped = [], []
    for p in find_bags(root):
        try:
            bags.append(read_bag(p, topics))
        except BagError as e:
            warnings.warn(f"skipping {e}", RuntimeWarning, stacklevel=2)
            log.warning("skipping %s", e)
            skipped.append((p, e.reason))
    return ReadReport(bags, skipped)


def bag_size_bytes(path: PathLike) -> int:
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
