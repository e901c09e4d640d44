"""Read PyTorch checkpoints (zip and legacy `torch.save` files) without torch and without risk.

A checkpoint is untrusted input: a pickle can name any importable callable and have the standard
unpickler call it. This reader subclasses `pickle.Unpickler` and answers every global the pickle
names from a small allowlist of *inert stand-ins* of our own: tensor-rebuild functions become
`TensorRecord(shape, dtype)`, storages become `StorageRecord`, numpy arrays and dtypes become
records. A global outside the allowlist is never imported: it becomes an `Refused` placeholder
and is reported, so a pickle that would call `os.system` is described, not executed.

Tensor data is never read. From a zip file only `data.pkl`, `byteorder` and the central
directory are read; from a legacy file only the leading pickles. The one exception is a scalar
(one-element) tensor such as Lightning's `best_model_score`, whose few bytes are read on request
by `ScalarReader` at a known offset.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The number `torch.save` writes first in its legacy (pre-1.6) format."""
MAX_PICKLE_BYTES = 512 * 1024 * 1024
"""Refuse a `data.pkl` larger than this: no real checkpoint's object graph is that big."""

# torch dtype name -> (element size in bytes, struct format or None when not decodable here)
DTYPES: dict[str, tuple[int, str | None]] = {
    "float64": (8, "d"),
    "float32": (4, "f"),
    "float16": (2, "e"),
    "bfloat16": (2, None),
    "int64": (8, "q"),
    "int32": (4, "i"),
    "int16": (2, "h"),
    "int8": (1, "b"),
    "uint8": (1, "B"),
    "uint16": (2, "H"),
    "uint32": (4, "I"),
    "uint64": (8, "Q"),
    "bool": (1, "?"),
    "complex64": (8, None),
    "complex128": (16, None),
    "qint8": (1, None),
    "quint8": (1, None),
    "qint32": (4, None),
    "quint4x2": (1, None),
    "quint2x4": (1, None),
    "float8_e4m3fn": (1, None),
    "float8_e5m2": (1, None),
    "float8_e4m3fnuz": (1, None),
    "float8_e5m2fnuz": (1, None),
    "float8_e8m0fnu": (1, None),
}

STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32",
    "QUInt4x2Storage": "quint4x2",
    "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8",
}

# Modules whose globals, when a pickle asks for them, mean someone tried to run code.
DANGEROUS_MODULES = frozenset(
    {
        "os",
        "posix",
        "nt",
        "subprocess",
        "builtins",
        "__builtin__",
        "sys",
        "importlib",
        "shutil",
        "socket",
        "pty",
        "runpy",
        "ctypes",
        "pickle",
        "_pickle",
        "marshal",
        "types",
        "code",
        "codeop",
        "webbrowser",
        "operator",
        "functools",
        "commands",
        "platform",
        "signal",
        "multiprocessing",
        "asyncio",
        "threading",
        "tempfile",
        "io",
        "_io",
        "pathlib",
        "glob",
        "urllib",
        "http",
        "ftplib",
        "smtplib",
        "telnetlib",
    }
)


class CheckpointReadError(Exception):
    """The file could not be read; the message is a sentence for the user.

    Attributes:
        refused: Globals the pickle asked for and was refused before it failed.
    """

    def __init__(self, message: str, refused: list[str] | None = None) -> None:
        super().__init__(message)
        self.refused = list(refused or [])


@dataclass(frozen=True)
class DtypeToken:
    """A torch dtype named in the pickle (e.g. `torch.float16`)."""

    name: str


@dataclass(frozen=True)
class StorageType:
    """A torch storage class named in the pickle (e.g. `torch.FloatStorage`)."""

    name: str
    dtype: str


@dataclass(frozen=True)
class StorageRecord:
    """A storage the pickle refers to by key; its bytes live elsewhere and are not read."""

    key: str
    dtype: str
    location: str
    numel: int


@dataclass
class TensorRecord:
    """What a tensor would be: shape, dtype and where its data is, never the data itself."""

    shape: tuple[int, ...]
    dtype: str
    storage: StorageRecord | None = None
    storage_offset: int = 0
    is_parameter: bool = False

    @property
    def numel(self) -> int:
        """Number of elements (1 for a scalar)."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass
class ArrayRecord:
    """A numpy array named in the pickle: shape and dtype only."""

    shape: tuple[int, ...] = ()
    dtype: str = ""

    def __setstate__(self, state: Any) -> None:
        # ndarray state: (version, shape, dtype, is_fortran, raw bytes or list)
        if isinstance(state, tuple) and len(state) >= 3:
            self.shape = tuple(int(d) for d in state[1]) if isinstance(state[1], tuple) else ()
            dtype = state[2]
            self.dtype = dtype.name if isinstance(dtype, NumpyDtype) else str(dtype)


@dataclass
class NumpyDtype:
    """A numpy dtype named in the pickle (`numpy.dtype('f8', False, True)`)."""

    name: str = ""
    byteorder: str = "<"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]


@dataclass
class Refused:
    """Stands in for a global the reader would not import; records what was asked for."""

    qualname: str
    args: tuple[Any, ...] = ()
    state: Any = None

    def __repr__(self) -> str:
        return f"<refused {self.qualname}>"

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _RefusedBase:
    """Base of the per-name classes returned for refused globals (NEWOBJ needs a class)."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return Refused(cls.qualname, args)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - never reached
        pass


@dataclass
class Namespace:
    """Stand-in for `argparse.Namespace` and similar attribute bags."""

    values: dict[str, Any] = field(default_factory=dict)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.values.update(state)


class AttributeDict(dict[str, Any]):
    """Stand-in for Lightning's `AttributeDict` (a dict with attribute access)."""


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any = None,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> TensorRecord:
    dtype = storage.dtype if isinstance(storage, StorageRecord) else "unknown"
    return TensorRecord(
        shape=_shape(size),
        dtype=dtype,
        storage=storage if isinstance(storage, StorageRecord) else None,
        storage_offset=int(storage_offset) if isinstance(storage_offset, int) else 0,
    )


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> TensorRecord:
    record = _rebuild_tensor_v2(storage, storage_offset, size)
    if isinstance(dtype, DtypeToken):
        record.dtype = dtype.name
    return record


def _rebuild_tensor(
    storage: Any, storage_offset: Any, size: Any, stride: Any = None
) -> TensorRecord:
    return _rebuild_tensor_v2(storage, storage_offset, size)


def _rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None) -> Any:
    if isinstance(data, TensorRecord):
        data.is_parameter = True
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any, backward_hooks: Any, state: Any
) -> Any:
    return _rebuild_parameter(data)


def _rebuild_meta_tensor_no_storage(
    dtype: Any, size: Any, stride: Any, requires_grad: Any = False
) -> TensorRecord:
    return TensorRecord(
        shape=_shape(size), dtype=dtype.name if isinstance(dtype, DtypeToken) else "unknown"
    )


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if func in _TENSOR_REBUILDERS and isinstance(args, tuple):
        return func(*args)
    return Refused("torch._tensor._rebuild_from_type_v2", (func,))


def _shape(size: Any) -> tuple[int, ...]:
    if isinstance(size, (tuple, list)) and all(isinstance(d, int) for d in size):
        return tuple(size)
    return ()


def _codecs_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1'); allow only plain codecs so
    # no codec lookup (which can import modules) is ever driven by the file.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise CheckpointReadError("refused _codecs.encode with an unexpected codec")
    return text.encode(str(encoding))


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if isinstance(dtype, NumpyDtype) and isinstance(data, bytes):
        fmt = {
            "f8": "d",
            "f4": "f",
            "f2": "e",
            "i8": "q",
            "i4": "i",
            "i2": "h",
            "i1": "b",
            "u8": "Q",
            "u4": "I",
            "u2": "H",
            "u1": "B",
            "b1": "?",
        }.get(dtype.name)
        if fmt and struct.calcsize(fmt) == len(data):
            order = ">" if dtype.byteorder == ">" else "<"
            return struct.unpack(order + fmt, data)[0]
    return ArrayRecord((), dtype.name if isinstance(dtype, NumpyDtype) else "")


def _numpy_dtype(name: Any, align: Any = False, copy: Any = True) -> NumpyDtype:
    return NumpyDtype(str(name))


def _numpy_reconstruct(cls: Any, shape: Any = (0,), dtype: Any = b"b") -> ArrayRecord:
    return ArrayRecord()


def _bytearray(source: Any = b"", encoding: Any = "latin-1") -> bytearray:
    # Only from existing bytes or text: `bytearray(10**12)` would be a memory bomb.
    if isinstance(source, (bytes, bytearray)):
        return bytearray(source)
    if isinstance(source, str) and encoding in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        return bytearray(source.encode(str(encoding)))
    raise CheckpointReadError("refused bytearray() of something other than bytes or text")


def _path(*parts: Any) -> str:
    return "/".join(str(p) for p in parts)


def _device(*args: Any) -> str:
    return ":".join(str(a) for a in args)


def _identity_tuple(*args: Any) -> tuple[Any, ...]:
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else args


_TENSOR_REBUILDERS = {
    _rebuild_tensor_v2,
    _rebuild_tensor_v3,
    _rebuild_tensor,
    _rebuild_parameter,
    _rebuild_parameter_with_state,
    _rebuild_meta_tensor_no_storage,
}

_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._utils", "_rebuild_meta_tensor_no_storage"): _rebuild_meta_tensor_no_storage,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Size"): _identity_tuple,
    ("torch", "device"): _device,
    ("torch", "Tensor"): _rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): ArrayRecord,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("argparse", "Namespace"): Namespace,
    ("lightning.fabric.utilities.data", "AttributeDict"): AttributeDict,
    ("lightning_fabric.utilities.data", "AttributeDict"): AttributeDict,
    ("pytorch_lightning.utilities.parsing", "AttributeDict"): AttributeDict,
    ("pathlib", "PosixPath"): _path,
    ("pathlib", "PurePosixPath"): _path,
    ("pathlib", "WindowsPath"): _path,
    ("pathlib", "PureWindowsPath"): _path,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("builtins", "bytearray"): _bytearray,
}
for _storage, _dtype in STORAGE_DTYPES.items():
    _ALLOWED[("torch", _storage)] = StorageType(_storage, _dtype)
_ALLOWED[("torch.storage", "UntypedStorage")] = StorageType("UntypedStorage", "uint8")
for _dtype in DTYPES:
    _ALLOWED[("torch", _dtype)] = DtypeToken(_dtype)


def is_dangerous(qualname: str) -> bool:
    """Whether a refused global is one that only an attack would name (os.system, eval...)."""
    return qualname.split(".")[0] in DANGEROUS_MODULES


def refusal_message(refused: list[str]) -> str:
    """The sentence that reports refused globals; 'unsafe' when any is a code-running one."""
    names = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
    if any(is_dangerous(name) for name in refused):
        return (
            f"unsafe: the pickle tries to call {names}; runctl refused it and ran nothing. "
            "Do not load this file with torch.load(weights_only=False)."
        )
    return (
        f"refused to import {names} named in the pickle (runctl never runs code from a "
        "checkpoint); the rest was read with a placeholder for it"
    )


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only ever hands the pickle our inert stand-ins.

    Attributes:
        refused: Qualified names of the globals the pickle asked for and did not get.
        storages: Every storage the pickle referred to, by key.
    """

    def __init__(self, file: IO[bytes], *, byteorder: str = "little") -> None:
        super().__init__(file, encoding="latin1")
        self.refused: list[str] = []
        self.storages: dict[str, StorageRecord] = {}
        self.byteorder = byteorder

    def find_class(self, module: str, name: str) -> Any:
        """Return our stand-in for `module.name`, or a `Refused` maker; never import anything."""
        # Protocol-2 pickles spell Python 3 names the Python 2 way (`__builtin__.eval`,
        # `commands.call` for subprocess.call); translate so reports name the real target.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        qualname = f"{module}.{name}"
        if qualname not in self.refused:
            self.refused.append(qualname)
        return type(name, (_RefusedBase,), {"qualname": qualname})

    def persistent_load(self, pid: Any) -> Any:
        """Turn a storage reference into a `StorageRecord`; refuse any other persistent id."""
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, location, numel = pid[1], pid[2], pid[3], pid[4]
            dtype = storage_type.dtype if isinstance(storage_type, StorageType) else "unknown"
            record = StorageRecord(
                str(key), dtype, str(location), int(numel) if isinstance(numel, int) else 0
            )
            self.storages.setdefault(record.key, record)
            return self.storages[record.key]
        kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
        qualname = f"persistent id {kind!r}"
        if qualname not in self.refused:
            self.refused.append(qualname)
        return Refused(qualname)


@dataclass
class TorchPickle:
    """The object graph of a PyTorch file, with tensors as records."""

    obj: Any
    format: str
    """`torch-zip` or `torch-legacy`."""
    refused: list[str]
    storages: dict[str, StorageRecord]
    byteorder: str = "little"
    zip_prefix: str = ""
    legacy_data_offset: int | None = None
    """Legacy files: where the storage data begins (just after the storage-key list)."""
    legacy_keys: list[str] = field(default_factory=list)


def detect_torch_format(head: bytes) -> str | None:
    """`torch-zip`, `torch-legacy` or None from a file's first bytes."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "torch-zip"
    # Legacy files start with a protocol-2 pickle of the magic number as a LONG1.
    if (
        head.startswith(b"\x80\x02\x8a\x0a")
        and int.from_bytes(head[4:14], "little") == LEGACY_MAGIC
    ):
        return "torch-legacy"
    if head[:1] == b"\x80":
        return "pickle"
    return None


def read_torch_file(path: Path) -> TorchPickle:
    """Read the object graph of a `torch.save` file (zip or legacy) without tensor data.

    Args:
        path: The file.

    Returns:
        The object graph with tensors as `TensorRecord`s and refused globals listed.

    Raises:
        CheckpointReadError: The file is truncated, corrupt or not a PyTorch file; the message
            says which.
    """
    with open(path, "rb") as handle:
        head = handle.read(16)
        kind = detect_torch_format(head)
        handle.seek(0)
        if kind == "torch-zip":
            return _read_zip(handle)
        if kind == "torch-legacy":
            return _read_legacy(handle)
        if kind == "pickle":
            return _read_plain_pickle(handle)
    if not head:
        raise CheckpointReadError("empty file: nothing was written")
    raise CheckpointReadError(
        "not a PyTorch file: neither a zip archive nor a legacy torch.save pickle"
    )


def _read_zip(handle: IO[bytes]) -> TorchPickle:
    try:
        archive = zipfile.ZipFile(handle)
    except zipfile.BadZipFile:
        raise CheckpointReadError(
            "truncated: zip central directory missing (the file was cut short or is still being written)"
        ) from None
    except (OSError, ValueError, struct.error, NotImplementedError, EOFError) as exc:
        raise CheckpointReadError(f"corrupt zip archive: {exc}") from None
    with archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise CheckpointReadError(
                "not a PyTorch zip checkpoint: no data.pkl inside the archive"
            )
        prefix = pkl[: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = (
                _read_member(archive, prefix + "byteorder", 16).decode("ascii", "replace").strip()
            )
            if byteorder not in ("little", "big"):
                raise CheckpointReadError(
                    f"corrupt: unknown byte order {byteorder!r} in the archive"
                )
        info = archive.getinfo(pkl)
        if info.file_size > MAX_PICKLE_BYTES:
            raise CheckpointReadError(
                f"refused: data.pkl is {info.file_size} bytes, more than any checkpoint's object graph"
            )
        data = _read_member(archive, pkl, MAX_PICKLE_BYTES)
    obj, unpickler = _unpickle(io.BytesIO(data), byteorder)
    return TorchPickle(obj, "torch-zip", unpickler.refused, unpickler.storages, byteorder, prefix)


def _read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    try:
        with archive.open(name) as member:
            return member.read(limit)
    except zipfile.BadZipFile as exc:
        raise CheckpointReadError(f"corrupt zip archive: {exc} ({name})") from None
    except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise CheckpointReadError(f"truncated or corrupt zip member {name}: {exc}") from None


def _unpickle(stream: IO[bytes], byteorder: str = "little") -> tuple[Any, RestrictedUnpickler]:
    unpickler = RestrictedUnpickler(stream, byteorder=byteorder)
    try:
        obj = unpickler.load()
    except CheckpointReadError:
        raise
    except EOFError:
        raise CheckpointReadError("truncated: the pickle ends before its STOP opcode") from None
    except RecursionError:
        raise CheckpointReadError("corrupt: the pickle nests too deeply to read") from None
    except MemoryError:
        raise CheckpointReadError(
            "corrupt: the pickle asks for more memory than it can have"
        ) from None
    except Exception as exc:
        # pickle.UnpicklingError, ValueError, TypeError, KeyError...: a damaged opcode stream,
        # or a stream that only makes sense with a refused global (which was not called).
        if unpickler.refused:
            raise CheckpointReadError(
                refusal_message(unpickler.refused), unpickler.refused
            ) from None
        if "truncated" in str(exc):
            raise CheckpointReadError("truncated: the pickle ends before its STOP opcode") from None
        raise CheckpointReadError(f"corrupt pickle: {type(exc).__name__}: {exc}"[:300]) from None
    return obj, unpickler


def _read_legacy(handle: IO[bytes]) -> TorchPickle:
    magic, _ = _unpickle(handle)
    if magic != LEGACY_MAGIC:
        raise CheckpointReadError("not a PyTorch legacy file: wrong magic number")
    version, _ = _unpickle(handle)
    if version != 1001:
        raise CheckpointReadError(f"unsupported legacy PyTorch protocol version {version!r}")
    sys_info, _ = _unpickle(handle)
    byteorder = "little"
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        byteorder = "big"
    obj, unpickler = _unpickle(handle, byteorder)
    keys: list[str] = []
    data_offset: int | None = None
    try:
        key_list, _ = _unpickle(handle)
        if isinstance(key_list, list):
            keys = [str(k) for k in key_list]
            data_offset = handle.tell()
    except CheckpointReadError:
        if unpickler.storages:
            raise CheckpointReadError(
                "truncated: the legacy file ends before its storage list (it was cut short)"
            ) from None
    parsed = TorchPickle(
        obj,
        "torch-legacy",
        unpickler.refused,
        unpickler.storages,
        byteorder,
        legacy_data_offset=data_offset,
        legacy_keys=keys,
    )
    _check_legacy_length(handle, parsed)
    return parsed


def _check_legacy_length(handle: IO[bytes], parsed: TorchPickle) -> None:
    """Walk the storage records by seeking (8-byte counts only) to see the file is whole."""
    if parsed.legacy_data_offset is None:
        return
    order = "<" if parsed.byteorder == "little" else ">"
    handle.seek(0, 2)
    file_size = handle.tell()
    position = parsed.legacy_data_offset
    for key in parsed.legacy_keys:
        handle.seek(position)
        raw = handle.read(8)
        if len(raw) != 8:
            raise CheckpointReadError(
                f"truncated: storage {key} should start at byte {position} but the file has "
                f"{file_size} bytes"
            )
        (count,) = struct.unpack(order + "q", raw)
        storage = parsed.storages.get(key)
        element = DTYPES.get(storage.dtype, (1, None))[0] if storage else 1
        position += 8 + count * element
    if position > file_size:
        raise CheckpointReadError(
            f"truncated: storage data should end at byte {position} but the file has "
            f"{file_size} bytes"
        )


def _read_plain_pickle(handle: IO[bytes]) -> TorchPickle:
    obj, unpickler = _unpickle(handle)
    return TorchPickle(obj, "pickle", unpickler.refused, unpickler.storages)


class ScalarReader:
    """Reads the value of one-element tensors (a few bytes at a known offset), nothing more."""

    def __init__(self, path: Path, parsed: TorchPickle) -> None:
        self.path = path
        self.parsed = parsed
        self._legacy_offsets: dict[str, int] | None = None

    def value(self, tensor: TensorRecord) -> float | int | bool | None:
        """The scalar value of `tensor`, or None if it is not a readable one-element tensor."""
        storage = tensor.storage
        if storage is None or tensor.numel != 1:
            return None
        size, fmt = DTYPES.get(tensor.dtype, (0, None))
        if not fmt:
            return None
        order = "<" if self.parsed.byteorder == "little" else ">"
        offset = tensor.storage_offset * size
        try:
            raw = self._read(storage.key, offset, size)
        except (OSError, KeyError, zipfile.BadZipFile, ValueError, EOFError):
            return None
        if raw is None or len(raw) != size:
            return None
        value = struct.unpack(order + fmt, raw)[0]
        return value if isinstance(value, (int, float, bool)) else None

    def _read(self, key: str, offset: int, size: int) -> bytes | None:
        if self.parsed.format == "torch-zip":
            with (
                zipfile.ZipFile(self.path) as archive,
                archive.open(f"{self.parsed.zip_prefix}data/{key}") as member,
            ):
                member.seek(offset)
                return member.read(size)
        if self.parsed.format == "torch-legacy":
            offsets = self._legacy_index()
            if key not in offsets:
                return None
            with open(self.path, "rb") as handle:
                handle.seek(offsets[key] + offset)
                return handle.read(size)
        return None

    def _legacy_index(self) -> dict[str, int]:
        """Data offset of each legacy storage: hop over (int64 count, bytes) records by seeking."""
        if self._legacy_offsets is not None:
            return self._legacy_offsets
        offsets: dict[str, int] = {}
        position = self.parsed.legacy_data_offset
        order = "<" if self.parsed.byteorder == "little" else ">"
        if position is not None:
            with open(self.path, "rb") as handle:
                for key in self.parsed.legacy_keys:
                    handle.seek(position)
                    raw = handle.read(8)
                    if len(raw) != 8:
                        break
                    (count,) = struct.unpack(order + "q", raw)
                    storage = self.parsed.storages.get(key)
                    element = DTYPES.get(storage.dtype, (1, None))[0] if storage else 1
                    offsets[key] = position + 8
                    position += 8 + count * element
        self._legacy_offsets = offsets
        return offsets
