"""``trimodal-ros replay``: what ``ros2 bag play`` does, with rosbags + rclpy (no rosbag2 here).

The bag's CDR bytes go out unchanged (``Publisher.publish(bytes)`` → ``rcl_publish_serialized_message``),
so nothing is deserialised; only the publisher needs the message class, imported from its type name.
Messages keep their recorded spacing (divided by ``rate``). Each topic is published with the QoS
its recorded publishers offered (the bag's ``offered_qos_profiles``): the instruction latched, as
the live system has it.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

LATCHED_TOPICS = ("instruction", "tf_static")  # topic basenames published transient-local


_TYPE_NAME = re.compile(r"^([a-z][a-z0-9_]*)/(?:msg/)?([A-Z][A-Za-z0-9]*)$")  # ROS 2 naming rules


def message_class(type_name: str):
    """'sensor_msgs/msg/Image' → sensor_msgs.msg.Image, for a type name a bag *claims*: only a
    ``<package>/msg/<Type>`` with ROS identifier names, from an installed package that is a
    generated message package (it ships rosidl type support), is imported; nothing else is."""
    m = _TYPE_NAME.match(str(type_name))
    if not m:
        raise ValueError(f"not a ROS 2 message type name: {type_name!r} (expected <package>/msg/<Type>)")
    pkg, name = m.groups()
    spec = importlib.util.find_spec(pkg)  # locates without running the package's code
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"message type {type_name}: package {pkg!r} is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    if not any(root.glob(f"{pkg}_s__rosidl_typesupport_*")) or not (root / "msg").is_dir():
        raise ValueError(f"message type {type_name}: {pkg!r} is not a ROS 2 message package (no rosidl type support)")
    try:
        cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"message type {type_name} is not installed: {e}") from None
    if not hasattr(cls, "_TYPE_SUPPORT") and type(cls).__name__ != f"Metaclass_{name}":
        raise ValueError(f"{type_name} is not a ROS 2 message class")
    return cls


def resolve_topic(topic: str, namespace: str = "") -> str:
    """Put a bag topic under ``namespace`` ('/camera/image_raw', 'r1' → '/r1/camera/image_raw')."""
    ns = namespace.strip("/")
    return f"/{ns}/{topic.lstrip('/')}" if ns else "/" + topic.lstrip("/")


def topic_qos(topic: str, offered=()):
    """The QoS to republish ``topic`` with. As ``ros2 bag play``: the publishers' recorded offers
    (``offered``: the bag's ``offered_qos_profiles``) when they agree on reliability and durability;
    without them (an older bag), transient-local for the instruction and /tf_static, else reliable."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    pairs = {(q.reliability.name, q.durability.name) for q in offered}
    if len(pairs) == 1 and next(iter(pairs)) in {(r, d) for r in ("RELIABLE", "BEST_EFFORT")
                                                 for d in ("VOLATILE", "TRANSIENT_LOCAL")}:
        rel, dur = next(iter(pairs))
        latched = dur == "TRANSIENT_LOCAL"
        return QoSProfile(depth=1 if latched else 100, reliability=ReliabilityPolicy[rel],
                          durability=DurabilityPolicy[dur])
    if topic.rstrip("/").rsplit("/", 1)[-1] in LATCHED_TOPICS:
        return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def replay(bag, rate: float = 1.0, loop: bool = False, namespace: str = "", topics: Optional[Iterable[str]] = None,
           delay: float = 0.5, clock: bool = False, context=None, stop: Optional[threading.Event] = None,
           on_message: Optional[Callable[[str, int], None]] = None,
           require_subscribers: Iterable[str] = (), subscriber_timeout: float = 30.0,
           remap: Optional[Dict[str, str]] = None, start_offset: float = 0.0, clock_hz: float = 0.0) -> int:
    """Publish ``bag``'s messages with their recorded timing; returns how many were published.

    ``delay`` seconds pass between creating the publishers and the first message, so DDS discovery
    can match subscribers (``ros2 bag play --delay``); otherwise early volatile messages are lost.
    ``require_subscribers`` (resolved topic names) are waited for, up to ``subscriber_timeout`` s,
    until each has a matched subscription: a live evaluation must not lose the first frames to DDS
    discovery. ``clock`` also publishes /clock with the bag time (for ``use_sim_time``): with each
    message, or with ``clock_hz`` > 0 at that rate in between (``ros2 bag play --clock HZ``). ``topics``
    selects bag topics, ``remap`` renames them (bag topic → published name, after ``namespace``),
    ``start_offset`` skips the bag's first seconds. ``stop`` ends a ``loop`` (or any replay) early.
    Needs ``rclpy.init()`` to have been called for ``context``.
    """
    import rclpy
    from rosgraph_msgs.msg import Clock

    if rate <= 0 or start_offset < 0 or clock_hz < 0:
        raise ValueError(f"need rate > 0, start_offset >= 0 and clock_hz >= 0, got {rate}, {start_offset}, {clock_hz}")
    remap = {"/" + k.lstrip("/"): v for k, v in (remap or {}).items()}
    bag = Path(bag)
    stop = stop or threading.Event()
    reader = _open(bag)  # BagError for a missing, truncated or corrupt bag, before anything is published
    node = rclpy.create_node("bag_replay", context=context, start_parameter_services=False)
    published = 0
    try:
        with reader:
            wanted = None if topics is None else {"/" + t.lstrip("/") for t in topics}
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if not conns:
                raise ValueError(f"{bag}: no messages on {sorted(wanted) if wanted else 'any topic'}")
            pubs, skipped = {}, {}
            name_of = {c.topic: remap.get(c.topic) or resolve_topic(c.topic, namespace) for c in conns}
            for c in conns:
                name = name_of[c.topic]
                if name not in pubs and c.topic not in skipped:
                    offered = getattr(c.ext, "offered_qos_profiles", None) or ()
                    try:
                        pubs[name] = node.create_publisher(message_class(c.msgtype), name, topic_qos(name, offered))
                    except ValueError as e:  # a vendor type this machine does not have: the rest still plays
                        skipped[c.topic] = str(e)
                        node.get_logger().warning(f"{bag}: {c.topic} not replayed: {e}")
            conns = [c for c in conns if c.topic not in skipped]
            if not conns:
                raise ValueError(f"{bag}: no topic whose type is installed here ({skipped})")
            by_id = {c.id: name_of[c.topic] for c in conns}
            skip_before = reader.start_time + int(start_offset * 1e9)
            clock_pub = node.create_publisher(Clock, "/clock", 10) if clock else None
            from ..utils import wait_for

            required = [pubs[t] for t in require_subscribers if t in pubs]
            if required and not wait_for(lambda: all(p.get_subscription_count() > 0 for p in required),
                                         subscriber_timeout):
                raise RuntimeError(f"no subscriber matched {list(require_subscribers)} within {subscriber_timeout} s")
            if stop.wait(delay):
                return 0
            while True:
                t_bag0, t_wall0 = None, None
                for conn, stamp_ns, raw in _messages(reader, conns, bag):
                    if stamp_ns < skip_before:
                        continue
                    if t_bag0 is None:
                        t_bag0, t_wall0 = stamp_ns, time.monotonic()
                    due = t_wall0 + (stamp_ns - t_bag0) * 1e-9 / rate
                    while clock_pub is not None and clock_hz > 0 and due - time.monotonic() > 1.0 / clock_hz:
                        if stop.wait(1.0 / clock_hz):  # the clock ticks on between sparse messages
                            return published
                        # never past the next message's time (a late wake-up on a loaded machine would
                        # put the clock ahead, and that message's own /clock then steps it back)
                        now_ns = t_bag0 + int((time.monotonic() - t_wall0) * rate * 1e9)
                        _publish_clock(clock_pub, min(stamp_ns, now_ns))
                    if stop.wait(max(0.0, due - time.monotonic())):
                        return published
                    if clock_pub is not None:
                        _publish_clock(clock_pub, stamp_ns)
                    topic = by_id[conn.id]
                    pubs[topic].publish(bytes(raw))
                    published += 1
                    if on_message is not None:
                        on_message(topic, stamp_ns)
                if not loop or stop.is_set():
                    return published
    finally:
        node.destroy_node()


def _publish_clock(pub, stamp_ns: int) -> None:
    from rosgraph_msgs.msg import Clock

    c = Clock()
    c.clock.sec, c.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    pub.publish(c)


def _open(bag: Path):
    """A rosbags Reader of ``bag``, opened; its sidecar checksums verified when it has them."""
    from rosbags.rosbag2 import Reader

    from ..data.bags import BagError, verify_bag

    if not bag.exists():
        raise BagError(bag, "does not exist")
    if bag.is_dir():
        verify_bag(bag)
    try:
        reader = Reader(bag)
        reader.open()
        reader.close()
        return Reader(bag)
    except Exception as e:  # rosbags raises ReaderError, KeyError, struct errors, ... on bad files
        raise BagError(bag, f"unreadable ({type(e).__name__}: {e})") from None


def _messages(reader, conns, bag: Path):
    """``reader.messages`` with a storage error mid-bag turned into a BagError naming the bag."""
    from ..data.bags import BagError

    it, n = reader.messages(connections=conns), 0
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 - truncated chunk, bad CRC, ...
            raise BagError(bag, f"corrupt after {n} messages ({type(e).__name__}: {e})") from None
        n += 1
        yield item


def register(sub) -> None:
    p = sub.add_parser("replay", help="publish a bag's messages with their original timing (ros2 bag play)")
    p.add_argument("--bag", required=True)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--namespace", default="")
    p.add_argument("--clock", nargs="?", type=float, const=0.0, default=None, metavar="HZ",
                   help="also publish /clock with the bag's time (use_sim_time): with each message, or at HZ")
    p.add_argument("--topics", nargs="+", default=None, help="only these bag topics")
    p.add_argument("--remap", action="append", default=[], metavar="FROM:=TO", help="publish a bag topic under "
                                                                                    "another name (repeatable)")
    p.add_argument("--start-offset", type=float, default=0.0, help="skip the bag's first seconds")
    p.set_defaults(func=cli_replay)


def cli_replay(args) -> int:
    import rclpy

    from ..data.bags import BagError

    remap = {}
    for r in args.remap:
        src, sep, dst = r.partition(":=")
        if not sep or not src or not dst:
            print(f"trimodal-ros replay: --remap {r!r} is not FROM:=TO")
            return 2
        remap[src] = dst
    rclpy.init()
    try:
        n = replay(args.bag, rate=args.rate, loop=args.loop, namespace=getattr(args, "namespace", "") or "",
                   clock=args.clock is not None, clock_hz=args.clock or 0.0, topics=args.topics, remap=remap,
                   start_offset=args.start_offset)
        print(f"published {n} messages from {args.bag}")
    except KeyboardInterrupt:
        pass
    except (ValueError, BagError) as e:
        print(f"trimodal-ros replay: {e}")
        return 1
    finally:
        rclpy.try_shutdown()
    return 0
