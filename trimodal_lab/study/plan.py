"""The study's plan: cells (a configuration each), seeds, primary contrasts, the test set and the
analysis, read from ``plan.yaml`` and checked on load with clear errors."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from trimodal_ros.schema import ConfigError

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "docs" / "results" / "study"
PLAN = STUDY / "plan.yaml"
KINDS = ("train", "expert", "random_weights")  # a trained policy, or a baseline that trains nothing
RESAMPLE = ("case", "scene")  # the bootstrap's unit
NAME = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")


@dataclass(frozen=True)
class Cell:
    name: str
    kind: str = "train"
    overrides: Dict[str, Any] = field(default_factory=dict)  # "section.key": value on top of the base config
    seeds: Tuple[int, ...] = ()
    rollout_instructions: str = ""  # "" : each wording of the test set; "empty": no words at all
    arm: str = ""                   # "": the plan's test set; else the name of one of its other arms


@dataclass(frozen=True)
class TestSet:
    """What a cell trains on and is rolled out on: the training bags and the test cases."""
    data: str
    tasks: str
    layouts: str                      # a parse_layouts spec
    wordings: Tuple[str, ...]         # instruction conditions, every case in each
    max_steps: int
    size: int
    wording_seed: int
    scored: Tuple[str, ...] = ()      # the wordings pooled into "success" and the contrasts (default: all);
                                      # e.g. not other_task, where success counts the scene's own task

    @property
    def pooled(self) -> Tuple[str, ...]:
        return self.scored or self.wordings


@dataclass(frozen=True)
class Plan:
    base: str                         # the config every cell starts from
    data: str                         # the training bags' folder
    tasks: str                        # the test set: tasks ...
    layouts: str                      # ... layouts (a parse_layouts spec) ...
    wordings: Tuple[str, ...]         # ... and instruction conditions, every case in each
    max_steps: int
    size: int
    wording_seed: int
    cells: Dict[str, Cell]
    primary: Tuple[Tuple[str, str], ...]  # (treatment, reference)
    alpha: float
    effect: float                     # the smallest difference in success that counts as an effect
    bootstrap: int
    secondary: Tuple[Tuple[str, str], ...] = ()  # reported with uncorrected p: what the primaries do not decide
    arms: Dict[str, TestSet] = field(default_factory=dict)  # other test sets (another task set), by name
    resample: str = "scene"           # the bootstrap's unit: "scene" (a first frame, every case starting
                                      # from it: correlated) or "case" (task, layout, wording)
    path: Optional[Path] = None       # the file it was read from: the one that must be committed

    def test(self, cell: str = "") -> TestSet:
        """The training bags and test cases of ``cell``: the plan's own (also with no cell), or its arm's."""
        arm = self.cells[cell].arm if cell else ""
        if arm:
            return self.arms[arm]
        return TestSet(self.data, self.tasks, self.layouts, self.wordings, self.max_steps, self.size,
                       self.wording_seed)

    def runs(self, cells: Sequence[str] = ()) -> List[Tuple[str, int]]:
        """Every (cell, seed), seed-major: the first seed of every cell before any second one, so an
        unfinished study has every contrast's first pair. ``cells``: only the cells matching one of
        these globs ("lang.*"), in the plan's order; a glob that matches no cell is an error."""
        for g in cells:
            if not any(fnmatch.fnmatchcase(c, g) for c in self.cells):
                raise ConfigError(f"no cell of the plan matches '{g}' (cells: {', '.join(self.cells)})")
        chosen = [c for c in self.cells.values() if not cells or any(fnmatch.fnmatchcase(c.name, g) for g in cells)]
        width = max((len(c.seeds) for c in chosen), default=0)
        return [(c.name, c.seeds[i]) for i in range(width) for c in chosen if i < len(c.seeds)]


def _get(d: dict, key: str, kind, where: str):
    if key not in d:
        raise ConfigError(f"{where}: '{key}' is missing")
    v = d[key]
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or isinstance(v, bool):
        raise ConfigError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, got {v!r}")
    return v


def load_plan(path: Path = PLAN) -> Plan:
    """Read and check a plan; a ConfigError says what is wrong."""
    try:
        d = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not a readable YAML file: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping")
    test, analysis = _get(d, "test", dict, str(path)), _get(d, "analysis", dict, str(path))
    cells = {}
    for name, c in _get(d, "cells", dict, str(path)).items():
        where = f"{path}: cell {name}"
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{where}: a cell's name must be lower-case letters, digits and _.+-")
        c = c or {}
        unknown = sorted(set(c) - {"kind", "overrides", "seeds", "rollout_instructions", "about", "arm"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}")
        seeds = tuple(c.get("seeds") or ())
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or \
                len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}: 'seeds' must be a list of distinct integers")
        kind = c.get("kind", "train")
        if kind not in KINDS:
            raise ConfigError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
        ri = c.get("rollout_instructions", "")
        if ri not in ("", "empty"):
            raise ConfigError(f"{where}: rollout_instructions must be empty or absent, got {ri!r}")
        arm = c.get("arm", "")
        if arm and arm not in (d.get("arms") or {}):
            raise ConfigError(f"{where}: arm {arm!r} is not one of the plan's arms {sorted(d.get('arms') or {})}")
        cells[name] = Cell(name, kind, dict(c.get("overrides") or {}), seeds, ri, arm)
    primary = tuple(tuple(p) for p in _get(d, "primary", list, str(path)))
    secondary = tuple(tuple(p) for p in (_get(d, "secondary", list, str(path)) if "secondary" in d else []))
    for kind, pairs in (("primary", primary), ("secondary", secondary)):
        for p in pairs:
            if len(p) != 2 or any(x not in cells for x in p):
                raise ConfigError(f"{path}: {kind} contrast {list(p)} must be [treatment, reference], both cells")
            if cells[p[0]].arm != cells[p[1]].arm:
                raise ConfigError(f"{path}: {kind} contrast {list(p)} pairs cells of different test sets")
    arms = {}
    for arm, a in (_get(d, "arms", dict, str(path)) if "arms" in d else {}).items():
        w = f"{path}: arm {arm}"
        if not isinstance(arm, str) or not NAME.match(arm):
            raise ConfigError(f"{w}: an arm's name must be lower-case letters, digits and _.+-")
        arms[arm] = TestSet(data=_get(a, "data", str, w), tasks=_get(a, "tasks", str, w),
                            layouts=_get(a, "layouts", str, w), wordings=tuple(_get(a, "wordings", list, w)),
                            max_steps=_get(a, "max_steps", int, w), size=_get(a, "size", int, w),
                            wording_seed=_get(a, "wording_seed", int, w),
                            scored=tuple(_get(a, "scored", list, w)) if "scored" in a else ())
        if not set(arms[arm].scored) <= set(arms[arm].wordings):
            raise ConfigError(f"{w}: 'scored' must be some of its wordings {list(arms[arm].wordings)}")
    where = f"{path}: test"
    plan = Plan(base=_get(d, "base", str, str(path)), data=_get(d, "data", str, str(path)),
                tasks=_get(test, "tasks", str, where), layouts=_get(test, "layouts", str, where),
                wordings=tuple(_get(test, "wordings", list, where)), max_steps=_get(test, "max_steps", int, where),
                size=_get(test, "size", int, where), wording_seed=_get(test, "wording_seed", int, where),
                cells=cells, primary=primary,
                alpha=_get(analysis, "alpha", float, f"{path}: analysis"),
                effect=_get(analysis, "effect", float, f"{path}: analysis"),
                bootstrap=_get(analysis, "bootstrap", int, f"{path}: analysis"), secondary=secondary, arms=arms,
                resample=analysis.get("resample", "scene"), path=Path(path))
    if plan.resample not in RESAMPLE:
        raise ConfigError(f"{path}: analysis: resample must be one of {RESAMPLE}, got {plan.resample!r}")
    for c in cells.values():  # every trained cell's configuration must validate now, not at its turn
        if c.kind == "train":
            cell_config(plan, c.name, c.seeds[0])
    return plan


def cell_config(plan: Plan, cell: str, seed: int):
    """The validated Config of ``cell`` with ``seed``: the base config, the cell's overrides, the seed."""
    from trimodal_ros.config import config_from_dict, load_config

    d = load_config(plan.base).to_dict()
    for key, value in plan.cells[cell].overrides.items():
        section, _, name = key.partition(".")
        if section not in d or not name:
            raise ConfigError(f"cell {cell}: override {key!r} must be <section>.<key> of the config")
        d[section][name] = value
    d["train"]["seed"] = int(seed)
    return config_from_dict(d, where=f"cell {cell}")


def resolved_config(plan: Plan, cell: str, seed: int) -> Dict[str, Dict[str, Any]]:
    """The config a run of (``cell``, ``seed``) trains with, as plain data ({} for the cells that
    train nothing): recorded in its result beside its hash."""
    if plan.cells[cell].kind in ("expert", "random_weights"):
        return {}
    return json.loads(json.dumps(cell_config(plan, cell, seed).to_dict(), sort_keys=True, default=str))


def config_sha256(plan: Plan, cell: str, seed: int, resolved: Optional[Dict] = None) -> str:
    """sha256 of the resolved config a run of (``cell``, ``seed``) trains with ("" for the cells that
    train nothing): recorded in its result, so a base config or override changed after the run shows."""
    d = resolved_config(plan, cell, seed) if resolved is None else resolved
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest() if d else ""


def config_diff(recorded: Dict[str, Dict[str, Any]], now: Dict[str, Dict[str, Any]]) -> Dict[str, List[str]]:
    """What differs between the config a run recorded and the one the plan resolves to now, by
    ``section.key``: "changed" (a value differs, or a field is gone), "added" (fields the code gained
    since the run; their value now is shown, the run's code had no such setting)."""
    flat = [{f"{s}.{k}": v for s, sec in d.items() for k, v in (sec.items() if isinstance(sec, dict) else [("", sec)])}
            for d in (recorded, now)]
    old, new = flat
    text = {k: json.dumps(v, sort_keys=True) for k, v in new.items()}  # as the hash sees them: True is not 1
    changed = [f"{k}: {old[k]!r} → {new[k]!r}" if k in new else f"{k}: {old[k]!r} → (gone)"
               for k in sorted(old) if text.get(k) != json.dumps(old[k], sort_keys=True)]
    return {"changed": changed, "added": [f"{k} = {new[k]!r}" for k in sorted(set(new) - set(old))]}


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """``git -C repo *args``, output captured as text."""
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def committed(path: Path = PLAN) -> str:
    """The commit that last changed the plan, if the plan is committed and unmodified; else a
    ConfigError: a test rollout needs a plan that was on record before it."""
    try:
        rel = str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        raise ConfigError(f"{path} is outside the repository: a test rollout needs a committed plan") from None
    if git(REPO, "ls-files", "--error-unmatch", rel).returncode != 0:
        raise ConfigError(f"{rel} is not committed: commit the plan before any test rollout")
    if git(REPO, "diff", "--quiet", "HEAD", "--", rel).returncode != 0:
        raise ConfigError(f"{rel} differs from its committed version: commit the change (an amendment, "
                          f"before the runs it concerns) or restore it")
    return git(REPO, "log", "-1", "--format=%H", "--", rel).stdout.strip()
