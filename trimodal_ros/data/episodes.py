"""An episode's metadata (``episode.json``, else the bag's metadata.yaml custom_data) and its split,
as every reader of episode bags (the dataset, the LeRobot exporter) sees them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from .bags import CUSTOM_DATA_KEY, BagError, PathLike, _custom_data_from_yaml, read_sidecar
from .bags import SPLITS as LAYOUT_SPLITS


@dataclass
class Episode:
    name: str
    path: Path
    task: str
    task_id: int
    layout: int
    meta: Dict[str, Any]
    instructions: List[str]   # recorded /instruction messages, in stamp order
    n_frames: int             # camera frames in the bag (before dropping)
    n_samples: int            # kept


def episode_meta(path: PathLike, custom_data: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """An episode's metadata: ``episode.json``, else metadata.yaml's custom_data entry, else {}."""
    meta = read_sidecar(path)
    if meta:
        return meta
    cd = _custom_data_from_yaml(Path(path)) if custom_data is None else custom_data
    if CUSTOM_DATA_KEY not in cd:
        return {}
    try:
        return json.loads(cd[CUSTOM_DATA_KEY])
    except ValueError as e:
        raise BagError(path, f"custom_data[{CUSTOM_DATA_KEY!r}] is not JSON: {e}") from None


def episode_split(meta: Dict[str, Any]) -> str:
    """An episode's split: its metadata's ``split`` (train, val, heldout, test), else the
    ``layout_split`` a Meta-World recording names, else "train" (a user's bags without metadata are
    all training data). A layout without a split is refused: which split it belongs to is the
    recorder's to say, and guessing would leak evaluation scenes into training."""
    for key in ("split", "layout_split"):
        if key in meta:
            if meta[key] not in LAYOUT_SPLITS:
                raise ValueError(f"episode {key} {meta[key]!r} is not one of {LAYOUT_SPLITS}")
            return meta[key]
    if "layout" in meta:
        raise ValueError(f"episode metadata names layout {meta['layout']} but no split (nor layout_split): "
                         "record it again, or add \"split\" to its episode.json")
    return "train"
