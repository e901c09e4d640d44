"""Benchmark: the metrics line parser on a realistic mixed training log of 1M lines.

Prints lines/s of `LineMetricsParser.feed` beside plain line iteration over the same file in
the same run (the baseline). Target: >= 300k lines/s and within 5x of plain iteration.

The log mixes what a long run's console output holds: logging lines and prose (data loading,
checkpoint saves, warnings), print-style metric lines (`iter N: loss X, time Y ms`,
`step N | loss=... lr=...`), transformers' printed dicts, JSON lines, tqdm bars with several
`\\r` redraws per line and Keras bars with backspaces and ANSI codes.

Both are timed as CPU time of this process (`time.process_time`), best of several runs, so
other work on a shared machine disturbs the figures less than wall time would.

Run: .venv/bin/python bench/metrics.py [--lines N] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

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


def parse(path: Path) -> tuple[float, int]:
    """The parser over the same lines; returns (seconds, points found)."""
    parser = LineMetricsParser()
    start = time.process_time()
    points = 0
    with open(path, encoding="utf-8", errors="replace", newline="\n") as fh:
        while True:
            chunk = fh.readlines(1 << 20)
            if not chunk:
                break
            points += len(parser.feed(chunk))
    return time.process_time() - start, points


def main() -> None:
    """Generate the log, time both, print the figures."""
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--lines", type=int, default=1_000_000)
    args.add_argument("--keep", action="store_true", help="keep the generated log")
    opts = args.parse_args()
    fd, name = tempfile.mkstemp(prefix="runctl-metrics-bench-", suffix=".log", dir="/tmp")
    os.close(fd)
    path = Path(name)
    try:
        make_log(path, opts.lines)
        size_mb = path.stat().st_size / 1e6
        plain(path)  # warm the page cache
        base_s, count = min(plain(path) for _ in range(3))
        parse_s, points = min(parse(path) for _ in range(2))
        print(f"log: {count:,} lines, {size_mb:.1f} MB ({path if opts.keep else 'deleted after'})")
        print(f"plain line iteration: {count / base_s:,.0f} lines/s ({base_s:.2f} s)")
        print(
            f"LineMetricsParser:    {count / parse_s:,.0f} lines/s ({parse_s:.2f} s), "
            f"{points:,} points"
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
