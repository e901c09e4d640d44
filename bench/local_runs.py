"""How long the dashboard's reconcile and a local launch take, each beside a baseline.

- reconcile with a registry of N finished runs and 10 running ones, beside a bare
  `SELECT * FROM runs` of the same database (what any listing costs);
- launch_local_run until the run is recorded, beside starting and waiting for `python -c pass`.

Run: .venv/bin/python bench/local_runs.py [N]
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runctl_tui.core.config import Config
from runctl_tui.core.local_runs import (
    launch_local_run,
    process_start_time,
    reconcile,
    wait_for_exit,
)
from runctl_tui.core.models import Provider, Run, RunStatus
from runctl_tui.core.runs import RunRegistry


def timed(fn: object, repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    """Print the figures."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry = RunRegistry(root / "runs.db")
        running_ids = [f"run-{i:06d}" for i in range(n, n + 10)]
        # Live processes with the run id on their command line: what running runs look like.
        sleepers = {
            rid: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", rid])
            for rid in running_ids
        }
        try:
            for i in range(n + 10):
                rid = f"run-{i:06d}"
                sleeper = sleepers.get(rid)
                registry.add(
                    Run(
                        id=rid,
                        backend=Provider.LOCAL,
                        machine="local",
                        script="train.py",
                        args=("--epochs", "5"),
                        cwd=str(root),
                        status=RunStatus.RUNNING if sleeper else RunStatus.SUCCEEDED,
                        started=float(i),
                        log_path=str(root / "runs" / rid / "train.log"),
                        checkpoint_dir=str(root / "checkpoints"),
                        pid=sleeper.pid if sleeper else None,
                        pid_start_time=process_start_time(sleeper.pid) if sleeper else None,
                    )
                )

            def reconcile_once() -> None:
                assert reconcile(registry) == []

            def select_all() -> None:
                conn = sqlite3.connect(registry.path)
                conn.execute("SELECT * FROM runs").fetchall()
                conn.close()

            base = timed(select_all, 20)
            ours = timed(reconcile_once, 20)
            print(f"reconcile, {n} finished + 10 running runs: {ours * 1000:.1f} ms")
            print(f"  baseline SELECT * of the same table:   {base * 1000:.1f} ms")
        finally:
            for sleeper in sleepers.values():
                sleeper.kill()
                sleeper.wait()

        os.chdir(root)
        script = root / "noop.py"
        script.write_text("pass\n")
        config = Config()
        config.local.use_uv = False
        launch_registry = RunRegistry(root / "launch.db")
        counter = iter(range(1000))

        def launch() -> None:
            run = launch_local_run(
                config,
                str(script),
                [],
                checkpoint_dir=f"ckpt-{next(counter)}",
                registry=launch_registry,
            )
            wait_for_exit(run, 30)

        def plain() -> None:
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        base = timed(plain, 10)
        ours = timed(launch, 10)
        print(f"launch_local_run + wait for a no-op script: {ours * 1000:.0f} ms")
        print(f"  baseline python -c pass (start + wait):  {base * 1000:.0f} ms")


if __name__ == "__main__":
    main()
