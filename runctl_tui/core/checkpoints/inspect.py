"""`inspect_checkpoint`: what a checkpoint holds, read from headers only and never executed.

Every format goes through a reader that cannot run code (see `pickle_reader`); a truncated or
corrupt file comes back as a `CheckpointInfo` whose `error` is a sentence, never as a crash.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from runctl_tui.core.checkpoints import demo, hf, keras, safetensors
from runctl_tui.core.checkpoints.pickle_reader import (
    CheckpointReadError,
    Namespace,
    ScalarReader,
    TensorRecord,
    detect_torch_format,
    read_torch_file,
    refusal_message,
)
from runctl_tui.core.checkpoints.records import CheckpointEntry, CheckpointInfo

WEIGHT_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "model_state",
    "module",
    "net",
    "network",
    "weights",
    "params",
    "ema_state_dict",
)
"""Keys under which training checkpoints keep the model weights, in order of preference."""
NOT_METRICS = ("created", "time", "timestamp", "wall_time", "seed", "version")
STEP_KEYS = ("step", "global_step", "iteration", "iter", "steps")
EPOCH_KEYS = ("epoch", "epochs")
SHARD_RE = re.compile(
    r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.(?P<ext>safetensors|bin)$"
)
HF_DIR_RE = re.compile(r"^checkpoint-(\d+)$")


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Describe the checkpoint at `path` without loading tensors or running any of its code.

    Args:
        path: A checkpoint file, a sharded model's index (or one shard), or a Trainer
            `checkpoint-N/` directory.

    Returns:
        The description; on a truncated, corrupt or refused file `error` says why, and the
        fields that could be read are still filled in.
    """
    path = Path(path)
    try:
        size = _size(path)
    except OSError as exc:
        return CheckpointInfo(str(path), "unknown", 0, error=f"cannot read: {exc.strerror or exc}")
    info = CheckpointInfo(str(path), guess_format(path), size)
    try:
        if path.is_dir():
            _inspect_hf_dir(path, info)
        elif path.name.endswith(".index.json") or SHARD_RE.match(path.name):
            _inspect_sharded(path, info)
        elif path.suffix == ".safetensors":
            _inspect_safetensors(path, info)
        elif path.suffix == ".keras":
            _inspect_keras(path, info)
        elif path.suffix == ".json":
            _inspect_demo(path, info)
        else:
            _inspect_torch(path, info)
    except CheckpointReadError as exc:
        info.error = str(exc)
        info.refused = info.refused or exc.refused
    except OSError as exc:
        info.error = f"cannot read: {exc.strerror or exc}"
    except Exception as exc:
        # A damaged file can trip any parser in ways no list of exceptions foresees; it is
        # reported as unreadable, never allowed to crash the listing or the dashboard.
        info.error = f"corrupt: {type(exc).__name__}: {exc}"[:300]
    return info


def guess_format(path: Path) -> str:
    """The format a path's name suggests (`torch` for .pt/.pth/.bin until its bytes are read)."""
    name = path.name
    if HF_DIR_RE.match(name) or path.is_dir():
        return "hf-trainer"
    if name.endswith((".safetensors", ".safetensors.index.json")):
        return "safetensors"
    if name.endswith(".ckpt"):
        return "lightning"
    if name.endswith(".keras"):
        return "keras"
    if name.endswith(".json"):
        return "runctl-demo"
    return "torch"


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def _inspect_safetensors(path: Path, info: CheckpointInfo) -> None:
    header = safetensors.read_header(path)
    info.format = "safetensors"
    info.tensor_count = len(header.tensors)
    info.parameter_count = header.parameter_count
    info.dtypes = header.dtype_counts()
    info.keys = list(header.tensors)[:200]
    info.metadata = dict(header.metadata)
    _numbers_from_strings(header.metadata, info)


def _inspect_sharded(path: Path, info: CheckpointInfo) -> None:
    """A sharded model: the index names the shards; each shard's header is read."""
    directory = path.parent
    shard_match = SHARD_RE.match(path.name)
    index_path = path
    if shard_match is not None:
        candidate = directory / f"{shard_match['stem']}.{shard_match['ext']}.index.json"
        index_path = candidate if candidate.is_file() else path
    shards: list[str]
    if index_path.name.endswith(".index.json"):
        weight_map, metadata = safetensors.read_index(index_path)
        shards = sorted(set(weight_map.values()))
        unsafe = [s for s in shards if s != Path(s).name or s in ("", ".", "..")]
        if unsafe:
            # Shards live beside their index; a name with a path in it is not followed.
            raise CheckpointReadError(
                f"corrupt: the shard index names a file outside its folder ({unsafe[0]!r})"
            )
        info.metadata = {"index": metadata, "shards": shards}
    elif shard_match is not None:
        total = int(shard_match["total"])
        stem, ext = shard_match["stem"], shard_match["ext"]
        shards = [f"{stem}-{i:05d}-of-{total:05d}.{ext}" for i in range(1, total + 1)]
        info.metadata = {"shards": shards, "index": None}
    else:
        raise CheckpointReadError("not a sharded checkpoint: no index and no shard name")
    info.format = "safetensors" if shards and shards[0].endswith(".safetensors") else "torch-zip"
    info.size_bytes = sum(
        (directory / s).stat().st_size for s in shards if (directory / s).exists()
    )
    if index_path.exists():
        info.size_bytes += index_path.stat().st_size
    missing = [s for s in shards if not (directory / s).is_file()]
    if missing:
        raise CheckpointReadError(
            f"incomplete: shard {missing[0]} is missing ({len(missing)} of {len(shards)})"
        )
    info.tensor_count = 0
    info.parameter_count = 0
    for shard in shards:
        part = CheckpointInfo(str(directory / shard), "", 0)
        if shard.endswith(".safetensors"):
            _inspect_safetensors(directory / shard, part)
        else:
            _inspect_torch(directory / shard, part)
        info.tensor_count += part.tensor_count or 0
        info.parameter_count += part.parameter_count or 0
        for dtype, count in part.dtypes.items():
            info.dtypes[dtype] = info.dtypes.get(dtype, 0) + count
        if part.error:
            raise CheckpointReadError(f"shard {shard}: {part.error}")


def _inspect_keras(path: Path, info: CheckpointInfo) -> None:
    config, metadata, names = keras.read_keras(path)
    info.format = "keras"
    info.keys = names
    info.metadata = {**metadata, "model": keras.summarize_config(config)}


def _inspect_demo(path: Path, info: CheckpointInfo) -> None:
    document = demo.read_demo(path)
    info.format = "runctl-demo"
    info.keys = [str(k) for k in document]
    weights = document.get("weights")
    if isinstance(weights, list):
        info.tensor_count = 2 if "bias" in document else 1
        info.parameter_count = len(weights) + (1 if "bias" in document else 0)
        info.dtypes = {"float64": info.tensor_count}
    _fill_scalars(document, info)
    if isinstance(document.get("best_path"), str):
        info.best_record = {"name": document["best_path"], "monitor": "val_loss", "mode": "min"}
        if isinstance(document.get("best_val_loss"), (int, float)):
            info.best_record["score"] = float(document["best_val_loss"])


def _inspect_hf_dir(path: Path, info: CheckpointInfo) -> None:
    info.format = "hf-trainer"
    info.keys = sorted(p.name for p in path.iterdir())
    state: dict[str, Any] = {}
    if (path / hf.TRAINER_STATE).is_file():
        state = hf.trainer_state(path)
        if isinstance(state.get("global_step"), int):
            info.step = state["global_step"]
        if isinstance(state.get("epoch"), (int, float)):
            info.epoch = state["epoch"]
        info.metrics = hf.metrics_at_step(state)
        info.best_record = hf.best_record(state)
        if info.best_record and isinstance(state.get("metric_for_best_model"), str):
            info.best_record["monitor"] = state["metric_for_best_model"]
    info.metadata = {"config": hf.model_config(path)}
    weights = next((path / n for n in hf.INDEX_FILES if (path / n).is_file()), None)
    if weights is None:
        weights = next((path / n for n in hf.WEIGHT_FILES if (path / n).is_file()), None)
    if weights is None:
        if not state:
            raise CheckpointReadError(
                "not a Trainer checkpoint: no trainer_state.json and no model weights inside"
            )
        return
    part = inspect_checkpoint(weights)
    info.tensor_count = part.tensor_count
    info.parameter_count = part.parameter_count
    info.dtypes = part.dtypes
    info.metadata["weights"] = weights.name
    if part.error:
        raise CheckpointReadError(f"{weights.name}: {part.error}")


def _inspect_torch(path: Path, info: CheckpointInfo) -> None:
    with open(path, "rb") as handle:
        kind = detect_torch_format(handle.read(16))
    if kind in ("torch-zip", "torch-legacy"):
        info.format = "lightning" if path.suffix == ".ckpt" else kind
    parsed = read_torch_file(path)
    info.format = parsed.format if parsed.format != "pickle" else "torch-legacy"
    info.refused = list(parsed.refused)
    obj = parsed.obj
    scalars = ScalarReader(path, parsed)
    if isinstance(obj, Mapping):
        info.keys = [str(k) for k in obj][:200]
        if "pytorch-lightning_version" in obj or (
            path.suffix == ".ckpt" and "state_dict" in obj and "global_step" in obj
        ):
            info.format = "lightning"
            _lightning(obj, scalars, info)
    weights = _model_weights(obj)
    if weights is not None:
        tensors = list(_tensors(weights))
        info.tensor_count = len(tensors)
        info.parameter_count = sum(t.numel for t in tensors)
        for tensor in tensors:
            info.dtypes[tensor.dtype] = info.dtypes.get(tensor.dtype, 0) + 1
    if isinstance(obj, Mapping) and weights is not obj:
        _fill_scalars(obj, info, scalars)
    if parsed.refused:
        info.error = refusal_message(parsed.refused)


def _lightning(obj: Mapping[Any, Any], scalars: ScalarReader, info: CheckpointInfo) -> None:
    if isinstance(obj.get("epoch"), int):
        info.epoch = obj["epoch"]
    if isinstance(obj.get("global_step"), int):
        info.step = obj["global_step"]
    version = obj.get("pytorch-lightning_version")
    if isinstance(version, str):
        info.metadata["lightning_version"] = version
    callbacks = obj.get("callbacks")
    if not isinstance(callbacks, Mapping):
        return
    for key, state in callbacks.items():
        if not str(key).startswith("ModelCheckpoint") or not isinstance(state, Mapping):
            continue
        monitor = state.get("monitor") if isinstance(state.get("monitor"), str) else None
        mode_match = re.search(r"'mode':\s*'(min|max)'", str(key))
        best = _scalar(state.get("best_model_score"), scalars)
        current = _scalar(state.get("current_score"), scalars)
        record: dict[str, Any] = {}
        if isinstance(state.get("best_model_path"), str) and state["best_model_path"]:
            record["path"] = state["best_model_path"]
            record["name"] = Path(state["best_model_path"]).name
        if best is not None:
            record["score"] = best
        if monitor:
            record["monitor"] = monitor
        if mode_match:
            record["mode"] = mode_match.group(1)
        if record and not info.best_record:
            info.best_record = record
        if monitor and current is not None:
            info.metrics.setdefault(monitor, current)
        if best is not None:
            info.metrics.setdefault("best_model_score", best)


def _model_weights(obj: Any) -> Mapping[Any, Any] | None:
    """The model's state dict: the object itself, or the first weights key of a training dict."""
    if not isinstance(obj, Mapping):
        return None
    if obj and _mostly_tensors(obj):
        return obj
    for key in WEIGHT_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping) and any(True for _ in _tensors(value)):
            return value
    return None


def _mostly_tensors(mapping: Mapping[Any, Any]) -> bool:
    tensors = sum(1 for v in mapping.values() if isinstance(v, (TensorRecord, Mapping)))
    return tensors == len(mapping) and any(True for _ in _tensors(mapping))


def _tensors(value: Any, depth: int = 0) -> Iterator[TensorRecord]:
    if depth > 20:
        return
    if isinstance(value, TensorRecord):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors(item, depth + 1)


def _scalar(value: Any, scalars: ScalarReader | None) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, TensorRecord) and scalars is not None:
        read = scalars.value(value)
        if isinstance(read, (int, float)) and not isinstance(read, bool):
            return float(read)
    return None


def _fill_scalars(
    obj: Mapping[Any, Any], info: CheckpointInfo, scalars: ScalarReader | None = None
) -> None:
    """Epoch, step and scalar metrics from the top level (and a `metrics` dict) of a checkpoint."""
    for key in EPOCH_KEYS:
        value = obj.get(key)
        if info.epoch is None and isinstance(value, (int, float)) and not isinstance(value, bool):
            info.epoch = value
    for key in STEP_KEYS:
        value = obj.get(key)
        if info.step is None and isinstance(value, int) and not isinstance(value, bool):
            info.step = value
    skip = {*EPOCH_KEYS, *STEP_KEYS, *NOT_METRICS, demo.MARKER}
    sources: list[Mapping[Any, Any]] = [obj]
    for nested in ("metrics", "scores", "hparams"):
        if isinstance(obj.get(nested), Mapping):
            sources.append(obj[nested])
    if isinstance(obj.get("args"), Namespace):
        info.metadata.setdefault("args", {k: v for k, v in obj["args"].values.items() if _plain(v)})
    for source in sources:
        for key, value in source.items():
            if not isinstance(key, str) or key in skip or key in info.metrics:
                continue
            number = _scalar(value, scalars)
            if number is not None and _looks_metric(key):
                info.metrics[key] = number


def _looks_metric(key: str) -> bool:
    lowered = key.lower()
    words = (
        "loss",
        "acc",
        "score",
        "metric",
        "ppl",
        "perplexity",
        "f1",
        "bleu",
        "error",
        "auc",
        "reward",
        "iou",
        "dice",
        "wer",
        "cer",
        "precision",
        "recall",
        "val_",
    )
    return lowered in ("lr", "learning_rate") or any(word in lowered for word in words)


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _numbers_from_strings(metadata: Mapping[str, str], info: CheckpointInfo) -> None:
    """safetensors metadata is all strings: take epoch, step and metric-looking numbers."""
    for key, raw in metadata.items():
        try:
            number = float(raw)
        except ValueError:
            continue
        if key in EPOCH_KEYS and number.is_integer():
            info.epoch = int(number)
        elif key in STEP_KEYS and number.is_integer():
            info.step = int(number)
        elif _looks_metric(key) and math.isfinite(number):
            info.metrics[key] = number


class InspectCache:
    """`inspect_checkpoint` with memory: a file is read again only when its size or mtime moves.

    Safe to call from several worker threads. The dashboard keeps one per browser so that
    re-listing a directory after every file event does not re-read unchanged checkpoints.

    Args:
        maxsize: How many results to keep (least recently used go first).
    """

    def __init__(self, maxsize: int = 1024) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, tuple[tuple[int, int], CheckpointInfo]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        try:
            st = path.stat()
        except OSError:
            return (-1, -1)
        if path.is_dir():
            # A Trainer directory changes when trainer_state.json is (re)written.
            try:
                inner = (path / hf.TRAINER_STATE).stat()
                return (inner.st_size, inner.st_mtime_ns)
            except OSError:
                return (0, st.st_mtime_ns)
        return (st.st_size, st.st_mtime_ns)

    def __call__(self, path: Path) -> CheckpointInfo:
        """The (possibly remembered) description of `path`."""
        key = str(path)
        stamp = self._stamp(Path(path))
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and hit[0] == stamp:
                self._data.move_to_end(key)
                return hit[1]
        info = inspect_checkpoint(Path(path))
        with self._lock:
            self._data[key] = (stamp, info)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return info

    def peek(self, path: str) -> CheckpointInfo | None:
        """The remembered description, without touching the disk; None when not inspected yet."""
        with self._lock:
            hit = self._data.get(path)
        return hit[1] if hit else None


def fill_from_headers(
    entries: list[CheckpointEntry], inspect: Callable[[Path], CheckpointInfo] = inspect_checkpoint
) -> None:
    """Complete local entries from their headers: step and epoch the name lacks, the exact
    PyTorch format (`torch-zip`/`torch-legacy`), stored metrics, and `error` for an
    unreadable file.

    Args:
        entries: A local listing; remote entries are left alone.
        inspect: The inspector (pass an `InspectCache` to share reads with `find_best`).
    """
    for entry in entries:
        if entry.location != "local" or entry.error is not None or entry.writing:
            continue
        info = inspect(Path(entry.path))
        if info.error:
            entry.error = f"unreadable: {info.error}"
            continue
        if entry.step is None and info.step is not None:
            entry.step = info.step
        if entry.epoch is None and info.epoch is not None and float(info.epoch).is_integer():
            entry.epoch = int(info.epoch)
        if entry.format == "torch" and info.format in ("torch-zip", "torch-legacy"):
            entry.format = info.format
        for key, value in info.metrics.items():
            entry.metrics.setdefault(key, value)
