"""trimodal_ros as a ROS 2 user meets it, with the real tools: colcon builds the package into a
workspace, ``ros2 launch`` starts vla_node from the installed launch file, and ``ros2 topic / param /
lifecycle / node / pkg / run`` drive and inspect it while a bag is replayed into it.

Needs the ROS 2 command-line tools (``launch``, ``launch_ros``, ``ros2cli`` and its verbs) and colcon:
a ROS 2 install has them; CI installs them from ``../shared/ros2-wheels`` (``scripts/setup.sh``) and sets
TRIMODAL_REQUIRE_ROS2_TOOLS, so there they must run. Elsewhere these tests skip, saying why.

Each ``ros2 launch`` imports torch and builds a model (~5 s), so there are five: one per fusion variant,
each also carrying one more scenario (managed lifecycle, parameters, simulation time; the last variant
runs a trained checkpoint). Every test uses its own ROS_DOMAIN_ID and namespace. The ``ros2`` verbs get
their usual ROS 2 daemon (one per test domain, started with the launch and stopped with
``ros2 daemon stop`` at the end of the test, checked gone) and ``--timeout`` where they have it (discovery
on a busy 2-core machine); ``test_readme_commands_are_the_ones_tested`` checks that the README's "With
ROS 2" commands are, apart from that flag, exactly the commands run here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest
import yaml

from trimodal_ros import interface as I
from trimodal_ros.config import load_config
from trimodal_ros.model.fusion import FUSIONS
from trimodal_ros.ros.params import VLA_PARAMS, launch_arguments

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VARIANTS = FUSIONS.names()
# one variant per extra scenario, so that five launches cover every variant and every scenario
LIFECYCLE, PARAMETERS, SIM_TIME = VARIANTS[0], VARIANTS[1 % len(VARIANTS)], VARIANTS[2 % len(VARIANTS)]
PLAIN = [v for v in VARIANTS if v not in (LIFECYCLE, PARAMETERS, SIM_TIME)]
CHECKPOINT_FUSION = "weighted_sum"  # conftest's tiny_checkpoint

T0 = 1_000_000_000_000  # the test bag's first stamp: 1000 s, far from wall time (sim-time checks)
FRAMES, PERIOD = 80, 50_000_000  # 4 s at 20 Hz
README = {"namespace": "robot1", "bag": "data/mt10/reach-v3_s0_e0007", "checkpoint": "runs/mt10_policy/last.pt"}
RAN: List[List[str]] = []  # every command run, in README terms (test_readme_commands_are_the_ones_tested)
_DROP = {"--timeout": 1}  # test-only flags (and how many values follow)


# --- the tools and the workspace ------------------------------------------------------------------
def _missing_tools() -> Optional[str]:
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    missing = [m for m in ("launch", "launch_ros", "ros2cli", "ros2launch", "ros2param", "ros2lifecycle",
                           "ros2topic", "colcon_core", "psutil") if importlib.util.find_spec(m) is None]
    missing += [exe for exe in ("ros2", "colcon") if shutil.which(exe, path=path) is None]
    if not missing:
        return None
    return (f"the ROS 2 command-line tools are not installed ({', '.join(missing)} missing): on a ROS 2 "
            f"machine source /opt/ros/jazzy/setup.bash; with the wheels beside the repository "
            f"(../shared/ros2-wheels) `bash scripts/setup.sh` installs them")


class Workspace:
    def __init__(self, root: Path, env: Dict[str, str]):
        self.root, self.env = root, env
        self.install = root / "install" / "trimodal_ros"


def _record(argv, subs: Dict[str, str]) -> None:
    out, skip = [], 0
    for tok in argv:
        if skip:
            skip -= 1
            continue
        if tok in _DROP:
            skip = _DROP[tok]
            continue
        for actual, readme in subs.items():
            tok = tok.replace(actual, readme)
        out.append(tok)
    RAN.append(out)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    """A colcon workspace holding a copy of this repository as src/trimodal_ros, built once."""
    reason = _missing_tools()
    if reason:
        if os.environ.get("TRIMODAL_REQUIRE_ROS2_TOOLS"):
            pytest.fail(reason + " (TRIMODAL_REQUIRE_ROS2_TOOLS is set: CI must run these tests)")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("colcon_ws")
    local = {".git", ".venv", "build", "install", "log", "data", "runs", "out", ".pytest_cache", ".whl", ".gl"}

    def ignore(folder, names):  # what is not the package: local folders at the top, caches anywhere
        top = Path(folder) == ROOT
        return [n for n in names if (top and n in local) or n == "__pycache__" or n.endswith(".egg-info")]

    shutil.copytree(ROOT, root / "src" / "trimodal_ros", symlinks=True, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COLCON"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if (Path(sys.prefix) / "share" / "ament_index").is_dir():  # the ROS wheels' share/ lies in this venv
        env["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in (env.get("AMENT_PREFIX_PATH"), sys.prefix) if p)
    # the package must come from the workspace, not from this checkout
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and Path(p).resolve() != ROOT)
    env.update(ROS_LOG_DIR=str(root / "ros_log"), PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    # the venv's python (README); the message package lies inside the repository, which colcon's crawl
    # does not enter (the repository is a package itself): its folder is a base path of its own
    argv = ["python", "-m", "colcon", "build", "--base-paths", "src", "src/trimodal_ros/trimodal_ros_interfaces",
            "--packages-up-to", "trimodal_ros"]
    r = subprocess.run([sys.executable, *argv[1:]], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    _record(argv, {})
    assert r.returncode == 0 and "2 packages finished" in r.stdout, r.stdout + r.stderr
    dump = subprocess.run(["bash", "-c", "source install/setup.bash && env -0"], cwd=root, env=env,
                          capture_output=True, timeout=60, check=True).stdout
    return Workspace(root, dict(kv.split("=", 1) for kv in dump.decode().split("\0") if "=" in kv))


_domains = iter(range(1, 1000))


@pytest.fixture
def ros(ws, request):
    """The `ros2` tools on a DDS domain of this test's own, and the README names of its values."""
    base = int(os.environ.get("ROS_DOMAIN_ID", "0"))
    domain = 1 + (base + next(_domains)) % 100  # never conftest's own domain (in-process nodes)
    tool = Ros2(ws, domain, request.node.name)
    yield tool
    tool.close()


class Ros2:
    def __init__(self, ws: Workspace, domain: int, test: str):
        self.ws, self.domain = ws, domain
        self.env = dict(ws.env, ROS_DOMAIN_ID=str(domain))
        self.subs: Dict[str, str] = {}
        self.launches: List["Launch"] = []
        self.daemon = False
        self.tag = re.sub(r"\W", "_", test)[:20]
        self.out = ws.root / "out" / f"{self.tag}_{domain}"
        self.out.mkdir(parents=True, exist_ok=True)

    def namespace(self, name: str) -> str:
        ns = f"t{os.getpid()}_{name}"  # unique even beside another test run on this machine
        self.subs[ns] = README["namespace"]
        return ns

    def run(self, *argv: str, timeout: float = 60, record: bool = True) -> subprocess.CompletedProcess:
        if record:
            _record(argv, self.subs)
        t0 = time.monotonic()
        r = subprocess.run(list(argv), env=self.env, cwd=self.ws.root, capture_output=True, text=True, timeout=timeout)
        if os.environ.get("TRIMODAL_TRACE_ROS2"):
            print(f"{time.monotonic() - t0:5.1f} s rc={r.returncode} {' '.join(argv)}", file=sys.stderr)
        r.output = r.stdout + r.stderr
        return r

    def run_until(self, *argv: str, ok: Callable[[subprocess.CompletedProcess], bool], timeout: float = 60):
        """Run ``argv`` again until ``ok(result)`` (discovery can miss a node or topic at first)."""
        end = time.monotonic() + timeout
        recorded = False
        while True:
            r = self.run(*argv, timeout=max(5.0, end - time.monotonic()), record=not recorded)
            recorded = True
            if ok(r) or time.monotonic() > end:
                return r
            time.sleep(0.5)

    def popen(self, *argv: str, record: bool = True) -> subprocess.Popen:
        if record:
            _record(argv, self.subs)
        log = open(self.out / f"popen_{len(os.listdir(self.out))}.log", "w+")
        p = subprocess.Popen(list(argv), env=self.env, cwd=self.ws.root, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, preexec_fn=_default_sigint)
        p.log = log
        return p

    def launch(self, *args: str) -> "Launch":
        if not self.daemon:  # the `ros2` verbs' graph cache for this domain; starts while the node does
            r = self.run("ros2", "daemon", "start", record=False)
            assert r.returncode == 0, r.output
            self.daemon = True
        lc = Launch(self, args)
        self.launches.append(lc)
        return lc

    def daemon_processes(self) -> list:
        import psutil

        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "ros2cli.daemon" in cmd and f"--ros-domain-id {self.domain} " in cmd + " ":
                found.append(p)
        return found

    def close(self) -> None:
        for lc in self.launches:
            lc.kill()
        if self.daemon:
            r = self.run("ros2", "daemon", "stop", record=False)
            end = time.monotonic() + 10
            while self.daemon_processes() and time.monotonic() < end:
                time.sleep(0.2)
            left = self.daemon_processes()
            for p in left:
                p.kill()
            assert r.returncode == 0 and not left, f"ros2 daemon stop left {[p.pid for p in left]}: {r.output}"


def _default_sigint():
    # a background process of a non-interactive shell starts with SIGINT ignored: launch must see Ctrl-C
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _subscribers(topic_info: str) -> int:
    m = re.search(r"Subscription count: (\d+)", topic_info)
    return int(m.group(1)) if m else 0


def _output(p: subprocess.Popen) -> str:
    p.log.flush()
    p.log.seek(0)
    return p.log.read()


def _session(sid: int) -> list:
    import psutil

    procs = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                procs.append(p)
        except (ProcessLookupError, psutil.Error):
            pass
    return procs


class Launch:
    """``ros2 launch trimodal_ros vla.launch.py ARGS`` in a session of its own (as a terminal runs it)."""

    def __init__(self, ros: Ros2, args):
        self.ros = ros
        self.proc = ros.popen("ros2", "launch", "trimodal_ros", "vla.launch.py", *args)

    def output(self) -> str:
        return _output(self.proc)

    def node_process(self):
        """The vla_node process: the executable colcon installed."""
        exe = str(self.ros.ws.install / "lib" / "trimodal_ros" / "vla_node")
        for p in _session(self.proc.pid):
            try:
                if exe in " ".join(p.cmdline()):
                    return p
            except Exception:
                pass
        return None

    def stop(self) -> float:
        """Ctrl-C: SIGINT to the whole process group, as a terminal sends it. Launch and node must be
        gone within a few seconds, cleanly, with no traceback; returns the seconds it took."""
        assert self.proc.poll() is None, self.output()
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("ros2 launch did not stop within 15 s of SIGINT:\n" + self.output())
        seconds = time.monotonic() - t0
        end = time.monotonic() + 5
        while _session(self.proc.pid) and time.monotonic() < end:
            time.sleep(0.1)
        left = _session(self.proc.pid)
        out = self.output()
        assert not left, f"left running after ros2 launch exited: {[p.cmdline() for p in left]}"
        assert rc == 0, f"ros2 launch exited {rc}:\n{out}"
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
        assert re.search(r"\[vla_node-\d+\]: process has finished cleanly", out), out
        assert seconds < 10, f"{seconds:.1f} s to stop"
        return seconds

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        for p in _session(self.proc.pid):
            p.kill()


# --- a bag to replay -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    """4 s of a camera (64² rgb8) and joint states at 20 Hz plus the instruction, from bag time 1000 s."""
    from trimodal_ros.data.bags import write_bag
    from trimodal_ros.data.messages import image_msg, joint_state_msg, string_msg

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    msgs = [("/instruction", string_msg("reach the red goal"), T0)]
    for k in range(FRAMES):
        t = T0 + k * PERIOD
        msgs.append(("/joint_states", joint_state_msg(I.SAWYER_JOINTS, np.full(9, 0.01 * k), np.zeros(9), t)))
        msgs.append(("/camera/image_raw", image_msg(np.roll(img, k, axis=1), t)))
    return write_bag(tmp_path_factory.mktemp("replay") / "episode", msgs)


class Probe:
    """An rclpy participant of the test's domain beside the tools: replays the bag in a loop (the
    ``replay()`` of ``trimodal-ros replay``), and watches /diagnostics and a node's action tokens
    without starting a process per look."""

    def __init__(self, ros: Ros2):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=ros.domain)
        self.node = rclpy.create_node("probe", context=self.ctx)
        self.lock = threading.Condition()
        self.status: Dict[str, tuple] = {}  # name -> (arrival count, {key: value})
        self.tokens = 0
        self.arrivals = 0
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.spin = threading.Thread(target=self._spin, daemon=True)
        self.spin.start()
        self.stop_play, self.player = threading.Event(), None

    def _spin(self):
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _on_diag(self, msg):
        with self.lock:
            self.arrivals += 1
            for st in msg.status:
                self.status[st.name] = (self.arrivals, {kv.key: kv.value for kv in st.values})
            self.lock.notify_all()

    def count_tokens(self, namespace: str) -> None:
        from trimodal_ros_interfaces.msg import ActionTokens

        def on_tokens(msg):
            self.tokens += 1
        self.node.create_subscription(ActionTokens, f"/{namespace}/{I.TOKENS_TOPIC}", on_tokens, 10)

    def diagnostics(self, namespace: str, timeout: float = 20) -> dict:
        """The node's values from a /diagnostics message that arrives from now on."""
        name = f"/{namespace}/vla_node: inference"
        with self.lock:
            after = self.arrivals
            assert self.lock.wait_for(lambda: self.status.get(name, (0,))[0] > after, timeout), \
                f"no /diagnostics from {name} within {timeout} s"
            return self.status[name][1]

    def play(self, bag: Path, namespace: str) -> None:
        from trimodal_ros.ros.replay import replay

        self.stop_play.clear()
        self.player = threading.Thread(target=replay, args=(bag,), daemon=True, kwargs=dict(
            loop=True, namespace=namespace, context=self.ctx, stop=self.stop_play, delay=0.2))
        self.player.start()

    def stop(self) -> None:
        self.stop_play.set()
        if self.player is not None:
            self.player.join(10)

    def close(self) -> None:
        import rclpy

        self.stop()
        self.executor.shutdown()
        self.spin.join(10)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


class Player:
    """The bag replayed in a loop in this process (a Probe's replay)."""

    def __init__(self, bag: Path, ros: Ros2, namespace: str):
        self.probe = Probe(ros)
        self.probe.play(bag, namespace)

    def close(self) -> None:
        self.probe.close()


# --- reading the tools' output -------------------------------------------------------------------
def _first_message(output: str) -> dict:
    """The YAML of the first message ``ros2 topic echo`` printed."""
    m = re.search(r"^(?:header|layout|status|clock):", output, re.M)
    assert m, output
    return yaml.safe_load(output[m.start():].split("\n---", 1)[0])


def echo_once(ros: Ros2, topic: str, timeout: float = 60) -> dict:
    r = ros.run_until("ros2", "topic", "echo", "--once", "--timeout", str(int(timeout)), topic,
                      ok=lambda r: "---" in r.stdout, timeout=timeout)
    assert "---" in r.stdout, r.output
    return _first_message(r.stdout)


def diagnostics(ros: Ros2, namespace: str, msg: Optional[dict] = None) -> dict:
    """This node's entry of the next /diagnostics message (or of ``msg``), as {key: value} (+ level,
    message, stamp)."""
    msg = msg or echo_once(ros, "/diagnostics")
    name = f"/{namespace}/vla_node: inference"
    status = next(s for s in msg["status"] if s["name"] == name)
    d = {kv["key"]: kv["value"] for kv in status["values"]}
    d.update(_level=status["level"], _message=status["message"],
             _stamp=msg["header"]["stamp"]["sec"] + msg["header"]["stamp"]["nanosec"] * 1e-9)
    return d


def check_tokens(msg: dict, fusion: str, random_weights: bool = True) -> None:
    """trimodal/action_tokens as documented: chunk × action_dim tokens, row-major, 256 bins, stamped."""
    model = load_config(fusion).model
    assert (msg["chunk"], msg["action_dim"], msg["bins"]) == (model.chunk, model.action_dim, 256)
    assert msg["random_weights"] is random_weights and "stamp" in msg["header"]
    assert len(msg["tokens"]) == model.chunk * model.action_dim and all(0 <= x < 256 for x in msg["tokens"])


def param(ros: Ros2, namespace: str, *args: str) -> subprocess.CompletedProcess:
    verb, *rest = args
    extra = ["--timeout", "30"] if verb in ("get", "set", "describe") else []
    return ros.run("ros2", "param", verb, *extra, f"/{namespace}/vla_node", *rest)


def lifecycle(ros: Ros2, namespace: str, *args: str) -> str:
    r = ros.run_until("ros2", "lifecycle", args[0], f"/{namespace}/vla_node",
                      *args[1:], ok=lambda r: r.returncode == 0, timeout=30)
    assert r.returncode == 0, r.output
    return r.stdout.strip()


def start(ros: Ros2, namespace: str, fusion: str, *extra: str, random_weights: bool = True) -> Launch:
    """``ros2 launch`` vla_node and wait until its parameters answer; checks the variant it runs."""
    args = [f"namespace:={namespace}", f"fusion:={fusion}", "device:=cpu"]
    lc = ros.launch(*args, *(["allow_random_weights:=true"] if random_weights else []), *extra)
    r = param(ros, namespace, "get", "fusion")
    assert r.returncode == 0 and r.stdout.strip() == f"String value is: {fusion}", r.output + lc.output()
    node = lc.node_process()
    assert node is not None, "vla_node is not the colcon-installed executable:\n" + lc.output()
    return lc


class CliPlayer:
    """The bag replayed in a loop by `ros2 run trimodal_ros trimodal-ros replay ... --loop`."""

    def __init__(self, bag: Path, ros: Ros2, namespace: str):
        ros.subs[str(bag)] = README["bag"]
        self.proc = ros.popen("ros2", "run", "trimodal_ros", "trimodal-ros", "replay", "--bag", str(bag),
                              "--namespace", namespace, "--loop")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            pytest.fail("trimodal-ros replay did not stop on SIGINT:\n" + _output(self.proc))


def serves_tokens(ros: Ros2, bag: Path, namespace: str, fusion: str, random_weights: bool = True,
                  player=Player) -> dict:
    """Replayed frames in, trimodal/action_tokens of the documented shape out; /diagnostics reports it."""
    player = player(bag, ros, namespace)
    try:
        check_tokens(echo_once(ros, f"/{namespace}/trimodal/action_tokens"), fusion, random_weights)
        diag = diagnostics(ros, namespace)
    finally:
        player.close()
    assert diag["fusion"] == fusion and diag["lifecycle"] == "active" and int(diag["outputs"]) >= 1, diag
    assert diag["random_weights"] == str(random_weights).lower()
    return diag


# --- the tests ---------------------------------------------------------------------------------------
def test_colcon_build_installs_the_package(ws):
    share = ws.install / "share" / "trimodal_ros"
    assert (share / "package.xml").is_file() and (share / "launch" / "vla.launch.py").is_file()
    # every config of the repository: one per fusion variant, plus the trained recipes (config:=mt10_policy)
    installed = sorted(p.stem for p in (share / "config").glob("*.yaml"))
    assert installed == sorted(p.stem for p in (ROOT / "config").glob("*.yaml"))
    assert set(VARIANTS + ["mt10_policy", "mt10_policy_concat", "mt10_two_cameras", "reacher_policy"]) <= set(installed)
    assert not any(ws.root.joinpath("src", "trimodal_ros").glob("*.egg-info"))  # the build wrote nothing there
    for exe in ("vla_node", "sim_node", "trimodal-ros"):
        assert os.access(ws.install / "lib" / "trimodal_ros" / exe, os.X_OK), exe
    # the nodes run the workspace's copy, all of it (an editable install of the checkout must not fill gaps)
    code = ("import sys, trimodal_ros.ros.vla_node, trimodal_lab.ros.sim_node, trimodal_ros.cli, trimodal_ros.policy, "
            "trimodal_ros.data.bags, trimodal_ros.model.fusion; "
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('trimodal_ros')))")
    r = subprocess.run([sys.executable, "-c", code], env=ws.env, cwd=ws.root, capture_output=True, text=True)
    files = r.stdout.split()
    assert r.returncode == 0 and len(files) >= 20, r.stdout + r.stderr
    assert [f for f in files if not f.startswith(str(ws.install))] == []
    ros = Ros2(ws, 0, "build")
    assert ros.run("ros2", "pkg", "prefix", "trimodal_ros").stdout.strip() == str(ws.install)
    r = ros.run("ros2", "pkg", "executables", "trimodal_ros")
    want = ["sim_node", "trimodal-reacher", "trimodal-ros", "trimodal-study", "vla_node"]
    assert sorted(r.stdout.split()) == sorted(["trimodal_ros"] * len(want) + want), r.output


def test_show_args_lists_every_launch_argument(ws):
    r = Ros2(ws, 0, "show_args").run("ros2", "launch", "trimodal_ros", "vla.launch.py", "--show-args")
    assert r.returncode == 0, r.output
    blocks = dict(re.findall(r"^    '(\w+)':\n(.*?)(?=^    '|\Z)", r.stdout, re.M | re.S))
    flat = {k: " ".join(v.split()) for k, v in blocks.items()}
    args = launch_arguments()
    assert list(blocks) == [a.name for a in args]
    for a in args:
        assert " ".join(a.description.split()) in flat[a.name], (a.name, flat[a.name])
        assert flat[a.name].endswith(f"(default: '{a.default}')"), flat[a.name]
        if a.choices:
            assert f"Valid choices are: {a.choices}" in flat[a.name]


def test_a_wrong_argument_value_fails_the_launch_naming_it(ws):
    ros = Ros2(ws, 0, "bad_args")
    cases = {"fusion:=nope": "fusion", "rate_hz:=inf": "rate_hz", "image_qos_depth:=0": "image_qos_depth",
             "lifecycle:=maybe": "lifecycle"}
    procs = {arg: ros.popen("ros2", "launch", "trimodal_ros", "vla.launch.py", arg) for arg in cases}
    for arg, name in cases.items():
        p = procs[arg]
        rc = p.wait(timeout=90)
        out = _output(p)
        assert rc != 0, out
        assert re.search(rf"\[ERROR\] \[launch\]: .*{name}", out), out
        assert "process started" not in out and "Traceback" not in out, out


def test_lifecycle_managed_node(ws, ros, bag):
    """lifecycle:=true: vla_node waits unconfigured; `ros2 lifecycle set` drives it; outputs flow only
    while active (frames that arrive otherwise are counted as inactive, never answered)."""
    ns = ros.namespace("lc")
    lc = start(ros, ns, LIFECYCLE, "lifecycle:=true")
    probe = Probe(ros)
    try:
        assert lifecycle(ros, ns, "get") == "unconfigured [1]"
        assert probe.diagnostics(ns)["lifecycle"] == "unconfigured"
        assert "Transitioning successful" in lifecycle(ros, ns, "set", "configure")
        probe.count_tokens(ns)
        probe.play(bag, ns)
        # inactive: the frames arrive (subscriptions exist since configure) and go unanswered
        d = probe.diagnostics(ns)
        deadline = time.monotonic() + 20
        while int(d["inactive"]) == 0 and time.monotonic() < deadline:
            d = probe.diagnostics(ns)
        assert d["lifecycle"] == "inactive" and int(d["inactive"]) > 0 and int(d["outputs"]) == 0, d
        assert probe.tokens == 0

        assert "Transitioning successful" in lifecycle(ros, ns, "set", "activate")
        check_tokens(echo_once(ros, f"/{ns}/trimodal/action_tokens"), LIFECYCLE)
        active = probe.diagnostics(ns)
        assert active["lifecycle"] == "active" and int(active["outputs"]) >= 1 and probe.tokens >= 1, active

        assert "Transitioning successful" in lifecycle(ros, ns, "set", "deactivate")
        a = probe.diagnostics(ns)
        tokens = probe.tokens
        b = probe.diagnostics(ns)
        assert b["lifecycle"] == "inactive" and b["outputs"] == a["outputs"], (a, b)  # no more outputs
        assert int(b["inactive"]) > int(a["inactive"]) and probe.tokens == tokens, (a, b)  # while frames come
        probe.stop()

        assert "Transitioning successful" in lifecycle(ros, ns, "set", "cleanup")
        assert lifecycle(ros, ns, "get") == "unconfigured [1]"
        assert probe.diagnostics(ns)["lifecycle"] == "unconfigured"
    finally:
        probe.close()
    lc.stop()


def test_parameters_from_the_command_line(ws, ros, bag):
    """`ros2 param describe` shows each parameter's own description and range; `set rate_hz 5` takes
    effect (the outputs slow to 5 Hz); a read-only one and an out-of-range value are refused with a reason."""
    ns = ros.namespace("params")
    lc = start(ros, ns, PARAMETERS)
    serves_tokens(ros, bag, ns, PARAMETERS)

    r = param(ros, ns, "describe", "rate_hz", "fusion")
    assert (r.returncode == 0 and "Parameter name: rate_hz" in r.stdout
            and "Parameter name: fusion" in r.stdout), r.output
    r = param(ros, ns, "describe", *(p.name for p in VLA_PARAMS))
    blocks = {b.split("\n", 1)[0].strip(): b for b in r.stdout.split("Parameter name: ")[1:]}
    assert list(blocks) == [p.name for p in VLA_PARAMS], r.output
    for p in VLA_PARAMS:
        b = " ".join(blocks[p.name].split())
        assert f"Description: {' '.join(p.description.split())}" in b, (p.name, b)
        assert ("Read only: true" in b) == (not p.live), (p.name, b)
        if p.low is not None and p.type in (int, float):
            assert f"Min value: {p.type(p.low)}" in b and f"Max value: {p.type(p.high)}" in b, (p.name, b)

    r = param(ros, ns, "set", "fusion", "qformer")
    assert r.output.startswith("Setting parameter failed:") and "read-only" in r.output, r.output
    r = param(ros, ns, "set", "rate_hz", "5000")
    assert r.output.startswith("Setting parameter failed:") and "rate_hz" in r.output, r.output

    probe = Probe(ros)
    try:
        probe.play(bag, ns)  # a 20 Hz camera
        r = param(ros, ns, "set", "rate_hz", "5")
        assert r.stdout.strip() == "Set parameter successful", r.output
        assert param(ros, ns, "get", "rate_hz").stdout.strip() == "Double value is: 5.0"
        before = probe.diagnostics(ns)
        hz = ros.popen("ros2", "topic", "hz", f"/{ns}/trimodal/action_tokens")
        # a cold `ros2 topic hz` may take seconds to discover the topic on loaded cores: wait for its
        # reports (one a second once messages flow), not for a fixed time
        deadline = time.monotonic() + 45
        while _output(hz).count("average rate:") < 4 and time.monotonic() < deadline:
            time.sleep(0.5)
        os.killpg(hz.pid, signal.SIGINT)
        hz.wait(10)
        after = probe.diagnostics(ns)
    finally:
        probe.close()
    rates = [float(x) for x in re.findall(r"average rate: ([\d.]+)", _output(hz))]
    assert rates and 3.5 <= rates[-1] <= 6.5, _output(hz)
    # at 5 Hz on a 20 Hz camera, most frames are replaced by a newer one before their tick
    assert int(after["replaced"]) - int(before["replaced"]) >= 10, (before, after)
    assert after["fusion"] == PARAMETERS  # the refused set changed nothing
    assert "parameter rate_hz = 5.0" in lc.output()
    lc.stop()


def test_sim_time_follows_the_replayed_clock(ws, ros, bag):
    """use_sim_time:=true with `trimodal-ros replay --clock`: /clock carries the bag's time and the
    node's clock follows it (its /diagnostics stamps become bag time, 1000 s, not wall time; the 1 Hz
    diagnostics timer runs on the steady clock, so diagnostics come before the first /clock too)."""
    ns = ros.namespace("simtime")
    lc = start(ros, ns, SIM_TIME, "use_sim_time:=true")
    assert param(ros, ns, "get", "use_sim_time").stdout.strip() == "Boolean value is: True"
    echo = ["ros2", "topic", "echo", "--once", "--timeout", "60"]
    # subscribed before the replay starts: the node's own /clock subscription tells the echo its type
    tokens, clock = (ros.popen(*echo, t) for t in (f"/{ns}/trimodal/action_tokens", "/clock"))
    diag = ros.popen(*echo, "--filter", "m.header.stamp.sec >= 1000", "/diagnostics")  # once the bag's clock runs
    # the bag is played once: start it when the echoes are subscribed (the node subscribes /clock too)
    for topic, n in ((f"/{ns}/trimodal/action_tokens", 1), ("/diagnostics", 1), ("/clock", 2)):
        r = ros.run_until("ros2", "topic", "info", topic, ok=lambda r, n=n: _subscribers(r.stdout) >= n)
        assert _subscribers(r.stdout) >= n, (topic, r.output)
    ros.subs[str(bag)] = README["bag"]
    play = ros.popen("ros2", "run", "trimodal_ros", "trimodal-ros", "replay", "--bag", str(bag), "--namespace", ns,
                     "--clock")
    for p in (tokens, diag, clock):
        assert p.wait(60) == 0 and "---" in _output(p), _output(p)
    bag_s = (T0 / 1e9, (T0 + FRAMES * PERIOD) / 1e9 + 1)
    assert bag_s[0] <= _first_message(_output(clock))["clock"]["sec"] <= bag_s[1], _output(clock)
    d = diagnostics(ros, ns, _first_message(_output(diag)))
    assert bag_s[0] <= d["_stamp"] <= bag_s[1], d
    check_tokens(_first_message(_output(tokens)), SIM_TIME)
    assert play.wait(60) == 0 and f"published {2 * FRAMES + 1} messages" in _output(play), _output(play)
    lc.stop()


@pytest.mark.parametrize("fusion", PLAIN)
def test_fusion_variant_serves_tokens(ws, ros, bag, fusion, request):
    """`ros2 launch` brings up each fusion variant; replayed frames come back as action tokens. The
    variant of conftest's trained checkpoint runs it (no random weights); the others run random weights."""
    ns = ros.namespace(f"v_{fusion}")
    ckpt = None
    if fusion == CHECKPOINT_FUSION:
        ckpt = request.getfixturevalue("tiny_checkpoint")
        ros.subs[str(ckpt)] = README["checkpoint"]
    lc = start(ros, ns, fusion, *([f"checkpoint:={ckpt}"] if ckpt else []), random_weights=ckpt is None)
    r = ros.run_until("ros2", "node", "list", ok=lambda r: f"/{ns}/vla_node" in r.stdout.split())
    assert f"/{ns}/vla_node" in r.stdout.split(), r.output
    r = ros.run_until("ros2", "topic", "list", "-t", ok=lambda r: f"/{ns}/trimodal/action_tokens" in r.stdout)
    for topic in (I.TOKENS_TOPIC, I.EMBEDDING_TOPIC, I.ACTION_TOPIC, I.IMAGE_TOPIC, I.JOINTS_TOPIC,
                  I.INSTRUCTION_TOPIC):
        assert f"{I.absolute(topic, ns)} [{I.MSG_TYPES[topic]}]" in r.stdout, (topic, r.output)
    serves_tokens(ros, bag, ns, fusion, random_weights=ckpt is None, player=CliPlayer)
    if ckpt:
        assert "NO CHECKPOINT" not in lc.output()
    lc.stop()


def test_a_two_camera_config_subscribes_each_named_camera(ws, ros):
    """`config:=mt10_two_cameras`: the launched vla_node subscribes camera/image_raw and
    top_camera/image_raw, as the checkpoint's (here the config's) cameras say; nothing else changes."""
    ns = ros.namespace("two_cams")
    lc = start(ros, ns, "weighted_sum", "config:=mt10_two_cameras")
    want = [f"/{ns}/{t} [sensor_msgs/msg/Image]" for t in (I.image_topic("camera"), I.image_topic("top_camera"))]
    r = ros.run_until("ros2", "topic", "list", "-t", ok=lambda r: all(w in r.stdout for w in want))
    assert all(w in r.stdout for w in want), r.output
    lc.stop()


def test_every_variant_was_launched():
    assert sorted({LIFECYCLE, PARAMETERS, SIM_TIME, *PLAIN}) == sorted(VARIANTS)


def test_readme_commands_are_the_ones_tested():
    """Each command of README's "With ROS 2" section is, apart from --timeout, a command this module ran."""
    if not any(c[:2] == ["ros2", "launch"] for c in RAN):
        pytest.skip("run with the rest of this module: it checks the commands the other tests ran")
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## With ROS 2\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            for part in filter(None, (p.strip() for p in line.split("&&"))):
                if part.split()[0] not in ("cd", "source", "mkdir", "git"):
                    commands.append(part.split())
    assert len(commands) >= 15
    ran = [" ".join(c) for c in RAN]
    missing = [" ".join(c) for c in commands if " ".join(c) not in ran]
    assert not missing, ("README commands no test runs:\n" + "\n".join(missing)
                         + "\n\nran:\n" + "\n".join(sorted(set(ran))))


_NO_TORCH = """
import sys, importlib.util
for m in ("torch", "torchvision", "open_clip"):
    sys.modules[m] = None  # import raises ModuleNotFoundError, as under a system Python without torch
spec = importlib.util.spec_from_file_location("vla_launch", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
from launch import LaunchContext
from launch.actions import DeclareLaunchArgument, OpaqueFunction
ld, ctx = mod.generate_launch_description(), LaunchContext()
ctx.launch_configurations.update(fusion="qformer", lifecycle="true")
args = [e for e in ld.entities if isinstance(e, DeclareLaunchArgument)]
for a in args:
    a.visit(ctx)
nodes = [n for e in ld.entities if isinstance(e, OpaqueFunction) for n in e.visit(ctx)]
print(" ".join(a.name for a in args))
print(type(nodes[0]).__name__, len(nodes))
"""


def test_the_launch_description_builds_without_torch(tmp_path):
    """`ros2 launch` on an apt ROS 2 runs the launch file under the system Python, which has no torch:
    building the description, its arguments (fusion choices included) and its nodes must not import
    it. Also `ros2 launch --show-args` with a torch that cannot be imported."""
    reason = _missing_tools()
    if reason:
        if os.environ.get("TRIMODAL_REQUIRE_ROS2_TOOLS"):
            pytest.fail(reason + " (TRIMODAL_REQUIRE_ROS2_TOOLS is set: CI must run these tests)")
        pytest.skip(reason)
    launch_file = ROOT / "launch" / "vla.launch.py"
    out = subprocess.run([sys.executable, "-c", _NO_TORCH, str(launch_file)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    names, node = out.stdout.strip().splitlines()
    assert set(names.split()) == {a.name for a in launch_arguments()} and node == "LifecycleNode 1"
    shim = tmp_path / "shim"
    (shim / "torch").mkdir(parents=True)
    (shim / "torch" / "__init__.py").write_text("raise ImportError('torch is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{ROOT}"}
    shown = subprocess.run([str(BIN / "ros2"), "launch", str(launch_file), "--show-args"], capture_output=True,
                           text=True, timeout=60, env=env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "'fusion':" in shown.stdout and "qformer" in shown.stdout
