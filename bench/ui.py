"""Dashboard performance: time to first frame, and idle CPU when left open.

1. Time to first frame (cold process, imports included) of `runctl-tui` with every pane,
   beside a bare Textual app composing the same widget classes, measured in the same run,
   alternating, median of N. Target: within 1.3x. Cloud calls are never on that path.
2. CPU of the dashboard process over a window (default 60 s), in a real terminal (tmux,
   100x30) when available, else headless:
   a. three backends polling (local, RunPod test server, AWS on moto) and the selected run's
      log growing at 10 lines/s. Target < 2% of one core.
   b. the same backends, nothing changing (no run). Target < 0.5%.
   Both with the default config: backends polled every `poll_seconds` (5 s) while anything
   changes, `quiet_poll_factor` (6) times less often once three polls changed nothing; the
   log pane polls its file once a frame (`[ui] max_fps`, 1).

Run: `python bench/ui.py [--seconds 60] [--repeat 7]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "runctl_tui" / "examples" / "train_demo.py"
TUI = Path(sys.executable).parent / "runctl-tui"
SIZE = (100, 30)
"""Terminal size of the CPU measurements (`--size`)."""

CHILD = r"""
import time
t0 = time.perf_counter()
import sys, os
kind = sys.argv[1]
from textual.app import App

if kind == "bare":
    from textual.containers import Horizontal, Vertical
    from textual.widgets import DataTable, Footer, Input, Static, Tab, Tabs
    from runctl_tui.ui.widgets.log_view import LogView
    from runctl_tui.ui.widgets.checkpoint_browser import CheckpointBrowser
    from runctl_tui.ui.widgets.metrics_panel import MetricsPanel

    class Bare(App[None]):
        CSS = "Horizontal > * { width: 1fr; } Horizontal > LogView { width: 2fr; }"

        def compose(self):
            yield Static("header")
            with Vertical():
                yield Input()
                yield DataTable()
            yield Tabs(Tab("a"), Tab("b"), Tab("c"))
            with Horizontal():
                yield LogView()
                yield CheckpointBrowser()
                yield MetricsPanel()
            yield Footer()

        def on_mount(self):
            self.call_after_refresh(self.first_frame)

        def first_frame(self):
            print(json.dumps({"ms": (time.perf_counter() - t0) * 1000}), flush=True)
            self.exit()

    import json
    Bare().run(headless=True)
else:
    import json
    from runctl_tui.core.config import load_config
    from runctl_tui.ui.app import RunctlApp

    class Timed(RunctlApp):
        def on_mount(self):
            self.call_after_refresh(self.first_frame)

        def first_frame(self):
            print(json.dumps({"ms": (time.perf_counter() - t0) * 1000}), flush=True)
            self.exit()

    Timed(load_config()).run(headless=True)
"""


BARE_IDLE = r"""
import os
import sys
from pathlib import Path
from textual.app import App
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Static, Tab, Tabs
from runctl_tui.core.config import UiConfig
from runctl_tui.core.logs import FileLogSource
from runctl_tui.ui.widgets.log_view import LogView
from runctl_tui.ui.widgets.checkpoint_browser import CheckpointBrowser
from runctl_tui.ui.widgets.metrics_panel import MetricsPanel

log = Path(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else None
MAX_FPS = UiConfig().max_fps  # the dashboard's default redraw cap, unless --max-fps


class Bare(App[None]):
    # The lower panes share the width as on the dashboard (without this the log pane was one
    # column wide and the baseline drew almost nothing).
    CSS = "Horizontal > * { width: 1fr; } Horizontal > LogView { width: 2fr; }"

    def compose(self):
        yield Static("header")
        with Vertical():
            yield DataTable()
        yield Tabs(Tab("a"), Tab("b"), Tab("c"))
        with Horizontal():
            yield LogView(id="log", max_fps=int(os.environ.get("RUNCTL_UI_MAX_FPS", MAX_FPS)))
            yield CheckpointBrowser()
            yield MetricsPanel()
        yield Footer()

    def on_mount(self):
        if log is not None:
            self.query_one(LogView).set_source(FileLogSource(log))
            self.query_one(CheckpointBrowser).set_directory(log.parent.parent.parent / "checkpoints")
            self.query_one(MetricsPanel).set_run(log, log.parent)
            self.query_one(LogView).focus()


Bare().run()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_frame(kind: str, env: dict[str, str]) -> float:
    """Milliseconds from interpreter start of the child's code to its first frame."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
    return float(json.loads(line)["ms"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def find_pid(name_part: str, parent_env_marker: str) -> int | None:
    """The pid of a process whose command line contains `name_part` and whose environment
    holds `parent_env_marker` (so only our own dashboard is measured)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if name_part not in cmd:
                continue
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if parent_env_marker.encode() in environ:
            return int(entry.name)
    return None


def idle_cpu(
    env: dict[str, str],
    seconds: float,
    label: str,
    workdir: Path,
    command: str = "",
    expect: str = "",
    profile: Path | None = None,
) -> tuple[float, str]:
    """Percent of one core a TUI process used over `seconds`, after a warm-up.

    Args:
        env: Its environment.
        seconds: The measuring window.
        label: Tells this process apart from others (an environment marker).
        workdir: Its working directory.
        command: The shell command to run (default: `runctl-tui`).
        expect: Text that must be on screen once warmed up (checks the scenario is real).
        profile: Where to write a py-spy profile of the window (collapsed stacks), if set.

    Returns:
        (percent of one core, how it ran).
    """
    command = command or str(TUI)
    marker = f"RUNCTL_BENCH_MARK={label}-{os.getpid()}"
    env = dict(env, RUNCTL_BENCH_MARK=marker.split("=", 1)[1])
    socket_name = f"runctl-bench-{os.getpid()}-{label}"
    proc: subprocess.Popen[bytes] | None = None
    width, height = SIZE
    how = f"tmux {width}x{height}" if shutil.which("tmux") else "headless"
    if shutil.which("tmux"):
        exports = " ".join(
            f"{k}='{v}'"
            for k, v in env.items()
            if k.startswith(("RUNCTL", "RUNPOD", "AWS", "HOME", "XDG"))
        )
        # A tmux server that is still exiting refuses new sessions for a moment.
        time.sleep(1.0)
        subprocess.run(
            ["tmux", "-L", socket_name, "new-session", "-d", "-x", str(width), "-y", str(height),
             f"cd {workdir} && env TERM=xterm-256color {exports} {command}"],
            # The tmux server's environment is the session's: ours, none of the caller's
            # RUNCTL_/RUNPOD_/AWS_/XDG_ settings; the marker only reaches the measured process.
            env={k: v for k, v in env.items() if k != "RUNCTL_BENCH_MARK"}, check=True,
        )  # fmt: skip
    else:
        code = "from runctl_tui.ui.app import RunctlApp; from runctl_tui.core.config import load_config; RunctlApp(load_config()).run(headless=True)"
        proc = subprocess.Popen([sys.executable, "-c", code, "runctl-tui"], env=env, cwd=workdir)
    try:
        pid = None
        deadline = time.monotonic() + 20
        while pid is None and time.monotonic() < deadline:
            name = "runctl-tui" if command == str(TUI) else "bare_idle.py"
            pid = find_pid(name, marker.split("=", 1)[1])
            time.sleep(0.2)
        if pid is None:
            raise RuntimeError("dashboard process not found")
        time.sleep(8.0)  # warm-up: first polls, log tail catch-up, imports
        if proc is None:
            screen = subprocess.run(
                ["tmux", "-L", socket_name, "capture-pane", "-p"],
                capture_output=True,
                text=True,
            ).stdout
            if expect and expect not in screen:
                raise RuntimeError(f"{label}: expected {expect!r} on screen, got:\n{screen}")
        spy: subprocess.Popen[bytes] | None = None
        if profile is not None:
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking",
                 "--format", "raw", "--rate", "200", "--duration", str(int(seconds)),
                 "--pid", str(pid), "--output", str(profile / f"{label}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        start_cpu, start = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        used, elapsed = cpu_seconds(pid) - start_cpu, time.monotonic() - start
        if spy is not None:
            spy.wait(30)
        return 100.0 * used / elapsed, how
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        subprocess.run(["tmux", "-L", socket_name, "kill-server"], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="CPU measuring window")
    parser.add_argument("--repeat", type=int, default=7, help="first-frame runs per app")
    parser.add_argument(
        "--max-fps",
        type=int,
        default=None,
        help="log pane redraws per second for both apps (`[ui] max_fps`; default: the config's)",
    )
    parser.add_argument(
        "--only",
        default="frame,bare-quiet,quiet,bare-log,log",
        help="comma-separated measurements to run (default: all of frame,bare-quiet,quiet,"
        "bare-log,log)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write a py-spy profile (collapsed stacks, one file per measurement) to this folder",
    )
    parser.add_argument(
        "--size",
        default="100x30",
        help="terminal size of the CPU measurements, WIDTHxHEIGHT (from 120x34 the dashboard "
        "shows all three lower panes instead of tabs)",
    )
    args = parser.parse_args()
    global SIZE
    width, _, height = args.size.partition("x")
    SIZE = (int(width), int(height))
    only = set(args.only.split(","))
    if args.profile is not None:
        if not (Path(sys.executable).parent / "py-spy").exists():
            parser.error("--profile needs py-spy in this environment (pip install py-spy)")
        args.profile.mkdir(parents=True, exist_ok=True)

    from moto.server import ThreadedMotoServer

    from runctl_tui.testing.runpod_server import RunPodTestServer

    home = Path(tempfile.mkdtemp(prefix="runctl-bench-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNCTL_", "RUNPOD_", "AWS_", "XDG_"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local/state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        AWS_CONFIG_FILE=str(home / "absent"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "absent"),
        AWS_EC2_METADATA_DISABLED="true",
        RUNCTL_LOCAL_USE_UV="0",
    )
    if args.max_fps is not None:
        env["RUNCTL_UI_MAX_FPS"] = str(args.max_fps)

    print("# runctl-tui dashboard benchmark")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.max_fps is not None:
        print(f"log pane redraws capped at {args.max_fps} per second ([ui] max_fps)")

    # 1. time to first frame, alternating, local backend only (the default config).
    if "frame" in only:
        bare: list[float] = []
        dash: list[float] = []
        first_frame("bare", env)  # warm the OS file cache for both
        first_frame("dashboard", env)
        for _ in range(args.repeat):
            bare.append(first_frame("bare", env))
            dash.append(first_frame("dashboard", env))
        b, d = statistics.median(bare), statistics.median(dash)
        print(
            f"first frame: bare Textual app with the same widgets {b:.0f} ms, "
            f"dashboard {d:.0f} ms (median of {args.repeat}) -> {d / b:.2f}x (target <= 1.3x)"
        )

    # 2. idle CPU with three backends.
    runpod = RunPodTestServer(api_key="bench-key-123456").start()
    for index in range(3):
        runpod.add_pod(name=f"bench-pod-{index}")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    cloud = dict(
        env,
        RUNPOD_API_KEY="bench-key-123456",
        RUNCTL_RUNPOD_API_URL=runpod.url,
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="AKIARUNCTLBENCH00000",
        AWS_SECRET_ACCESS_KEY="bench-secret-not-real",
        AWS_DEFAULT_REGION="us-east-1",
    )
    workdir = home / "work"
    workdir.mkdir()
    bare_script = home / "bare_idle.py"
    bare_script.write_text(BARE_IDLE, encoding="utf-8")
    bare_cmd = f"{sys.executable} {bare_script}"
    try:
        if "bare-quiet" in only:
            bare_quiet, _ = idle_cpu(
                env, args.seconds, "bare-quiet", workdir, bare_cmd, profile=args.profile
            )
            print(
                f"baseline: bare Textual app, same widget classes, nothing to show: "
                f"{bare_quiet:.2f}% of one core"
            )
        if "quiet" in only:
            quiet, how = idle_cpu(
                cloud, args.seconds, "quiet", workdir, expect="bench-pod-0", profile=args.profile
            )
            print(
                f"idle CPU, 3 backends polling (5 s, 30 s once quiet), nothing changing ({how}, "
                f"{args.seconds:.0f} s): {quiet:.2f}% of one core (target < 0.5%)"
            )
        if not {"bare-log", "log"} & only:
            return 0
        steps = int((2 * args.seconds + 60) * 10)  # lasts through both measurements
        launch = subprocess.run(
            [sys.executable, "-m", "runctl_tui", "local", "-b", str(DEMO),
             "--epochs", "1", "--steps-per-epoch", str(steps), "--sleep", "0.1"],
            env=cloud, cwd=workdir, capture_output=True, text=True,
        )  # fmt: skip
        if launch.returncode != 0:
            print(f"could not start the 10 lines/s run: {launch.stderr.strip()}")
            return 1
        state = home / ".local/state/runctl"
        state.mkdir(parents=True, exist_ok=True)
        (state / "dashboard.json").write_text(json.dumps({"selected": "local:local"}))
        log_path = next((workdir / "runs").glob("*/train.log"))
        if "bare-log" in only:
            bare_busy, _ = idle_cpu(
                env, args.seconds, "bare-log", workdir, f"{bare_cmd} {log_path}",
                profile=args.profile,
            )  # fmt: skip
            print(
                f"baseline: bare Textual app, same widget classes following the same run (log "
                f"at 10 lines/s, its checkpoints and metrics): {bare_busy:.2f}% of one core"
            )
        if "log" in only:
            busy, how = idle_cpu(
                cloud, args.seconds, "log", workdir, expect="loss=", profile=args.profile
            )
            print(
                f"idle CPU, 3 backends polling, selected run's log growing at 10 lines/s "
                f"({how}, {args.seconds:.0f} s): {busy:.2f}% of one core (target < 2%)"
            )
        run_id = launch.stdout.split()[0] if launch.stdout.split() else ""
        subprocess.run(
            [sys.executable, "-m", "runctl_tui", "stop", "--grace", "2", run_id],
            env=cloud, cwd=workdir, capture_output=True,
        )  # fmt: skip
    finally:
        runpod.stop()
        moto.stop()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
