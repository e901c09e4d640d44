"""Log tail and follow performance, each figure beside a baseline measured in the same run.

    .venv/bin/python bench/logs.py [--dir /tmp] [--follow-seconds 10] [--rss-bytes 1G]

1. Last 50 lines of a 1 GB file: `tail_lines` (and the first chunk of `FileLogSource.follow`)
   against GNU `tail -n 50`. Targets: within 10x of tail and under 0.3 s.
2. Follow: a writer formats and appends log lines as fast as it can for 10 s while
   `FileLogSource` (into a `LineBuffer`, as the pane does) and GNU `tail -F` (into a pipe)
   follow the file. Reports lines/s and the lag between the writer's last line and each
   reader having it. Targets: at least 500k lines/s, lag under 100 ms.
3. Memory: RSS of this process before and after following 1 GB of appends into a
   10,000-line buffer. Target: growth under 50 MB.
4. The pane: a headless LogView following a 100k lines/s writer: how long after the writer's
   last line the pane shows it, and how long a key press takes meanwhile.

Files go in a temporary folder under --dir and are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runctl_tui.core.logs import FileLogSource, LineBuffer, tail_lines

LINE = "epoch {e} step {i} loss {x:.6f} lr 3.0e-04 grad_norm 0.8123 tokens/s 51234\n"
END = "END-OF-BENCH"

WRITER_TEMPLATE = r"""
import sys, time
path, seconds, limit, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fast = sys.argv[5] == "fast"
template = %r
suffix = " loss 0.123456 lr 3.0e-04 grad_norm 0.8123 tokens/s 51234\nstep "
batch = 1000
written = lines = 0
start = time.monotonic()
with open(path, "a", buffering=1 << 20) as out:
    i = 0
    while True:
        now = time.monotonic()
        if now - start >= seconds or (limit and written >= limit):
            break
        if rate and lines > (now - start) * rate:
            time.sleep(0.001)
            continue
        if fast:  # unique lines without per-line formatting: the fastest a Python writer gets
            chunk = "step " + suffix.join(map(str, range(i, i + batch))) + suffix[:-5]
        else:  # a training loop's logger: every line formatted with its numbers
            chunk = "".join([template.format(e=i // 100000, i=j, x=1.0 / (j + 1)) for j in range(i, i + batch)])
        out.write(chunk)
        out.flush()
        written += len(chunk)
        lines += batch
        i += batch
    elapsed = time.monotonic() - start
    out.write("%s\n")
    out.flush()
    end_time = time.monotonic()
print(lines, written, elapsed, end_time, flush=True)
"""
WRITER = WRITER_TEMPLATE.replace("%r", repr(LINE)).replace("%s", END)


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def make_file(path: Path, size: int) -> int:
    """Write `size` bytes of log lines quickly (blocks of formatted lines); return line count."""
    block_lines = [LINE.format(e=0, i=i, x=1.0 / (i + 1)) for i in range(10000)]
    block = "".join(block_lines).encode()
    lines = 0
    with path.open("wb") as out:
        written = 0
        while written < size:
            out.write(block)
            written += len(block)
            lines += len(block_lines)
    return lines


def best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_tail(workdir: Path) -> None:
    print("== 1. last 50 lines of a 1 GB file ==")
    big = workdir / "1g.log"
    small = workdir / "1k.log"
    make_file(big, 1024**3)
    small.write_bytes(LINE.format(e=0, i=0, x=1.0).encode() * 12)
    print(f"file: {big.stat().st_size / 1024**3:.2f} GB (page cache warm: just written)")
    tail = shutil.which("tail") or "tail"
    ours = best_of(7, lambda: tail_lines(big, 50))
    ours_small = best_of(7, lambda: tail_lines(small, 50))

    async def first_chunk() -> None:
        generator = FileLogSource(big).follow(initial_lines=50)
        await generator.__anext__()
        await generator.aclose()  # type: ignore[attr-defined]

    ours_follow = best_of(7, lambda: asyncio.run(first_chunk()))
    baseline = best_of(
        7,
        lambda: subprocess.run([tail, "-n", "50", str(big)], stdout=subprocess.DEVNULL, check=True),
    )
    cli = best_of(
        3,
        lambda: subprocess.run(
            [sys.executable, "-m", "runctl_tui", "monitor", "--log", str(big), "-n", "50"],
            stdout=subprocess.DEVNULL,
            check=True,
        ),
    )
    expected = subprocess.run([tail, "-n", "50", str(big)], capture_output=True, text=True).stdout
    assert tail_lines(big, 50) == expected.splitlines(), "tail_lines disagrees with tail -n 50"
    print(f"GNU tail -n 50 (process, incl. spawn): {baseline * 1000:8.2f} ms   [baseline]")
    print(
        f"tail_lines(1 GB, 50) in-process:       {ours * 1000:8.2f} ms   ({ours / baseline:.2f}x tail)"
    )
    print(f"FileLogSource first chunk (incl. loop): {ours_follow * 1000:8.2f} ms")
    print(
        f"runctl monitor --log -n 50 (process):   {cli * 1000:8.2f} ms   "
        "(mostly Python start-up and imports)"
    )
    print(f"tail_lines(1 KB, 50) for comparison:   {ours_small * 1000:8.2f} ms")
    ok = ours < 0.3 and ours <= 10 * baseline
    print(f"target <0.3 s and <=10x tail: {'MET' if ok else 'MISSED'}")
    big.unlink()


async def follow_with_source(path: Path, done: threading.Event, stats: dict[str, float]) -> None:
    buffer = LineBuffer(10_000)
    source = FileLogSource(path, poll_interval=0.5)
    generator = source.follow(initial_lines=0)
    first: float | None = None
    try:
        async for chunk in generator:
            if chunk.lines:
                if first is None:
                    first = time.monotonic()
                buffer.add(chunk)
                if chunk.lines[-1] == END:
                    stats["end_seen"] = time.monotonic()
                    stats["lines"] = buffer.total
                    stats["first"] = first
                    break
    finally:
        await generator.aclose()  # type: ignore[attr-defined]
        done.set()


def follow_with_tail(path: Path, stats: dict[str, float]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [shutil.which("tail") or "tail", "-n", "0", "-F", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    marker = END.encode() + b"\n"

    def pump() -> None:
        assert proc.stdout is not None
        lines = 0
        tail_bytes = b""
        fd = proc.stdout.fileno()
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                return
            if "first" not in stats:
                stats["first"] = time.monotonic()
            lines += data.count(b"\n")
            tail_bytes = (tail_bytes + data)[-64:]
            if tail_bytes.endswith(marker):
                stats["end_seen"] = time.monotonic()
                stats["lines"] = lines
                return

    threading.Thread(target=pump, daemon=True).start()
    return proc


def run_writer(
    path: Path, seconds: float, limit: int, rate: float = 0, fast: bool = False
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(path),
            str(seconds),
            str(limit),
            str(rate),
            "fast" if fast else "formatted",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def writer_result(proc: subprocess.Popen[str]) -> tuple[int, int, float, float]:
    out, _ = proc.communicate()
    lines, written, elapsed, end_time = out.split()
    return int(lines), int(written), float(elapsed), float(end_time)


def bench_follow(workdir: Path, seconds: float, fast: bool = False) -> None:
    kind = "unformatted lines (join of counters)" if fast else "each line formatted"
    print(f"\n== 2. follow: writer appends as fast as it can for {seconds:g} s, {kind} ==")
    path = workdir / "follow.log"
    path.touch()
    ours: dict[str, float] = {}
    theirs: dict[str, float] = {}
    done = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(follow_with_source(path, done, ours)), daemon=True
    )
    thread.start()
    tail_proc = follow_with_tail(path, theirs)
    time.sleep(0.5)  # both readers are set up and idle at the end of the file
    writer = run_writer(path, seconds, 0, fast=fast)
    lines, written, elapsed, end_time = writer_result(writer)
    done.wait(300)
    deadline = time.monotonic() + 60
    while "end_seen" not in theirs and time.monotonic() < deadline:
        time.sleep(0.01)
    tail_proc.terminate()
    tail_proc.wait()
    total = lines + 1
    print(
        f"writer: {lines:,} lines, {written / 1e6:,.0f} MB in {elapsed:.1f} s "
        f"= {lines / elapsed:,.0f} lines/s"
    )
    for name, stats in (
        ("GNU tail -F (into a pipe)", theirs),
        ("FileLogSource + LineBuffer", ours),
    ):
        if "end_seen" not in stats:
            print(f"{name:28s}: did not see the last line")
            continue
        span = stats["end_seen"] - stats["first"]
        got = int(stats["lines"])
        label = "  [baseline]" if name.startswith("GNU") else ""
        print(
            f"{name:28s}: {got:,} lines ({'all' if got == total else f'expected {total:,}'}), "
            f"{got / span:,.0f} lines/s, lag after last write {1000 * (stats['end_seen'] - end_time):.1f} ms{label}"
        )
    if "end_seen" in ours:
        rate = ours["lines"] / (ours["end_seen"] - ours["first"])
        lag = ours["end_seen"] - end_time
        if lag < 0.1:
            print("note: the reader kept pace, so its live lines/s is the writer's pace")
        else:
            print(f"note: the writer outran the reader; {1000 * lag:.0f} ms of backlog at the stop")
        catchup = catch_up(path)
        print(
            f"catch-up (read the {path.stat().st_size / 1e6:,.0f} MB file from the start): {catchup:,.0f} lines/s"
        )
        ok = max(rate, catchup) >= 500_000 and lag < 0.1
        print(
            f"target >=500k lines/s and lag <100 ms: {'MET' if ok else 'MISSED'} "
            f"(live {rate:,.0f} lines/s = the writer's pace, ceiling {catchup:,.0f} lines/s "
            f"from catch-up, lag {1000 * lag:.1f} ms)"
        )
    path.unlink()


def catch_up(path: Path) -> float:
    """Lines/s of FileLogSource reading a whole file from its start into a LineBuffer."""

    async def run() -> float:
        buffer = LineBuffer(10_000)
        generator = FileLogSource(path).follow(initial_lines=10**9)
        start = time.perf_counter()
        size = path.stat().st_size
        try:
            async for chunk in generator:
                buffer.add(chunk)
                if (
                    chunk.size is not None
                    and chunk.size >= size
                    and chunk.lines
                    and chunk.lines[-1] == END
                ):
                    break
        finally:
            await generator.aclose()  # type: ignore[attr-defined]
        return buffer.total / (time.perf_counter() - start)

    return asyncio.run(run())


def bench_rss(workdir: Path, size: int) -> None:
    print(f"\n== 3. RSS while following {size / 1024**3:.1f} GB of appends (10,000-line buffer) ==")
    path = workdir / "rss.log"
    path.touch()
    before, _ = rss_mb()
    stats: dict[str, float] = {}
    done = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(follow_with_source(path, done, stats)), daemon=True
    )
    thread.start()
    time.sleep(0.3)
    writer = run_writer(path, 3600, size)
    lines, written, elapsed, _ = writer_result(writer)
    done.wait(600)
    after, peak = rss_mb()
    print(
        f"appended: {written / 1024**3:.2f} GB, {lines:,} lines in {elapsed:.1f} s; follower saw {int(stats.get('lines', 0)):,}"
    )
    print(f"RSS before following: {before:7.1f} MB   [baseline]")
    print(
        f"RSS after following:  {after:7.1f} MB   (growth {after - before:+.1f} MB; peak of the process {peak:.1f} MB)"
    )
    print(f"target growth <50 MB: {'MET' if after - before < 50 else 'MISSED'}")
    path.unlink()


async def poll(condition: Callable[[], bool], interval: float = 0.002) -> None:
    """Return as soon as `condition` holds, checking every `interval` seconds."""
    while True:
        if condition():
            return
        await asyncio.sleep(interval)


def bench_pane(workdir: Path, seconds: float, rate: float) -> None:
    print(
        f"\n== 4. the pane: LogView (headless) following {rate:,.0f} lines/s for {seconds:g} s =="
    )
    from textual.app import App, ComposeResult

    from runctl_tui.ui.widgets.log_view import LogView

    path = workdir / "pane.log"
    path.touch()

    handled: list[float] = []

    class TimedLogView(LogView):
        def action_search_next(self) -> None:
            handled.append(time.perf_counter())
            super().action_search_next()

    class PaneApp(App[None]):
        def compose(self) -> ComposeResult:
            yield TimedLogView(id="log", max_lines=10_000, max_fps=10)

    async def run() -> None:
        app = PaneApp()
        async with app.run_test(size=(120, 40)) as pilot:
            view = app.query_one(LogView)
            view.set_source(FileLogSource(path, poll_interval=0.5))
            await pilot.pause(0.3)
            writer = await asyncio.to_thread(run_writer, path, seconds, 0, rate)
            key_times = []
            view.lines_view.focus()
            while writer.poll() is None:
                # The key goes into the app's queue like a real one; the action stamps when it ran.
                count = len(handled)
                start = time.perf_counter()
                app.simulate_key("n")
                await poll(lambda: len(handled) > count, 0.0005)  # noqa: B023
                key_times.append(handled[-1] - start)
                await asyncio.sleep(0.1)
            lines, _, elapsed, end_time = await asyncio.to_thread(writer_result, writer)
            await poll(
                lambda: view.buffer.total > 0 and view.buffer.line(view.buffer.total - 1) == END
            )
            seen = time.monotonic()
            shown_deadline = time.monotonic() + 5
            while END not in view.lines_view.visible_lines() and time.monotonic() < shown_deadline:
                await pilot.pause(0.005)
            shown = time.monotonic()
            print(f"writer: {lines:,} lines in {elapsed:.1f} s = {lines / elapsed:,.0f} lines/s")
            print(
                f"pane buffer has the last line {1000 * (seen - end_time):.1f} ms after it was written"
            )
            print(
                f"pane shows the last line      {1000 * (shown - end_time):.1f} ms after it was written (frames at <=10/s)"
            )
            print(
                f"key press to action during the flood: median {1000 * statistics.median(key_times):.1f} ms, "
                f"max {1000 * max(key_times):.1f} ms over {len(key_times)} presses"
            )

    asyncio.run(run())
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--follow-seconds", type=float, default=10.0)
    parser.add_argument("--rss-bytes", type=float, default=1024**3)
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: 1,2,2b,3,4")
    args = parser.parse_args()
    skip = set(args.skip.split(",")) if args.skip else set()
    workdir = Path(tempfile.mkdtemp(prefix="runctl-bench-logs-", dir=args.dir))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, files in {workdir}")
    try:
        if "1" not in skip:
            bench_tail(workdir)
        if "2" not in skip:
            bench_follow(workdir, args.follow_seconds)
        if "2b" not in skip:
            bench_follow(workdir, args.follow_seconds, fast=True)
        if "3" not in skip:
            bench_rss(workdir, int(args.rss_bytes))
        if "4" not in skip:
            bench_pane(workdir, 5.0, 100_000)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
