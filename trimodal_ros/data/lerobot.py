"""Bags ↔ LeRobotDataset v3.0, the folder format LeRobot, openpi and rosetta users share.

``export_bags`` writes what training reads from bags (through a robot spec) as a LeRobot dataset:
per frame the cameras as ``observation.images.<camera>`` (PNG in the parquet, the format's
``image`` dtype), the joint positions as ``observation.state`` and velocities as
``observation.velocity`` (named by the spec's joints), the action in force as ``action`` (the
spec's action names), the instruction as the frame's ``task``; episodes ordered train, val,
held-out, test, which ``info.json``'s ``splits`` records as ranges. ``import_dataset`` writes one
rosbag2 bag per LeRobot episode in a robot spec's topic layout (cameras raw or compressed, one
JointState topic, the instruction latched, the action on the spec's command topic), with its task
and split in ``episode.json``, so ``trimodal-ros train --robot`` takes it like any recording.

Written with pyarrow alone (the ``lerobot`` / ``lerobot-dataset`` wheels pin torch and
huggingface_hub versions this package's pins exclude); ``test/test_lerobot.py`` checks both
directions against the format's own library where it is installed beside (``LEROBOT_PYTHONPATH``).
Video (``video`` dtype, mp4) features are not read here: such a dataset is refused with the reason.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
SPLIT_ORDER = ("train", "val", "heldout", "test")
IMAGE_KEY = "observation.images."


class LeRobotError(ValueError):
    """A dataset folder this module cannot read (with the reason), or a request it cannot do."""


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _decode(value) -> np.ndarray:
    from PIL import Image

    data = value.get("bytes") if isinstance(value, dict) else value
    if data is None and isinstance(value, dict) and value.get("path"):
        raise LeRobotError(f"image stored as a file path ({value['path']}), not in the parquet: not supported")
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _stats(x: np.ndarray) -> Dict[str, list]:
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
            "std": x.std(0).tolist(), "count": [int(len(x))]}


def _image_stats(frames: np.ndarray) -> Dict[str, list]:
    f = frames.reshape(-1, 3).astype(np.float64) / 255.0  # per channel, shape (3, 1, 1) as LeRobot keeps them
    per = lambda v: [[[float(c)]] for c in v]  # noqa: E731
    return {"min": per(f.min(0)), "max": per(f.max(0)), "mean": per(f.mean(0)), "std": per(f.std(0)),
            "count": [int(len(frames))]}


def _write_table(columns: Dict[str, object], path: Path, schema=None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), path)


def _write_tasks(tasks: List[str], path: Path) -> None:
    """meta/tasks.parquet as pandas writes LeRobot's DataFrame: the task strings are its index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pandas_meta = {"index_columns": ["task"], "column_indexes": [],
                   "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                                "numpy_type": "int64", "metadata": None},
                               {"name": "task", "field_name": "task", "pandas_type": "unicode",
                                "numpy_type": "object", "metadata": None}],
                   "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0"}
    t = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    t = t.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, path)


def export_bags(bags, out, robot, split: str = "all", robot_type: Optional[str] = None,
                max_input_age: float = 0.1) -> Dict[str, object]:
    """The bags under ``bags`` (read through ``robot``) → a LeRobot v3.0 dataset folder ``out``
    (written beside and renamed into place: never half a dataset). Returns the info.json dict."""
    import pyarrow as pa

    from .dataset import BagDataset
    from .episodes import episode_split

    out = Path(out)
    if out.exists():
        raise LeRobotError(f"{out} exists: export writes a new dataset folder")
    ds = BagDataset(bags, chunk=1, split=split, robot=robot, verbose=False, max_input_age=max_input_age)
    if not len(ds):
        raise LeRobotError(f"no frames to export under {bags} (split {split})")
    fps = 1.0 / robot.control_period
    if abs(fps - round(fps)) > 1e-6:
        raise LeRobotError(f"LeRobot needs an integer fps; the control period {robot.control_period} s gives {fps}")
    fps = int(round(fps))
    j, a, cams = len(robot.joint_names), robot.action.dim, robot.camera_names
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    order = sorted(range(len(ds.episodes)), key=lambda e: (rank[episode_split(ds.episodes[e].meta)], e))
    per_episode = [np.flatnonzero(ds._episode == e) for e in range(len(ds.episodes))]
    tasks: List[str] = []
    cols: Dict[str, list] = {k: [] for k in ("observation.state", "observation.velocity", "action", "timestamp",
                                             "frame_index", "episode_index", "index", "task_index")}
    images: Dict[str, list] = {c: [] for c in cams}
    episodes: Dict[str, list] = {k: [] for k in ("episode_index", "tasks", "length", "data/chunk_index",
                                                 "data/file_index", "dataset_from_index", "dataset_to_index",
                                                 "meta/episodes/chunk_index", "meta/episodes/file_index")}
    splits: Dict[str, List[int]] = {}
    for new, e in enumerate(order):
        rows, ep = per_episode[e], ds.episodes[e]
        start = len(cols["index"])
        ep_tasks = []
        for k, i in enumerate(rows):
            s = ds[int(i)]
            text = s["instruction"] or ep.task
            if text not in tasks:
                tasks.append(text)
            if text not in ep_tasks:
                ep_tasks.append(text)
            prop = np.asarray(s["proprio"], np.float32)
            cols["observation.state"].append(prop[:j].tolist())
            cols["observation.velocity"].append((prop[j:2 * j] if prop.size >= 2 * j else np.zeros(j)).tolist())
            cols["action"].append(np.asarray(s["actions"][0], np.float32).tolist())
            cols["timestamp"].append(k / fps)
            cols["frame_index"].append(k)
            cols["episode_index"].append(new)
            cols["index"].append(start + k)
            cols["task_index"].append(tasks.index(text))
            views = s["image"] if len(cams) > 1 else s["image"][None]
            for c, v in zip(cams, views):
                images[c].append(v)
        sp = episode_split(ep.meta)
        splits.setdefault(sp, []).append(new)
        for k, v in (("episode_index", new), ("tasks", ep_tasks), ("length", len(rows)), ("data/chunk_index", 0),
                     ("data/file_index", 0), ("dataset_from_index", start), ("dataset_to_index", start + len(rows)),
                     ("meta/episodes/chunk_index", 0), ("meta/episodes/file_index", 0)):
            episodes[k].append(v)
    h, w = images[cams[0]][0].shape[:2]
    features = {
        **{f"{IMAGE_KEY}{c}": {"dtype": "image", "shape": [h, w, 3], "names": ["height", "width", "channels"]}
           for c in cams},
        "observation.state": {"dtype": "float32", "shape": [j], "names": list(robot.joint_names)},
        "observation.velocity": {"dtype": "float32", "shape": [j], "names": list(robot.joint_names)},
        "action": {"dtype": "float32", "shape": [a], "names": list(robot.action.names)},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        **{k: {"dtype": "int64", "shape": [1], "names": None}
           for k in ("frame_index", "episode_index", "index", "task_index")}}
    tmp = out.with_name(f".partial-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    img_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    data = {**{f"{IMAGE_KEY}{c}": pa.array([{"bytes": _png(f), "path": None} for f in images[c]], img_type)
               for c in cams},
            "observation.state": pa.array(cols["observation.state"], pa.list_(pa.float32(), j)),
            "observation.velocity": pa.array(cols["observation.velocity"], pa.list_(pa.float32(), j)),
            "action": pa.array(cols["action"], pa.list_(pa.float32(), a)),
            "timestamp": pa.array(cols["timestamp"], pa.float32()),
            **{k: pa.array(cols[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")}}
    _write_table(data, tmp / DATA_PATH.format(chunk_index=0, file_index=0))
    _write_table(episodes, tmp / EPISODES_PATH.format(chunk_index=0, file_index=0))
    _write_tasks(tasks, tmp / "meta" / "tasks.parquet")
    stats = {f"{IMAGE_KEY}{c}": _image_stats(np.stack(images[c])) for c in cams}
    stats.update({k: _stats(np.asarray(cols[k], np.float64)) for k in ("observation.state", "observation.velocity",
                                                                      "action")})
    n = len(cols["index"])
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type or robot.name,
            "total_episodes": len(order), "total_frames": n, "total_tasks": len(tasks), "chunks_size": 1000,
            "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
            "splits": {s: f"{min(v)}:{max(v) + 1}" for s, v in splits.items()},
            "data_path": DATA_PATH, "video_path": None, "features": features,
            "trimodal_ros": {"robot": robot.to_dict(), "source": str(bags)}}
    (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=4) + "\n")
    (tmp / "meta" / "stats.json").write_text(json.dumps(stats, indent=4) + "\n")
    os.replace(tmp, out)
    return info


# --- LeRobot → bags ------------------------------------------------------------------------------

def read_dataset(root) -> Dict[str, object]:
    """A LeRobot v3.0 folder → {"info", "tasks" (task_index → text), "episodes" (list of dicts),
    "frames" (column → list, every data file in order)}; LeRobotError says what is missing."""
    import pyarrow.parquet as pq

    root = Path(root)
    try:
        info = json.loads((root / "meta" / "info.json").read_text())
    except (OSError, ValueError) as e:
        raise LeRobotError(f"{root}: no readable meta/info.json ({e})") from None
    if not str(info.get("codebase_version", "")).startswith("v3"):
        raise LeRobotError(f"{root}: codebase_version {info.get('codebase_version')!r}; this reads v3.x "
                           f"(LeRobot converts older ones: convert_dataset_v21_to_v30)")
    videos = [k for k, f in info["features"].items() if f.get("dtype") == "video"]
    if videos:
        raise LeRobotError(f"{root}: video features {videos} (mp4) are not read here; export the dataset with "
                           f"image features (LeRobotDataset.create(..., use_videos=False))")
    t = pq.read_table(root / "meta" / "tasks.parquet")
    meta = json.loads((t.schema.metadata or {}).get(b"pandas", b"{}") or b"{}")
    idx = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
    text_col = idx[0] if idx else ("task" if "task" in t.column_names else None)
    if text_col is None:
        raise LeRobotError(f"{root}: meta/tasks.parquet has no task text column ({t.column_names})")
    tasks = dict(zip(t.column("task_index").to_pylist(), t.column(text_col).to_pylist()))
    ep_files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    data_files = sorted((root / "data").glob("*/*.parquet"))
    if not ep_files or not data_files:
        raise LeRobotError(f"{root}: no meta/episodes or data parquet files")
    episodes = [r for f in ep_files for r in pq.read_table(f, columns=None).to_pylist()]
    frames: Dict[str, list] = {}
    for f in data_files:
        for k, v in pq.read_table(f).to_pydict().items():
            frames.setdefault(k, []).extend(v)
    return {"info": info, "tasks": tasks, "episodes": episodes, "frames": frames}


def _split_of(info: dict, episode: int) -> str:
    for name, rng in (info.get("splits") or {}).items():
        lo, _, hi = str(rng).partition(":")
        if lo.isdigit() and hi.isdigit() and int(lo) <= episode < int(hi):
            return name if name in SPLIT_ORDER else "train"
    return "train"


def import_dataset(root, out, robot, state_key: str = "observation.state",
                   camera_keys: Optional[Sequence[str]] = None) -> List[Path]:
    """One rosbag2 bag per episode of the LeRobot dataset ``root``, under ``out``, in ``robot``'s topic
    layout (``camera_keys``: the dataset's image features for the spec's cameras, in order; default
    ``observation.images.<camera name>``). Bags already there are kept (resumable)."""
    from ..interface import absolute
    from .bags import BagWriter, finished_bag, write_sidecar
    from .messages import compressed_image_msg, image_msg, joint_state_msg, string_msg

    d = read_dataset(root)
    info, frames = d["info"], d["frames"]
    fps = float(info["fps"])
    keys = list(camera_keys) if camera_keys else [f"{IMAGE_KEY}{c}" for c in robot.camera_names]
    missing = [k for k in keys + [state_key, "action"] if k not in info["features"]]
    if missing:
        raise LeRobotError(f"{root}: no feature(s) {missing}; it has {sorted(info['features'])}")
    if len(keys) != len(robot.cameras):
        raise LeRobotError(f"{len(keys)} camera keys for the spec's {len(robot.cameras)} cameras")
    for key, want in ((state_key, len(robot.joint_names)), ("action", robot.action.dim)):
        shape = info["features"][key]["shape"]
        if list(shape) != [want]:
            raise LeRobotError(f"{key} has shape {shape}; the robot spec {robot.name!r} needs [{want}]")
    act = robot.action
    if act.source == "topic" and not act.type.endswith(("JointState", "JointTrajectory", "Float64MultiArray")):
        raise LeRobotError(f"importing into a {act.type} action topic is not supported")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ep_col = np.asarray(frames["episode_index"])
    written = []
    for ep in d["episodes"]:
        e = int(ep["episode_index"])
        name = f"lerobot-{e:06d}"
        if (out / name / "episode.json").is_file():
            continue
        rows = np.flatnonzero(ep_col == e)
        rows = rows[np.argsort(np.asarray(frames["frame_index"])[rows], kind="stable")]
        with finished_bag(out, name) as tmp:
            t0 = 1_000_000_000
            texts = []
            with BagWriter(tmp) as w:
                for k, r in enumerate(rows):
                    t = t0 + int(round(float(frames["timestamp"][r]) * 1e9)) if "timestamp" in frames else \
                        t0 + int(round(k / fps * 1e9))
                    text = d["tasks"].get(frames["task_index"][r], "")
                    if text not in texts:
                        texts.append(text)
                        w.write(absolute(robot.instruction_topic), string_msg(text), t)
                    pos = np.asarray(frames[state_key][r], np.float64)
                    vel = np.asarray(frames["observation.velocity"][r], np.float64) \
                        if "observation.velocity" in frames else None
                    w.write(absolute(robot.joint_topics[0]), joint_state_msg(robot.joint_names, pos, vel, t))
                    for cam, key in zip(robot.cameras, keys):
                        rgb = _decode(frames[key][r])
                        msg = compressed_image_msg(rgb, t, cam.name) if cam.compressed else image_msg(rgb, t, cam.name)
                        w.write(absolute(cam.topic), msg)
                    if act.source == "topic":
                        w.write(absolute(act.topic), _action_msg(act, np.asarray(frames["action"][r], np.float64), t,
                                                                1.0 / fps), t)
            meta = {"task": texts[0] if texts else "", "instruction": texts[0] if texts else "",
                    "split": _split_of(info, e), "length": int(len(rows)), "lerobot_episode": e,
                    "lerobot_dataset": str(root), "robot": robot.name}
            write_sidecar(tmp, meta)
        written.append(out / name)
    return written


def _action_msg(act, values: np.ndarray, stamp: int, period: float):
    from .messages import joint_state_msg, joint_trajectory_msg, msg_class

    if act.type.endswith("JointTrajectory"):
        return joint_trajectory_msg(act.names, [values], period, stamp)
    if act.type.endswith("Float64MultiArray"):
        return msg_class("std_msgs/msg/Float64MultiArray")(
            layout=msg_class("std_msgs/msg/MultiArrayLayout")(dim=[], data_offset=0), data=values)
    return joint_state_msg(act.names, values, None, stamp)


def register(sub) -> None:
    p = sub.add_parser("lerobot", help="bags ↔ LeRobotDataset v3.0 folders")
    s = p.add_subparsers(dest="direction", required=True)
    e = s.add_parser("export", help="bags (read through a robot spec) → a LeRobot v3.0 dataset folder")
    e.add_argument("--bags", required=True)
    e.add_argument("--out", required=True, help="the dataset folder to create")
    e.add_argument("--split", default="all", choices=["all", *SPLIT_ORDER])
    i = s.add_parser("import", help="a LeRobot v3.0 dataset folder (image features) → bags in a robot spec's layout")
    i.add_argument("--dataset", required=True)
    i.add_argument("--out", required=True, help="folder for the bags")
    i.add_argument("--cameras", default="", help="the dataset's image features for the spec's cameras, in order "
                                                  "(comma-separated; default observation.images.<camera>)")
    for q in (e, i):
        q.add_argument("--robot", default="metaworld_sawyer", help="robot spec YAML or name (config/robots)")
    p.set_defaults(func=cli_lerobot)


def cli_lerobot(args) -> int:
    from ..robot import load_robot
    from ..schema import ConfigError
    from .bags import BagError

    try:
        robot = load_robot(args.robot)
        if args.direction == "export":
            info = export_bags(args.bags, args.out, robot, args.split)
            print(f"wrote {args.out}: {info['total_episodes']} episodes, {info['total_frames']} frames at "
                  f"{info['fps']} fps, {info['total_tasks']} tasks, splits {info['splits']}")
        else:
            cams = [c for c in args.cameras.split(",") if c] or None
            bags = import_dataset(args.dataset, args.out, robot, camera_keys=cams)
            print(f"wrote {len(bags)} bags under {args.out} in the {robot.name} layout")
    except (LeRobotError, ConfigError, BagError) as e:
        print(f"trimodal-ros lerobot: {e}")
        return 1
    return 0
