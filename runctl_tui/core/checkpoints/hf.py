"""Read a Hugging Face Trainer `checkpoint-N/` directory from its JSON files and weight headers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runctl_tui.core.checkpoints.pickle_reader import CheckpointReadError

TRAINER_STATE = "trainer_state.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`.

    Raises:
        CheckpointReadError: The file is missing, not JSON, or not an object.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointReadError(f"missing {path.name}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointReadError(f"corrupt {path.name}: {exc}") from None
    if not isinstance(document, dict):
        raise CheckpointReadError(f"corrupt {path.name}: not a JSON object")
    return document


def trainer_state(directory: Path) -> dict[str, Any]:
    """The parsed `trainer_state.json` of a Trainer checkpoint directory."""
    return read_json(directory / TRAINER_STATE)


def metrics_at_step(state: dict[str, Any]) -> dict[str, float]:
    """The last logged value of each scalar metric up to the checkpoint's `global_step`."""
    step = state.get("global_step")
    metrics: dict[str, float] = {}
    history = state.get("log_history")
    if not isinstance(history, list):
        return metrics
    for record in history:
        if not isinstance(record, dict):
            continue
        record_step = record.get("step")
        if isinstance(step, int) and isinstance(record_step, int) and record_step > step:
            continue
        for key, value in record.items():
            if key in ("step", "epoch") or isinstance(value, bool) or _is_throughput(key):
                continue
            if isinstance(value, (int, float)):
                metrics[key] = float(value)
    return metrics


def _is_throughput(key: str) -> bool:
    """Timing figures the Trainer logs beside metrics (`eval_runtime`, `..._per_second`)."""
    return key.endswith(("_runtime", "_per_second")) or key in ("total_flos", "train_runtime")


def best_record(state: dict[str, Any]) -> dict[str, Any]:
    """The Trainer's own record of the best checkpoint (`best_model_checkpoint`, `best_metric`)."""
    best = state.get("best_model_checkpoint")
    if not isinstance(best, str) or not best:
        return {}
    record: dict[str, Any] = {"path": best, "name": Path(best).name}
    if isinstance(state.get("best_metric"), (int, float)):
        record["score"] = float(state["best_metric"])
    return record


def model_config(directory: Path) -> dict[str, Any]:
    """A few identifying fields of `config.json` (model_type, architectures), if present."""
    path = directory / "config.json"
    if not path.is_file():
        return {}
    config = read_json(path)
    keep = ("model_type", "architectures", "torch_dtype", "dtype", "transformers_version")
    return {key: config[key] for key in keep if key in config}
