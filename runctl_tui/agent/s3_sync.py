"""S3 transfers that run ON the instance, beside the training process (stdlib + boto3 only).

runctl copies this file to the instance and runs it with the instance's Python, so it keeps
working when the laptop that started the run closes its lid. It never imports runctl_tui.

    s3_sync.py download URI DEST
        Copy an object, or every object under a prefix, to DEST before the script starts.
    s3_sync.py upload-watch --pid PID --dir CKPT_DIR --output-s3 URI [--run-dir DIR]
        Upload checkpoints as they appear (once a file has stopped changing), then, when the
        training process has exited, everything not yet uploaded plus the run's log and exit
        status. Transfers use boto3's transfer manager (multipart for large files); what was
        uploaded is recorded in RUN_DIR/s3_sync.json, so a restarted agent skips it.

Keys: checkpoints go to `URI/checkpoints/<path under CKPT_DIR>`, final run files (train.log,
exit_code, spot_interruption.json) to `URI/run/<name>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

STATE_FILE = "s3_sync.json"
RUN_FILES = ("train.log", "exit_code", "spot_interruption.json")
MB = 1024 * 1024
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".incomplete")
"""Files being written before an atomic rename: never uploaded."""


def log(message: str) -> None:
    """One timestamped line on stdout (redirected to the agent's log file)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} s3_sync: {message}", flush=True)


def load_env_file(path: str | None) -> None:
    """Put KEY=VALUE lines of `path` into os.environ (region, endpoint, credentials)."""
    if not path or not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                os.environ[key] = value


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri}")
    return bucket, key


def join_key(prefix: str, *parts: str) -> str:
    """Join S3 key parts with single slashes."""
    pieces = [prefix.strip("/")] + [p.strip("/") for p in parts]
    return "/".join(p for p in pieces if p)


def make_client() -> Any:
    """An S3 client from the environment (AWS_REGION/AWS_DEFAULT_REGION, AWS_ENDPOINT_URL)."""
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    return boto3.session.Session(region_name=region).client("s3")


def transfer_config(threshold_mb: float) -> Any:
    """Multipart above `threshold_mb` (S3's minimum part size is 5 MiB)."""
    from boto3.s3.transfer import TransferConfig

    size = max(int(threshold_mb * MB), 5 * MB)
    return TransferConfig(multipart_threshold=size, multipart_chunksize=size)


def download(
    client: Any, uri: str, dest: Path, *, page_size: int = 1000, threshold_mb: float = 64
) -> int:
    """Download one object or a whole prefix to `dest`; return the number of files.

    Args:
        client: boto3 S3 client.
        uri: `s3://bucket/key` (one object) or `s3://bucket/prefix/` (everything under it).
        dest: A directory (prefix) or a file path / directory (object).
        page_size: Keys per ListObjectsV2 page.
        threshold_mb: Multipart threshold for large objects.
    """
    bucket, key = split_uri(uri)
    config = transfer_config(threshold_mb)
    prefix = key if (not key or key.endswith("/")) else key + "/"
    count = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    ):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix) :]
            if not name or name.endswith("/"):
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(target), Config=config)
            count += 1
    if count == 0 and key and not key.endswith("/"):
        # Not a prefix: a single object.
        target = dest / os.path.basename(key) if dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target), Config=config)
        count = 1
    return count


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (and is not a zombie of ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


class Uploader:
    """Uploads changed files of a checkpoint directory, remembering what reached S3."""

    def __init__(
        self,
        client: Any,
        uri: str,
        ckpt_dir: Path,
        run_dir: Path | None,
        threshold_mb: float = 64,
    ) -> None:
        self.client = client
        self.bucket, self.prefix = split_uri(uri)
        self.ckpt_dir = ckpt_dir
        self.run_dir = run_dir
        self.config = transfer_config(threshold_mb)
        self.state_path = (run_dir or ckpt_dir) / STATE_FILE
        self.state: dict[str, Any] = {"uploaded": {}, "errors": []}
        if self.state_path.exists():
            try:
                self.state = json.loads(self.state_path.read_text(encoding="utf-8"))
            except ValueError:
                pass
        self._seen: dict[str, tuple[int, float]] = {}

    def _save(self) -> None:
        # Per-process temp name: the spot watcher may save while the upload agent does.
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.state, indent=1), encoding="utf-8")
        os.replace(tmp, self.state_path)

    def _files(self) -> list[tuple[str, Path, os.stat_result]]:
        found: list[tuple[str, Path, os.stat_result]] = []
        if not self.ckpt_dir.is_dir():
            return found
        for root, _dirs, files in os.walk(self.ckpt_dir):
            for name in files:
                path = Path(root) / name
                if name.endswith(TEMP_SUFFIXES) or name.startswith("."):
                    continue
                try:
                    info = path.stat()
                except OSError:
                    continue
                found.append((str(path.relative_to(self.ckpt_dir)), path, info))
        return found

    def upload_file(self, path: Path, key: str) -> None:
        """Upload one file (multipart when large) and log it."""
        started = time.monotonic()
        self.client.upload_file(str(path), self.bucket, key, Config=self.config)
        log(
            f"uploaded s3://{self.bucket}/{key} ({path.stat().st_size} bytes, "
            f"{time.monotonic() - started:.1f} s)"
        )

    def scan(self, *, final: bool = False) -> int:
        """Upload files that changed since their last upload and have stopped changing.

        Args:
            final: Upload every changed file now, stable or not (the writer has exited).

        Returns:
            How many files were uploaded.
        """
        uploaded = 0
        for rel, path, info in self._files():
            signature = (info.st_size, info.st_mtime)
            done = self.state["uploaded"].get(rel)
            if done and (done["size"], done["mtime"]) == signature:
                continue
            previous = self._seen.get(rel)
            self._seen[rel] = signature
            if not final and previous != signature:
                continue  # still being written (or first sight): wait one more scan
            key = join_key(self.prefix, "checkpoints", rel)
            try:
                self.upload_file(path, key)
            except Exception as exc:  # keep watching; the next scan retries
                self.state["errors"] = [*self.state.get("errors", []), f"{rel}: {exc}"][-20:]
                log(f"upload of {rel} failed: {exc}")
                self._save()
                continue
            self.state["uploaded"][rel] = {
                "size": info.st_size,
                "mtime": info.st_mtime,
                "key": key,
                "at": time.time(),
            }
            self._save()
            uploaded += 1
        return uploaded

    def newest_checkpoint(self) -> str | None:
        """Relative path of the newest top-level entry of the checkpoint dir (file or dir)."""
        if not self.ckpt_dir.is_dir():
            return None
        best: tuple[float, str] | None = None
        for entry in self.ckpt_dir.iterdir():
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                times = [p.stat().st_mtime for p in entry.rglob("*") if p.is_file()]
                if not times:
                    continue
                mtime = max(times)
            else:
                mtime = entry.stat().st_mtime
            if best is None or mtime > best[0]:
                best = (mtime, entry.name)
        return best[1] if best else None

    def upload_entry(self, rel: str) -> list[str]:
        """Upload one checkpoint (a file, or every file of a directory) now; return keys."""
        keys = []
        target = self.ckpt_dir / rel
        paths = [p for p in target.rglob("*") if p.is_file()] if target.is_dir() else [target]
        for path in paths:
            sub = str(path.relative_to(self.ckpt_dir))
            key = join_key(self.prefix, "checkpoints", sub)
            self.upload_file(path, key)
            info = path.stat()
            self.state["uploaded"][sub] = {
                "size": info.st_size,
                "mtime": info.st_mtime,
                "key": key,
                "at": time.time(),
            }
            keys.append(key)
        self._save()
        return keys

    def upload_run_files(self) -> None:
        """Upload the run's log and status files (final outputs)."""
        if self.run_dir is None:
            return
        for name in RUN_FILES:
            path = self.run_dir / name
            if path.is_file():
                try:
                    self.upload_file(path, join_key(self.prefix, "run", name))
                except Exception as exc:
                    log(f"upload of {name} failed: {exc}")


def upload_watch(args: argparse.Namespace) -> int:
    """Watch the checkpoint dir while the training process lives; final upload at the end."""
    client = make_client()
    run_dir = Path(args.run_dir) if args.run_dir else None
    uploader = Uploader(client, args.output_s3, Path(args.dir), run_dir, args.multipart_mb)
    log(f"watching {args.dir} for pid {args.pid} -> {args.output_s3}")
    while pid_alive(args.pid):
        uploader.scan()
        time.sleep(args.interval)
    uploader.scan(final=True)
    uploader.upload_run_files()
    state = uploader.state
    state["finished"] = time.time()
    uploader._save()
    log(f"training process exited; {len(state['uploaded'])} checkpoint files in S3")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="s3_sync.py")
    parser.add_argument("--env-file", help="KEY=VALUE file with region/endpoint/credentials")
    parser.add_argument("--multipart-mb", type=float, default=64.0)
    sub = parser.add_subparsers(dest="command", required=True)
    down = sub.add_parser("download")
    down.add_argument("uri")
    down.add_argument("dest")
    down.add_argument("--page-size", type=int, default=1000)
    watch = sub.add_parser("upload-watch")
    watch.add_argument("--pid", type=int, required=True)
    watch.add_argument("--dir", required=True)
    watch.add_argument("--output-s3", required=True)
    watch.add_argument("--run-dir")
    watch.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    load_env_file(args.env_file)
    if args.command == "download":
        dest = Path(args.dest)
        dest.mkdir(parents=True, exist_ok=True)
        count = download(
            make_client(), args.uri, dest, page_size=args.page_size, threshold_mb=args.multipart_mb
        )
        log(f"downloaded {count} file(s) from {args.uri} to {dest}")
        return 0
    return upload_watch(args)


if __name__ == "__main__":
    sys.exit(main())
