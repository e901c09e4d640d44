"""Sample: a tiny Lightning fit with CSVLogger, its progress bar captured raw from a terminal.

Run twice: with `TQDMProgressBar` (tests/data/metrics/lightning_tqdm/) and with the bar Lightning
picks by default when rich is installed, `RichProgressBar` (lightning_rich/). Each folder gets
console.raw (the bar as a terminal receives it), metrics.csv (CSVLogger's own file) and
ground_truth.json (every value Lightning logged, read from `trainer.callback_metrics` by a
callback, with `trainer.global_step` when the callback ran).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from metrics_capture import out_dir, run_in_pty


def child(truth_path: str, work: str, bar: str) -> None:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y), prog_bar=True)

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=0.1)

    truth: dict[str, list[list[float]]] = {"train_loss": [], "val_loss": []}

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
            truth["train_loss"].append(
                [trainer.global_step, float(trainer.callback_metrics["train_loss"])]
            )

        def on_validation_epoch_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
            truth["val_loss"].append(
                [trainer.global_step, float(trainer.callback_metrics["val_loss"])]
            )

    x = torch.randn(48, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(48, 1)
    train = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=8)
    val = DataLoader(TensorDataset(x[40:], y[40:]), batch_size=4)
    trainer = L.Trainer(
        max_epochs=3,
        logger=CSVLogger(work, name="csv"),
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[Record(), TQDMProgressBar()] if bar == "tqdm" else [Record()],
        accelerator="cpu",
    )
    trainer.fit(Tiny(), train, val)
    with open(truth_path, "w") as fh:
        json.dump({"lightning_version": L.__version__, **truth}, fh)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        for bar in ("tqdm", "rich"):
            target = out_dir(f"lightning_{bar}")
            work = tempfile.mkdtemp()
            raw = run_in_pty([__file__, "--child", str(target / "ground_truth.json"), work, bar])
            (target / "console.raw").write_bytes(raw)
            (csv,) = Path(work).glob("csv/version_*/metrics.csv")
            shutil.copy(csv, target / "metrics.csv")
            shutil.rmtree(work)
            print(f"{bar}: wrote {len(raw)} bytes")
