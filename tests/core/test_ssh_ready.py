"""`SshReadiness` against Debian's sshd: a dead port waits with backoff, the configured key logs
in, a restarted machine is checked again, machines without direct SSH are left alone."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from runctl_tui.core.models import Machine, MachineState, Provider, SshEndpoint
from runctl_tui.core.ssh_ready import READY, WAITING, SshReadiness
from tests.helpers import Clock
from tests.sshd_fixture import free_port


def pod(endpoint: SshEndpoint | None, **changes: Any) -> Machine:
    machine = Machine(
        Provider.RUNPOD,
        "p1",
        "gpu-box",
        MachineState.RUNNING,
        started_at=1_799_999_000.0,
        price_per_hour=0.69,
        ssh=endpoint,
    )
    return replace(machine, **changes)


@pytest.mark.sshd
async def test_waits_with_backoff_until_the_key_logs_in(sshd_server: Any) -> None:
    clock = Clock()
    readiness = SshReadiness(interval=2.0, clock=clock)
    dead = pod(replace(sshd_server.endpoint, port=free_port()))
    (due,) = readiness.due([dead])
    assert readiness.due([dead]) == [], "one attempt at a time"
    assert readiness.get(dead) is not None and readiness.get(dead).word == "ssh…"  # type: ignore[union-attr]
    assert await readiness.check(due)
    state = readiness.get(dead)
    assert state is not None and state.state == WAITING and state.attempts == 1
    assert state.error and str(sshd_server.host) in state.error
    # Backoff: not again before the interval, then again.
    clock.now += 1.0
    assert readiness.due([dead]) == []
    clock.now += 1.5
    (again,) = readiness.due([dead])
    await readiness.check(again)
    assert readiness.get(dead).attempts == 2  # type: ignore[union-attr]

    # sshd answers (the provider published the real port): one login and it is ready.
    live = pod(sshd_server.endpoint)
    clock.now += 60
    (due,) = readiness.due([live])
    assert await readiness.check(due)
    assert readiness.get(live).state == READY and readiness.get(live).word == "ready"  # type: ignore[union-attr]
    clock.now += 600
    assert readiness.due([live]) == [], "checked once per boot"

    # A wrong key is not ready either.
    wrong = pod(replace(sshd_server.endpoint, key_path=str(sshd_server.host_key_path)), id="p2")
    (due,) = readiness.due([wrong])
    await readiness.check(due)
    assert readiness.get(wrong).state == WAITING  # type: ignore[union-attr]

    # Restarted (a new started_at): checked again from scratch.
    rebooted = replace(live, started_at=live.started_at + 3600)  # type: ignore[operator]
    assert readiness.get(rebooted) is None
    assert readiness.due([rebooted]) == [rebooted]


def test_only_running_cloud_machines_with_direct_ssh_are_checked() -> None:
    readiness = SshReadiness()
    endpoint = SshEndpoint("127.0.0.1", 22)
    machines = [
        pod(endpoint, state=MachineState.STARTING),
        pod(None, id="p2"),
        pod(replace(endpoint, interactive_only=True), id="p3"),
        replace(pod(endpoint, id="local"), provider=Provider.LOCAL),
    ]
    assert readiness.due(machines) == []
    assert all(readiness.get(m) is None for m in machines)
