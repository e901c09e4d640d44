# ruff: noqa: F811 - pytest fixtures imported from tests.moto_fixture
"""After `c` creates a pod or instance, its row says `ssh…` until an SSH login works, then
`ready`; `t` before that says why instead of failing.

Real pieces: the loopback RunPod API server and moto (through the real backends) publish the
machine's SSH endpoint; first a port nothing listens on, then Debian's sshd (the `sshd_server`
fixture) with the configured key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core.models import Provider
from runctl_tui.ui.app import RunctlApp
from runctl_tui.ui.screens.train_form import TrainFormScreen
from tests.moto_fixture import MotoServer, moto_aws, moto_server  # noqa: F401
from tests.runpod_fixture import runpod_server_over_sshd
from tests.sshd_fixture import free_port
from tests.ui.helpers import wait_for
from tests.ui.test_cloud_flows import (
    RP_KEY,
    RTX_4090,
    cell,
    dashboard,
    ec2_instances,
    fill_create_form,
    make_config,
    notes,
    pod_key,
    select_machine,
    states_of,
    table,
)


@pytest.fixture
def app_factory(tmp_path: Path) -> Callable[..., RunctlApp]:
    def make(config: Any) -> RunctlApp:
        return RunctlApp(config, state_path=tmp_path / "dashboard.json")

    return make


async def refused_then_ready(
    pilot: Any, app: RunctlApp, key: str, seen: list[str], open_ssh: Callable[[], None]
) -> None:
    """`t` is refused while the row says ssh…; once sshd answers the row says ready and `t`
    opens the train form."""
    reached = states_of(app, key, seen)
    await wait_for(pilot, lambda: reached("ssh…"), "ssh… state", 30)
    row = dashboard(app).fleet.find_row(key)
    assert row is not None and row.machine.state.value == "running"
    await wait_for(
        pilot,
        lambda: (
            (r := dashboard(app).fleet.find_row(key)) is not None
            and r.ssh is not None
            and r.ssh.state == "waiting"
        ),
        "a failed login attempt",
        30,
    )
    await select_machine(pilot, app, key)
    await pilot.press("t")
    await wait_for(pilot, lambda: any("SSH login yet" in n for n in notes(app)), "refusal", 5)
    said = next(n for n in notes(app) if "SSH login yet" in n)
    assert "ready" in said and "last try:" in said, said
    assert not isinstance(app.screen, TrainFormScreen)

    open_ssh()
    await wait_for(pilot, lambda: reached("ready"), "ready once sshd answers", 60)
    assert cell(app, key, "state") == "● ready"
    await pilot.press("t")
    await wait_for(pilot, lambda: isinstance(app.screen, TrainFormScreen), "train form")
    await pilot.press("escape")


@pytest.mark.sshd
async def test_a_new_pod_is_ready_only_once_ssh_answers(sshd_server: Any, app_factory: Any) -> None:
    server = runpod_server_over_sshd(sshd_server, RP_KEY, step_polls=2, ssh_port=free_port())
    try:
        config = make_config(runpod_url=server.url)
        config.runpod.ssh_key = str(sshd_server.key_path)
        app = app_factory(config)
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(
                pilot, lambda: Provider.RUNPOD in dashboard(app).fleet.backends, "runpod backend"
            )
            await fill_create_form(pilot, app, Provider.RUNPOD, "secure", RTX_4090, "fresh")
            await pilot.press("enter")
            await wait_for(
                pilot, lambda: any(p.name == "fresh" for p in server.pods.values()), "pod"
            )
            key = pod_key(server, "fresh")
            seen: list[str] = []

            def open_ssh() -> None:
                server.ssh_port = sshd_server.port

            await refused_then_ready(pilot, app, key, seen, open_ssh)
            assert seen[0] == "provisioning" and seen[-2:] == ["ssh…", "ready"], seen
    finally:
        server.stop()


@pytest.mark.sshd
async def test_a_new_instance_is_ready_only_once_ssh_answers(
    moto_aws: MotoServer, sshd_server: Any, app_factory: Any
) -> None:
    config = make_config()
    config.aws.ssh_user = sshd_server.user
    config.aws.ssh_key = str(sshd_server.key_path)
    config.aws.ssh_host_overrides = {"*": f"127.0.0.1:{free_port()}"}
    app = app_factory(config)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: Provider.AWS in dashboard(app).fleet.backends, "aws backend")
        await fill_create_form(pilot, app, Provider.AWS, "on-demand", "g5.xlarge", "boot-1")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(ec2_instances()) == 1, "instance launched", 30)
        key = f"aws:{ec2_instances()[0]['InstanceId']}"
        await wait_for(pilot, lambda: key in table(app).shown_keys, "instance row")
        seen: list[str] = []

        def open_ssh() -> None:
            config.aws.ssh_host_overrides["*"] = f"127.0.0.1:{sshd_server.port}"

        await refused_then_ready(pilot, app, key, seen, open_ssh)
        assert seen[-2:] == ["ssh…", "ready"], seen
