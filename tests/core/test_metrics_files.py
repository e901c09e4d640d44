"""Metric files (CSVLogger, trainer_state.json, metrics.jsonl) and TensorBoard event files,
checked against the values the libraries themselves recorded."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core.metrics.files import CsvReader, TextReader, TrainerStateReader
from runctl_tui.core.metrics.tensorboard import EventFileReader, masked_crc32c, read_event_file
from runctl_tui.core.metrics.tracker import read_metrics

SAMPLES = Path(__file__).parent.parent / "data" / "metrics"


def truth(folder: str) -> Any:
    return json.loads((SAMPLES / folder / "ground_truth.json").read_text())


def test_lightning_csvlogger_sparse_rows_match_callback_metrics() -> None:
    series = read_metrics(SAMPLES / "lightning_tqdm" / "metrics.csv")
    expected = truth("lightning_tqdm")
    for name in ("train_loss", "val_loss"):
        # CSVLogger records the step of the batch that produced the value; by the time a
        # callback runs, trainer.global_step has already moved past it.
        assert series[name] == [(float(step - 1), value) for step, value in expected[name]]


def test_keras_csvlogger_matches_history() -> None:
    series = read_metrics(SAMPLES / "keras" / "training.csv")
    history = truth("keras")["history"]
    assert series["loss"] == [(float(i), v) for i, v in enumerate(history["loss"])]
    assert series["val_loss"] == [(float(i), v) for i, v in enumerate(history["val_loss"])]


def test_trainer_state_log_history_and_best_checkpoint() -> None:
    reader = TrainerStateReader(SAMPLES / "hf_console" / "trainer_state.json")
    assert reader.poll()
    expected = truth("hf_console")
    # The checkpoint's state was saved before the final summary entry was logged.
    history = [e for e in expected["log_history"] if "train_runtime" not in e]
    for name in ("loss", "learning_rate", "grad_norm", "eval_loss"):
        want = [(float(e["step"]), e[name]) for e in history if name in e]
        assert reader.series[name].points() == want
    assert reader.info["best_metric"] == expected["best_metric"]
    assert (
        Path(reader.info["best_model_checkpoint"]).name
        == Path(expected["best_model_checkpoint"]).name
    )
    assert not reader.poll()  # unchanged file: nothing new


def test_simple_value_and_tensor_scalars_from_summary_writer() -> None:
    (event,) = (SAMPLES / "tensorboard").glob("events.out.tfevents.*")
    points = read_event_file(event)
    expected = truth("tensorboard")["scalars"]
    got: dict[str, list[tuple[float | None, float]]] = {}
    for point in points:
        got.setdefault(point.name, []).append((point.step, point.value))
    assert set(got) == set(expected)  # the histogram and the text are skipped
    for name, pairs in expected.items():
        assert [s for s, _ in got[name]] == [float(s) for s, _ in pairs]
        rel = 0 if name == "val/loss" else 1e-6  # float32 except the double-precision tag
        assert [v for _, v in got[name]] == pytest.approx([v for _, v in pairs], rel=rel)


def test_transformers_tensorboard_callback_matches_log_history() -> None:
    (event,) = (SAMPLES / "hf_tensorboard").glob("events.out.tfevents.*")
    got: dict[str, list[tuple[float | None, float]]] = {}
    for point in read_event_file(event):
        got.setdefault(point.name, []).append((point.step, point.value))
    history = truth("hf_tensorboard")["log_history"]
    for tag, key in (
        ("train/loss", "loss"),
        ("eval/loss", "eval_loss"),
        ("train/learning_rate", "learning_rate"),
    ):
        want = [(float(e["step"]), e[key]) for e in history if key in e]
        assert [s for s, _ in got[tag]] == [s for s, _ in want]
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in want], rel=1e-6)


def test_event_file_read_incrementally_as_it_grows(tmp_path: Path) -> None:
    (event,) = (SAMPLES / "tensorboard").glob("events.out.tfevents.*")
    data = event.read_bytes()
    whole = read_event_file(event)
    growing = tmp_path / event.name
    growing.write_bytes(b"")
    reader = EventFileReader(growing)
    collected = []
    offsets = []
    for cut in range(0, len(data) + 1, 997):  # cuts land inside records
        growing.write_bytes(data[:cut])
        collected.extend(reader.read_new())
        offsets.append(reader.offset)
    growing.write_bytes(data)
    collected.extend(reader.read_new())
    assert collected == whole
    assert offsets == sorted(offsets) and reader.offset == len(data)


def test_corrupt_length_stops_reading_without_error(tmp_path: Path) -> None:
    (event,) = (SAMPLES / "tensorboard").glob("events.out.tfevents.*")
    data = bytearray(event.read_bytes())
    (first_len,) = struct.unpack("<Q", data[:8])
    second = 12 + first_len + 4
    assert struct.unpack("<I", data[8:12])[0] == masked_crc32c(bytes(data[:8]))
    data[second] ^= 0xFF  # break the second record's length
    broken = tmp_path / event.name
    broken.write_bytes(bytes(data))
    reader = EventFileReader(broken)
    assert reader.read_new() == [] and reader.offset == second


def test_metrics_jsonl_contract_and_incremental_reading(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 1, "loss": 0.9}\n{"step": 2, "loss": 0.8, "lr": 0.1}\n{"step": 3, "lo'
    )
    reader = TextReader(path)
    assert reader.poll()
    assert reader.series["loss"].points() == [(1.0, 0.9), (2.0, 0.8)]
    assert not reader.poll()  # the unfinished line waits
    with path.open("a") as fh:
        fh.write('ss": 0.7}\n{"loss": NaN}\n')
    assert reader.poll()
    values = reader.series["loss"].values
    assert values[:3] == [0.9, 0.8, 0.7] and math.isnan(values[3])
    assert reader.series["loss"].steps[3] is None


def test_csv_rewritten_with_a_wider_header_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss\n0,0,1.5\n0,1,1.2\n")
    reader = CsvReader(path)
    assert reader.poll()
    assert reader.series["train_loss"].points() == [(0.0, 1.5), (1.0, 1.2)]
    # What Lightning does when val_loss first appears: the whole file, new header.
    path.write_text("epoch,step,train_loss,val_loss\n0,0,1.5,\n0,1,1.2,\n0,1,,1.4\n")
    assert reader.poll()
    assert reader.series["train_loss"].points() == [(0.0, 1.5), (1.0, 1.2)]
    assert reader.series["val_loss"].points() == [(1.0, 1.4)]


def test_run_directory_finds_every_source_and_prefers_files_over_console(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "csv" / "version_0").mkdir(parents=True)
    shutil.copy(SAMPLES / "lightning_tqdm" / "metrics.csv", run / "csv" / "version_0")
    shutil.copy(SAMPLES / "lightning_tqdm" / "console.raw", run / "train.log")
    (run / "tb").mkdir()
    (event,) = (SAMPLES / "tensorboard").glob("events.out.tfevents.*")
    shutil.copy(event, run / "tb" / event.name)
    (run / "checkpoint-6").mkdir()
    shutil.copy(SAMPLES / "hf_console" / "trainer_state.json", run / "checkpoint-6")
    series = read_metrics(run)
    expected = truth("lightning_tqdm")
    # train_loss is in both the CSV and the console log: the CSV's exact values, once.
    assert series["train_loss"] == [(float(s - 1), v) for s, v in expected["train_loss"]]
    assert "train/loss" in series and "eval_loss" in series
