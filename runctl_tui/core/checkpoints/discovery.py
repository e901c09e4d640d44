"""Find checkpoints by name and stat data alone: a local directory, an SSH listing, an S3 prefix.

Listing is O(n) in files with one `stat` each; no file is opened. All three sources become the
same flat list of `FileFact`s and go through one `classify`, so a Trainer `checkpoint-N/`
directory, a sharded model or a `best.pt` symlink look the same wherever they live.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from runctl_tui.core.checkpoints.records import CheckpointEntry
from runctl_tui.core.errors import BackendError, NotFoundError

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SUFFIX_FORMATS = {
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
    ".ckpt": "lightning",
    ".safetensors": "safetensors",
    ".keras": "keras",
}
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".incomplete")
"""Suffixes of files being written before an atomic rename (`model.pt.tmp`)."""
HF_DIR_RE = re.compile(r"^(?:tmp-)?checkpoint-(\d+)$")
SHARD_RE = re.compile(
    r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.(?P<ext>safetensors|bin)$"
)
INDEX_RE = re.compile(r"^(?P<stem>.+)\.(?P<ext>safetensors|bin)\.index\.json$")
DEMO_RE = re.compile(r"^ckpt-.*\.json$")
SKIP_DIRS = frozenset({"__pycache__", "node_modules", "wandb", "mlruns"})

_NUMBER_RE = re.compile(
    r"(?:^|[^a-z])(?:(epoch|ep)|(global_step|steps|step|iteration|iter|it|checkpoint|ckpt))"
    r"[=_-]?(\d+)",
    re.IGNORECASE,
)
"""One pass over a name: group 1 set for an epoch number, group 2 for a step number."""
_COUNTER_WORDS = frozenset({"epoch", "ep", "step", "global_step", "steps", "iter", "it"})
_EXT_FORMATS = {ext.lstrip("."): fmt for ext, fmt in SUFFIX_FORMATS.items()}
_TEMP_EXTS = frozenset(ext.lstrip(".") for ext in TEMP_SUFFIXES)
_METRIC_RE = re.compile(r"([A-Za-z][A-Za-z0-9_/]*)=([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_BY_NAME = operator.attrgetter("name")
_BY_MODIFIED = operator.attrgetter("modified")
_POSITIONAL = (
    "path",
    "name",
    "format",
    "size_bytes",
    "modified",
    "step",
    "epoch",
    "metrics",
    "aliases",
    "parts",
    "is_dir",
    "location",
    "link_target",
    "writing",
)
# `classify` builds one CheckpointEntry per file with positional arguments (half the cost of
# keywords on the listing's hot path); refuse to run on a reordered record rather than
# silently filling the wrong fields.
if tuple(f.name for f in dataclasses.fields(CheckpointEntry))[: len(_POSITIONAL)] != _POSITIONAL:
    raise ImportError("CheckpointEntry's field order changed: update discovery._POSITIONAL")


class RemoteFileLike(Protocol):
    """One entry of a remote listing (the SSH helper's `RemoteFile` has these fields)."""

    path: str
    size: int
    mtime: float
    is_dir: bool
    link_target: str | None


class FileFact(NamedTuple):
    """A file as a listing saw it: no content, only its stat data.

    A NamedTuple because a listing makes one per file and tuples are the cheapest to build.
    """

    path: str
    size: int
    mtime: float
    is_dir: bool = False
    link_target: str | None = None
    """For a symlink: where it points (absolute, normalised); None for a regular file."""
    broken: bool = False


@dataclass
class _Group:
    path: str
    format: str
    parts: list[FileFact] = field(default_factory=list)
    is_dir: bool = False


@functools.lru_cache(maxsize=65536)
def _parse_name(name: str) -> tuple[int | None, int | None, tuple[tuple[str, float], ...]]:
    stem = _strip_suffixes(name)
    metrics: list[tuple[str, float]] = []
    if "=" in stem:
        for key, value in _METRIC_RE.findall(stem):
            if key.lower() not in _COUNTER_WORDS:
                metrics.append((key, float(value)))
    epoch = step = None
    for match in _NUMBER_RE.finditer(stem):
        if match.group(1) is not None:
            epoch = int(match.group(3)) if epoch is None else epoch
        elif step is None:
            step = int(match.group(3))
    return step, epoch, tuple(metrics)


def parse_name(name: str) -> tuple[int | None, int | None, dict[str, float]]:
    """(step, epoch, metrics) written into a checkpoint's name.

    Args:
        name: A file or directory name such as `epoch=3-step=16.ckpt`, `checkpoint-500`,
            `epoch_7.pt` or `epoch=2-val_loss=0.31.ckpt`.

    Returns:
        The step, the epoch (None when the name has none) and `key=value` metrics.
    """
    step, epoch, metrics = _parse_name(name)
    return step, epoch, dict(metrics)


def _strip_suffixes(name: str) -> str:
    stem = name
    while True:
        base, dot, ext = stem.rpartition(".")
        if not dot or not base:
            return stem
        lowered = ext.lower()
        if lowered in _TEMP_EXTS:
            stem = base
            continue
        if lowered == "json":
            for inner in (".safetensors.index", ".bin.index"):
                if base.endswith(inner):
                    return base[: -len(inner)]
            return base
        if lowered in _EXT_FORMATS:
            return base
        return stem


@functools.lru_cache(maxsize=65536)
def _name_facts(
    name: str,
) -> tuple[str, int | None, int | None, tuple[tuple[str, float], ...], bool] | None:
    """(format, step, epoch, metrics, writing) of a file name, or None for a non-checkpoint."""
    fmt = candidate_format(name)
    if fmt is None:
        return None
    step, epoch, metrics = _parse_name(name)
    return fmt, step, epoch, metrics, name.endswith(TEMP_SUFFIXES)


def _single_file_entry(
    path: str,
    rel: str,
    known: tuple[str, int | None, int | None, tuple[tuple[str, float], ...], bool],
    size: int,
    mtime: float,
    location: str,
) -> CheckpointEntry:
    """The entry of a checkpoint that is one file, from `_name_facts` and its stat."""
    fmt, step, epoch, metrics, writing = known
    # Positional, in `_POSITIONAL`'s order (checked at import).
    return CheckpointEntry(
        path,
        rel,
        fmt,
        size,
        mtime,
        step,
        epoch,
        dict(metrics) if metrics else {},
        [],
        [path],
        False,
        location,
        None,
        writing,
    )


@functools.lru_cache(maxsize=65536)
def candidate_format(name: str) -> str | None:
    """The format a file name claims, or None when the name is not a checkpoint's."""
    base, dot, ext = name.rpartition(".")
    if not dot:
        return None
    lowered = ext.lower()
    if lowered in _TEMP_EXTS:
        return candidate_format(base)
    fmt = _EXT_FORMATS.get(lowered)
    if fmt is not None:
        return fmt
    if lowered == "json":
        if name.startswith("ckpt-"):
            return "runctl-demo"
        if base.endswith(".safetensors.index"):
            return "safetensors"
        if base.endswith(".bin.index"):
            return "torch"
    return None


def is_temp_name(name: str) -> bool:
    """Whether a name says the file or directory is still being written."""
    return name.endswith(TEMP_SUFFIXES) or name.startswith("tmp-checkpoint-")


def scan_local(directory: Path) -> list[FileFact]:
    """Every checkpoint-looking file below `directory` (and all files of `checkpoint-N/` dirs).

    One `stat` per file kept; names that cannot be checkpoints are skipped without a stat.

    Raises:
        NotFoundError: `directory` does not exist or is not a directory.
    """
    return _scan(os.path.abspath(directory), None)


def _scan(root: str, plain: dict[str, CheckpointEntry] | None) -> list[FileFact]:
    """`scan_local`; with `plain`, single-file checkpoints go straight into it as entries.

    A regular file outside any `checkpoint-N/` directory whose name is neither a shard's nor
    an index's is a checkpoint of its own: `classify` would make exactly this entry from its
    fact, so the listing skips the fact and the second pass over it.
    """
    if not os.path.isdir(root):
        raise NotFoundError(f"checkpoint directory {root} does not exist (or is not a directory)")
    facts: list[FileFact] = []
    append = facts.append
    is_candidate = candidate_format
    name_facts = _name_facts
    single = _single_file_entry
    new_fact = tuple.__new__  # FileFact's own __new__ is a Python function: skip it per file
    skip = len(root + os.sep if root != os.sep else os.sep)  # where `classify` cuts `rel`
    stack: list[tuple[str, bool]] = [(root, False)]
    while stack:
        current, inside_hf = stack.pop()
        try:
            iterator = os.scandir(current)
        except OSError:
            continue
        with iterator:
            for entry in iterator:
                name = entry.name
                try:
                    # Regular files first: d_type answers without a syscall, so only the
                    # checkpoint-looking ones cost their one stat.
                    if entry.is_file(follow_symlinks=False):
                        if inside_hf:
                            st = entry.stat(follow_symlinks=False)
                        elif (
                            plain is not None
                            and "-of-" not in name
                            and not name.endswith(".index.json")
                        ):
                            known = name_facts(name)
                            if known is None:
                                continue
                            st = entry.stat(follow_symlinks=False)
                            path = entry.path
                            plain[path] = single(
                                path, path[skip:], known, st.st_size, st.st_mtime, "local"
                            )
                            continue
                        elif is_candidate(name):
                            st = entry.stat(follow_symlinks=False)
                        else:
                            continue
                        append(
                            new_fact(
                                FileFact,
                                (entry.path, st.st_size, st.st_mtime, False, None, False),
                            )
                        )
                        continue
                    if entry.is_symlink():
                        target = os.path.basename(os.readlink(entry.path).rstrip("/"))
                        if (
                            inside_hf
                            or candidate_format(name)
                            or candidate_format(target)
                            or HF_DIR_RE.match(name)
                            or HF_DIR_RE.match(target)
                        ):
                            facts.append(_symlink_fact(entry.path))
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if name.startswith(".") or name in SKIP_DIRS:
                            continue
                        stack.append((entry.path, inside_hf or bool(HF_DIR_RE.match(name))))
                except OSError:
                    continue  # vanished between listing and stat: a rotated checkpoint
    return facts


def _symlink_fact(path: str) -> FileFact:
    target = os.readlink(path)
    absolute = os.path.normpath(os.path.join(os.path.dirname(path), target))
    try:
        st = os.stat(path)
    except OSError:
        return FileFact(path, 0, 0.0, link_target=absolute, broken=True)
    return FileFact(path, st.st_size, st.st_mtime, is_dir=os.path.isdir(path), link_target=absolute)


def list_checkpoints(directory: Path) -> list[CheckpointEntry]:
    """The checkpoints below a local directory, newest first.

    Args:
        directory: The folder to search recursively.

    Returns:
        One entry per checkpoint (a file, a sharded model, or a Trainer directory), with
        symlinks folded in as aliases of their targets.

    Raises:
        NotFoundError: The directory does not exist.
    """
    root = os.path.abspath(directory)
    plain: dict[str, CheckpointEntry] = {}
    facts = _scan(root, plain)
    return _classify(facts, root, "local", os.sep, plain)


def classify_remote(files: Sequence[RemoteFileLike], root: str) -> list[CheckpointEntry]:
    """Checkpoints from a remote listing (one `find`/`stat` round trip over SSH), newest first.

    Args:
        files: The listing; directories are ignored except as the homes of their files.
        root: The remote directory that was listed.

    Returns:
        Entries with `location="ssh"` and remote paths.
    """
    root = posixpath.normpath(root)
    facts = []
    for item in files:
        if item.is_dir and item.link_target is None:
            continue
        name = posixpath.basename(item.path)
        inside_hf = any(
            HF_DIR_RE.match(part) for part in _relative(item.path, root).split("/")[:-1]
        )
        if not inside_hf and not candidate_format(name) and not HF_DIR_RE.match(name):
            continue
        target = None
        if item.link_target is not None:
            target = posixpath.normpath(
                posixpath.join(posixpath.dirname(item.path), item.link_target)
            )
        facts.append(
            FileFact(item.path, int(item.size), float(item.mtime), bool(item.is_dir), target)
        )
    return classify(facts, root, location="ssh", sep="/")


def list_s3_checkpoints(s3_uri: str, s3_client: Any) -> list[CheckpointEntry]:
    """Checkpoints under an S3 prefix, every page of the listing (beyond 1,000 keys), newest first.

    Args:
        s3_uri: `s3://bucket/prefix`.
        s3_client: A boto3 S3 client.

    Returns:
        Entries with `location="s3"` and `s3://` paths.

    Raises:
        BackendError: The URI is not an s3:// URI or S3 refused the listing.
    """
    if not s3_uri.startswith("s3://"):
        raise BackendError(f"{s3_uri!r} is not an S3 URI; write it as s3://bucket/prefix")
    bucket, _, prefix = s3_uri[len("s3://") :].partition("/")
    if not bucket:
        raise BackendError(f"{s3_uri!r} names no bucket; write it as s3://bucket/prefix")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    root = f"s3://{bucket}/{prefix}".rstrip("/")
    facts: list[FileFact] = []
    try:
        paginator = s3_client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                facts.append(
                    FileFact(
                        f"s3://{bucket}/{key}", int(obj["Size"]), obj["LastModified"].timestamp()
                    )
                )
    except Exception as exc:
        # botocore's ClientError/EndpointConnectionError: say what failed and what to check.
        raise BackendError(
            f"cannot list {s3_uri}: {exc}. Check the bucket name and your AWS credentials."
        ) from None
    kept = [
        f
        for f in facts
        if candidate_format(posixpath.basename(f.path))
        or any(HF_DIR_RE.match(p) for p in _relative(f.path, root).split("/")[:-1])
    ]
    return classify(kept, root, location="s3", sep="/")


def _relative(path: str, root: str, sep: str = "/") -> str:
    prefix = root.rstrip(sep) + sep
    if path.startswith(prefix):
        return path[len(prefix) :]
    return path.lstrip(sep)


def classify(
    facts: Iterable[FileFact], root: str, *, location: str = "local", sep: str = os.sep
) -> list[CheckpointEntry]:
    """Group file facts into checkpoint entries (newest first).

    Args:
        facts: Files found below `root` (symlinks carry `link_target`).
        root: The listed directory (or S3 prefix).
        location: `local`, `ssh` or `s3`, copied into each entry.
        sep: Path separator of the source.

    Returns:
        The entries: Trainer directories, sharded models, single files, and symlinks to
        something outside the listing; symlinks to a listed checkpoint become its aliases.
    """
    return _classify(facts, root, location, sep, {})


def _classify(
    facts: Iterable[FileFact],
    root: str,
    location: str,
    sep: str,
    entries: dict[str, CheckpointEntry],
) -> list[CheckpointEntry]:
    """`classify`, adding to the single-file `entries` a scan has already made."""
    root = root.rstrip(sep) or sep
    prefix = root + sep if root != sep else sep
    skip = len(prefix)
    groups: dict[str, _Group] = {}
    links: list[FileFact] = []
    name_facts = _name_facts
    single = _single_file_entry
    for fact in facts:
        path, size, mtime, _, link_target, broken = fact
        rel = path[skip:] if path.startswith(prefix) else path.lstrip(sep)
        if "checkpoint-" in rel:
            parts = rel.split(sep)
            hf_index = next((i for i, p in enumerate(parts[:-1]) if HF_DIR_RE.match(p)), None)
            if hf_index is not None:
                dir_path = prefix + sep.join(parts[: hf_index + 1])
                group = groups.setdefault(dir_path, _Group(dir_path, "hf-trainer", is_dir=True))
                group.parts.append(fact)
                continue
        if link_target is not None or broken:
            links.append(fact)
            continue
        name = rel.rpartition(sep)[2]
        if "-of-" in name or name.endswith(".index.json"):
            match = SHARD_RE.match(name) or INDEX_RE.match(name)
            if match is not None:
                ext = match["ext"]
                group_path = path[: len(path) - len(name)] + f"{match['stem']}.{ext}.index.json"
                group = groups.setdefault(
                    group_path,
                    _Group(group_path, "safetensors" if ext == "safetensors" else "torch"),
                )
                group.parts.append(fact)
                continue
        known = name_facts(name)
        if known is not None:
            entries[path] = single(path, rel, known, size, mtime, location)
    for group in groups.values():
        entry = _entry(group, root, location, sep)
        entries[entry.path] = entry
    if links:
        owners: dict[str, CheckpointEntry] = {}
        for entry in entries.values():
            owners[entry.path] = entry
            for part in entry.parts:
                owners.setdefault(part, entry)
        for link in links:
            _add_link(entries, owners, link, root, location, sep)
    # Newest first, ties by name (descending): two stable sorts on single keys, which compare
    # as plain floats and strings, cost a fraction of one sort on (modified, name) tuples.
    ordered = sorted(entries.values(), key=_BY_NAME, reverse=True)
    ordered.sort(key=_BY_MODIFIED, reverse=True)
    return ordered


def _add_link(
    entries: dict[str, CheckpointEntry],
    owners: dict[str, CheckpointEntry],
    link: FileFact,
    root: str,
    location: str,
    sep: str,
) -> None:
    target = link.link_target
    owner = owners.get(target) if target else None
    name = _display_name(link.path, root, sep)
    if owner is not None:
        owner.aliases.append(name)
        return
    base = link.path.rpartition(sep)[2]
    step, epoch, metrics = parse_name(base)
    entries[link.path] = CheckpointEntry(
        path=link.path,
        name=name,
        format=candidate_format(base) or "hf-trainer",
        size_bytes=link.size,
        modified=link.mtime,
        step=step,
        epoch=epoch,
        metrics=metrics,
        is_dir=link.is_dir,
        location=location,
        link_target=target,
        error=f"broken symlink: {name} points to {target}, which does not exist"
        if link.broken
        else None,
    )


def _display_name(path: str, root: str, sep: str) -> str:
    return _relative(path, root, sep)


def _entry(group: _Group, root: str, location: str, sep: str) -> CheckpointEntry:
    path = group.path
    paths = sorted(p.path for p in group.parts)
    if not group.is_dir and path not in paths:
        path = paths[0]  # a sharded model without its index: shown under its first shard
    name = _display_name(path, root, sep)
    base = name.split(sep)[-1]
    step, epoch, metrics = parse_name(base)
    writing = is_temp_name(base) or any(is_temp_name(p.split(sep)[-1]) for p in paths)
    return CheckpointEntry(
        path=path,
        name=name,
        format=group.format,
        size_bytes=sum(p.size for p in group.parts),
        modified=max((p.mtime for p in group.parts), default=0.0),
        step=step,
        epoch=epoch,
        metrics=metrics,
        parts=paths,
        is_dir=group.is_dir,
        location=location,
        writing=writing,
    )
