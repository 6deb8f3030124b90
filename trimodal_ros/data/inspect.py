"""``trimodal-ros inspect BAG``: what a rosbag2 folder (mcap or sqlite3) recorded on any robot holds,
and what of it this package can use. Per topic: type, messages, rate, the longest gap, whether the
type is known (the package's typestore, or the definition the bag itself carries, as mcap does) and
whether it can be replayed here (its message package installed); then which topics the training
reader (``BagDataset``) takes. A type nobody knows is a note, never an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from .. import interface as I

def dataset_topics(robot=None) -> Dict[str, str]:
    """{absolute topic: what BagDataset reads from it} for a robot spec (default: the Meta-World Sawyer)."""
    from ..robot import RobotSpec

    robot = robot or RobotSpec()
    uses = {I.absolute(c.topic): f"camera {c.name!r} frames, {c.msgtype} (required)" for c in robot.cameras}
    uses.update({I.absolute(t): "joint states (required)" for t in robot.joint_topics})
    if robot.action.source == "topic":
        uses[I.absolute(robot.action.topic)] = f"the demonstrated action, {robot.action.type} (required)"
    uses[I.absolute(robot.instruction_topic)] = "the instruction (else the episode metadata's or the spec's text)"
    uses[I.absolute(I.SIM_STATE_TOPIC)] = "a simulator's privileged state (train.state_weight only)"
    return uses


def inspect_bag(path, robot=None) -> Dict[str, object]:
    """The figures of the module docstring, as a dict (BagError for a bag that cannot be opened)."""
    from rosbags.rosbag2 import Reader

    from ..ros.replay import message_class
    from .bags import BagError
    from .messages import typestore

    store = typestore()
    path = Path(path)
    try:
        reader = Reader(path)
        reader.open()
    except Exception as e:  # rosbags raises its own errors for missing or corrupt files
        raise BagError(path, f"cannot be opened: {e}") from None
    topics: Dict[str, dict] = {}
    try:
        times: Dict[str, List[int]] = {c.topic: [] for c in reader.connections}
        for conn, stamp, _ in reader.messages():
            times[conn.topic].append(stamp)
        for c in reader.connections:
            t = np.asarray(sorted(times[c.topic]), dtype=np.int64)
            span = (t[-1] - t[0]) / 1e9 if len(t) > 1 else 0.0
            try:
                message_class(c.msgtype)
                replay = "yes"
            except ValueError as e:
                replay = f"no: {e}"
            topics[c.topic] = {
                "type": c.msgtype, "messages": int(len(t)),
                "rate_hz": round((len(t) - 1) / span, 2) if span > 0 else None,
                "max_gap_s": round(float(np.diff(t).max()) / 1e9, 3) if len(t) > 1 else None,
                "type_known": "package" if c.msgtype in store.types else (
                    "from the bag" if c.msgdef and c.msgdef.data else "no"),
                "replay": replay}
        duration = max(0.0, (reader.end_time - reader.start_time) / 1e9) if reader.message_count else 0.0
    finally:
        reader.close()
    uses = {t: ("found" if t in topics else "missing") + f": {what}" for t, what in dataset_topics(robot).items()}
    unused = [t for t in topics if t not in uses]
    if unused:
        uses.update({t: "not read (dropped)" for t in unused})
    return {"bag": str(path), "duration_s": round(duration, 3), "topics": topics, "dataset": uses}


def format_report(r: Dict[str, object]) -> str:
    rows = [("topic", "type", "messages", "Hz", "max gap s", "type known", "replay")]
    for name, t in r["topics"].items():
        rows.append((name, t["type"], str(t["messages"]), "-" if t["rate_hz"] is None else f"{t['rate_hz']:g}",
                     "-" if t["max_gap_s"] is None else f"{t['max_gap_s']:g}", t["type_known"],
                     t["replay"] if t["replay"] == "yes" else "no"))
    w = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"{r['bag']}: {r['duration_s']} s, {len(r['topics'])} topics"]
    lines += ["  ".join(c.ljust(w[i]) for i, c in enumerate(row)) for row in rows]
    notes = [f"  {n}: {t['replay'][4:]}" for n, t in r["topics"].items() if t["replay"] != "yes"]
    if notes:
        lines += ["not replayable here (replay skips them):"] + notes
    lines += ["what training reads (BagDataset, per the robot spec):"]
    lines += [f"  {t}: {u}" for t, u in r["dataset"].items()]
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser("inspect", help="what a rosbag2 folder holds and what of it this package can use")
    p.add_argument("bag", help="a rosbag2 folder (mcap or sqlite3)")
    p.add_argument("--robot", default="", help="robot spec YAML or name (config/robots) the bag was recorded "
                                              "with (default: the Meta-World Sawyer)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cli_inspect)


def cli_inspect(args) -> int:
    import json

    from ..robot import load_robot
    from ..schema import ConfigError
    from .bags import BagError

    try:
        r = inspect_bag(args.bag, load_robot(args.robot) if args.robot else None)
    except (BagError, ConfigError) as e:
        print(f"trimodal-ros inspect: {e}")
        return 1
    print(json.dumps(r, indent=1) if args.json else format_report(r))
    return 0
