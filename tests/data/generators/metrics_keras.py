"""Sample: a Keras 3 fit (torch backend) with verbose=1 output captured raw, plus CSVLogger.

Writes tests/data/metrics/keras/: console.raw (the progress bar as a terminal receives it),
training.csv (CSVLogger's file) and ground_truth.json (History.history, and the logs Keras
handed to on_train_batch_end, which are what the bar displays).
"""

from __future__ import annotations

import json
import os
import sys

from metrics_capture import out_dir, run_in_pty


def child(truth_path: str, csv_path: str) -> None:
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    x = np.random.rand(160, 4).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype="float32")).astype("float32")
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    batches: list[list[float]] = []

    class Record(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
            batches.append([self.epoch + 1, batch + 1, float(logs["loss"])])

    history = model.fit(
        x,
        y,
        epochs=3,
        batch_size=16,
        validation_split=0.2,
        verbose=1,
        callbacks=[keras.callbacks.CSVLogger(csv_path), Record()],
    )
    with open(truth_path, "w") as fh:
        json.dump(
            {
                "keras_version": keras.__version__,
                "backend": keras.backend.backend(),
                "history": history.history,
                "batches": batches,
                "batch_columns": ["epoch (1-based)", "batch (1-based)", "loss"],
            },
            fh,
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        target = out_dir("keras")
        raw = run_in_pty(
            [__file__, "--child", str(target / "ground_truth.json"), str(target / "training.csv")],
            env={"KERAS_BACKEND": "torch"},
        )
        (target / "console.raw").write_bytes(raw)
        print(f"wrote {len(raw)} bytes")
