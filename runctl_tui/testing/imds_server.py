"""A small EC2 instance metadata service (IMDSv2 only) on 127.0.0.1, for tests and demos.

Like the real service it hands out session tokens on `PUT /latest/api/token` (with a TTL
header between 1 and 21600 s) and answers metadata GETs only with a valid token (401
otherwise). `spot/instance-action` is 404 until the test announces an interruption with
`set_instance_action`. Point the spot watcher at it with `RUNCTL_IMDS_URL=server.url`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"


@dataclass(frozen=True)
class ImdsRequest:
    """One request the server saw."""

    method: str
    path: str
    status: int
    had_valid_token: bool


class ImdsServer:
    """IMDSv2 on a free loopback port; use as a context manager or call start()/stop().

    Args:
        instance_id: What `meta-data/instance-id` answers.
        instance_type: What `meta-data/instance-type` answers.
        lifecycle: What `meta-data/instance-life-cycle` answers (`spot` or `on-demand`).
    """

    def __init__(
        self,
        instance_id: str = "i-0123456789abcdef0",
        instance_type: str = "g5.xlarge",
        lifecycle: str = "spot",
    ) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._action: dict[str, str] | None = None
        self.requests: list[ImdsRequest] = []
        self.metadata: dict[str, str] = {
            "instance-id": instance_id,
            "instance-type": instance_type,
            "instance-life-cycle": lifecycle,
        }
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:41234` (the agent appends `/latest/...`)."""
        if self._server is None:
            raise RuntimeError("ImdsServer is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def set_instance_action(
        self, action: str = "terminate", when: dt.datetime | None = None
    ) -> None:
        """Announce a spot interruption (`terminate`, `stop` or `hibernate`) at `when`.

        Args:
            action: The action AWS will take.
            when: When; default two minutes from now, as AWS gives.
        """
        moment = when or dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2)
        with self._lock:
            self._action = {"action": action, "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def clear_instance_action(self) -> None:
        """Withdraw the notice (404 again)."""
        with self._lock:
            self._action = None

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (clients must fetch a new one)."""
        with self._lock:
            self._tokens.clear()

    def _issue(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return token

    def _valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    def _record(self, request: ImdsRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _answer(
        self, method: str, path: str, token: str | None, ttl: str | None
    ) -> tuple[int, str]:
        if method == "PUT":
            if path != "/latest/api/token":
                return 404, ""
            try:
                seconds = int(ttl or "")
            except ValueError:
                return 400, "missing or invalid TTL header"
            if not 1 <= seconds <= 21600:
                return 400, "TTL out of range"
            return 200, self._issue(seconds)
        if not self._valid(token):
            return 401, ""
        prefix = "/latest/meta-data/"
        if not path.startswith(prefix):
            return 404, ""
        key = path[len(prefix) :]
        if key == "spot/instance-action":
            with self._lock:
                action = self._action
            return (200, json.dumps(action)) if action else (404, "")
        if key in self.metadata:
            return 200, self.metadata[key]
        return 404, ""

    def start(self) -> ImdsServer:
        """Listen on 127.0.0.1 and a free port, serving from a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                token = self.headers.get(TOKEN_HEADER)
                status, body = server._answer(
                    self.command, self.path, token, self.headers.get(TTL_HEADER)
                )
                server._record(ImdsRequest(self.command, self.path, status, server._valid(token)))
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _handle
            do_PUT = _handle

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ImdsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
