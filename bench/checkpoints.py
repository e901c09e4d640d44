"""Checkpoint browser performance, each figure beside a baseline measured in the same run.

1. List a directory of 10,000 checkpoint files with `list_checkpoints` (baselines: a recursive
   `os.scandir` over the same tree, names only, and the same plus one stat per file). Target:
   within 3x of the baseline. A listing must show size and modified time, so it needs one
   stat per file (the issue says so): scandir + stat is the honest floor and the ratio to it
   is the target checked; the ratio to names-only scandir is printed beside it. Figures are
   wall time, best and median of `--repeat` runs; the ratios use the medians. The "cold"
   figure clears the per-name caches (format, step, epoch) before each run, as the first
   listing of a directory in a process sees them.
2. Inspect a 2 GB safetensors file and a 2 GB PyTorch zip file (baseline: reading their first
   1 MB). Target: each inspect under 50 ms.

The big files are written by the real libraries with the generator venv when it exists
(`--genvenv`, default /work/genvenv/bin/python: `torch.save` and `safetensors.torch.save_file`
of one 2 GB float32 tensor), else built sparse (a valid header, the data a hole). Everything
goes to a temporary folder (`--tmp`, default the system's) and is deleted afterwards.

    .venv/bin/python bench/checkpoints.py [--files 10000] [--gb 2] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from runctl_tui.core.checkpoints import discovery, inspect_checkpoint, list_checkpoints

GENERATOR = """
import sys, torch
from safetensors.torch import save_file
n = int(sys.argv[3]) // 4
weight = torch.zeros(n, dtype=torch.float32)
torch.save({"model_state_dict": {"weight": weight}, "epoch": 1, "step": 100, "loss": 0.5}, sys.argv[1])
save_file({"weight": weight}, sys.argv[2], metadata={"step": "100"})
"""


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best, median) wall time in seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def interleaved(fns: list[Callable[[], object]], repeat: int) -> list[tuple[float, float]]:
    """(best, median) wall time of each function, run in turn `repeat` times.

    Round-robin rather than one function's runs after another's, so that a change in the
    load of a shared machine falls on the baselines and the listing alike.
    """
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [(min(spent), statistics.median(spent)) for spent in times]


def make_tree(root: Path, count: int) -> None:
    """`count` checkpoint files over 10 run folders, with notes and logs mixed in."""
    per_dir = count // 10
    for run in range(10):
        folder = root / f"run{run}" / "checkpoints"
        folder.mkdir(parents=True)
        for i in range(per_dir):
            name = (
                f"epoch={i // 10}-step={i}.ckpt"
                if i % 3 == 0
                else f"model_step{i}.pt"
                if i % 3 == 1
                else f"weights-{i}.safetensors"
            )
            (folder / name).write_bytes(b"")
        (folder.parent / "train.log").write_bytes(b"")
        (folder.parent / "metrics.jsonl").write_bytes(b"")


def scandir_baseline(root: Path) -> int:
    """Recursive os.scandir listing names only (no stat): the floor of any listing."""
    count = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    count += 1
    return count


def scandir_stat_baseline(root: Path) -> int:
    """Recursive os.scandir plus one stat per file: the floor of a listing with sizes."""
    total = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def cold_listing(root: Path) -> int:
    """`list_checkpoints` with the per-name caches emptied first (a directory never seen)."""
    discovery._name_facts.cache_clear()
    discovery._parse_name.cache_clear()
    discovery.candidate_format.cache_clear()
    return len(list_checkpoints(root))


def read_first_mb(path: Path) -> int:
    with open(path, "rb") as handle:
        return len(handle.read(1024 * 1024))


def sparse_files(folder: Path, size: int) -> tuple[Path, Path]:
    """Fallback without torch: the test suite's sparse builders (valid headers, holes for data)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.core.test_checkpoints_inspect import SAMPLES, sparse_safetensors, sparse_torch_zip

    with zipfile.ZipFile(SAMPLES / "torch/state_dict_zip.pt") as archive:
        data_pkl = archive.read("state_dict_zip/data.pkl")
    zip_path = folder / "big.pt"
    sparse_torch_zip(zip_path, data_pkl, "big", size)
    st_path = folder / "big.safetensors"
    sparse_safetensors(st_path, size)
    return zip_path, st_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--genvenv", default="/work/genvenv/bin/python")
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--skip-big", action="store_true", help="only the listing benchmark")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runctl-bench-ckpt-", dir=args.tmp))
    results: dict[str, object] = {}
    try:
        tree = work / "tree"
        tree.mkdir()
        make_tree(tree, args.files)
        listed = len(list_checkpoints(tree))
        assert listed == args.files, listed
        (base, base_med), (stat_base, stat_med), (ours, ours_med), (cold, cold_med) = interleaved(
            [
                lambda: scandir_baseline(tree),
                lambda: scandir_stat_baseline(tree),
                lambda: list_checkpoints(tree),
                lambda: cold_listing(tree),
            ],
            args.repeat,
        )
        print(f"listing {args.files} checkpoint files (+{20} other files), {args.repeat} runs:")
        for label, best, median in (
            ("baseline os.scandir (names only)", base, base_med),
            ("baseline os.scandir + 1 stat/file", stat_base, stat_med),
            ("list_checkpoints", ours, ours_med),
            ("list_checkpoints, cold caches", cold, cold_med),
        ):
            print(f"  {label:<34} best {best * 1000:7.1f} ms   median {median * 1000:7.1f} ms")
        ratio_stat = ours_med / stat_med
        print(
            f"  ratio to scandir + stat (medians): {ratio_stat:.2f}x (cold {cold_med / stat_med:.2f}x)"
            f"   target <= 3x: {'met' if ratio_stat <= 3 else 'MISSED'}"
        )
        print(
            f"  ratio to scandir names only (medians): {ours_med / base_med:.2f}x"
            f" (cold {cold_med / base_med:.2f}x); no listing that shows sizes can skip the stat"
        )
        results["listing"] = {
            "scandir_ms": base_med * 1000,
            "scandir_stat_ms": stat_med * 1000,
            "ours_ms": ours_med * 1000,
            "ours_cold_ms": cold_med * 1000,
            "ratio_to_scandir_stat": ratio_stat,
            "ratio_to_scandir": ours_med / base_med,
        }

        if args.skip_big:
            print("\n" + json.dumps(results))
            return
        size = int(args.gb * 1024**3)
        big = work / "big"
        big.mkdir()
        zip_path, st_path = big / "big.pt", big / "big.safetensors"
        start = time.perf_counter()
        how = "sparse"
        if Path(args.genvenv).exists():
            done = subprocess.run(
                [args.genvenv, "-c", GENERATOR, str(zip_path), str(st_path), str(size)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                how = "real torch.save / safetensors save_file"
            else:
                print(done.stderr[-2000:], file=sys.stderr)
        if how == "sparse":
            zip_path, st_path = sparse_files(big, size)
        print(f"\nbig files ({how}, built in {time.perf_counter() - start:.1f} s):")
        for label, path in (("safetensors", st_path), ("PyTorch zip", zip_path)):
            info = inspect_checkpoint(path)
            assert info.error is None, info.error
            base, base_med = timed(lambda p=path: read_first_mb(p), args.repeat)  # type: ignore[misc]
            ours, ours_med = timed(lambda p=path: inspect_checkpoint(p), args.repeat)  # type: ignore[misc]
            print(
                f"  {label:<12} {path.stat().st_size / 1024**3:.2f} GiB  params {info.parameter_count:,}\n"
                f"    baseline read first 1 MB   {base * 1000:8.2f} ms  (median {base_med * 1000:.2f})\n"
                f"    inspect_checkpoint         {ours * 1000:8.2f} ms  (median {ours_med * 1000:.2f})"
                f"  target < 50 ms: {'met' if ours < 0.05 else 'MISSED'}"
            )
            results[label] = {
                "size": path.stat().st_size,
                "read_1mb_ms": base * 1000,
                "inspect_ms": ours * 1000,
                "how": how,
            }
        print("\n" + json.dumps(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
