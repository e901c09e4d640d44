"""Sample: TensorBoard event files written by torch.utils.tensorboard.SummaryWriter.

Writes tests/data/metrics/tensorboard/events.out.tfevents.* (one run) and ground_truth.json:
every scalar this script passed to add_scalar, with its step. The file also holds a histogram
and a text summary, which a scalar reader must skip, and scalars in both of torch's encodings
(`simple_value`, and `new_style=True` tensors in float and double precision).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from metrics_capture import out_dir


def main() -> None:
    import torch
    from torch.utils.tensorboard import SummaryWriter

    target = out_dir("tensorboard")
    for old in target.glob("events.out.tfevents.*"):
        old.unlink()
    truth: dict[str, list[list[float]]] = {}
    writer = SummaryWriter(log_dir=str(target), filename_suffix=".sample")
    for step in range(0, 30):
        loss = 2.0 * math.exp(-step / 10) + 0.05
        writer.add_scalar("train/loss", loss, step)
        truth.setdefault("train/loss", []).append([step, loss])
        lr = 1e-3 * (1 - step / 30)
        writer.add_scalar("train/lr", lr, step, new_style=True)
        truth.setdefault("train/lr", []).append([step, lr])
        if step % 10 == 9:
            val = loss * 1.1
            writer.add_scalar("val/loss", val, step, new_style=True, double_precision=True)
            truth.setdefault("val/loss", []).append([step, val])
            writer.add_histogram("weights", torch.linspace(0, 1, 20) * step, step)
            writer.add_text("note", f"step {step}", step)
    writer.close()
    (event,) = target.glob("events.out.tfevents.*")
    with open(target / "ground_truth.json", "w") as fh:
        json.dump({"torch_version": torch.__version__, "file": event.name, "scalars": truth}, fh)
    print(f"wrote {event.stat().st_size} bytes")
    shutil.rmtree(target / "unused", ignore_errors=True)


if __name__ == "__main__":
    main()
