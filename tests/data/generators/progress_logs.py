"""Capture what real progress bars write, for the `\\r` collapsing tests (tests/core/test_logs.py).

Run with the generator venv (it has tqdm and Lightning; the test suite never imports them):

    /work/genvenv/bin/python tests/data/generators/progress_logs.py

Each sample runs in a child process whose stdout and stderr go where a training run's would:
a log file (`nohup python train.py > train.log 2>&1`) or a pseudo-terminal. The raw bytes are
kept in tests/data/logs/*.log; the ground truth the library itself reports (tqdm's own
`str(bar)` of the final state, Lightning's bar counters and postfix) goes beside them in
*.json. Outputs are a few KB.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "logs"
N_TQDM = 40


def child_tqdm(truth_path: str) -> None:
    """A loop with a tqdm bar (updates every step), tqdm.write messages and prints around it."""
    from tqdm import tqdm

    clock = [1000.0]
    print("starting training", flush=True)
    bar = tqdm(total=N_TQDM, desc="train", ncols=80, mininterval=0, miniters=1, file=sys.stderr)
    # A fixed clock makes elapsed/rate reproducible, so tqdm's own final render is the truth.
    bar._time = lambda: clock[0]  # type: ignore[method-assign]
    bar.start_t = bar.last_print_t = clock[0]
    messages = []
    for step in range(N_TQDM):
        clock[0] += 0.25
        bar.set_postfix(loss=f"{1.0 / (step + 1):.3f}", refresh=False)
        bar.update(1)
        if step in (9, 24):
            message = f"checkpoint saved at step {step + 1}"
            tqdm.write(message, file=sys.stderr)
            messages.append(message)
    bar.close()
    final = str(bar)
    print("training done", flush=True)
    truth = {
        "library": f"tqdm {__import__('tqdm').__version__}",
        "final_bar": final,
        "expected_lines": ["starting training", *messages, final, "training done"],
    }
    Path(truth_path).write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n")


def child_lightning(truth_path: str) -> None:
    """A tiny Lightning fit with the TQDMProgressBar refreshing every batch."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import TQDMProgressBar
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    record: dict[str, object] = {}

    class Recorder(TQDMProgressBar):
        def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            bar = self.train_progress_bar
            record.update(desc=bar.desc, n=bar.n, total=bar.total, postfix=bar.postfix)
            super().on_train_end(trainer, pl_module)

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y), prog_bar=True)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[Recorder(refresh_rate=1)],
        limit_val_batches=2,
    )
    trainer.fit(Tiny(), DataLoader(data, batch_size=4), DataLoader(data, batch_size=8))
    record["library"] = f"lightning {L.__version__}, tqdm {__import__('tqdm').__version__}"
    record["epochs"] = 2
    Path(truth_path).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def run_to_file(kind: str, log: Path, truth: Path) -> None:
    with log.open("wb") as handle:
        subprocess.run(
            [sys.executable, "-u", __file__, kind, str(truth)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "80"},
        )


def run_in_pty(kind: str, log: Path, truth: Path) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-u", __file__, kind, str(truth)],
        stdout=slave,
        stderr=slave,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "80", "TERM": "xterm"},
    )
    os.close(slave)
    received = bytearray()
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        received += data
    os.close(master)
    if proc.wait() != 0:
        raise SystemExit(f"{kind} child failed")
    log.write_bytes(bytes(received))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    import tqdm

    version = tqdm.__version__
    run_to_file("tqdm", OUT / f"tqdm-{version}.log", OUT / f"tqdm-{version}.json")
    run_in_pty("tqdm", OUT / f"tqdm-{version}-pty.log", OUT / f"tqdm-{version}-pty.json")
    import lightning

    lv = lightning.__version__
    run_to_file("lightning", OUT / f"lightning-{lv}.log", OUT / f"lightning-{lv}.json")
    for path in sorted(OUT.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "tqdm":
        child_tqdm(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "lightning":
        child_lightning(sys.argv[2])
    else:
        main()
