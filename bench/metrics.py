"""Benchmark: the metrics line parser on a realistic mixed training log of 1M lines.

Prints lines/s of `LineMetricsParser.feed` beside plain line iteration over the same file in
the same run (the baseline). Target: >= 300k lines/s and within 5x of plain iteration.

The log mixes what a long run's console output holds: logging lines and prose (data loading,
checkpoint saves, warnings), print-style metric lines (`iter N: loss X, time Y ms`,
`step N | loss=... lr=...`), transformers' printed dicts, JSON lines, tqdm bars with several
`\\r` redraws per line and Keras bars with backspaces and ANSI codes.

Both are timed as CPU time of this process (`time.process_time`), in alternation (baseline,
parser, baseline, parser, ...) and each at its best, so a slow spell of a shared machine
weighs on both alike and disturbs the figures less than wall time would.

Is the mix realistic? The bench prints it beside the real captures in tests/data (tqdm,
Lightning, Keras, transformers, as a terminal received them): points per line and bar
redraws per line. The captures hold about 2.2 points and 3.1 redraws per line, the bench log
about 2.0 points and 0.5 redraws (fewer of the captures' lines hold a point, 38% against 60%,
but those hold more), so per line the mix is not heavier than real output and is kept.

The parser's hot loops run in C where its extension was built (see lines.py); the bench also
prints the same parser without them (pure Python), its cost per kind of line (each kind parsed
on its own, as lines/s and its share of the whole, which shows where the time goes) and its
speed on the real captures of tests/data repeated into a log of their own.

Run: .venv/bin/python bench/metrics.py [--lines N] [--rounds N] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from runctl_tui.core.metrics import lines as lines_module
from runctl_tui.core.metrics.lines import LineMetricsParser


def _bar(n: int, total: int, postfix: str) -> str:
    filled = n * 30 // total
    bar = "█" * filled + " " * (30 - filled)
    return f"Epoch 1: {n * 100 // total:3d}%|{bar}| {n}/{total} [00:12<00:30, 4.20it/s, {postfix}]"


def make_log(path: Path, lines: int, seed: int = 0) -> None:
    """Write a mixed training log of `lines` newline-terminated lines."""
    rng = random.Random(seed)
    out: list[str] = []
    step = 0
    for i in range(lines):
        r = rng.random()
        loss = 2.5 * (0.9999**i) + rng.random() * 0.05
        if r < 0.35:
            kind = rng.randrange(6)
            out.append(
                (
                    f"2026-05-01 12:{i % 60:02d}:{i % 59:02d},{i % 1000:03d} INFO data.loader: "
                    f"prefetching shard {i % 128} of 128 from /data/train",
                    f"[rank0]: Saving model checkpoint to out/checkpoint-{step}",
                    "UserWarning: The given NumPy array is not writable, and PyTorch does not "
                    "support non-writable tensors.",
                    f'  File "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/module.py"'
                    f", line {1500 + i % 50}, in _call_impl",
                    "Using the latest cached version of the dataset since it is offline",
                    f"W0501 12:00:{i % 60:02d}.123 123 torch/distributed/elastic: process group ok",
                )[kind]
            )
        elif r < 0.50:
            step += 1
            out.append(f"iter {step}: loss {loss:.4f}, time {rng.random() * 200:.2f}ms, mfu 41.3%")
        elif r < 0.65:
            step += 1
            out.append(
                f"step {step} | loss={loss:.4f} lr=3.0e-04 grad_norm={rng.random():.3f} tok/s=51234"
            )
        elif r < 0.75:
            out.append(
                f"{{'loss': '{loss:.4g}', 'grad_norm': '{rng.random():.4g}', "
                f"'learning_rate': '4.5e-05', 'epoch': '{i / lines:.3g}'}}"
            )
        elif r < 0.80:
            out.append(
                f'{{"step": {step}, "loss": {loss:.5f}, "lr": 0.0003, "time": 1714567890.5}}'
            )
        elif r < 0.90:
            n = rng.randrange(1, 95)
            redraws = [_bar(n + k, 100, f"loss={loss + k * 0.01:.3g}") for k in range(4)]
            out.append("\r" + "\r".join(redraws))
        elif r < 0.95:
            out.append(
                f"\r\x1b[1m{i % 8 + 1}/8\x1b[0m \x1b[32m━━━━━━━━━━\x1b[0m \x1b[1m0s\x1b[0m "
                f"4ms/step - loss: {loss:.4f}" + "\b" * 20
            )
        else:
            out.append(
                ("", "-" * 80, "Traceback (most recent call last):", "  warnings.warn(")[i % 4]
            )
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def plain(path: Path) -> tuple[float, int]:
    """Baseline: iterate the file's lines and do nothing."""
    start = time.process_time()
    count = 0
    with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
        for _ in fh:
            count += 1
    return time.process_time() - start, count


def parse(path: Path, *, pure: bool = False) -> tuple[float, int]:
    """The parser over the same lines (`pure`: without its C loops); returns (seconds, points
    found)."""
    saved = lines_module._speedups
    if pure:
        lines_module._speedups = None
    try:
        parser = LineMetricsParser()
    finally:
        lines_module._speedups = saved
    start = time.process_time()
    points = 0
    with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
        while True:
            chunk = fh.readlines(1 << 20)
            if not chunk:
                break
            points += sum(len(values) for _, values in parser.feed_columns(chunk).values())
    return time.process_time() - start, points


KINDS = (
    ("tqdm redraws", lambda line: "\r" in line and "\x1b" not in line),
    ("keras redraws", lambda line: "\x1b" in line),
    ("printed metric lines", lambda line: line.startswith(("iter ", "step "))),
    ("dicts and JSON lines", lambda line: line.startswith("{")),
)


def by_kind(path: Path) -> list[tuple[str, int, float]]:
    """(kind, lines, CPU seconds) of the parser on each kind of line of the log, alone."""
    with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
        lines = fh.readlines()
    groups: dict[str, list[str]] = {}
    for line in lines:
        kind = next((name for name, test in KINDS if test(line)), "prose and the rest")
        groups.setdefault(kind, []).append(line)
    del lines
    figures = []
    for kind, group in groups.items():
        best = float("inf")
        for _ in range(2):
            parser = LineMetricsParser()
            start = time.process_time()
            for begin in range(0, len(group), 10_000):
                parser.feed_columns(group[begin : begin + 10_000])
            best = min(best, time.process_time() - start)
        figures.append((kind, len(group), best))
    return figures


def mix(lines: list[str]) -> tuple[float, float, float]:
    """(points per line, bar redraws per line, share of lines with a point) of console lines."""
    parser = LineMetricsParser()
    points = 0
    with_points = 0
    redraws = 0
    for line in lines:
        found = len(parser.feed([line]))
        points += found
        with_points += found > 0
        redraws += sum(1 for part in line.split("\r")[1:] if part.strip())
    return points / len(lines), redraws / len(lines), with_points / len(lines)


def real_lines() -> list[str]:
    """The console captures of the real libraries kept for the tests."""
    data = Path(__file__).resolve().parents[1] / "tests" / "data"
    lines: list[str] = []
    for path in sorted([*data.glob("metrics/*/*.raw"), *data.glob("logs/*.log")]):
        text = path.read_bytes().decode("utf-8", "replace")
        lines.extend(line + "\n" for line in text.split("\n")[:-1])
    return lines


def main() -> None:
    """Generate the log, time both, print the figures."""
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--lines", type=int, default=1_000_000)
    args.add_argument("--keep", action="store_true", help="keep the generated log")
    args.add_argument("--rounds", type=int, default=5, help="alternating runs of each")
    opts = args.parse_args()
    fd, name = tempfile.mkstemp(prefix="runctl-metrics-bench-", suffix=".log", dir="/tmp")
    os.close(fd)
    path = Path(name)
    try:
        make_log(path, opts.lines)
        size_mb = path.stat().st_size / 1e6
        plain(path)  # warm the page cache
        base_s, count = plain(path)
        parse_s, points = parse(path)
        for _ in range(opts.rounds - 1):
            base_s = min(base_s, plain(path)[0])
            parse_s = min(parse_s, parse(path)[0])
        pure_s = min(parse(path, pure=True)[0] for _ in range(2))
        kinds = by_kind(path)
        # The real captures, repeated into a log of their own: output as the libraries print it.
        captures = path.with_suffix(".captures.log")
        copies = max(1, opts.lines // 5 // len(real_lines()))
        captures.write_text("".join(real_lines()) * copies, encoding="utf-8")
        try:
            real_base, real_count = plain(captures)
            real_parse = parse(captures)[0]
            for _ in range(opts.rounds - 1):
                real_base = min(real_base, plain(captures)[0])
                real_parse = min(real_parse, parse(captures)[0])
        finally:
            captures.unlink(missing_ok=True)
        with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
            sample = [line for _, line in zip(range(20_000), fh, strict=False)]
        ours = mix(sample)
        real = mix(real_lines())
        print(f"log: {count:,} lines, {size_mb:.1f} MB ({path if opts.keep else 'deleted after'})")
        print(f"plain line iteration: {count / base_s:,.0f} lines/s ({base_s:.2f} s)")
        print(
            f"LineMetricsParser:    {count / parse_s:,.0f} lines/s ({parse_s:.2f} s), "
            f"{points:,} points"
        )
        print(
            f"  the same without its C loops (pure Python): {count / pure_s:,.0f} lines/s "
            f"({pure_s:.2f} s, {pure_s / parse_s:.1f}x the time)"
        )
        total = sum(seconds for _, _, seconds in kinds)
        for kind, lines, seconds in sorted(kinds, key=lambda item: -item[2]):
            print(
                f"  {kind:22} {lines:>9,} lines {lines / seconds:>12,.0f} lines/s "
                f"{seconds / total:5.0%} of the parser's time"
            )
        for label, (per_line, redraws, share) in (
            ("bench log (first 20,000 lines)", ours),
            ("real captures in tests/data", real),
        ):
            print(
                f"mix of {label}: {per_line:.2f} points/line, {redraws:.2f} bar redraws/line, "
                f"{share:.0%} of lines hold a point"
            )
        print(
            f"real captures repeated to {real_count:,} lines: plain {real_count / real_base:,.0f} "
            f"lines/s, parser {real_count / real_parse:,.0f} lines/s "
            f"({real_parse / real_base:.1f}x plain iteration)"
        )
        ratio = parse_s / base_s
        verdict = "OK" if count / parse_s >= 300_000 and ratio <= 5 else "BELOW TARGET"
        print(
            f"parser is {ratio:.1f}x plain iteration (target: >= 300,000 lines/s and <= 5x): "
            f"{verdict}"
        )
    finally:
        if not opts.keep:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
