"""Scalars from TensorBoard event files, read incrementally from the last complete record.

Why hand-rolled: the readers that exist (`tensorboard`'s event_file_loader, `tbparse`,
`tensorboardX`) pull in TensorBoard and protobuf (tens of MB, seconds of import time) to decode
what for scalars is two small formats: TFRecord framing (`uint64 length, uint32 masked CRC of
the length, data, uint32 masked CRC of the data`) and a few fields of the Event/Summary
protobuf messages. Decoding those fields from the protobuf wire format takes a page of code
with no dependency, and lets us resume from a byte offset, which the big readers do not expose.
It is tested on files written by torch.utils.tensorboard.SummaryWriter and by transformers'
TensorBoard callback (tests/data/metrics/).

Read: `Summary.Value.simple_value` (TF1 style, torch's default), and single-element float,
double, half, int32 and int64 tensors whose plugin is `scalars` (TF2 `tf.summary.scalar`,
torch's `new_style=True`). Histograms, images, text and graphs are skipped.
"""

from __future__ import annotations

import struct
from pathlib import Path

from runctl_tui.core.metrics.models import MetricPoint

_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_FOOTER = 4  # uint32 masked CRC of the data

# TensorFlow DataType enum values for the numeric dtypes a scalar may have.
_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_INT64, _DT_HALF, _DT_BFLOAT16 = 1, 2, 3, 9, 19, 14


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of `data` (used here on the 8-byte length field only).

    Args:
        data: Bytes to checksum.

    Returns:
        The masked checksum as TFRecord stores it.
    """
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """Decode one protobuf message into (field number, wire type, value) triples.

    Length-delimited values are returned as bytes; varints as int; fixed32/64 as raw bytes.
    """
    out: list[tuple[int, int, object]] = []
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: object
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = buf[pos : pos + 8]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            value = buf[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _plugin_name(metadata: bytes) -> str:
    for number, _, value in _fields(metadata):
        if number == 1 and isinstance(value, bytes):  # SummaryMetadata.plugin_data
            for inner_number, _, inner in _fields(value):
                if inner_number == 1 and isinstance(inner, bytes):  # PluginData.plugin_name
                    return inner.decode("utf-8", "replace")
    return ""


def _tensor_scalar(tensor: bytes) -> float | None:
    """The value of a single-element numeric TensorProto, else None."""
    dtype = 0
    content = b""
    floats: list[float] = []
    for number, wire, value in _fields(tensor):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 2 and isinstance(value, bytes):  # shape: must hold one element
            for dim_number, _, dim in _fields(value):
                if dim_number == 2 and isinstance(dim, bytes):
                    size = next((v for n, _, v in _fields(dim) if n == 1), 1)
                    if size != 1:
                        return None
        elif number == 4 and isinstance(value, bytes):
            content = value
        elif number == 5 and isinstance(value, bytes):  # float_val
            floats.extend(
                struct.unpack(f"<{len(value) // 4}f", value)
                if wire == 2
                else [struct.unpack("<f", value)[0]]
            )
        elif number == 6 and isinstance(value, bytes):  # double_val
            floats.extend(
                struct.unpack(f"<{len(value) // 8}d", value)
                if wire == 2
                else [struct.unpack("<d", value)[0]]
            )
        elif number in (7, 10):  # int_val, int64_val
            if isinstance(value, int):
                floats.append(float(value))
            elif isinstance(value, bytes) and wire == 2:
                pos = 0
                while pos < len(value):
                    item, pos = _varint(value, pos)
                    floats.append(float(item))
        elif number == 13 and dtype == _DT_HALF and isinstance(value, int):
            # half_val holds the bits of each half as an int32
            floats.append(struct.unpack("<e", struct.pack("<H", value & 0xFFFF))[0])
    if len(floats) == 1:
        return floats[0]
    if content:
        formats = {
            _DT_FLOAT: "<f",
            _DT_DOUBLE: "<d",
            _DT_INT32: "<i",
            _DT_INT64: "<q",
            _DT_HALF: "<e",
        }
        fmt = formats.get(dtype)
        if fmt and len(content) == struct.calcsize(fmt):
            return float(struct.unpack(fmt, content)[0])
    return None


class EventFileReader:
    """Reads scalar points from one event file, resuming at the last complete record."""

    def __init__(self, path: Path) -> None:
        """Create a reader; nothing is read until `read_new`.

        Args:
            path: An `events.out.tfevents.*` file.
        """
        self.path = path
        self.offset = 0
        """Byte offset just past the last complete record read."""
        self._plugins: dict[str, str] = {}
        """Plugin of each tag: TF2 writes a tag's metadata only with its first value."""

    def read_new(self) -> list[MetricPoint]:
        """Scalars from records completed since the last call.

        A record still being written (short read) is left for the next call; a record whose
        length checksum is wrong ends the reading at that point (a corrupt or foreign file).

        Returns:
            New points, tag names as written (`train/loss`), steps from the events.
        """
        points: list[MetricPoint] = []
        try:
            with open(self.path, "rb") as fh:
                size = fh.seek(0, 2)
                if size < self.offset:  # replaced by a shorter file: start again
                    self.offset = 0
                    self._plugins.clear()
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return points
        pos = 0
        while pos + _HEADER <= len(data):
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            (length_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            if masked_crc32c(header) != length_crc:
                break
            end = pos + _HEADER + length + _FOOTER
            if end > len(data):
                break
            self._event(data[pos + _HEADER : pos + _HEADER + length], points)
            pos = end
        self.offset += pos
        return points

    def _event(self, event: bytes, points: list[MetricPoint]) -> None:
        step = 0
        summary = b""
        for number, _, value in _fields(event):
            if number == 2 and isinstance(value, int):  # Event.step (int64)
                step = value - (1 << 64) if value >= 1 << 63 else value
            elif number == 5 and isinstance(value, bytes):  # Event.summary
                summary = value
        if not summary:
            return
        for number, _, value in _fields(summary):
            if number != 1 or not isinstance(value, bytes):  # Summary.value
                continue
            tag = ""
            scalar: float | None = None
            tensor = b""
            metadata = b""
            for field_number, _, field_value in _fields(value):
                if field_number == 1 and isinstance(field_value, bytes):
                    tag = field_value.decode("utf-8", "replace")
                elif field_number == 2 and isinstance(field_value, bytes):  # simple_value
                    scalar = struct.unpack("<f", field_value)[0]
                elif field_number == 8 and isinstance(field_value, bytes):
                    tensor = field_value
                elif field_number == 9 and isinstance(field_value, bytes):
                    metadata = field_value
            if metadata:
                self._plugins[tag] = _plugin_name(metadata)
            if scalar is None and tensor and self._plugins.get(tag, "scalars") == "scalars":
                scalar = _tensor_scalar(tensor)
            if scalar is not None and tag:
                points.append(MetricPoint(tag, float(step), scalar))


def read_event_file(path: Path) -> list[MetricPoint]:
    """Every scalar in an event file (see `EventFileReader`)."""
    return EventFileReader(path).read_new()
