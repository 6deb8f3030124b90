"""``trimodal-ros record``: what ``ros2 bag record`` does, with rclpy raw subscriptions + rosbags.

Subscriptions take serialized CDR (``raw=True``), which goes into an mcap bag untouched. A topic's
type comes from the table below or from the ROS graph once a publisher appears; its QoS follows
the publishers (best effort if any is, transient-local if all are), as rosbag2 does. The bag is made
durable once a second (data/bag_repair.py): a recorder killed mid-way leaves a bag that `--repair`
closes at its last complete record.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Dict, Iterable, Optional

from .. import interface as I
from ..data.bag_repair import checkpoint, repair
from .replay import message_class

CHECKPOINT_S = 1.0  # seconds between flushes of the bag (chunk and metadata.yaml) while recording

# the vla_node outputs: recorded by default, types known before any publisher is seen
DEFAULT_TOPICS = {t: I.MSG_TYPES[t] for t in (I.EMBEDDING_TOPIC, I.TOKENS_TOPIC, I.ACTION_TOPIC, I.SCORES_TOPIC)}


resolve_name = I.absolute  # a relative name goes under the namespace; an absolute one stays


def offered_qos(node, topic: str) -> list:
    """The QoS profiles ``topic``'s publishers offer (what ``ros2 bag record`` writes into
    metadata.yaml), as rosbags QoS; with no publisher seen yet, how this package publishes it."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    from ..data.bags import rosbag2_qos

    def t(d):
        return QosTime(*divmod(d.nanoseconds, 1_000_000_000))

    return [Qos(history=QosHistory(int(q.history)), depth=int(q.depth), reliability=QosReliability(int(q.reliability)),
                durability=QosDurability(int(q.durability)), deadline=t(q.deadline), lifespan=t(q.lifespan),
                liveliness=QosLiveliness(int(q.liveliness)), liveliness_lease_duration=t(q.liveliness_lease_duration),
                avoid_ros_namespace_conventions=bool(q.avoid_ros_namespace_conventions))
            for q in (i.qos_profile for i in node.get_publishers_info_by_topic(topic))] \
        or [rosbag2_qos(I.publisher_qos(topic))]


def _qos_for(node, topic: str):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    infos = node.get_publishers_info_by_topic(topic)
    best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
    latched = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
    return QoSProfile(depth=100,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def record(out, topics: Optional[Iterable[str]] = None, duration: Optional[float] = None, namespace: str = "",
           context=None, stop: Optional[threading.Event] = None,
           ready: Optional[threading.Event] = None) -> Dict[str, int]:
    """Record ``topics`` (relative names resolve under ``namespace``) into a new mcap bag at ``out``
    until ``duration`` seconds pass or ``stop`` is set; returns messages written per topic.
    ``ready`` is set once the known topics are subscribed."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ..data.bags import finish_metadata
    from ..data.messages import typestore as package_typestore

    out = Path(out)
    stop = stop or threading.Event()
    typestore = package_typestore()
    known = {resolve_name(t, namespace): ty for t, ty in DEFAULT_TOPICS.items()}
    wanted = list(dict.fromkeys(resolve_name(t, namespace) for t in (topics or DEFAULT_TOPICS)))
    node = rclpy.create_node("bag_record", context=context, start_parameter_services=False)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conns, counts, subs = {}, {t: 0 for t in wanted}, []

    def subscribe(topic: str, type_name: str) -> None:
        if type_name not in typestore.types:
            node.get_logger().warning(f"{topic}: type {type_name} is unknown to rosbags' typestore, not recorded")
            conns[topic] = None
            return
        conn = writer.add_connection(topic, type_name, typestore=typestore,
                                     offered_qos_profiles=offered_qos(node, topic))
        conns[topic] = conn

        def on_raw(raw: bytes, conn=conn, topic=topic) -> None:
            writer.write(conn, time.time_ns(), raw)  # receive time, as rosbag2 stamps messages
            counts[topic] += 1

        subs.append(node.create_subscription(message_class(type_name), topic, on_raw, _qos_for(node, topic),
                                             raw=True))

    def discover() -> None:
        graph = dict(node.get_topic_names_and_types())
        for t in wanted:
            if t in conns:
                continue
            if t in graph and graph[t]:
                subscribe(t, graph[t][0])
            elif t in known:
                subscribe(t, known[t])

    end = None if duration is None else time.monotonic() + duration
    try:
        discover()
        if ready is not None:
            ready.set()
        last = durable = time.monotonic()
        while not stop.is_set() and (end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.05)
            if time.monotonic() - last > 0.5 and len(conns) < len(wanted):
                discover()  # topics whose publisher appeared since
                last = time.monotonic()
            if time.monotonic() - durable > CHECKPOINT_S:  # a kill loses at most this much
                checkpoint(writer)
                durable = time.monotonic()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        writer.close()
        finish_metadata(out)  # rosbag2 Jazzy's metadata.yaml
    return counts


def register(sub) -> None:
    p = sub.add_parser("record", help="record topics to an mcap bag (ros2 bag record)")
    p.add_argument("--out", required=True, help="the bag folder to write (with --repair: the cut bag to close)")
    p.add_argument("--repair", action="store_true", help="close a bag whose recorder was killed, at its last "
                   "complete record (ros2 bag reindex)")
    p.add_argument("--topics", nargs="*", default=None, help="default: the vla_node outputs")
    p.add_argument("--duration", type=float, default=None, help="seconds; default until Ctrl-C")
    p.set_defaults(func=cli_record)


def cli_record(args) -> int:
    if args.repair:
        cut = repair(args.out)
        print(f"{args.out}: " + (", ".join(f"{f} closed ({n} bytes of a cut record dropped)" for f, n in cut.items())
                                 or "nothing to repair"))
        return 0
    import rclpy

    rclpy.init()
    try:
        counts = record(args.out, topics=args.topics or None, duration=args.duration)
        print(f"wrote {args.out}: " + ", ".join(f"{t}: {n}" for t, n in counts.items()))
    except KeyboardInterrupt:
        pass
    except Exception as e:  # an existing output folder, a bad topic name
        print(f"trimodal-ros record: {type(e).__name__}: {e}")
        return 1
    finally:
        rclpy.try_shutdown()
    return 0
