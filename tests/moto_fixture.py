"""moto in server mode on 127.0.0.1, reached by boto3 through AWS_ENDPOINT_URL.

Import the fixtures into a test module: `from tests.moto_fixture import moto_aws, moto_server`.
The server runs in this process (ThreadedMotoServer), so a test can change moto's state
directly (`ec2_backend()`), e.g. to give an instance a spot-termination state reason.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

FAKE_ACCESS_KEY_ID = "AKIARUNCTLFAKE7X3Q9Z"
FAKE_SECRET_ACCESS_KEY = "runctlFakeSecret/DoNotLeak+9f8e7d6c5b4a3"
REGION = "us-east-1"
ACCOUNT = "123456789012"


@contextlib.contextmanager
def ec2_event_hook(event: str, handler: Callable[..., None]) -> Iterator[None]:
    """Register `handler` for a botocore EC2 event on every client our AWS backend makes.

    Args:
        event: E.g. `before-parameter-build.ec2.RunInstances`.
        handler: The botocore event handler.

    Yields:
        Nothing; the hook is removed when the block ends.
    """
    from runctl_tui.core.backends import aws as aws_mod

    def hook(service: str, client: Any) -> None:
        if service == "ec2":
            client.meta.events.register(event, handler)

    aws_mod.CLIENT_HOOKS.append(hook)
    try:
        yield
    finally:
        aws_mod.CLIENT_HOOKS.remove(hook)


@dataclass(frozen=True)
class MotoServer:
    """A running moto server."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:40123`."""
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    """A ThreadedMotoServer on 127.0.0.1 and a free port, for the module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(str(host), int(port))
    finally:
        server.stop()


@pytest.fixture
def moto_aws(
    moto_server: MotoServer, isolated_home: Any, monkeypatch: pytest.MonkeyPatch
) -> MotoServer:
    """A clean moto (state reset) with AWS_ENDPOINT_URL, region and fake keys in the env."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return moto_server


def ec2_backend() -> Any:
    """moto's in-process EC2 state for us-east-1 (shared with the threaded server)."""
    from moto.backends import get_backend

    return get_backend("ec2")[ACCOUNT][REGION]


def mark_spot_interrupted(instance_id: str) -> None:
    """Make moto report `instance_id` terminated by AWS with a spot-termination reason."""
    from moto.ec2.models.instances import StateReason

    instance = ec2_backend().get_instance(instance_id)
    instance.terminate()
    instance.state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination",
        "Server.SpotInstanceTermination",
    )
