"""Spot interruption watcher that runs ON the instance beside the training process.

runctl copies this file to the instance and starts it with the run (stdlib only, plus boto3
through `s3_sync` for the upload), so it keeps watching after the CLI that started the run
has exited. It polls the instance metadata service with an IMDSv2 session token:

    PUT  {base}/latest/api/token                        (X-aws-ec2-metadata-token-ttl-seconds)
    GET  {base}/latest/meta-data/spot/instance-action   (X-aws-ec2-metadata-token) -> 404 or JSON

On a notice (AWS gives two minutes) it writes RUN_DIR/spot_interruption.json at once, sends
SIGTERM to the training process group so the script can checkpoint, waits for it to exit (up
to --grace seconds), uploads the newest checkpoint to --output-s3, and updates the marker with
what was uploaded. The metadata base URL is `RUNCTL_IMDS_URL` (default the link-local address)
so tests can point it at a local server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

if __package__:
    from runctl_tui.agent import s3_sync
else:  # run as a plain file on the instance: its folder is sys.path[0]
    import s3_sync  # type: ignore[import-not-found,no-redef]

load_env_file = s3_sync.load_env_file
pid_alive = s3_sync.pid_alive

DEFAULT_IMDS = "http://169.254.169.254"
MARKER = "spot_interruption.json"
TOKEN_TTL = 21600


def log(message: str) -> None:
    """One timestamped line on stdout (redirected to the agent's log file)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} spot_watcher: {message}", flush=True)


class Imds:
    """A minimal IMDSv2 client: a session token, refreshed before it expires or on 401."""

    def __init__(self, base: str, timeout: float = 2.0) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self._token = ""
        self._expires = 0.0

    def _fetch_token(self) -> str:
        request = urllib.request.Request(
            f"{self.base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            token = str(response.read().decode("ascii")).strip()
        self._token = token
        self._expires = time.monotonic() + TOKEN_TTL - 60
        return token

    def token(self) -> str:
        """A valid session token."""
        if not self._token or time.monotonic() >= self._expires:
            return self._fetch_token()
        return self._token

    def get(self, path: str) -> str | None:
        """GET a metadata path with the token; None on 404 (nothing there)."""
        for attempt in range(2):
            request = urllib.request.Request(
                f"{self.base}/latest/meta-data/{path}",
                headers={"X-aws-ec2-metadata-token": self.token()},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return str(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code == 401 and attempt == 0:
                    self._token = ""  # expired or revoked: fetch a new one and retry once
                    continue
                raise
        return None

    def instance_action(self) -> dict[str, Any] | None:
        """The pending spot instance action (`{"action": "terminate", "time": ...}`) or None."""
        text = self.get("spot/instance-action")
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return {"action": text.strip(), "time": ""}
        return data if isinstance(data, dict) else {"action": str(data), "time": ""}


def write_marker(run_dir: Path, data: dict[str, Any]) -> None:
    """Atomically write the interruption marker the dashboard and CLI read."""
    path = run_dir / MARKER
    tmp = path.with_name(f".{MARKER}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def signal_training(pid: int) -> str:
    """SIGTERM the training process group (it was started with setsid), else the process."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return "already exited"
    try:
        if pgid == pid:
            os.killpg(pgid, signal.SIGTERM)
            return f"SIGTERM to process group {pgid}"
        os.kill(pid, signal.SIGTERM)
        return f"SIGTERM to pid {pid}"
    except ProcessLookupError:
        return "already exited"


def upload_newest(args: argparse.Namespace) -> dict[str, Any]:
    """Upload the newest checkpoint to --output-s3; return what happened for the marker."""
    if not args.output_s3:
        return {"uploaded": False, "upload_error": "no --output-s3 given"}
    try:
        uploader = s3_sync.Uploader(
            s3_sync.make_client(),
            args.output_s3,
            Path(args.checkpoint_dir),
            Path(args.run_dir),
        )
        newest = uploader.newest_checkpoint()
        if newest is None:
            return {"uploaded": False, "upload_error": "no checkpoint found"}
        keys = uploader.upload_entry(newest)
        bucket, _ = s3_sync.split_uri(args.output_s3)
        return {
            "uploaded": True,
            "checkpoint": newest,
            "s3_keys": [f"s3://{bucket}/{k}" for k in keys],
        }
    except Exception as exc:
        return {"uploaded": False, "upload_error": f"{type(exc).__name__}: {exc}"}


def watch(args: argparse.Namespace) -> int:
    """Poll until the training process exits or a notice arrives; act on the notice."""
    imds = Imds(args.metadata_url)
    run_dir = Path(args.run_dir)
    failures = 0
    log(f"watching pid {args.pid} via {imds.base} every {args.interval} s")
    while pid_alive(args.pid):
        try:
            action = imds.instance_action()
            failures = 0
        except (urllib.error.URLError, OSError) as exc:
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                log(f"metadata service unreachable ({exc}); still trying")
            action = None
        if action and action.get("action") in ("terminate", "stop", "hibernate"):
            return interrupt(args, run_dir, action)
        time.sleep(args.interval)
    log("training process exited; no interruption notice")
    return 0


def interrupt(args: argparse.Namespace, run_dir: Path, action: dict[str, Any]) -> int:
    """Act on an interruption notice: marker, SIGTERM, wait, upload, marker again."""
    marker: dict[str, Any] = {
        "action": action.get("action"),
        "time": action.get("time", ""),
        "noticed_at": time.time(),
        "pid": args.pid,
        "status": "signalling",
    }
    write_marker(run_dir, marker)
    log(f"spot interruption notice: {action}")
    marker["signal"] = signal_training(args.pid)
    log(marker["signal"])
    deadline = time.monotonic() + args.grace
    while pid_alive(args.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    marker["training_exited"] = not pid_alive(args.pid)
    marker["status"] = "uploading"
    write_marker(run_dir, marker)
    marker.update(upload_newest(args))
    marker["status"] = "done"
    marker["finished_at"] = time.time()
    write_marker(run_dir, marker)
    log(f"marker written: uploaded={marker.get('uploaded')} {marker.get('s3_keys', '')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="spot_watcher.py")
    parser.add_argument("--pid", type=int, required=True, help="training process (group leader)")
    parser.add_argument("--run-dir", required=True, help="where the marker is written")
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--output-s3", default="")
    parser.add_argument("--env-file", help="KEY=VALUE file with region/endpoint/credentials")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--grace", type=float, default=90.0, help="seconds to await exit")
    parser.add_argument("--metadata-url", help="default: $RUNCTL_IMDS_URL, else " + DEFAULT_IMDS)
    args = parser.parse_args(argv)
    load_env_file(args.env_file)
    if not args.metadata_url:
        args.metadata_url = os.environ.get("RUNCTL_IMDS_URL") or DEFAULT_IMDS
    return watch(args)


if __name__ == "__main__":
    sys.exit(main())
