"""Read a Keras 3 `.keras` file: a zip whose `config.json` and `metadata.json` say what it is.

The weights (`model.weights.h5`) are never opened.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from runctl_tui.core.checkpoints.pickle_reader import CheckpointReadError

MAX_JSON_BYTES = 64 * 1024 * 1024


def read_keras(path: Path) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(config.json, metadata.json, member names) of a `.keras` archive.

    Raises:
        CheckpointReadError: The archive is truncated or lacks config.json.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            config = _member_json(archive, "config.json", required=True)
            metadata = _member_json(archive, "metadata.json", required=False)
    except zipfile.BadZipFile:
        raise CheckpointReadError(
            "truncated: zip central directory missing (the file was cut short or is still being written)"
        ) from None
    return config, metadata, names


def _member_json(archive: zipfile.ZipFile, name: str, *, required: bool) -> dict[str, Any]:
    try:
        info = archive.getinfo(name)
    except KeyError:
        if required:
            raise CheckpointReadError(f"not a Keras file: no {name} in the archive") from None
        return {}
    if info.file_size > MAX_JSON_BYTES:
        raise CheckpointReadError(f"refused: {name} is {info.file_size} bytes")
    try:
        with archive.open(info) as member:
            document = json.loads(member.read().decode("utf-8"))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise CheckpointReadError(f"corrupt {name} in the Keras archive: {exc}") from None
    return document if isinstance(document, dict) else {}


def summarize_config(config: dict[str, Any]) -> dict[str, Any]:
    """Model class, name and layer list from a Keras `config.json`."""
    raw_inner = config.get("config")
    inner: dict[str, Any] = raw_inner if isinstance(raw_inner, dict) else {}
    raw_layers = inner.get("layers")
    layers: list[Any] = raw_layers if isinstance(raw_layers, list) else []
    layer_names = [
        str(layer.get("class_name"))
        for layer in layers
        if isinstance(layer, dict) and layer.get("class_name") != "InputLayer"
    ]
    return {
        "class_name": config.get("class_name"),
        "name": inner.get("name"),
        "layers": layer_names,
    }
