"""One run of the study: train a cell with a seed (resuming), roll it out once on the test set
(resuming task by task), write its result file. Any process may start any run; a lock file in the
run's work folder keeps two from doing the same one at once (on several machines: where they share
that folder, or each takes its own runs of the list)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from trimodal_ros.io import atomic_write_json, sha256_file

from .plan import REPO, STUDY, Plan, cell_config, committed, config_sha256, git, load_plan, resolved_config

WORK = REPO / "runs" / "study"


def run_name(cell: str, seed: int) -> str:
    return f"{cell}_s{seed}"


def result_path(cell: str, seed: int) -> Path:
    return STUDY / "runs" / f"{run_name(cell, seed)}.json"


def missing(plan: Plan, cells: Sequence[str] = ()) -> List[tuple]:
    """The runs without a result file; ``cells``: only those whose cell matches one of these globs."""
    return [(c, s) for c, s in plan.runs(cells) if not result_path(c, s).exists()]


class RunRefused(RuntimeError):
    """A run the study's rules do not allow (not in the plan, done already, locked, plan not committed)."""


class RunDone(RunRefused):
    """A run whose result exists, or once existed in the repository's history."""


class RunLocked(RunRefused):
    """A run another live process is doing."""


class _Lock:
    """``work/lock`` made with O_EXCL; one left by a dead process of this host is taken over. The
    check-and-take is serialised by an flock on ``work/lock.guard``, so two processes that find the
    same stale lock cannot both take it (one would remove the other's fresh lock)."""

    def __init__(self, work: Path):
        self.path = work / "lock"

    def __enter__(self):
        me = f"{socket.gethostname()} {os.getpid()}"
        with open(self.path.with_name("lock.guard"), "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)  # released when the guard closes
            for _ in range(3):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                    os.write(fd, me.encode())
                    os.close(fd)
                    return self
                except FileExistsError:
                    holder = _holder(self.path)
                    if holder is None:  # its holder let go meanwhile
                        continue
                    host, pid, live = holder
                    if live:
                        raise RunLocked(f"{self.path.parent.name} is being run by {host} pid {pid}") from None
                    self.path.unlink(missing_ok=True)  # left by a process that died
        raise RunRefused(f"cannot lock {self.path}")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return pid > 0
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _holder(lock: Path) -> Optional[tuple]:
    """(host, pid, alive) of a lock file; None if there is none. A lock of another host counts as
    alive (its process cannot be asked); an empty or garbled one of this host as dead (its writer
    died between creating and writing it: takers hold the guard, so none sees one being written)."""
    try:
        host, _, pid = lock.read_text().strip().partition(" ")
    except FileNotFoundError:
        return None
    if host and host != socket.gethostname():
        return host, pid, True
    return host, pid, pid.isdigit() and _alive(int(pid))


def dataset_digest(root) -> str:
    """sha256 over every finished bag under ``root``: its folder's relative path, the sha256 of each
    of its files (storage, metadata.yaml, the sidecar with its labels and split): two runs with the
    same digest trained on the same bytes. Reads every byte (about a second for 350 MB)."""
    from trimodal_ros.data.bags import find_bags

    root = Path(root)
    entries = [[str(b.relative_to(root)) if b != root else ".",
                {f.name: sha256_file(f) for f in sorted(b.iterdir()) if f.is_file()}] for b in find_bags(root)]
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _commit() -> str:
    return git(REPO, "rev-parse", "HEAD").stdout.strip()


def _ever_committed(path: Path) -> bool:
    """Whether ``path`` is in the repository's history (on any branch), even if deleted here since:
    deleting a result file must not open a second test rollout."""
    try:
        rel = str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return False
    try:
        out = git(REPO, "log", "--all", "--format=%h", "-1", "--", rel)
    except OSError as e:
        raise RunRefused(f"cannot read the repository's history to check {rel} was never rolled out: {e}") from None
    if out.returncode != 0:  # unknown is not "never": refuse rather than risk a second rollout
        raise RunRefused(f"cannot read the repository's history to check {rel} was never rolled out: "
                         f"{out.stderr.strip()[:200]}")
    return bool(out.stdout.strip())


def _refuse_done(cell: str, seed: int, out: Path) -> None:
    if out.exists():
        raise RunDone(f"{run_name(cell, seed)} was rolled out on the test set already ({out})")
    if _ever_committed(out):
        raise RunDone(f"{run_name(cell, seed)} was rolled out on the test set already: {out} is in the "
                         "repository's history (restore it with git checkout)")


def run(cell: str, seed: int, plan: Optional[Plan] = None, device: str = "auto", progress: bool = True) -> Path:
    """Do run (``cell``, ``seed``) of the committed plan; return its result file."""
    plan = plan or load_plan()
    if plan.path is None:
        raise RunRefused("a test rollout needs a plan read from a committed file (load_plan), not one built in code")
    plan_commit = committed(plan.path)
    if cell not in plan.cells or seed not in plan.cells[cell].seeds:
        raise RunRefused(f"{run_name(cell, seed)} is not in the committed plan (cells and seeds of plan.yaml)")
    out = result_path(cell, seed)
    _refuse_done(cell, seed, out)
    work = WORK / run_name(cell, seed)
    work.mkdir(parents=True, exist_ok=True)
    with _Lock(work):
        _refuse_done(cell, seed, out)  # finished by the process that held the lock just before
        t0 = time.time()
        config = resolved_config(plan, cell, seed)
        data_now = dataset_digest(plan.test(cell).data) if config else ""
        begun = _provenance(work, config, data_now)
        policy, train_minutes, ckpt = _policy(plan, cell, seed, work, device, progress)
        offline = _offline(plan, cell, policy, work)
        episodes = _test_rollout(plan, cell, seed, policy, work, ckpt, progress)
        result = {"cell": cell, "seed": seed, "commit": begun["commit"], "finished_commit": _commit(),
                  "plan_commit": plan_commit, "kind": plan.cells[cell].kind,
                  "config_sha256": config_sha256(plan, cell, seed, begun["config"]), "config": begun["config"],
                  "data_files_sha256": begun["data"],
                  **({"data_files_sha256_at_finish": data_now} if data_now != begun["data"] else {}),
                  "checkpoint_sha256": ckpt, "train_minutes": train_minutes,
                  "minutes": round((time.time() - t0) / 60, 1), "host": socket.gethostname(),
                  "torch_threads": _threads(),
                  "offline": offline, "episodes": episodes}
        return atomic_write_json(out, result)


def _provenance(work: Path, config: Dict, data: str) -> Dict:
    """What a run began with (commit, resolved config, the training bags' digest), written to
    ``work/provenance.json`` by the process that began it (from ``config`` and ``data``, this
    process's) and read back by every one that resumes it, so the result describes the code and data
    that trained, not only the process that finished."""
    path = work / "provenance.json"
    if path.exists():
        return json.loads(path.read_text())
    begun = {"commit": _commit(), "config": config, "data": data}
    atomic_write_json(path, begun)
    return begun


def _policy(plan: Plan, cell: str, seed: int, work: Path, device: str, progress: bool):
    """(policy, training minutes, checkpoint sha256 or "") of a run, training (resumed) if needed."""
    from trimodal_ros.policy import Policy
    from trimodal_ros.train.trainer import train
    from trimodal_ros.utils import pick_device

    c = plan.cells[cell]
    if c.kind == "expert":
        return None, 0.0, ""
    if c.kind == "random_weights":
        return Policy.load(config=plan.base, seed=seed, device=pick_device(device)), 0.0, ""
    cfg = cell_config(plan, cell, seed)
    last = work / "last.pt"
    minutes_file = work / "train_minutes.json"
    done = json.loads(minutes_file.read_text()) if minutes_file.exists() else {"minutes": 0.0, "finished": False}
    if not done["finished"]:  # the trainer sums its time over the resumes in the checkpoint
        result = train(cfg, plan.test(cell).data, str(work), resume=True, device=device, progress=progress)
        known = result.seconds is not None  # None: resumed from a checkpoint older than the field
        done = {"minutes": round(result.seconds / 60, 1) if known else None, "finished": True}
        atomic_write_json(minutes_file, done)
    return Policy.load(str(last), device=pick_device(device)), done["minutes"], sha256_file(last)


def _offline(plan: Plan, cell: str, policy, work: Path) -> Dict:
    """Did a shared space form? Task-level cross-modal retrieval R@1 (and token accuracy) on the
    held-out layouts of the training bags, never the test set; kept in ``work/offline.json``. A
    failure is recorded, not raised: it must not cost the run."""
    from trimodal_ros.data.dataset import BagDataset
    from trimodal_lab.eval.evaluate import evaluate

    cache = work / "offline.json"
    if cache.exists():
        return json.loads(cache.read_text())
    if policy is None:  # the scripted expert has no embeddings
        return {}
    data = plan.test(cell).data
    try:
        cfg = policy.config
        ds = BagDataset.from_config(data, cfg.model, robot=cfg.robot, split="heldout", verbose=False)
        if len(ds) == 0:
            out = {"skipped": f"no held-out layouts in {data}"}
        else:
            ck = None if policy.random_weights else str(work / "last.pt")
            r = evaluate(ck, None, None, dataset=ds, policy=policy, progress=False)
            out = {"split": "heldout", "samples": r["retrieval_samples"], "action": r["retrieval_action"],
                   "R@1": {k: round(v["R@1"], 4) for k, v in r["retrieval"].items()},
                   "chance_R@1": round(r["retrieval_chance"]["R@1"], 4),
                   "token_accuracy": round(r["token_accuracy"], 4)}
    except Exception as e:  # noqa: BLE001 - recorded in the result instead
        out = {"error": f"{type(e).__name__}: {e}"[:300]}
    atomic_write_json(cache, out)
    return out


def _test_rollout(plan: Plan, cell: str, seed: int, policy, work: Path, ckpt: str, progress: bool) -> List[Dict]:
    """Every test case in every wording, task by task; each finished task is kept in
    ``work/test_progress.json`` so an interruption loses at most one task's episodes. A checkpoint
    other than the one the rollout started with is refused (that would be a second rollout). Wordings
    that would repeat the same rollouts (no words at all; the expert, which reads none) are rolled out
    once and counted under each."""
    from trimodal_ros.data.instructions import resolve_tasks
    from trimodal_lab.metaworld import parse_layouts
    from trimodal_lab.sim.rollout import RolloutSpec, episode_plan, expert_success_on, rollout_in_process

    test = plan.test(cell)
    tasks, layouts = resolve_tasks(test.tasks), parse_layouts(test.layouts)
    prog_path = work / "test_progress.json"
    prog = json.loads(prog_path.read_text()) if prog_path.exists() else {"checkpoint_sha256": ckpt, "done": {}}
    if prog["checkpoint_sha256"] != ckpt:
        raise RunRefused(f"{work.name}: the test rollout began with another checkpoint; a second one is not allowed")
    scenes: dict = {}
    rolled: Dict[tuple, str] = {}  # what one rollout answers for every wording it would repeat: the key it is under
    try:
        for wording in test.wordings:
            condition = plan.cells[cell].rollout_instructions or wording
            for task in tasks:
                key = f"{wording}/{task}"
                same = ("expert" if policy is None else condition, task)  # the expert reads no words
                if key in prog["done"]:
                    rolled.setdefault(same, key)
                    continue
                if same in rolled:  # the same rollouts (deterministic): counted under this wording too
                    rep = {"episodes": prog["done"][rolled[same]]}
                else:
                    episodes = episode_plan([task], 0, seed=test.wording_seed, instructions=condition,
                                            layouts=layouts)
                    if policy is None:  # the scripted expert
                        rep = expert_success_on(episodes, test.max_steps)
                    else:
                        rep = rollout_in_process(policy, RolloutSpec(plan=episodes, max_steps=test.max_steps,
                                                                     size=test.size), scenes=scenes, progress=progress)
                    rolled[same] = key
                prog["done"][key] = [{"task": e["task"], "layout": e["layout"], "wording": wording, "split": "test",
                                      "success": bool(e["success"])} for e in rep["episodes"]]
                atomic_write_json(prog_path, prog)
                if progress:
                    k = sum(e["success"] for e in prog["done"][key])
                    print(f"[study] {work.name} {key}: {k}/{len(layouts)}", flush=True)
    finally:
        for scene in scenes.values():
            scene.close()
    return [e for w in test.wordings for t in tasks for e in prog["done"][f"{w}/{t}"]]


def next_run(device: str = "auto", progress: bool = True, cells: Sequence[str] = ()) -> Optional[Path]:
    """The first missing run (of ``cells``' globs, if given) that no other process holds; None when
    every such run has its result."""
    plan = load_plan()
    for cell, seed in missing(plan, cells):
        try:
            return run(cell, seed, plan, device, progress)
        except RunLocked:
            continue
        except RunDone as e:  # e.g. its result file deleted here but in git's history: the rest go on
            print(f"[study] skipped: {e}", file=sys.stderr, flush=True)
            continue
    return None


def status(plan: Plan) -> List[str]:
    """One line per missing run that has begun here (a folder under ``WORK``): who holds it, how far
    its training and its test rollout got; then the count of runs done. For a study that runs for
    days beside other work (the worker's log is a stream of progress bars)."""
    from trimodal_ros.data.instructions import resolve_tasks

    lines = []
    for cell, seed in missing(plan):
        work = WORK / run_name(cell, seed)
        if not work.is_dir():
            continue
        holder = _holder(work / "lock")
        who = "stopped" if holder is None or not holder[2] else \
            f"running ({holder[0]} {holder[1]})" if holder[0] == socket.gethostname() else f"held by {holder[0]}"
        if plan.cells[cell].kind != "train":
            trained = "no training"
        elif (work / "train_minutes.json").exists():
            trained = "trained"
        else:
            rows = (work / "metrics.csv").read_text().splitlines() if (work / "metrics.csv").exists() else []
            step = rows[-1].split(",")[0] if len(rows) > 1 else "0"
            trained = f"training step {step}/{cell_config(plan, cell, seed).train.steps}"
        test = plan.test(cell)
        blocks = len(test.wordings) * len(resolve_tasks(test.tasks))
        prog = work / "test_progress.json"
        done = len(json.loads(prog.read_text())["done"]) if prog.exists() else 0
        lines.append(f"{run_name(cell, seed)}: {who}, {trained}, test rollout {done}/{blocks} (wording, task) blocks")
    runs = plan.runs()
    lines.append(f"{len(runs) - len(missing(plan))} of {len(runs)} runs have their result")
    return lines


__all__ = ["run", "next_run", "status", "missing", "result_path", "RunRefused", "RunDone", "RunLocked"]
