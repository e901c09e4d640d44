"""The RunPod client and backend against the loopback RunPod server: retries, rate limits,
error sentences, timeouts, pod mapping, the SSE log source, and the key never leaking.

Every response passes through `ContractTransport`, so each test also checks that what the
client made the server say matches RunPod's OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runctl_tui.core.backends.runpod import RunPodBackend
from runctl_tui.core.backends.runpod_client import (
    RunPodAuthError,
    RunPodClient,
    parse_rate_limit,
)
from runctl_tui.core.config import Config, load_config
from runctl_tui.core.errors import BackendError, ConfigError, NotFoundError, RunctlError
from runctl_tui.core.logging_setup import configure_logging, get_logger
from runctl_tui.core.models import CreateSpec, MachineState, Provider
from runctl_tui.testing.runpod_server import RunPodTestServer
from tests.runpod_fixture import API_KEY, ContractTransport, runpod_server

__all__ = ["runpod_server"]

GPU = "NVIDIA GeForce RTX 4090"


class Sleeps:
    """A sleep that records each wait, advances a fake clock, and yields to the loop."""

    def __init__(self, clock: list[float] | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock[0] += seconds
        await asyncio.sleep(0)


def make_config(server: RunPodTestServer, **env: str) -> Config:
    environ = {
        "RUNPOD_API_KEY": API_KEY,
        "RUNCTL_RUNPOD_API_URL": server.url,
        "RUNCTL_RUNPOD_MAX_RETRIES": "3",
        "RUNCTL_RUNPOD_TIMEOUT_SECONDS": "5",
    }
    environ.update(env)
    return load_config(environ=environ)


@pytest.fixture
def contract() -> Iterator[ContractTransport]:
    transport = ContractTransport()
    yield transport
    assert transport.failures == []


@pytest.fixture
async def backend(
    runpod_server: RunPodTestServer, contract: ContractTransport
) -> AsyncIterator[RunPodBackend]:
    config = make_config(runpod_server)
    client = RunPodClient.from_config(config, transport=contract, backoff_base=0.01)
    backend = RunPodBackend(config, client=client)
    yield backend
    await backend.aclose()


def test_rate_limit_header_parsing() -> None:
    header = '"minute";r=0;t=12, "hour";r=2800;t=1812, "day";r=49500;t=45012'
    assert parse_rate_limit(header) == {
        "minute": (0, 12),
        "hour": (2800, 1812),
        "day": (49500, 45012),
    }
    assert parse_rate_limit('"minute";q=60;w=60, garbage') == {}


async def test_pods_map_onto_machines(
    runpod_server: RunPodTestServer, backend: RunPodBackend
) -> None:
    running = runpod_server.add_pod(name="trainer", gpu_id=GPU)
    stopped = runpod_server.add_pod(name="parked", status="EXITED", gpu_id="NVIDIA RTX A6000")
    await asyncio.sleep(0.05)  # Let a little billable time pass.
    machines = await backend.list_machines()
    by_id = {m.id: m for m in machines}
    assert set(by_id) == {running.id, stopped.id}
    live = by_id[running.id]
    assert live.provider is Provider.RUNPOD and live.name == "trainer"
    assert live.state is MachineState.RUNNING and live.raw_state == "RUNNING"
    assert (live.gpu_type, live.gpu_count) == (GPU, 1)
    assert live.price_per_hour == pytest.approx(0.69)
    assert live.region == "US-KS-2" and live.tags["cloud"] == "SECURE" and not live.spot
    assert live.ssh is not None and not live.ssh.interactive_only
    assert (live.ssh.host, live.ssh.port, live.ssh.user) == ("127.0.0.1", 22, "root")
    assert live.gpus and live.gpus[0].utilisation_percent is not None
    assert live.started_at is not None and live.uptime_seconds() is not None
    assert live.accrued_cost is not None and live.accrued_cost > 0
    assert live.actions == ("stop", "restart", "terminate")
    parked = by_id[stopped.id]
    assert parked.state is MachineState.STOPPED and parked.raw_state == "EXITED"
    assert parked.price_per_hour == 0.0 and parked.actions == ("start", "terminate")
    # No direct SSH while stopped: the proxy is offered, marked interactive-only.
    assert parked.ssh is not None and parked.ssh.interactive_only
    assert parked.ssh.host == "ssh.runpod.io"
    assert (await backend.resolve("trainer")).id == running.id
    with pytest.raises(NotFoundError, match="no RunPod pod has the id or name 'nope'"):
        await backend.resolve("nope")


async def test_offers_carry_prices_and_stock(backend: RunPodBackend) -> None:
    offers = {o.id: o for o in await backend.offers(cloud="SECURE")}
    rtx = offers[GPU]
    assert (rtx.price_per_hour, rtx.spot_price_per_hour) == (0.69, 0.34)
    assert rtx.available is True and rtx.stock == "HIGH" and rtx.memory_gb == 24
    community = {o.id: o for o in await backend.offers(cloud="COMMUNITY")}
    assert community["NVIDIA H100 80GB HBM3"].available is False


async def test_5xx_is_retried_with_growing_backoff(
    runpod_server: RunPodTestServer, contract: ContractTransport
) -> None:
    sleeps = Sleeps()
    client = RunPodClient.from_config(
        make_config(runpod_server), transport=contract, backoff_base=0.2, sleep=sleeps
    )
    runpod_server.fail_next(3, status=503)
    assert await client.list_pods() == []
    assert len(runpod_server.requests_to("/v2/pods", "GET")) == 4
    assert len(sleeps.waits) == 3
    # Equal jitter: each wait lies in [step/2, step] of a doubling step.
    for attempt, wait in enumerate(sleeps.waits):
        step = 0.2 * 2**attempt
        assert step / 2 <= wait <= step
    runpod_server.fail_next(10, status=500)
    with pytest.raises(BackendError, match=r"HTTP 500 .* after 4 attempts"):
        await client.list_pods()
    await client.aclose()


async def test_429_waits_for_retry_after(
    runpod_server: RunPodTestServer, contract: ContractTransport
) -> None:
    sleeps = Sleeps()
    client = RunPodClient.from_config(
        make_config(runpod_server), transport=contract, backoff_base=0.01, sleep=sleeps
    )
    runpod_server.rate_limit_next(2, retry_after=3)
    assert await client.list_gpu_types()
    assert len(sleeps.waits) == 2 and all(3 <= w < 3.2 for w in sleeps.waits)
    runpod_server.rate_limit_next(1, retry_after=900)
    with pytest.raises(BackendError, match="rate-limiting") as info:
        await client.list_pods()
    assert "it asks to wait 900 s" in str(info.value)
    await client.aclose()


async def test_spent_rate_limit_window_is_waited_out_before_the_next_call(
    contract: ContractTransport,
) -> None:
    clock = [1_000_000.0]
    server = RunPodTestServer(api_key=API_KEY, quota_per_minute=2, clock=lambda: clock[0]).start()
    sleeps = Sleeps(clock)
    try:
        client = RunPodClient.from_config(
            make_config(server), transport=contract, backoff_base=0.01, sleep=sleeps
        )
        await client.list_pods()
        await client.list_pods()  # The answer says: minute window r=0, t=60.
        assert client.rate_limit.remaining["minute"] == 0
        await client.list_pods()
        assert sleeps.waits and 55 <= sleeps.waits[0] <= 61
        assert [r.status for r in server.requests] == [200, 200, 200]
        await client.aclose()
    finally:
        server.stop()


async def test_401_says_where_the_key_came_from(
    runpod_server: RunPodTestServer, contract: ContractTransport, tmp_path: Path
) -> None:
    config = make_config(runpod_server, RUNPOD_API_KEY="rp_WRONGKEY_from_env_0123456789")
    backend = RunPodBackend(config, client=RunPodClient.from_config(config, transport=contract))
    with pytest.raises(RunPodAuthError) as info:
        await backend.list_machines()
    message = str(info.value)
    assert "RunPod rejected the API key from the RUNPOD_API_KEY environment variable" in message
    assert "export it as RUNPOD_API_KEY, or set api_key under [runpod]" in message
    assert "rp_WRONGKEY_from_env_0123456789" not in message
    await backend.aclose()

    config_file = tmp_path / "runctl.toml"
    config_file.write_text('[runpod]\napi_key = "rp_WRONGKEY_in_file_9876543210"\n')
    config_file.chmod(0o600)
    from_file = load_config(str(config_file), environ={"RUNCTL_RUNPOD_API_URL": runpod_server.url})
    client = RunPodClient.from_config(from_file, transport=contract)
    with pytest.raises(RunPodAuthError, match=f"api_key in \\[runpod\\] of {config_file}"):
        await client.ssh_keys()
    await client.aclose()
    with pytest.raises(ConfigError, match="no RunPod API key is set"):
        RunPodClient.from_config(load_config(environ={}))


async def test_409_lists_the_valid_actions(
    runpod_server: RunPodTestServer, backend: RunPodBackend
) -> None:
    pod = runpod_server.add_pod(name="parked", status="EXITED")
    with pytest.raises(BackendError) as info:
        await backend.stop(pod.id)
    assert str(info.value) == (
        f"cannot stop pod {pod.id} while it is EXITED; valid actions now: start, terminate."
    )
    started = await backend.start(pod.id)
    assert started.raw_state == "STARTING"
    with pytest.raises(
        BackendError, match="while it is STARTING; valid actions now: stop, terminate"
    ):
        await backend.restart(pod.id)


async def test_capacity_refusal_suggests_what_is_in_stock(
    runpod_server: RunPodTestServer, backend: RunPodBackend
) -> None:
    spec = CreateSpec(Provider.RUNPOD, GPU, name="x", data_centers=("US-TX-3",))
    with pytest.raises(BackendError) as info:
        await backend.create(spec)
    message = str(info.value)
    assert message.startswith(f"RunPod could not place 1 x {GPU} (SECURE) in US-TX-3: There are no")
    assert f"{GPU} is in stock in US-KS-2, EU-RO-1" in message

    runpod_server.set_stock(GPU, "NONE")
    with pytest.raises(BackendError) as info:
        await backend.create(CreateSpec(Provider.RUNPOD, GPU, name="x"))
    message = str(info.value)
    assert "other GPU types in stock: NVIDIA RTX A6000 (MEDIUM stock at $0.49/h)" in message
    assert "NVIDIA A100 80GB PCIe (MEDIUM stock at $1.64/h)" in message
    assert f"{GPU} is in stock" not in message
    for entry in runpod_server.catalog:
        runpod_server.set_stock(entry.id, "NONE")
    with pytest.raises(BackendError, match="try --cloud community, fewer GPUs, or later"):
        await backend.create(CreateSpec(Provider.RUNPOD, GPU, name="x"))


async def test_create_sends_ssh_and_the_provisioned_price(
    runpod_server: RunPodTestServer, backend: RunPodBackend
) -> None:
    price, stock = await backend.quote(GPU, 2, "COMMUNITY")
    assert (price, stock) == (0.68, "LOW")
    machine = await backend.create(
        CreateSpec(
            Provider.RUNPOD, GPU, name="two", gpu_count=2, spot=True, disk_gb=30, volume_gb=40
        )
    )
    assert machine.state is MachineState.PROVISIONING and machine.price_per_hour == price
    (request,) = runpod_server.requests_to("/v2/pods", "POST")
    assert request.body["startSsh"] is True and request.body["ports"] == ["22/tcp"]
    assert request.body["cloud"] == "COMMUNITY" and request.body["disk"] == 30
    assert request.body["mounts"] == {"persistent": {"size": 40, "path": "/workspace"}}
    with pytest.raises(NotFoundError, match="no GPU type 'NVIDIA B9000'"):
        await backend.quote("NVIDIA B9000", 1, "SECURE")


async def test_wait_until_ready_reports_each_state(
    runpod_server: RunPodTestServer, backend: RunPodBackend
) -> None:
    banner = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def greet() -> None:
        banner.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = banner.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-OpenSSH_9.2 test\r\n")
            conn.close()

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    runpod_server.ssh_port = banner.getsockname()[1]
    try:
        machine = await backend.create(CreateSpec(Provider.RUNPOD, GPU, name="w"))
        states: list[str] = []
        ready = await backend.wait_until_ready(
            machine.id,
            poll_seconds=0.01,
            timeout=10,
            on_change=lambda m, ssh: states.append(m.raw_state + ("+ssh" if ssh else "")),
        )
        assert states == ["PROVISIONING", "STARTING", "RUNNING+ssh"]
        assert ready.ssh is not None and ready.ssh.port == runpod_server.ssh_port
    finally:
        stop.set()
        thread.join()
        banner.close()
    # Nothing answers on the SSH port now: the wait ends with a sentence naming the cost.
    with pytest.raises(BackendError, match=r"SSH port never answered.*\$0\.69/h.*terminate"):
        await backend.wait_until_ready(machine.id, poll_seconds=0.01, timeout=0.2)
    runpod_server.set_status(machine.id, "ERROR")
    with pytest.raises(BackendError, match="became ERROR"):
        await backend.wait_until_ready(machine.id, poll_seconds=0.01, timeout=5)


async def test_timeouts(runpod_server: RunPodTestServer, contract: ContractTransport) -> None:
    config = make_config(
        runpod_server, RUNCTL_RUNPOD_TIMEOUT_SECONDS="0.3", RUNCTL_RUNPOD_MAX_RETRIES="1"
    )
    client = RunPodClient.from_config(config, transport=contract, backoff_base=0.01)
    runpod_server.slow_next(2, 1.0)
    with pytest.raises(
        BackendError, match=r"did not answer listing pods within 0.3 s .* after 2 attempts"
    ):
        await client.list_pods()
    assert len(runpod_server.requests_to("/v2/pods", "GET")) == 2
    runpod_server.slow_next(1, 1.0)
    body = RunPodBackend(config, client=client).create_body(
        CreateSpec(Provider.RUNPOD, GPU, name="t")
    )
    with pytest.raises(
        BackendError, match="may still have taken effect, so check `runctl runpod list`"
    ):
        await client.create_pod(body)
    assert len(runpod_server.requests_to("/v2/pods", "POST")) == 1  # Never re-sent.
    await client.aclose()


async def test_unreachable_api(contract: ContractTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = load_config(
        environ={"RUNPOD_API_KEY": API_KEY, "RUNCTL_RUNPOD_API_URL": f"http://127.0.0.1:{port}"}
    )
    sleeps = Sleeps()
    client = RunPodClient.from_config(config, transport=contract, sleep=sleeps)
    with pytest.raises(BackendError, match=rf"cannot reach RunPod at http://127.0.0.1:{port}"):
        await client.list_pods()
    assert len(sleeps.waits) == config.runpod.max_retries
    await client.aclose()


async def test_container_log_follows_and_resumes_after_a_drop(
    runpod_server: RunPodTestServer, backend: RunPodBackend
) -> None:
    pod = runpod_server.add_pod(name="logs")
    for i in range(3):
        runpod_server.add_log(pod.id, f"epoch {i}\rprogress 100%")
    source = backend.container_logs(pod.id)
    source.backoff_base = 0.01
    assert source.description == f"runpod:{pod.id} container log"
    runpod_server.drop_next_stream_after(5)
    lines: list[str] = []
    notices: list[str] = []

    async def collect() -> None:
        async for chunk in source.follow(initial_lines=3):
            lines.extend(chunk.lines)
            if chunk.notice:
                notices.append(chunk.notice)
            if len(lines) == 3 and not notices:
                # Two more lines reach the first stream, then it is cut mid-way.
                for i in range(3, 8):
                    runpod_server.add_log(pod.id, f"epoch {i}")
            if len(lines) >= 8:
                return

    await asyncio.wait_for(collect(), 10)
    assert lines == ["progress 100%"] * 3 + [f"epoch {i}" for i in range(3, 8)]
    assert "log stream reconnected" in notices
    assert any(n.startswith("log stream dropped; reconnecting") for n in notices)
    resumed = [
        r
        for r in runpod_server.requests_to(f"/v2/pods/{pod.id}/logs")
        if "last-event-id" in r.headers
    ]
    epoch4 = next(e for e in runpod_server.pods[pod.id].logs if e.line == "epoch 4")
    assert [r.headers["last-event-id"] for r in resumed] == [epoch4.event_id]
    assert source.reconnects == 1


async def test_log_source_of_a_missing_pod_fails_with_a_sentence(backend: RunPodBackend) -> None:
    with pytest.raises(BackendError, match="pod nope no longer exists"):
        async for _ in backend.container_logs("nope").follow():
            pass


async def test_the_key_never_leaks(
    runpod_server: RunPodTestServer,
    contract: ContractTransport,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log_path = configure_logging(verbose=1, log_path=tmp_path / "runctl.log")
    wrong = "rp_LEAKCHECK_wrong_key_5a4b3c2d1e"
    texts: list[str] = []

    def remember(exc: BaseException) -> None:
        texts.append(str(exc))
        texts.append(repr(exc))
        texts.append("".join(traceback.format_exception(exc)))
        get_logger("test").exception("failure", exc_info=exc)

    config = make_config(
        runpod_server, RUNCTL_RUNPOD_TIMEOUT_SECONDS="0.2", RUNCTL_RUNPOD_MAX_RETRIES="1"
    )
    backend = RunPodBackend(
        config, client=RunPodClient.from_config(config, transport=contract, backoff_base=0.01)
    )
    pod = runpod_server.add_pod(name="leak", status="EXITED")
    runpod_server.fail_next(5, status=502)
    attempts = [
        backend.list_machines(),
        backend.stop(pod.id),
        backend.create(CreateSpec(Provider.RUNPOD, "NVIDIA B9000", name="x")),
    ]
    for attempt in attempts:
        try:
            await attempt
        except RunctlError as exc:
            remember(exc)
    runpod_server.slow_next(2, 1.0)
    try:
        await backend.get(pod.id)
    except RunctlError as exc:
        remember(exc)
    await backend.aclose()

    bad = make_config(runpod_server, RUNPOD_API_KEY=wrong)
    bad_backend = RunPodBackend(bad, client=RunPodClient.from_config(bad, transport=contract))
    try:
        await bad_backend.list_machines()
    except RunctlError as exc:
        remember(exc)
    await bad_backend.aclose()
    assert len(texts) == 5 * 3
    captured = capsys.readouterr()
    everything = "\n".join([*texts, log_path.read_text(), captured.out, captured.err])
    assert "HTTP 502" in everything and "did not answer" in everything
    assert API_KEY not in everything and wrong not in everything
    # The server did receive the keys: the test would fail if no request had been made.
    assert any(r.headers.get("authorization") == f"Bearer {wrong}" for r in runpod_server.requests)


def test_cli_sentences_and_catalog(
    runpod_server: RunPodTestServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runctl_tui.cli import main
    from runctl_tui.core import paths

    wrong = "rp_CLI_wrong_key_0f1e2d3c4b5a"
    monkeypatch.setenv("RUNCTL_RUNPOD_API_URL", runpod_server.url)
    monkeypatch.setenv("RUNPOD_API_KEY", wrong)
    assert main(["runpod", "list"]) == 1
    err = capsys.readouterr().err
    assert "RunPod rejected the API key from the RUNPOD_API_KEY environment variable" in err
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    assert main(["runpod", "gpus", "--cloud", "community", "--count", "2", "--json"]) == 0
    out = capsys.readouterr().out
    gpus = {g["id"]: g for g in json.loads(out)}
    assert gpus[GPU]["secure_price_per_hour"] == 0.69 and gpus[GPU]["stock"] == "LOW"
    assert gpus["NVIDIA H100 80GB HBM3"]["community_price_per_hour"] is None
    pod = runpod_server.add_pod(name="parked", status="EXITED")
    assert main(["runpod", "stop", "parked"]) == 1
    err = capsys.readouterr().err
    assert (
        f"cannot stop pod {pod.id} while it is EXITED; valid actions now: start, terminate" in err
    )
    runpod_server.set_stock(GPU, "NONE")
    assert main(["runpod", "create", "--name", "x"]) == 1
    err = capsys.readouterr().err
    assert "RunPod could not place 1 x NVIDIA GeForce RTX 4090 (SECURE)" in err
    assert "other GPU types in stock: NVIDIA RTX A6000" in err
    assert main(["runpod", "terminate", "parked"]) == 1
    assert "pass --yes to confirm" in capsys.readouterr().err
    logged = paths.log_file().read_text()
    assert wrong not in logged and API_KEY not in logged and wrong not in err
