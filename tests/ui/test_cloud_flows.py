# ruff: noqa: F811 - pytest fixtures imported from tests.moto_fixture
"""Pilot tests of the dashboard's cloud flows against the real loopback servers.

EC2 is moto in server mode reached by the real `AwsBackend` (missing spot capacity and a slow
boot are made by botocore event hooks on our own clients, `aws.CLIENT_HOOKS`); RunPod is the
loopback RunPod API server reached by the real `RunPodBackend`; SSH to pods and instances is
Debian's sshd on a high port (the `sshd_server` fixture).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, Static

from runctl_tui.core.aws_training import AwsRunInfo
from runctl_tui.core.backends.aws import AwsBackend
from runctl_tui.core.config import Config
from runctl_tui.core.models import CreateSpec, Provider, Run, RunStatus
from runctl_tui.core.runs import RunRegistry, new_run_id
from runctl_tui.testing.runpod_server import RunPodTestServer
from runctl_tui.ui.app import RunctlApp
from runctl_tui.ui.screens.confirm import ConfirmScreen
from runctl_tui.ui.screens.create_machine import CreateMachineScreen
from runctl_tui.ui.screens.dashboard import DashboardScreen
from runctl_tui.ui.screens.terminate_confirm import TerminateConfirmScreen
from runctl_tui.ui.screens.train_form import TrainFormScreen
from runctl_tui.ui.widgets.log_view import LogView
from runctl_tui.ui.widgets.machines_table import MachinesTable
from tests.moto_fixture import (  # noqa: F401
    REGION,
    MotoServer,
    ec2_event_hook,
    moto_aws,
    moto_server,
)
from tests.runpod_fixture import runpod_server_over_sshd
from tests.ui.helpers import wait_for

RP_KEY = "dashboard-cloud-key-0002"
RTX_4090 = "NVIDIA GeForce RTX 4090"
BOOT_POLLS = 4
"""DescribeInstances answers that show a new instance still `pending` (a slow boot)."""


# ---- helpers -----------------------------------------------------------------------------


def make_config(*, runpod_url: str | None = None) -> Config:
    """Defaults with fast polling; RunPod only when its server is given."""
    config = Config()
    config.monitor.poll_seconds = 0.2
    config.ui.bell = False
    config.local.use_uv = False
    config.runpod.api_key = RP_KEY if runpod_url else ""
    if runpod_url:
        config.runpod.api_url = runpod_url
        config.runpod.max_retries = 0
        config.runpod.timeout_seconds = 5.0
    return config


def dashboard(app: RunctlApp) -> DashboardScreen:
    """The dashboard screen."""
    screen = app.screen_stack[0]
    assert isinstance(screen, DashboardScreen)
    return screen


def table(app: RunctlApp) -> MachinesTable:
    """The machines table."""
    return dashboard(app).query_one(MachinesTable)


def cell(app: RunctlApp, key: str, column: str) -> str:
    """The text the machines table shows in one cell (empty while the row is not shown)."""
    machines = table(app)
    if key not in machines.shown_keys:
        return ""
    value = machines.get_cell(key, column)
    return str(getattr(value, "plain", value))


def notes(app: RunctlApp) -> list[str]:
    """Every notification shown so far."""
    return [n.message for n in app._notifications]


def static_text(screen: Any, selector: str) -> str:
    """The text of a Static on a screen."""
    return str(screen.query_one(selector, Static).render())


async def terminate_warning(pilot: Pilot[Any], app: RunctlApp, timeout: float = 15.0) -> str:
    """Press `x` on the selected machine and return the dialog's checkpoint warning once its
    check (a listing over SSH or S3) is done; the dialog stays open."""
    await pilot.press("x")
    await wait_for(pilot, lambda: isinstance(app.screen, TerminateConfirmScreen), "dialog")
    modal = app.screen
    await wait_for(
        pilot,
        lambda: "checking" not in static_text(modal, "#terminate-checkpoints"),
        "checkpoint check",
        timeout,
    )
    return static_text(modal, "#terminate-checkpoints")


async def select_machine(pilot: Pilot[Any], app: RunctlApp, key: str) -> None:
    """Move the cursor to a machine with the arrow keys."""
    machines = table(app)
    machines.focus()
    for direction in ("down", "up"):
        for _ in range(len(machines.shown_keys) + 1):
            if machines.selected_key == key:
                return
            await pilot.press(direction)
    raise AssertionError(f"{key} not reachable; shown: {machines.shown_keys}")


async def fill_create_form(
    pilot: Pilot[Any], app: RunctlApp, provider: Provider, tier: str, offer: str, name: str
) -> CreateMachineScreen:
    """Open `c`, choose provider, tier, type and name; leaves the form open, Create focused."""
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(app.screen, CreateMachineScreen), "create form")
    form = app.screen
    assert isinstance(form, CreateMachineScreen)
    form.query_one("#provider", Select).value = provider
    await wait_for(
        pilot,
        lambda: (
            form.provider is provider
            and f"from {provider.value}" in static_text(form, "#offer-status")
        ),
        f"{provider.value} offers",
        30,
    )
    form.query_one("#tier", Select).value = tier
    form.query_one("#offer", Select).value = offer
    name_input = form.query_one("#name", Input)
    name_input.focus()
    await pilot.press(*name)
    await wait_for(pilot, lambda: not form.query_one("#confirm", Button).disabled, "Create enabled")
    form.query_one("#confirm", Button).focus()
    return form


def ec2_instances() -> list[dict[str, Any]]:
    """Every instance moto knows, through a plain client (not ours, so no hooks)."""
    ec2: Any = boto3.client("ec2", region_name=REGION)
    pages = ec2.get_paginator("describe_instances").paginate()
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def record_run(instance_id: str, remote_dir: Path, *, output_s3: str) -> Run:
    """Record a finished AWS run on `instance_id` as `runctl aws train` does (registry and
    AWS record), with its checkpoints in `remote_dir/run/checkpoints`."""
    run_dir = remote_dir / "run"
    run = Run(
        id=new_run_id(),
        backend=Provider.AWS,
        machine=instance_id,
        script="train.py",
        args=(),
        cwd=str(remote_dir),
        status=RunStatus.SUCCEEDED,
        started=time.time() - 60,
        log_path=str(run_dir / "train.log"),
        checkpoint_dir=str(run_dir / "checkpoints"),
        ended=time.time(),
        exit_code=0,
    )
    RunRegistry().add(run)
    AwsRunInfo(
        run_id=run.id,
        instance_id=instance_id,
        instance_type="g5.xlarge",
        spot=False,
        local_dir=str(remote_dir),
        remote_dir=str(remote_dir),
        run_dir=str(run_dir),
        log_path=run.log_path,
        exit_code_path=str(run_dir / "exit_code"),
        pid_path=str(run_dir / "pid"),
        checkpoint_dir=run.checkpoint_dir,
        script=run.script,
        args=[],
        output_s3=output_s3,
    ).save()
    return run


# ---- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def app_factory(tmp_path: Path) -> Callable[..., RunctlApp]:
    def make(config: Config, **kwargs: Any) -> RunctlApp:
        return RunctlApp(config, state_path=tmp_path / "dashboard.json", **kwargs)

    return make


@pytest.fixture
def no_spot_capacity() -> Iterator[list[dict[str, Any]]]:
    """EC2 refuses every spot RunInstances for lack of capacity; yields every RunInstances sent."""
    sent: list[dict[str, Any]] = []

    def refuse(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))
        if params.get("InstanceMarketOptions", {}).get("MarketType") == "spot":
            raise ClientError(
                {
                    "Error": {
                        "Code": "InsufficientInstanceCapacity",
                        "Message": "There is no Spot capacity available that matches your request.",
                    }
                },
                "RunInstances",
            )

    with ec2_event_hook("before-parameter-build.ec2.RunInstances", refuse):
        yield sent


@pytest.fixture
def slow_boot() -> Iterator[None]:
    """Each instance answers `pending` to its first BOOT_POLLS descriptions (moto boots at once)."""
    seen: dict[str, int] = {}

    def pending(**kwargs: Any) -> None:
        for reservation in kwargs["parsed"].get("Reservations", []):
            for item in reservation["Instances"]:
                count = seen.get(item["InstanceId"], 0)
                seen[item["InstanceId"]] = count + 1
                if count < BOOT_POLLS and item["State"]["Name"] == "running":
                    item["State"] = {"Code": 0, "Name": "pending"}

    with ec2_event_hook("after-call.ec2.DescribeInstances", pending):
        yield


@pytest.fixture
def runpod() -> Iterator[RunPodTestServer]:
    """A RunPod server whose pods move on every 3 reads, with one running pod `trainer-a`."""
    server = RunPodTestServer(api_key=RP_KEY, step_seconds=None, step_polls=3).start()
    server.add_pod(name="trainer-a", gpu_id=RTX_4090)
    try:
        yield server
    finally:
        server.stop()


def pod_key(server: RunPodTestServer, name: str) -> str:
    """The machine key of the pod with this name."""
    return "runpod:" + next(p.id for p in server.pods.values() if p.name == name)


def states_of(app: RunctlApp, key: str, seen: list[str]) -> Callable[[str], bool]:
    """A condition that records each new state word of `key`'s row and holds at `final`."""

    def reached(final: str) -> bool:
        state = cell(app, key, "state").split(" ", 1)[-1]
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        return state == final

    return reached


# ---- AWS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["yes", "no"])
async def test_spot_without_capacity_asks_with_both_prices(
    moto_aws: MotoServer,
    no_spot_capacity: list[dict[str, Any]],
    app_factory: Any,
    answer: str,
) -> None:
    app = app_factory(make_config())
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: Provider.AWS in dashboard(app).fleet.backends, "aws backend")
        await fill_create_form(pilot, app, Provider.AWS, "spot", "g5.xlarge", "spot-ask")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "fallback question")
        question = app.screen
        # moto's canned spot price is $0.00001/h; the shipped table has g5.xlarge at $1.006/h.
        assert static_text(question, "#confirm-title") == (
            "No spot capacity for g5.xlarge: spot $0.0000/h unavailable; "
            "launch on-demand at ~$1.0060/h?"
        )
        assert "InsufficientInstanceCapacity" in static_text(question, "#confirm-detail")
        assert ec2_instances() == [], "nothing is launched before the answer"
        assert [p["InstanceMarketOptions"]["MarketType"] for p in no_spot_capacity] == ["spot"]

        if answer == "no":
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "closed")
            await wait_for(pilot, lambda: any("Nothing launched" in n for n in notes(app)), "note")
            assert ec2_instances() == []
            assert len(no_spot_capacity) == 1, "no second launch after no"
            assert [k for k in table(app).shown_keys if k.startswith("aws:")] == []
            return

        await pilot.press("y")
        await wait_for(pilot, lambda: len(ec2_instances()) == 1, "on-demand instance launched")
        (instance,) = ec2_instances()
        assert "InstanceLifecycle" not in instance, "launched on-demand, not spot"
        assert no_spot_capacity[-1].get("InstanceMarketOptions") is None
        key = f"aws:{instance['InstanceId']}"
        await wait_for(pilot, lambda: key in table(app).shown_keys, "instance in the table")
        assert cell(app, key, "price") == "~$1.01"
        row = dashboard(app).fleet.find_row(key)
        assert row is not None and not row.machine.spot
        said = next(n for n in notes(app) if "it appears in the table" in n)
        assert f"launched on-demand {instance['InstanceId']} instead" in said, said
        assert "spot $0.0000/h" in said and "on-demand ~$1.0060/h" in said, said


async def test_spot_fallback_from_config_launches_on_demand_and_says_so(
    moto_aws: MotoServer, no_spot_capacity: list[dict[str, Any]], app_factory: Any
) -> None:
    config = make_config()
    config.aws.spot_fallback = "on-demand"
    app = app_factory(config)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: Provider.AWS in dashboard(app).fleet.backends, "aws backend")
        await fill_create_form(pilot, app, Provider.AWS, "spot", "g5.xlarge", "spot-cfg")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(ec2_instances()) == 1, "on-demand instance launched")
        assert not any(isinstance(s, ConfirmScreen) for s in app.screen_stack), "not asked"
        (instance,) = ec2_instances()
        assert "InstanceLifecycle" not in instance
        await wait_for(
            pilot, lambda: any("appears in the table" in n for n in notes(app)), "created notice"
        )
        said = next(n for n in notes(app) if "appears in the table" in n)
        assert "Spot capacity for g5.xlarge was refused" in said, said
        assert "spot $0.0000/h" in said and "on-demand ~$1.0060/h" in said, said


async def test_on_demand_create_shows_the_provisioning_states(
    moto_aws: MotoServer, slow_boot: None, app_factory: Any
) -> None:
    app = app_factory(make_config())
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: Provider.AWS in dashboard(app).fleet.backends, "aws backend")
        form = await fill_create_form(pilot, app, Provider.AWS, "on-demand", "g5.xlarge", "od-1")
        assert "$1.01/h (on-demand) (estimate)" in static_text(form, "#create-price")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(ec2_instances()) == 1, "instance launched", 30)
        key = f"aws:{ec2_instances()[0]['InstanceId']}"
        seen: list[str] = []
        reached = states_of(app, key, seen)
        # Running, but its address (moto's) never answers SSH: `ssh…`, never `ready`
        # (tests/ui/test_ssh_ready.py follows it on to ready with sshd).
        await wait_for(pilot, lambda: reached("ssh…"), "running, waiting for SSH", 30)
        assert seen in (["provisioning", "ssh…"], ["provisioning", "running", "ssh…"]), seen
        assert "od-1" in cell(app, key, "name")


async def test_terminate_names_the_checkpoint_not_in_s3(
    moto_aws: MotoServer, sshd_server: Any, app_factory: Any, tmp_path: Path
) -> None:
    config = make_config()
    config.aws.ssh_user = sshd_server.user
    config.aws.ssh_key = str(sshd_server.key_path)
    config.aws.ssh_host_overrides = {"*": f"127.0.0.1:{sshd_server.port}"}
    machine = await AwsBackend(config).create(CreateSpec(Provider.AWS, "g5.xlarge", name="keep-me"))
    # The instance's disk is this machine's (sshd is local): two checkpoints, one in S3.
    checkpoints = tmp_path / "instance" / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "ckpt-00001.pt").write_bytes(b"1" * 100)
    (checkpoints / "ckpt-00002.pt").write_bytes(b"2" * 200)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="ckpts")
    s3.put_object(Bucket="ckpts", Key="run1/checkpoints/ckpt-00001.pt", Body=b"1" * 100)
    record_run(machine.id, tmp_path / "instance", output_s3="s3://ckpts/run1")

    app = app_factory(config)
    async with app.run_test(size=(120, 36)) as pilot:
        key = f"aws:{machine.id}"
        await wait_for(pilot, lambda: key in table(app).shown_keys, "instance row")
        await wait_for(pilot, lambda: bool(dashboard(app).fleet.runs_on(machine)), "its run")
        await select_machine(pilot, app, key)
        warning = await terminate_warning(pilot, app, 30)
        assert "ckpt-00002.pt" in warning and "s3://ckpts/run1" in warning, warning
        assert "ckpt-00001.pt" not in warning, "the one already in S3 is not named"
        # Once the newest is in S3 too, nothing is left to lose.
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "closed")
        s3.put_object(Bucket="ckpts", Key="run1/checkpoints/ckpt-00002.pt", Body=b"2" * 200)
        assert await terminate_warning(pilot, app, 30) == (
            "No checkpoints known to be left on this machine."
        )
        confirm = app.screen.query_one("#confirm", Button)
        await pilot.press(*"keep-m")
        await pilot.press("enter")
        assert isinstance(app.screen, TerminateConfirmScreen) and confirm.disabled
        assert ec2_instances()[0]["State"]["Name"] == "running"
        await pilot.press("e")
        assert not confirm.disabled
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: ec2_instances()[0]["State"]["Name"] in ("shutting-down", "terminated"),
            "instance terminated",
        )
        await wait_for(pilot, lambda: any("terminated" in n for n in notes(app)), "notice")


async def test_terminate_of_a_stopped_instance_says_its_checkpoints_are_unchecked(
    moto_aws: MotoServer, app_factory: Any, tmp_path: Path
) -> None:
    config = make_config()
    backend = AwsBackend(config)
    machine = await backend.create(CreateSpec(Provider.AWS, "g5.xlarge", name="parked"))
    await backend.stop(machine.id)
    record_run(machine.id, tmp_path / "instance", output_s3="s3://ckpts/run1")
    app = app_factory(config)
    async with app.run_test(size=(120, 36)) as pilot:
        key = f"aws:{machine.id}"
        await wait_for(pilot, lambda: cell(app, key, "state").endswith("stopped"), "stopped row")
        await wait_for(pilot, lambda: bool(dashboard(app).fleet.runs_on(machine)), "its run")
        await select_machine(pilot, app, key)
        warning = await terminate_warning(pilot, app)
        assert "could not be checked" in warning and "stopped instance" in warning, warning
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "closed")
        assert ec2_instances()[0]["State"]["Name"] == "stopped"


# ---- RunPod ------------------------------------------------------------------------------


async def test_runpod_create_goes_provisioning_to_running(
    runpod: RunPodTestServer, app_factory: Any
) -> None:
    app = app_factory(make_config(runpod_url=runpod.url))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: pod_key(runpod, "trainer-a") in table(app).shown_keys, "pod")
        await fill_create_form(pilot, app, Provider.RUNPOD, "secure", RTX_4090, "fresh")
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(p.name == "fresh" for p in runpod.pods.values()), "pod")
        key = pod_key(runpod, "fresh")
        seen: list[str] = []
        reached = states_of(app, key, seen)
        await wait_for(pilot, lambda: reached("running"), "running")
        assert seen[0] == "provisioning" and seen[-1] == "running", seen
        assert cell(app, key, "price").startswith("$")


async def test_runpod_stop_and_start_change_the_row(
    runpod: RunPodTestServer, app_factory: Any
) -> None:
    app = app_factory(make_config(runpod_url=runpod.url))
    key = pod_key(runpod, "trainer-a")
    pod = runpod.pods[key.split(":", 1)[1]]
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: cell(app, key, "state").endswith("running"), "running pod")
        await select_machine(pilot, app, key)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "stop question")
        assert pod.status == "RUNNING", "nothing happens before the answer"
        await pilot.press("y")
        await wait_for(pilot, lambda: cell(app, key, "state").endswith("stopped"), "stopped", 20)
        assert pod.status == "EXITED"
        await pilot.press("S")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "start question")
        assert "bills $" in static_text(app.screen, "#confirm-detail")
        await pilot.press("y")
        await wait_for(pilot, lambda: cell(app, key, "state").endswith("running"), "running", 20)
        assert pod.status == "RUNNING"


TRAIN = r"""
import os, sys, time
from pathlib import Path

ckpt = Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
ckpt.mkdir(parents=True, exist_ok=True)
print("argv:", sys.argv[1:], flush=True)
for step in (1, 2, 3):
    (ckpt / f"ckpt-{step:05d}.pt").write_bytes(bytes([step]) * 100)
    print(f"step {step} loss {1.0 / step:.4f}", flush=True)
    time.sleep(0.3)
print("pod says: training done", flush=True)
"""


@pytest.mark.sshd
async def test_train_on_a_pod_records_the_run_and_follows_its_log(
    sshd_server: Any, app_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = runpod_server_over_sshd(sshd_server, RP_KEY)
    try:
        server.add_pod(name="gpu-box", gpu_id=RTX_4090)
        project = tmp_path / "project"
        project.mkdir()
        (project / "train.py").write_text(TRAIN)
        monkeypatch.chdir(project)
        config = make_config(runpod_url=server.url)
        config.runpod.remote_dir = str(tmp_path / "pod-disk" / "project")
        config.runpod.ssh_key = str(sshd_server.key_path)
        app = app_factory(config)
        key = pod_key(server, "gpu-box")
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(pilot, lambda: key in table(app).shown_keys, "pod row")
            await select_machine(pilot, app, key)
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, TrainFormScreen), "train form")
            await pilot.press(*"train.py")
            await pilot.press("tab", *"--label 'two words'")
            await pilot.press("enter")
            await wait_for(pilot, lambda: bool(RunRegistry().list()), "run recorded", 30)
            run = RunRegistry().list()[0]
            assert run.backend is Provider.RUNPOD and run.machine == key.split(":", 1)[1]
            assert run.script == "train.py" and run.args == ("--label", "two words")
            log_view = dashboard(app).query_one("#log-widget", LogView)

            def log_has(text: str) -> bool:
                return any(text in line for line in log_view.buffer.newest(len(log_view.buffer)))

            await wait_for(pilot, lambda: log_has("pod says: training done"), "remote log", 30)
            assert log_has("argv: ['--label', 'two words']")

            # Its checkpoints are only on the pod: terminating names them.
            warning = await terminate_warning(pilot, app)
            assert f"3 checkpoint(s) of run {run.id} only on the pod" in warning, warning
            assert "ckpt-00003.pt, ckpt-00002.pt, ckpt-00001.pt" in warning, warning
            await pilot.press("escape")
    finally:
        server.stop()


async def test_a_quiet_backend_is_polled_less_often_until_something_changes(
    runpod: RunPodTestServer,
) -> None:
    """Left open for days with nothing changing, the dashboard stops calling the cloud every
    poll_seconds; a machine between states brings the fast polls back."""
    runpod_server = runpod
    runpod_server.add_pod(name="steady", status="EXITED")
    config = make_config(runpod_url=runpod_server.url)
    config.monitor.quiet_poll_factor = 50  # 0.2 s -> 10 s once quiet

    def pod_lists() -> int:
        return sum(1 for r in runpod_server.requests if r.method == "GET" and r.path == "/v2/pods")

    app = RunctlApp(config=config)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = dashboard(app)
        # Fast polls come every 0.2 s: a second without one means the backend went quiet.
        deadline = time.monotonic() + 20
        seen, since = pod_lists(), time.monotonic()
        while time.monotonic() - since < 1.0:
            assert time.monotonic() < deadline, "polls never slowed down"
            await pilot.pause(0.05)
            if pod_lists() != seen:
                seen, since = pod_lists(), time.monotonic()
        assert seen <= 8  # a few unchanged polls first, not minutes of them
        await pilot.pause(2.0)
        assert pod_lists() <= seen + 1
        screen._tick()
        header = str(screen.query_one("#header", Static).render())
        assert "runpod ✓" in header, f"a quiet backend is not stale data: {header}"
        pod = runpod_server.add_pod(name="booting", status="PROVISIONING")
        assert screen.poll_delay(screen.fleet.snapshots[Provider.RUNPOD], 0) == 0.2
        screen.start_poller(Provider.RUNPOD)  # what an action does
        await wait_for(pilot, lambda: bool(cell(app, f"runpod:{pod.id}", "state")), "new pod")
        before = pod_lists()
        await pilot.pause(1.5)
        assert pod_lists() >= before + 4  # fast again while a pod is between states
