"""The RunPod test server as a fixture, and an httpx transport that checks RunPod's contract.

`ContractTransport` wraps a real HTTP transport: every response that passes through it is
validated with openapi-core against RunPod's own OpenAPI document (tests/data/runpod/), error
answers included. Tests give it to `RunPodClient(transport=...)`, so whatever the client makes
the server send is held to the contract, and `contract.failures` must be empty at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from runctl_tui.core.config import Config as RunctlConfig
from runctl_tui.testing.runpod_server import RunPodTestServer

SPEC_PATH = Path(__file__).parent / "data" / "runpod" / "runpod-rest-v2.openapi.json"
SPEC_SERVER = "https://api.runpod.io"
API_KEY = "rp_TESTKEY_9f3c1d2e7b6a5f4e3d2c1b0a"
"""A key shaped like a real one, so a leak is easy to grep for."""


@cache
def openapi() -> OpenAPI:
    """RunPod's OpenAPI document, loaded once."""
    # openapi-core decodes only application/json out of the box; RunPod's errors are RFC 9457
    # problem documents and its log stream is text.
    config = Config(
        extra_media_type_deserializers={
            "application/problem+json": json.loads,
            "text/event-stream": lambda data: data.decode("utf-8"),
        }
    )
    return OpenAPI.from_dict(json.loads(SPEC_PATH.read_text(encoding="utf-8")), config=config)


@dataclass
class _Request:
    method: str
    path: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters
    host_url: str = SPEC_SERVER


@dataclass
class _Response:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


def as_openapi(
    request: httpx.Request, response: httpx.Response, body: bytes | None
) -> tuple[_Request, _Response]:
    """Adapt an httpx request/response pair for openapi-core (on RunPod's server URL)."""
    parts = urlsplit(str(request.url))
    req = _Request(
        method=request.method.lower(),
        path=parts.path,
        body=request.content or None,
        content_type=request.headers.get("content-type", ""),
        parameters=RequestParameters(
            query=ImmutableMultiDict(parse_qs(parts.query)),
            header=Headers(dict(request.headers)),
        ),
    )
    resp = _Response(
        status_code=response.status_code,
        content_type=response.headers.get("content-type", "").lower(),
        headers=Headers(dict(response.headers)),
        data=body,
    )
    return req, resp


def validate(request: httpx.Request, response: httpx.Response, body: bytes | None) -> None:
    """Raise openapi-core's error when the response breaks RunPod's contract."""
    req, resp = as_openapi(request, response, body)
    openapi().validate_response(req, resp)


@dataclass
class ContractTransport(httpx.AsyncBaseTransport):
    """A real transport that validates every response against RunPod's document.

    Streaming (SSE) responses pass through unchecked (counted in `streams`): their events are
    validated by the contract tests, which read them whole.
    """

    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    checked: int = 0
    streams: int = 0
    failures: list[str] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            self.streams += 1
            return response
        body = await response.aread()
        response = httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )
        try:
            validate(request, response, body or None)
            self.checked += 1
        except Exception as exc:
            self.failures.append(
                f"{request.method} {request.url.path} -> {response.status_code}: {exc!r}"
            )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def runpod_server_over_sshd(
    sshd_server: Any, api_key: str = API_KEY, *, step_polls: int = 1, ssh_port: int | None = None
) -> RunPodTestServer:
    """A started RunPod test server whose pods are reached over SSH at the sshd fixture (its
    host, port, user and key); `ssh_port` gives the pods another port (nothing listening)."""
    public_key = Path(str(sshd_server.key_path) + ".pub").read_text().strip()
    return RunPodTestServer(
        api_key=api_key,
        ssh_host=sshd_server.host,
        ssh_port=sshd_server.port if ssh_port is None else ssh_port,
        ssh_user=sshd_server.user,
        ssh_keys=[public_key],
        step_seconds=None,
        step_polls=step_polls,
    ).start()


def runpod_config(server: RunPodTestServer, api_key: str = API_KEY) -> RunctlConfig:
    """A configuration with only RunPod, at the test server, and no retries."""
    config = RunctlConfig()
    config.runpod.api_key = api_key
    config.runpod.api_url = server.url
    config.runpod.max_retries = 0
    return config


@pytest.fixture
def runpod_server() -> Iterator[RunPodTestServer]:
    """A fresh RunPod API server whose pods move one status per poll."""
    server = RunPodTestServer(
        api_key=API_KEY,
        step_seconds=None,
        step_polls=1,
        ssh_keys=[
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJtestkeytestkeytestkeytestkeytestkeyZ test"
        ],
    ).start()
    try:
        yield server
    finally:
        server.stop()


def body_of(response: httpx.Response) -> Any:
    """The JSON body of a response."""
    return json.loads(response.content)
