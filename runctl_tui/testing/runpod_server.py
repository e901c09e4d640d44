"""A RunPod REST API v2 server on 127.0.0.1, for tests and for demos without an account.

It speaks the endpoints runctl uses as RunPod's OpenAPI document describes them: pods (list,
get, create, actions, delete), the pod log stream (Server-Sent Events with resumable ids), the
GPU catalog with prices and stock, pod billing and the account's SSH keys; Bearer-key auth
(401), per-key rate limits with `RateLimit`/`RateLimit-Policy` headers (429 + `Retry-After`),
the pod status machine (`PROVISIONING` -> `STARTING` -> `RUNNING`, `EXITED`, `TERMINATED`) with
`actions` valid per status (409 otherwise), and capacity refusals on create (400).

Tests drive it through the Python object, never through extra HTTP endpoints: advance pods,
change stock, add log lines, and switch faults on (5xx answers, slow answers, rate limiting, a
log stream dropped mid-way). Running pods publish `ssh.direct` at a configurable host and port,
so tests point it at a real sshd and the whole train/log/checkpoint path runs over SSH.

Run it standalone with `python -m runctl_tui.testing.runpod_server --port 8765`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PROVISIONING = "PROVISIONING"
STARTING = "STARTING"
RUNNING = "RUNNING"
EXITED = "EXITED"
ERROR = "ERROR"
TERMINATED = "TERMINATED"

#: The actions RunPod allows in each status (the `podAction` operation's description).
ACTIONS_BY_STATUS: dict[str, tuple[str, ...]] = {
    PROVISIONING: ("stop", "terminate"),
    STARTING: ("stop", "terminate"),
    RUNNING: ("stop", "restart", "terminate"),
    EXITED: ("start", "terminate"),
    ERROR: ("start", "terminate"),
    TERMINATED: (),
}

_NEXT_STATUS = {PROVISIONING: STARTING, STARTING: RUNNING}
_LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")
_FREE_GPUS = {"NONE": 0, "LOW": 2, "MEDIUM": 4, "HIGH": 8}
"""How many GPUs of a type a data centre can place at each stock level."""

CAPACITY_DETAIL = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)

_CREATE_FIELDS = {
    "name",
    "image",
    "args",
    "disk",
    "env",
    "ports",
    "registry",
    "cloud",
    "cpu",
    "dataCenterIds",
    "globalNetworking",
    "gpu",
    "mounts",
    "startJupyter",
    "startSsh",
    "templateId",
}


@dataclass
class GpuCatalogEntry:
    """One GPU type of the catalog, with its stock per cloud and data centre."""

    id: str
    name: str
    memory: int
    secure_price: float
    community_price: float
    pool: str | None = None
    max_secure: int = 8
    max_community: int = 4
    cuda_versions: tuple[str, ...] = ("12.4", "12.8")
    stock: dict[tuple[str, str], str] = field(default_factory=dict)
    """(cloud, data centre id) -> availability level (NONE, LOW, MEDIUM, HIGH)."""

    def price(self, cloud: str) -> float:
        """List price of one GPU per hour in `cloud`."""
        return self.secure_price if cloud == "SECURE" else self.community_price

    def max_count(self, cloud: str) -> int:
        """Largest GPU count of one pod in `cloud`."""
        return self.max_secure if cloud == "SECURE" else self.max_community

    def level(self, cloud: str, dc: str, count: int) -> str:
        """Availability of `count` GPUs in `cloud` at `dc`."""
        level = self.stock.get((cloud, dc), "NONE")
        if count > self.max_count(cloud) or _FREE_GPUS[level] < count:
            return "NONE"
        return level


DATA_CENTERS: dict[str, str] = {
    "US-KS-2": "US Kansas 2",
    "US-TX-3": "US Texas 3",
    "EU-RO-1": "EU Romania 1",
    "CA-MTL-1": "CA Montreal 1",
}


def default_catalog() -> list[GpuCatalogEntry]:
    """A small catalog with RunPod's GPU type ids and plausible list prices and stock."""

    def stock(**levels: str) -> dict[tuple[str, str], str]:
        out: dict[tuple[str, str], str] = {}
        for key, level in levels.items():
            cloud, dc = key.split("__")
            out[(cloud.upper(), dc.replace("_", "-"))] = level
        return out

    return [
        GpuCatalogEntry(
            "NVIDIA GeForce RTX 4090",
            "RTX 4090",
            24,
            0.69,
            0.34,
            pool="ADA_24",
            stock=stock(secure__US_KS_2="HIGH", secure__EU_RO_1="MEDIUM", community__US_TX_3="LOW"),
        ),
        GpuCatalogEntry(
            "NVIDIA RTX A6000",
            "RTX A6000",
            48,
            0.49,
            0.33,
            pool="AMPERE_48",
            stock=stock(secure__US_TX_3="MEDIUM", community__CA_MTL_1="HIGH"),
        ),
        GpuCatalogEntry(
            "NVIDIA A100 80GB PCIe",
            "A100 PCIe",
            80,
            1.64,
            1.19,
            pool="AMPERE_80",
            stock=stock(secure__US_KS_2="LOW", secure__CA_MTL_1="MEDIUM"),
        ),
        GpuCatalogEntry(
            "NVIDIA H100 80GB HBM3",
            "H100 SXM",
            80,
            2.99,
            2.69,
            pool="HOPPER_141",
            max_community=0,
            stock=stock(secure__EU_RO_1="LOW"),
        ),
    ]


def rfc3339(epoch: float, *, precise: bool = False) -> str:
    """`2026-06-01T12:00:00Z` (or with microseconds when `precise`) for epoch seconds."""
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)
    if precise:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp; raises ValueError when it is not one."""
    value = text.strip().replace("z", "Z")
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without an offset: {text!r}")
    return moment.timestamp()


@dataclass
class LogEvent:
    """One line of a pod's log stream."""

    seq: int
    ts: float
    source: str
    line: str

    @property
    def event_id(self) -> str:
        """The SSE id: the timestamp and a sequence number (the document's example form)."""
        return f"{rfc3339(self.ts, precise=True)}/{self.seq:012d}"


@dataclass
class FakePod:
    """A pod's server-side state."""

    id: str
    name: str
    image: str
    gpu_id: str
    gpu_count: int
    cloud: str
    data_center: str
    disk: int
    volume: int
    ports: list[str]
    env: dict[str, str]
    created: float
    start_ssh: bool
    status: str = PROVISIONING
    status_since: float = 0.0
    polls_in_status: int = 0
    started: float | None = None
    cost_per_hour: float = 0.0
    billed_seconds: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) running intervals, for billing; an open interval has end == inf."""
    logs: list[LogEvent] = field(default_factory=list)
    proxy_user: str = ""


@dataclass
class Faults:
    """Switchable faults; each counter is consumed by the requests it hits."""

    fail_next: int = 0
    fail_status: int = 500
    fail_path: str = ""
    """Only requests whose path starts with this fail; empty: any path."""
    slow_next: int = 0
    slow_seconds: float = 0.0
    rate_limit_next: int = 0
    rate_limit_retry_after: int = 1
    drop_stream_after: int | None = None
    """Close the next log stream abruptly after this many events."""


@dataclass
class RecordedRequest:
    """A request the server received, for tests to assert on."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0


class _Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


@dataclass
class _Window:
    name: str
    quota: int
    length: int
    start: float = 0.0
    used: int = 0

    def remaining(self, now: float) -> tuple[int, int]:
        if now - self.start >= self.length:
            self.start, self.used = now, 0
        reset = max(1, math.ceil(self.start + self.length - now))
        return max(0, self.quota - self.used), reset


class RunPodTestServer:
    """RunPod's REST API v2 on a loopback port, with a control API for tests.

    Args:
        api_key: The one key the server accepts.
        host: Interface to bind (loopback by default).
        port: TCP port; 0 picks a free one.
        ssh_host: Host published as `ssh.direct.host` for running pods.
        ssh_port: Port published as `ssh.direct.port`.
        ssh_user: User published as `ssh.direct.username`.
        ssh_keys: The account's registered public keys (`GET /v2/account/ssh-keys`).
        step_seconds: Seconds a pod spends in PROVISIONING and in STARTING; None: not by time.
        step_polls: Reads of a pod (get or list) after which it moves on; None: not by polls.
        quota_per_minute: Requests per minute per key before 429.
        clock: Epoch seconds source (tests may freeze or advance it).
    """

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        ssh_host: str = "127.0.0.1",
        ssh_port: int = 22,
        ssh_user: str = "root",
        ssh_keys: list[str] | None = None,
        step_seconds: float | None = 1.0,
        step_polls: int | None = None,
        quota_per_minute: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.ssh_host = ssh_host
        self.ssh_port = ssh_port
        self.ssh_user = ssh_user
        self.ssh_keys = list(ssh_keys or [])
        self.step_seconds = step_seconds
        self.step_polls = step_polls
        self.clock = clock
        self.catalog = default_catalog()
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self.pods: dict[str, FakePod] = {}
        self._lock = threading.RLock()
        self._log_event = threading.Condition(self._lock)
        self._seq = 0
        self._stopping = threading.Event()
        self._windows = [
            _Window("minute", quota_per_minute, 60),
            _Window("hour", quota_per_minute * 50, 3600),
            _Window("day", quota_per_minute * 800, 86400),
        ]
        self._httpd = _Server((host, port), _Handler)
        self._httpd.app = self
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The bound address."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for clients, e.g. `http://127.0.0.1:40123`."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> RunPodTestServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="runpod-test-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (open log streams end)."""
        self._stopping.set()
        with self._lock:
            self._log_event.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RunPodTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control API for tests -----------------------------------------------------------------

    def gpu(self, gpu_id: str) -> GpuCatalogEntry:
        """The catalog entry of `gpu_id` (KeyError when unknown)."""
        for entry in self.catalog:
            if entry.id == gpu_id:
                return entry
        raise KeyError(gpu_id)

    def set_stock(
        self, gpu_id: str, level: str, *, cloud: str | None = None, dc: str | None = None
    ) -> None:
        """Set the stock of `gpu_id` (for one cloud/data centre, or all of its entries)."""
        entry = self.gpu(gpu_id)
        with self._lock:
            if cloud and dc:
                entry.stock[(cloud, dc)] = level
                return
            for key in list(entry.stock):
                if (cloud is None or key[0] == cloud) and (dc is None or key[1] == dc):
                    entry.stock[key] = level

    def add_pod(self, *, status: str = RUNNING, **fields: Any) -> FakePod:
        """Create a pod directly in `status` (seeding demos and tests)."""
        body: dict[str, Any] = {
            "name": fields.pop("name", "seeded"),
            "image": fields.pop(
                "image", "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
            ),
            "gpu": {"id": fields.pop("gpu_id", self.catalog[0].id), "count": 1},
            "ports": ["22/tcp"],
            "startSsh": True,
        }
        body.update(fields)
        with self._lock:
            pod = self._create(body)
            while pod.status != status and pod.status in _NEXT_STATUS:
                self._set_status(pod, _NEXT_STATUS[pod.status])
            if status != pod.status:
                self._set_status(pod, status)
            return pod

    def advance(self, pod_id: str) -> str:
        """Move a provisioning/starting pod one step on; returns the new status."""
        with self._lock:
            pod = self.pods[pod_id]
            if pod.status in _NEXT_STATUS:
                self._set_status(pod, _NEXT_STATUS[pod.status])
            return pod.status

    def set_status(self, pod_id: str, status: str) -> None:
        """Force a pod into `status` (e.g. ERROR)."""
        with self._lock:
            self._set_status(self.pods[pod_id], status)

    def add_log(self, pod_id: str, line: str, source: str = "container") -> LogEvent:
        """Append a line to a pod's log stream (wakes open streams)."""
        with self._lock:
            return self._log(self.pods[pod_id], line, source)

    def fail_next(self, count: int, status: int = 500, path: str = "") -> None:
        """Answer the next `count` requests (under `path`, if given) with `status`."""
        with self._lock:
            self.faults.fail_next, self.faults.fail_status = count, status
            self.faults.fail_path = path

    def slow_next(self, count: int, seconds: float) -> None:
        """Delay the next `count` answers by `seconds`."""
        with self._lock:
            self.faults.slow_next, self.faults.slow_seconds = count, seconds

    def rate_limit_next(self, count: int, retry_after: int = 1) -> None:
        """Answer the next `count` authenticated requests with 429 and `Retry-After`."""
        with self._lock:
            self.faults.rate_limit_next = count
            self.faults.rate_limit_retry_after = retry_after

    def drop_next_stream_after(self, events: int) -> None:
        """Cut the next log stream's connection abruptly after `events` events."""
        with self._lock:
            self.faults.drop_stream_after = events

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests under `path_prefix` (and of `method`, if given)."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.startswith(path_prefix) and (method is None or r.method == method)
            ]

    # -- state machine ---------------------------------------------------------------------------

    def _new_id(self) -> str:
        alphabet = string.ascii_lowercase + string.digits
        while True:
            pod_id = "".join(secrets.choice(alphabet) for _ in range(14))
            if pod_id not in self.pods:
                return pod_id

    def _log(self, pod: FakePod, line: str, source: str = "container") -> LogEvent:
        self._seq += 1
        event = LogEvent(self._seq, self.clock(), source, line)
        pod.logs.append(event)
        self._log_event.notify_all()
        return event

    def _set_status(self, pod: FakePod, status: str) -> None:
        now = self.clock()
        if pod.status == RUNNING and status != RUNNING and pod.billed_seconds:
            start, _ = pod.billed_seconds[-1]
            pod.billed_seconds[-1] = (start, now)
        pod.status, pod.status_since, pod.polls_in_status = status, now, 0
        gpu = self.gpu(pod.gpu_id)
        if status == STARTING:
            self._log(pod, f"Pulling image {pod.image}", "system")
            self._log(pod, "Starting container", "system")
        elif status == RUNNING:
            pod.started = now
            pod.billed_seconds.append((now, math.inf))
            if pod.start_ssh:
                self._log(pod, "sshd: Server listening on 0.0.0.0 port 22.")
            self._log(pod, "Container is running")
        elif status == EXITED:
            pod.started = None
            self._log(pod, "Container stopped", "system")
        elif status == TERMINATED:
            pod.started = None
            self._log(pod, "Pod terminated", "system")
        elif status == PROVISIONING:
            self._log(pod, f"Pod assigned to a machine in {pod.data_center}", "system")
        pod.cost_per_hour = (
            round(gpu.price(pod.cloud) * pod.gpu_count, 4)
            if status in (PROVISIONING, STARTING, RUNNING)
            else 0.0
        )

    def _observe(self, pod: FakePod) -> None:
        """A client looked at the pod: let time and polls move it along."""
        pod.polls_in_status += 1
        while pod.status in _NEXT_STATUS:
            by_polls = self.step_polls is not None and pod.polls_in_status > self.step_polls
            by_time = (
                self.step_seconds is not None
                and self.clock() - pod.status_since >= self.step_seconds
            )
            if not (by_polls or by_time):
                break
            self._set_status(pod, _NEXT_STATUS[pod.status])
            pod.polls_in_status = 1

    def _create(self, body: dict[str, Any]) -> FakePod:
        gpu_req = body["gpu"]
        gpu = self.gpu(gpu_req["id"])
        count = int(gpu_req.get("count", 1))
        cloud = body.get("cloud", "SECURE")
        wanted = list(body.get("dataCenterIds") or DATA_CENTERS)
        candidates = [dc for dc in wanted if gpu.level(cloud, dc, count) != "NONE"]
        if not candidates:
            raise _Problem(400, CAPACITY_DETAIL)
        best = max(candidates, key=lambda dc: _LEVELS.index(gpu.level(cloud, dc, count)))
        mounts = body.get("mounts") or {}
        persistent = mounts.get("persistent") or {}
        now = self.clock()
        pod = FakePod(
            id=self._new_id(),
            name=body["name"],
            image=body["image"],
            gpu_id=gpu.id,
            gpu_count=count,
            cloud=cloud,
            data_center=best,
            disk=int(body.get("disk", 50)),
            volume=int(persistent.get("size", 0)),
            ports=list(body.get("ports", [])),
            env=dict(body.get("env", {})),
            created=now,
            start_ssh=bool(body.get("startSsh", False)) and bool(self.ssh_keys),
        )
        pod.proxy_user = f"{pod.id}-{secrets.token_hex(4)}"
        self.pods[pod.id] = pod
        self._set_status(pod, PROVISIONING)
        return pod

    def _pod_json(self, pod: FakePod) -> dict[str, Any]:
        now = self.clock()
        running = pod.status == RUNNING
        direct = None
        if running and pod.start_ssh and "22/tcp" in pod.ports:
            direct = {
                "host": self.ssh_host,
                "port": self.ssh_port,
                "username": self.ssh_user,
                "command": f"ssh {self.ssh_user}@{self.ssh_host} -p {self.ssh_port}",
            }
        proxy = None
        if pod.status not in (PROVISIONING, TERMINATED):
            proxy = {
                "host": "ssh.runpod.io",
                "port": 22,
                "username": pod.proxy_user,
                "command": f"ssh {pod.proxy_user}@ssh.runpod.io",
            }
        runtime: dict[str, Any] | None = None
        if running:
            uptime = int(now - (pod.started or now))
            wave = (int(now) // 5) % 10
            runtime = {
                "uptime": uptime,
                "gpus": [
                    {"util": min(100, 80 + wave + i), "memoryUtil": min(100, 60 + wave)}
                    for i in range(pod.gpu_count)
                ],
                "cpu": {"util": 35 + wave},
                "memory": {"util": 40 + wave},
                "ports": [
                    {
                        "private": int(p.split("/")[0]),
                        "public": self.ssh_port if p == "22/tcp" else 40000 + i,
                        "type": p.split("/")[1] if "/" in p else "tcp",
                        "ip": self.ssh_host,
                    }
                    for i, p in enumerate(pod.ports)
                ],
            }
        mounts: dict[str, Any] = {}
        if pod.volume:
            mounts["persistent"] = {"size": pod.volume, "path": "/workspace"}
        return {
            "id": pod.id,
            "name": pod.name,
            "image": pod.image,
            "args": "",
            "disk": pod.disk,
            "ports": list(pod.ports),
            "env": dict(pod.env),
            "registry": None,
            "status": pod.status,
            "actions": list(ACTIONS_BY_STATUS[pod.status]),
            "mounts": mounts,
            "gpu": {"id": pod.gpu_id, "count": pod.gpu_count},
            "cloud": pod.cloud,
            "dataCenterId": pod.data_center,
            "cudaVersion": self.gpu(pod.gpu_id).cuda_versions[-1],
            "ssh": {"proxy": proxy, "direct": direct},
            "template": None,
            "cost": pod.cost_per_hour,
            "locked": False,
            "globalNetworking": {"enabled": False},
            "runtime": runtime,
            "createdAt": rfc3339(pod.created),
            "startedAt": rfc3339(pod.started) if pod.started is not None and running else None,
        }

    # -- request handling (called by the handler thread) ---------------------------------------

    def _rate_headers(self, now: float, exhausted: tuple[str, int] | None = None) -> dict[str, str]:
        states = []
        policies = []
        for window in self._windows:
            remaining, reset = window.remaining(now)
            if exhausted and exhausted[0] == window.name:
                remaining, reset = 0, exhausted[1]
            states.append(f'"{window.name}";r={remaining};t={reset}')
            policies.append(f'"{window.name}";q={window.quota};w={window.length}')
        return {"RateLimit": ", ".join(states), "RateLimit-Policy": ", ".join(policies)}

    def _authenticate(self, headers: dict[str, str]) -> None:
        value = headers.get("authorization", "")
        if not value:
            raise _Problem(401, "missing bearer token")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Problem(401, "malformed bearer token")
        if not secrets.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise _Problem(401, "invalid api key")

    def _count_request(self, now: float) -> dict[str, str]:
        if self.faults.rate_limit_next > 0:
            self.faults.rate_limit_next -= 1
            wait = self.faults.rate_limit_retry_after
            headers = self._rate_headers(now, ("minute", wait))
            headers["Retry-After"] = str(wait)
            raise _Problem(429, "rate limit exceeded for the minute window", headers=headers)
        for window in self._windows:
            remaining, reset = window.remaining(now)
            if remaining <= 0:
                headers = self._rate_headers(now)
                headers["Retry-After"] = str(reset)
                raise _Problem(
                    429, f"rate limit exceeded for the {window.name} window", headers=headers
                )
        for window in self._windows:
            window.used += 1
        return self._rate_headers(now)

    def _find_pod(self, pod_id: str, *, allow_terminated: bool = True) -> FakePod:
        pod = self.pods.get(pod_id)
        if pod is None or (pod.status == TERMINATED and not allow_terminated):
            raise _Problem(404, "pod not found")
        return pod

    def _validate_create(self, body: Any) -> dict[str, Any]:
        errors: list[str] = []
        if not isinstance(body, dict):
            raise _Problem(422, "Request validation failed.", errors=["$: expected an object"])
        errors.extend(
            f"$: additional properties '{key}' not allowed"
            for key in body
            if key not in _CREATE_FIELDS
        )
        typed: dict[str, type | tuple[type, ...]] = {
            "name": str,
            "image": str,
            "args": str,
            "disk": int,
            "env": dict,
            "ports": list,
            "cloud": str,
            "dataCenterIds": list,
            "gpu": dict,
            "cpu": dict,
            "mounts": dict,
            "startSsh": bool,
            "startJupyter": bool,
            "globalNetworking": bool,
            "templateId": str,
        }
        for key, tp in typed.items():
            if key in body and (
                not isinstance(body[key], tp) or (isinstance(body[key], bool) and tp is int)
            ):
                errors.append(f"$.{key}: wrong type")
        if not isinstance(body.get("name"), str) or not body.get("name"):
            errors.append("$.name: required, at least 1 character")
        if "templateId" not in body and "image" not in body:
            errors.append("$.image: required when templateId is not set")
        if isinstance(body.get("disk"), int) and body["disk"] < 1:
            errors.append("$.disk: must be >= 1")
        if body.get("cloud", "SECURE") not in ("SECURE", "COMMUNITY"):
            errors.append("$.cloud: must be one of SECURE, COMMUNITY")
        gpu = body.get("gpu")
        if isinstance(gpu, dict):
            if not isinstance(gpu.get("id"), str):
                errors.append("$.gpu.id: required string")
            count = gpu.get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                errors.append("$.gpu.count: must be an integer >= 1")
        persistent = (
            (body.get("mounts") or {}).get("persistent")
            if isinstance(body.get("mounts"), dict)
            else None
        )
        if persistent is not None and (
            not isinstance(persistent, dict)
            or not isinstance(persistent.get("size"), int)
            or persistent["size"] < 10
            or not isinstance(persistent.get("path"), str)
        ):
            errors.append("$.mounts.persistent: size (integer >= 10) and path are required")
        if errors:
            raise _Problem(422, "Request validation failed.", errors=errors)
        if ("gpu" in body) == ("cpu" in body):
            raise _Problem(400, "exactly one of gpu or cpu must be set")
        if "cpu" in body:
            raise _Problem(400, "CPU pods are not offered in this data center")
        if "templateId" in body:
            raise _Problem(404, "template not found")
        try:
            gpu_entry = self.gpu(body["gpu"]["id"])
        except KeyError:
            raise _Problem(400, f"unknown GPU type id '{body['gpu']['id']}'") from None
        cloud = body.get("cloud", "SECURE")
        count = body["gpu"].get("count", 1)
        if count > gpu_entry.max_count(cloud):
            raise _Problem(
                400,
                f"gpu.count {count} exceeds the {cloud} maximum of "
                f"{gpu_entry.max_count(cloud)} for {gpu_entry.id}",
            )
        return body

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """Answer one request: (status, headers, JSON body or an SSE generator or None)."""
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = _INVALID_JSON
        record = RecordedRequest(method, path, query, dict(headers), body)
        with self._lock:
            self.requests.append(record)
            if len(self.requests) > _MAX_RECORDED:
                del self.requests[: len(self.requests) - _MAX_RECORDED]
        status, out_headers, payload = self._dispatch(method, path, query, headers, body)
        record.status = status
        return status, out_headers, payload

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        rate_headers: dict[str, str] = {}
        try:
            with self._lock:
                delay = 0.0
                if self.faults.slow_next > 0:
                    self.faults.slow_next -= 1
                    delay = self.faults.slow_seconds
            if delay:
                self._stopping.wait(delay)
            with self._lock:
                self._authenticate(headers)
                now = self.clock()
                rate_headers = self._count_request(now)
                route = _route(method, path)
                if self.faults.fail_next > 0 and path.startswith(self.faults.fail_path):
                    self.faults.fail_next -= 1
                    status = self.faults.fail_status
                    raise _Problem(status, "upstream service unavailable, try again")
                if body is _INVALID_JSON:
                    raise _Problem(400, "request body is not valid JSON")
                handler, params = route
                status, payload = handler(self, query, headers, body, **params)
                return status, rate_headers, payload
        except _Problem as problem:
            out = dict(rate_headers)
            out.update(problem.headers)
            if problem.status == 401:
                out = {}  # Unauthenticated callers get no quota state.
            problem_body: dict[str, Any] = {
                "title": HTTPStatus(problem.status).phrase,
                "status": problem.status,
                "detail": problem.detail,
            }
            if problem.errors:
                problem_body["errors"] = problem.errors
            return problem.status, out, _ProblemBody(problem_body)

    # -- endpoint handlers (called with the lock held) -------------------------------------------

    def _list_pods(self, query: dict[str, list[str]], _h: Any, _b: Any) -> tuple[int, Any]:
        pods = []
        for pod in sorted(self.pods.values(), key=lambda p: p.created, reverse=True):
            if pod.status == TERMINATED:
                continue
            self._observe(pod)
            pods.append(self._pod_json(pod))
        return 200, {"pods": pods}

    def _create_pod(self, _q: Any, _h: Any, body: Any) -> tuple[int, Any]:
        pod = self._create(self._validate_create(body))
        return 201, self._pod_json(pod)

    def _get_pod(self, _q: Any, _h: Any, _b: Any, pod_id: str) -> tuple[int, Any]:
        pod = self._find_pod(pod_id)
        self._observe(pod)
        return 200, self._pod_json(pod)

    def _delete_pod(self, _q: Any, _h: Any, _b: Any, pod_id: str) -> tuple[int, Any]:
        pod = self._find_pod(pod_id, allow_terminated=False)
        self._set_status(pod, TERMINATED)
        return 204, None

    def _pod_action(self, _q: Any, _h: Any, body: Any, pod_id: str) -> tuple[int, Any]:
        pod = self._find_pod(pod_id, allow_terminated=False)
        if (
            not isinstance(body, dict)
            or set(body) != {"action"}
            or body["action"] not in ("start", "stop", "restart", "terminate")
        ):
            raise _Problem(
                422,
                "Request validation failed.",
                errors=["$.action: must be one of start, stop, restart, terminate"],
            )
        action = body["action"]
        allowed = ACTIONS_BY_STATUS[pod.status]
        if action not in allowed:
            raise _Problem(
                409,
                f"cannot {action} a pod in status {pod.status}; valid actions: "
                + (", ".join(allowed) or "none"),
            )
        if action == "terminate":
            self._set_status(pod, TERMINATED)
            return 204, None
        if action == "stop":
            self._set_status(pod, EXITED)
        elif action in ("start", "restart"):
            self._set_status(pod, STARTING)
        return 200, self._pod_json(pod)

    def _pod_logs(
        self, query: dict[str, list[str]], headers: dict[str, str], _b: Any, pod_id: str
    ) -> tuple[int, Any]:
        pod = self._find_pod(pod_id)
        source = _one(query, "source")
        if source is not None and source not in ("container", "system"):
            raise _Problem(
                422, "Request validation failed.", errors=["source: must be container or system"]
            )
        tail_text = _one(query, "tail")
        tail = 100
        if tail_text is not None:
            if not tail_text.isdigit() or int(tail_text) > 5000:
                raise _Problem(422, "Request validation failed.", errors=["tail: 0..5000"])
            tail = int(tail_text)
        after_seq: int | None = None
        after_ts: float | None = None
        last_id = headers.get("last-event-id")
        since = _one(query, "since")
        try:
            if last_id:
                stamp, _, seq = last_id.partition("/")
                if seq.isdigit():
                    after_seq = int(seq)
                else:
                    after_ts = parse_rfc3339(stamp)
            elif since:
                after_ts = parse_rfc3339(since) - 1e-9
        except ValueError:
            raise _Problem(
                422,
                "Request validation failed.",
                errors=["Last-Event-ID or since: not a timestamp"],
            ) from None
        drop_after = self.faults.drop_stream_after
        self.faults.drop_stream_after = None
        stream = _LogStream(self, pod, source, tail, after_seq, after_ts, drop_after)
        return 200, stream

    def _catalog_gpus(self, query: dict[str, list[str]], _h: Any, _b: Any) -> tuple[int, Any]:
        include = _csv(query, "include")
        products = _csv(query, "product")
        if include and include != ["AVAILABILITY"]:
            raise _Problem(422, "Request validation failed.", errors=["include: only AVAILABILITY"])
        if bool(include) != bool(products):
            raise _Problem(400, "include=AVAILABILITY and product must be given together")
        for name in ("count", "cloud"):
            if name in query and not include:
                raise _Problem(400, f"{name} is valid only with include=AVAILABILITY")
        if any(p not in ("POD", "CLUSTER", "SERVERLESS") for p in products):
            raise _Problem(
                422, "Request validation failed.", errors=["product: POD, CLUSTER or SERVERLESS"]
            )
        count_text = _one(query, "count") or "1"
        if not count_text.isdigit() or int(count_text) < 1:
            raise _Problem(422, "Request validation failed.", errors=["count: integer >= 1"])
        count = int(count_text)
        cloud = _one(query, "cloud") or "SECURE"
        if cloud not in ("SECURE", "COMMUNITY"):
            raise _Problem(422, "Request validation failed.", errors=["cloud: SECURE or COMMUNITY"])
        gpus = []
        for entry in self.catalog:
            item: dict[str, Any] = {
                "id": entry.id,
                "name": entry.name,
                "pool": entry.pool,
                "manufacturer": "NVIDIA",
                "memory": entry.memory,
                "secure": entry.max_secure > 0,
                "community": entry.max_community > 0,
                "price": {"secure": entry.secure_price, "community": entry.community_price},
                "maxCount": {"secure": entry.max_secure, "community": entry.max_community},
            }
            if include:
                per_dc = [
                    {"id": dc, "name": name, "availability": entry.level(cloud, dc, count)}
                    for dc, name in DATA_CENTERS.items()
                    if (cloud, dc) in entry.stock
                ]
                offered = [d for d in per_dc if d["availability"] != "NONE"]
                best = max((_LEVELS.index(d["availability"]) for d in offered), default=0)
                item["availability"] = _LEVELS[best]
                if offered:
                    item["dataCenters"] = offered
                item["cudaVersions"] = [
                    {"version": v, "available": bool(offered)} for v in entry.cuda_versions
                ]
            gpus.append(item)
        return 200, {"gpus": gpus}

    def _billing_pods(self, query: dict[str, list[str]], _h: Any, _b: Any) -> tuple[int, Any]:
        bucket = _one(query, "bucketSize") or "day"
        if bucket not in _BUCKETS:
            raise _Problem(
                422,
                "Request validation failed.",
                errors=["bucketSize: hour, day, week, month, year"],
            )
        last_n = _one(query, "lastN")
        start_text, end_text = _one(query, "startTime"), _one(query, "endTime")
        if last_n is not None and (start_text or end_text):
            raise _Problem(400, "lastN is mutually exclusive with startTime/endTime")
        now = self.clock()
        try:
            if last_n is not None:
                if not last_n.isdigit() or int(last_n) < 1:
                    raise ValueError("lastN")
                end = _bucket_end(now, bucket)
                start = end
                for _ in range(int(last_n)):
                    start = _bucket_start(start - 1, bucket)
            else:
                end = (
                    _bucket_end(parse_rfc3339(end_text), bucket)
                    if end_text
                    else _bucket_end(now, bucket)
                )
                start = _bucket_start(
                    parse_rfc3339(start_text) if start_text else now - 30 * 86400, bucket
                )
        except ValueError:
            raise _Problem(
                422, "Request validation failed.", errors=["invalid billing window"]
            ) from None
        pod_filter = _one(query, "podId")
        records = []
        totals = gpu_total = disk_total = 0.0
        pods_seen: set[str] = set()
        cursor = start
        while cursor < end:
            nxt = _bucket_end(cursor, bucket)
            for pod in sorted(self.pods.values(), key=lambda p: p.created):
                if pod_filter and pod.id != pod_filter:
                    continue
                seconds = sum(
                    max(0.0, min(b, nxt, now) - max(a, cursor)) for a, b in pod.billed_seconds
                )
                if seconds <= 0:
                    continue
                rate = self.gpu(pod.gpu_id).price(pod.cloud) * pod.gpu_count
                gpu_amount = round(rate * seconds / 3600.0, 6)
                disk_amount = round((pod.disk + pod.volume) * 0.0001 * seconds / 3600.0, 6)
                records.append(
                    {
                        "startTime": rfc3339(cursor),
                        "endTime": rfc3339(nxt),
                        "podId": pod.id,
                        "totalAmount": round(gpu_amount + disk_amount, 6),
                        "gpuAmount": gpu_amount,
                        "cpuAmount": 0.0,
                        "diskAmount": disk_amount,
                    }
                )
                totals += gpu_amount + disk_amount
                gpu_total += gpu_amount
                disk_total += disk_amount
                pods_seen.add(pod.id)
            cursor = nxt
        return 200, {
            "records": records,
            "metadata": {
                "query": {
                    "startTime": rfc3339(start),
                    "endTime": rfc3339(end),
                    "bucketSize": bucket,
                    "podId": pod_filter,
                },
                "recordCount": len(records),
                "uniquePodCount": len(pods_seen),
                "totals": {
                    "totalAmount": round(totals, 6),
                    "gpuAmount": round(gpu_total, 6),
                    "cpuAmount": 0.0,
                    "diskAmount": round(disk_total, 6),
                },
            },
        }

    def _get_ssh_keys(self, _q: Any, _h: Any, _b: Any) -> tuple[int, Any]:
        return 200, {"keys": list(self.ssh_keys)}

    def _put_ssh_keys(self, _q: Any, _h: Any, body: Any) -> tuple[int, Any]:
        pattern = re.compile(r"^(ssh|ecdsa|sk)-[^\s]+ [^\s]+([ \t][^\n\r]*)?$")
        if (
            not isinstance(body, dict)
            or set(body) != {"keys"}
            or not isinstance(body["keys"], list)
            or not all(isinstance(k, str) and pattern.match(k) for k in body["keys"])
        ):
            raise _Problem(
                422, "Request validation failed.", errors=["$.keys: authorized_keys lines"]
            )
        self.ssh_keys = list(body["keys"])
        return 200, {"keys": list(self.ssh_keys)}


_INVALID_JSON = object()
_MAX_RECORDED = 10_000
_BUCKETS = ("hour", "day", "week", "month", "year")


class _ProblemBody(dict[str, Any]):
    """A JSON body sent as `application/problem+json`."""


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _csv(query: dict[str, list[str]], name: str) -> list[str]:
    return [v for value in query.get(name, []) for v in value.split(",") if v]


def _bucket_start(epoch: float, bucket: str) -> float:
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)
    if bucket == "hour":
        moment = moment.replace(minute=0, second=0, microsecond=0)
    else:
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if bucket == "week":
            moment -= dt.timedelta(days=moment.weekday())
        elif bucket == "month":
            moment = moment.replace(day=1)
        elif bucket == "year":
            moment = moment.replace(month=1, day=1)
    return moment.timestamp()


def _bucket_end(epoch: float, bucket: str) -> float:
    start = dt.datetime.fromtimestamp(_bucket_start(epoch, bucket), tz=dt.timezone.utc)
    if bucket == "hour":
        end = start + dt.timedelta(hours=1)
    elif bucket == "day":
        end = start + dt.timedelta(days=1)
    elif bucket == "week":
        end = start + dt.timedelta(weeks=1)
    elif bucket == "month":
        end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    else:
        end = start.replace(year=start.year + 1)
    return end.timestamp()


Handler = Callable[..., tuple[int, Any]]

_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("GET", re.compile(r"^/v2/pods$"), RunPodTestServer._list_pods),
    ("POST", re.compile(r"^/v2/pods$"), RunPodTestServer._create_pod),
    ("GET", re.compile(r"^/v2/pods/(?P<pod_id>[^/]+)$"), RunPodTestServer._get_pod),
    ("DELETE", re.compile(r"^/v2/pods/(?P<pod_id>[^/]+)$"), RunPodTestServer._delete_pod),
    ("POST", re.compile(r"^/v2/pods/(?P<pod_id>[^/]+)/action$"), RunPodTestServer._pod_action),
    ("GET", re.compile(r"^/v2/pods/(?P<pod_id>[^/]+)/logs$"), RunPodTestServer._pod_logs),
    ("GET", re.compile(r"^/v2/catalog/gpus$"), RunPodTestServer._catalog_gpus),
    ("GET", re.compile(r"^/v2/billing/pods$"), RunPodTestServer._billing_pods),
    ("GET", re.compile(r"^/v2/account/ssh-keys$"), RunPodTestServer._get_ssh_keys),
    ("PUT", re.compile(r"^/v2/account/ssh-keys$"), RunPodTestServer._put_ssh_keys),
]


def _route(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    allowed = []
    for route_method, pattern, handler in _ROUTES:
        match = pattern.match(path)
        if not match:
            continue
        if route_method == method:
            return handler, match.groupdict()
        allowed.append(route_method)
    if allowed:
        raise _Problem(
            405,
            "The requested method is not allowed for this path.",
            headers={"Allow": ", ".join(sorted(set(allowed)))},
        )
    raise _Problem(404, "resource not found")


class _LogStream:
    """The events of one SSE response: backfill, then live lines until the client leaves."""

    def __init__(
        self,
        app: RunPodTestServer,
        pod: FakePod,
        source: str | None,
        tail: int,
        after_seq: int | None,
        after_ts: float | None,
        drop_after: int | None,
    ) -> None:
        self.app = app
        self.pod = pod
        self.source = source
        self.drop_after = drop_after
        events = [e for e in pod.logs if source is None or e.source == source]
        if after_seq is not None:
            events = [e for e in events if e.seq > after_seq]
        elif after_ts is not None:
            events = [e for e in events if e.ts > after_ts]
        else:
            events = events[-tail:] if tail else []
        self.backlog = events
        self.last_seq = max((e.seq for e in pod.logs), default=0)
        if after_seq is not None:
            self.last_seq = max(self.last_seq, after_seq)

    def events(self, heartbeat: float = 1.0) -> Iterator[bytes | None]:
        """Encoded events; None for a heartbeat comment; stops when the server stops.

        Raises:
            ConnectionAbortedError: The drop fault fired (the handler cuts the connection).
        """
        sent = 0
        pending = list(self.backlog)
        while not self.app._stopping.is_set():
            for event in pending:
                if self.drop_after is not None and sent >= self.drop_after:
                    raise ConnectionAbortedError("dropped by fault injection")
                data = json.dumps(
                    {
                        "ts": rfc3339(event.ts, precise=True),
                        "source": event.source,
                        "line": event.line,
                    }
                )
                yield f"id: {event.event_id}\ndata: {data}\n\n".encode()
                sent += 1
            with self.app._lock:
                fresh = [
                    e
                    for e in self.pod.logs
                    if e.seq > self.last_seq and (self.source is None or e.source == self.source)
                ]
                if not fresh:
                    self.app._log_event.wait(heartbeat)
                    fresh = [
                        e
                        for e in self.pod.logs
                        if e.seq > self.last_seq
                        and (self.source is None or e.source == self.source)
                    ]
                if self.pod.logs:
                    self.last_seq = max(self.last_seq, self.pod.logs[-1].seq)
            pending = fresh
            if not fresh:
                yield None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: RunPodTestServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet: tests assert on `RunPodTestServer.requests` instead."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, payload = self.server.app.handle(self.command, self.path, headers, raw)
        if isinstance(payload, _LogStream):
            self._stream(status, out_headers, payload)
            return
        data = b""
        content_type = "application/json"
        if isinstance(payload, _ProblemBody):
            content_type = "application/problem+json"
        if payload is not None:
            data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _stream(self, status: int, headers: dict[str, str], stream: _LogStream) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "keep-alive")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in stream.events():
                data = chunk if chunk is not None else b": keep-alive\n\n"
                self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except ConnectionAbortedError:
            pass  # The drop fault: close without the terminating chunk.
        except OSError:
            pass  # The client went away.
        self.close_connection = True

    def do_GET(self) -> None:
        """Serve a GET."""
        self._serve()

    def do_POST(self) -> None:
        """Serve a POST."""
        self._serve()

    def do_PUT(self) -> None:
        """Serve a PUT."""
        self._serve()

    def do_DELETE(self) -> None:
        """Serve a DELETE."""
        self._serve()

    def do_PATCH(self) -> None:
        """Serve a PATCH (answered 405: runctl does not update pods)."""
        self._serve()


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m runctl_tui.testing.runpod_server",
        description="A RunPod REST API v2 server on loopback, for demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="demo-key", help="the key clients must send")
    parser.add_argument("--ssh-host", default="127.0.0.1", help="ssh.direct host of running pods")
    parser.add_argument("--ssh-port", type=int, default=22, help="ssh.direct port of running pods")
    parser.add_argument("--ssh-user", default="root")
    parser.add_argument("--step-seconds", type=float, default=3.0, help="seconds per boot step")
    parser.add_argument("--no-seed", action="store_true", help="start without demo pods")
    parser.add_argument(
        "--log-every",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="add a container log line to each running pod this often (0: never)",
    )
    args = parser.parse_args(argv)
    server = RunPodTestServer(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        ssh_host=args.ssh_host,
        ssh_port=args.ssh_port,
        ssh_user=args.ssh_user,
        ssh_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoKeyDemoKeyDemoKeyDemoKeyDemoKey demo"],
        step_seconds=args.step_seconds,
    )
    if not args.no_seed:
        server.add_pod(name="llama-finetune", status=RUNNING)
        server.add_pod(name="sweep-a6000", status=EXITED, gpu_id="NVIDIA RTX A6000")
    print(f"RunPod test server on {server.url} (key: {args.api_key})", flush=True)
    server.start()
    try:
        tick = 0
        while True:
            time.sleep(args.log_every if args.log_every > 0 else 3600)
            tick += 1
            for pod in list(server.pods.values()):
                if args.log_every > 0 and pod.status == RUNNING:
                    server.add_log(pod.id, f"step {tick * 10} loss {2.5 / (1 + tick * 0.1):.4f}")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
