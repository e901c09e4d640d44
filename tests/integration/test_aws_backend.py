# ruff: noqa: F811 - pytest fixtures imported from tests.moto_fixture
"""AwsBackend against moto in server mode: listing, prices, create with spot and its fallback,
Deep Learning AMI choice, spot interruptions, stop/start/terminate, waiting for SSH."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from runctl_tui.core import aws_prices
from runctl_tui.core.backends.aws import (
    MANAGED_TAG,
    TAG_FALLBACK,
    AwsBackend,
    AwsClients,
    SpotFallbackRequired,
    ssh_answers,
)
from runctl_tui.core.backends.base import Backend
from runctl_tui.core.config import Config, load_config
from runctl_tui.core.errors import BackendError, ConfigError, NotFoundError
from runctl_tui.core.models import CreateSpec, MachineState, Provider
from tests.moto_fixture import (  # noqa: F401 - fixtures
    REGION,
    MotoServer,
    ec2_backend,
    ec2_event_hook,
    mark_spot_interrupted,
    moto_aws,
    moto_server,
)


def _config(**aws: Any) -> Config:
    config = Config()
    for key, value in aws.items():
        setattr(config.aws, key, value)
    return config


@pytest.fixture
def run_instances_hook() -> Iterator[list[dict[str, Any]]]:
    """Record the RunInstances parameters our backend sends (via boto3's event system)."""
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(dict(params))

    with ec2_event_hook("before-parameter-build.ec2.RunInstances", record):
        yield seen


@pytest.fixture
def no_spot_capacity() -> Iterator[None]:
    """EC2 answers InsufficientInstanceCapacity to every spot RunInstances (on-demand works)."""

    def refuse(params: dict[str, Any], **_: Any) -> None:
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
        yield


def _plain_ec2() -> Any:
    return boto3.client("ec2", region_name=REGION)


def _some_amis() -> list[dict[str, Any]]:
    # A filtered call: moto ships ~1,300 Amazon images and parsing them all is slow.
    images: list[dict[str, Any]] = _plain_ec2().describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["ubuntu/images/*"]}]
    )["Images"]
    return images


def _instances() -> list[dict[str, Any]]:
    pages = _plain_ec2().get_paginator("describe_instances").paginate()
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


async def test_backend_satisfies_protocol(moto_aws: MotoServer) -> None:
    assert isinstance(AwsBackend(_config()), Backend)


async def test_lists_only_managed_instances_unless_all(moto_aws: MotoServer) -> None:
    backend = AwsBackend(_config(), poll_interval=0.05)
    created = await backend.create_instance(CreateSpec(Provider.AWS, "g5.xlarge", name="mine"))
    image = created.machine.tags
    assert image[MANAGED_TAG] == "true"
    # Someone else's instance in the same region.
    amis = _some_amis()
    _plain_ec2().run_instances(
        ImageId=amis[0]["ImageId"], MinCount=1, MaxCount=1, InstanceType="t3.micro"
    )

    managed = await backend.list_machines()
    assert [m.id for m in managed] == [created.machine.id]
    machine = managed[0]
    assert machine.name == "mine"
    assert machine.state is MachineState.RUNNING or machine.raw_state == "pending"
    assert machine.gpu_count == 1 and "A10G" in machine.gpu_type
    assert not machine.spot
    assert machine.price_per_hour == pytest.approx(1.006)
    assert machine.price_is_estimate
    assert machine.ssh is not None and machine.ssh.host == machine.tags.get(
        "public_ip", machine.ssh.host
    )
    assert machine.uptime_seconds() is not None
    assert machine.cost_so_far() is not None

    everything = await AwsBackend(_config(), show_all=True).list_machines()
    assert len(everything) == 2
    other = next(m for m in everything if m.id != created.machine.id)
    assert other.gpu_count == 0 and other.price_per_hour == pytest.approx(0.0104)


async def test_one_factory_applies_region_and_endpoint_to_every_client(
    moto_aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = AwsClients(_config(region="eu-west-1").aws)
    assert clients.ec2.meta.region_name == "eu-west-1"
    assert clients.s3.meta.region_name == "eu-west-1"
    assert clients.client("ssm").meta.region_name == "eu-west-1"
    # Empty config: boto3's chain (AWS_DEFAULT_REGION, AWS_ENDPOINT_URL from the fixture).
    chain = AwsClients(_config().aws)
    assert chain.ec2.meta.region_name == REGION
    assert chain.ec2.meta.endpoint_url == moto_aws.url
    assert chain.s3.meta.endpoint_url == moto_aws.url
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert AwsClients(_config().aws).s3.meta.region_name == "ap-south-1"
    explicit = AwsClients(_config(endpoint_url="http://127.0.0.1:9").aws)
    assert explicit.ec2.meta.endpoint_url == "http://127.0.0.1:9"
    assert explicit.s3.meta.endpoint_url == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match=r"profile 'nope' \(from \[aws\] profile\)"):
        AwsClients(_config(profile="nope").aws).ec2  # noqa: B018
    monkeypatch.setenv("AWS_PROFILE", "ghost")
    with pytest.raises(ConfigError, match=r"profile 'ghost' \(from AWS_PROFILE\)"):
        AwsClients(_config().aws).s3  # noqa: B018


async def test_region_from_config_is_the_one_listed(moto_aws: MotoServer) -> None:
    west = AwsBackend(_config(region="us-west-2"))
    await west.create_instance(CreateSpec(Provider.AWS, "t3.micro"))
    assert len(await west.list_machines()) == 1
    assert await AwsBackend(_config(region="us-east-1")).list_machines() == []


async def test_unreachable_endpoint_is_a_backend_error(moto_aws: MotoServer) -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    backend = AwsBackend(_config(endpoint_url="http://127.0.0.1:9"))
    backend.clients.client("ec2").meta.config.retries = {"max_attempts": 0}
    with pytest.raises(BackendError, match="unreachable"):
        await backend.list_machines()


async def test_spot_create_sends_market_options_without_a_made_up_cap(
    moto_aws: MotoServer, run_instances_hook: list[dict[str, Any]]
) -> None:
    backend = AwsBackend(_config())
    outcome = await backend.create_instance(CreateSpec(Provider.AWS, "g5.xlarge", spot=True))
    options = run_instances_hook[-1]["InstanceMarketOptions"]
    assert options["MarketType"] == "spot"
    # No MaxPrice: AWS itself caps at the on-demand price; no constant of ours.
    assert "MaxPrice" not in options["SpotOptions"]
    assert "max price = the on-demand price (~$1.0060/h)" in outcome.message
    assert outcome.requested_spot and not outcome.fell_back
    listed = await backend.get_machine(outcome.machine.id)
    assert listed.spot
    # moto's canned spot price is live (not from our table): not an estimate.
    assert listed.price_per_hour == pytest.approx(0.00001)
    assert not listed.price_is_estimate

    explicit = await backend.create_instance(
        CreateSpec(Provider.AWS, "g5.xlarge", spot=True, max_price=0.55)
    )
    assert run_instances_hook[-1]["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.5500"
    assert "max price $0.5500/h" in explicit.message
    configured = AwsBackend(_config(spot_max_price=0.7))
    await configured.create_instance(CreateSpec(Provider.AWS, "g5.xlarge", spot=True))
    assert run_instances_hook[-1]["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.7000"


async def test_create_passes_key_groups_disk_profile_and_tags(
    moto_aws: MotoServer, run_instances_hook: list[dict[str, Any]]
) -> None:
    ec2 = _plain_ec2()
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName="runctl", Description="t", VpcId=vpc)["GroupId"]
    ec2.create_key_pair(KeyName="mykey")
    boto3.client("iam", region_name=REGION).create_instance_profile(InstanceProfileName="s3-access")
    backend = AwsBackend(
        _config(key_name="mykey", security_group_ids=[group], iam_instance_profile="s3-access")
    )
    outcome = await backend.create_instance(
        CreateSpec(Provider.AWS, "g4dn.xlarge", disk_gb=250), tags={"runctl:run-id": "r1"}
    )
    params = run_instances_hook[-1]
    assert params["KeyName"] == "mykey"
    assert params["SecurityGroupIds"] == [group]
    assert params["IamInstanceProfile"] == {"Name": "s3-access"}
    assert params["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 250
    (described,) = _instances()
    assert described["KeyName"] == "mykey"
    assert [g["GroupId"] for g in described["SecurityGroups"]] == [group]
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags[MANAGED_TAG] == "true" and tags["runctl:run-id"] == "r1"
    assert outcome.machine.gpu_count == 1


async def test_newest_deep_learning_ami_is_chosen(
    moto_aws: MotoServer, run_instances_hook: list[dict[str, Any]]
) -> None:
    from moto.ec2.models.amis import Ami

    backend_state = ec2_backend()
    older = Ami(
        backend_state,
        "ami-0dl0000000000old",
        name="Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.4.1 (Ubuntu 22.04) 20241001",
        owner_alias="amazon",
        owner_id="amazon",
        architecture="x86_64",
        creation_date=dt.datetime(2024, 10, 1, tzinfo=dt.timezone.utc),
    )
    newer = Ami(
        backend_state,
        "ami-0dl0000000000new",
        name="Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.5.1 (Ubuntu 22.04) 20250105",
        owner_alias="amazon",
        owner_id="amazon",
        architecture="x86_64",
        creation_date=dt.datetime(2025, 1, 5, tzinfo=dt.timezone.utc),
    )
    for image in (older, newer):
        backend_state.amis[image.id] = image
    await AwsBackend(_config()).create_instance(CreateSpec(Provider.AWS, "g5.xlarge"))
    assert run_instances_hook[-1]["ImageId"] == "ami-0dl0000000000new"


async def test_default_ami_falls_back_to_older_dlami_names_and_config_wins(
    moto_aws: MotoServer, run_instances_hook: list[dict[str, Any]]
) -> None:
    await AwsBackend(_config()).create_instance(CreateSpec(Provider.AWS, "g5.xlarge"))
    chosen = run_instances_hook[-1]["ImageId"]
    image = _plain_ec2().describe_images(ImageIds=[chosen])["Images"][0]
    assert "Deep Learning" in image["Name"] and "Ubuntu" in image["Name"]
    other = next(i["ImageId"] for i in _some_amis() if i["ImageId"] != chosen)
    await AwsBackend(_config(ami=other)).create_instance(CreateSpec(Provider.AWS, "t3.micro"))
    assert run_instances_hook[-1]["ImageId"] == other
    with pytest.raises(NotFoundError, match="ami-00000000deadbeef"):
        await AwsBackend(_config()).create_instance(
            CreateSpec(Provider.AWS, "t3.micro", image="ami-00000000deadbeef")
        )


async def test_no_spot_capacity_with_ask_raises_with_both_prices(
    moto_aws: MotoServer, no_spot_capacity: None
) -> None:
    backend = AwsBackend(_config())
    with pytest.raises(SpotFallbackRequired) as info:
        await backend.create_instance(CreateSpec(Provider.AWS, "g5.xlarge", spot=True))
    error = info.value
    assert error.on_demand_price == pytest.approx(1.006)
    assert error.spot_price == pytest.approx(0.00001)
    assert "InsufficientInstanceCapacity" in str(error)
    assert "on-demand ~$1.0060/h" in str(error) and "spot $0.0000/h" in str(error)
    assert "--fallback on-demand" in str(error)
    assert _instances() == []


async def test_no_spot_capacity_with_never_launches_nothing(
    moto_aws: MotoServer, no_spot_capacity: None
) -> None:
    backend = AwsBackend(_config(spot_fallback="never"))
    with pytest.raises(BackendError, match="nothing was launched") as info:
        await backend.create_instance(CreateSpec(Provider.AWS, "g5.xlarge", spot=True))
    assert not isinstance(info.value, SpotFallbackRequired)
    assert "on-demand ~$1.0060/h" in str(info.value)
    assert _instances() == []
    # A per-call "never" overrides a config that would fall back.
    with pytest.raises(BackendError, match="nothing was launched"):
        await AwsBackend(_config(spot_fallback="on-demand")).create_instance(
            CreateSpec(Provider.AWS, "g5.xlarge", spot=True, fallback="never")
        )
    assert _instances() == []


async def test_no_spot_capacity_with_on_demand_falls_back_and_says_so(
    moto_aws: MotoServer, no_spot_capacity: None
) -> None:
    backend = AwsBackend(_config())  # config says ask; the call says on-demand
    outcome = await backend.create_instance(
        CreateSpec(Provider.AWS, "g5.xlarge", spot=True, fallback="on-demand")
    )
    assert outcome.fell_back and outcome.requested_spot
    assert "refused" in outcome.message and "on-demand ~$1.0060/h" in outcome.message
    assert "spot $0.0000/h" in outcome.message
    (described,) = _instances()
    assert "InstanceLifecycle" not in described
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags[TAG_FALLBACK] == "spot-refused"
    assert not outcome.machine.spot


async def test_other_spot_errors_are_not_taken_for_missing_capacity(
    moto_aws: MotoServer,
) -> None:
    def bad_request(params: dict[str, Any], **_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "InvalidParameterValue", "Message": "bad"}}, "RunInstances"
        )

    with (
        ec2_event_hook("before-parameter-build.ec2.RunInstances", bad_request),
        pytest.raises(BackendError, match="InvalidParameterValue") as info,
    ):
        await AwsBackend(_config(spot_fallback="on-demand")).create_instance(
            CreateSpec(Provider.AWS, "g5.xlarge", spot=True)
        )
    assert not isinstance(info.value, SpotFallbackRequired)


async def test_spot_termination_reason_is_interrupted(moto_aws: MotoServer) -> None:
    backend = AwsBackend(_config())
    outcome = await backend.create_instance(CreateSpec(Provider.AWS, "g5.xlarge", spot=True))
    await backend.terminate(outcome.machine.id)
    user_terminated = await backend.get_machine(outcome.machine.id)
    assert user_terminated.state is MachineState.TERMINATED
    assert user_terminated.price_per_hour is None

    second = await backend.create_instance(CreateSpec(Provider.AWS, "g5.xlarge", spot=True))
    mark_spot_interrupted(second.machine.id)
    machine = await backend.get_machine(second.machine.id)
    assert machine.state is MachineState.INTERRUPTED
    assert machine.raw_state == "terminated"
    assert "Spot instance termination" in machine.state_reason


async def test_stop_start_terminate_transitions(moto_aws: MotoServer) -> None:
    backend = AwsBackend(_config(), poll_interval=0.05)
    machine = (await backend.create_instance(CreateSpec(Provider.AWS, "t3.micro"))).machine
    running = await backend.get_machine(machine.id)
    assert running.actions == ("stop", "terminate")
    stopped = await backend.stop(machine.id)
    assert stopped.state is MachineState.STOPPED and stopped.actions[0] == "start"
    assert stopped.price_per_hour is None and stopped.uptime_seconds() is None
    started = await backend.start(machine.id)
    assert started.state is MachineState.RUNNING
    await backend.terminate(machine.id)
    assert (await backend.get_machine(machine.id)).state is MachineState.TERMINATED
    with pytest.raises(NotFoundError):
        await backend.get_machine("i-0123456789abcdef0")


@pytest.fixture
async def banner_server() -> Any:
    """A TCP server on 127.0.0.1 that greets like an SSH server."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_test\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_wait_reports_states_then_ssh(moto_aws: MotoServer, banner_server: int) -> None:
    backend = AwsBackend(_config(), poll_interval=0.05)
    machine = (await backend.create_instance(CreateSpec(Provider.AWS, "t3.micro"))).machine
    backend.aws.ssh_host_overrides = {machine.id: f"127.0.0.1:{banner_server}"}
    states: list[str] = []
    ready = await backend.wait_until_ready(machine.id, states.append, timeout=20)
    assert ready.state is MachineState.RUNNING
    assert ready.ssh is not None and ready.ssh.port == banner_server
    assert states[-2:] == [
        f"waiting for SSH on 127.0.0.1:{banner_server}",
        f"SSH answers on 127.0.0.1:{banner_server}",
    ]
    assert any(s.startswith(("pending", "running")) for s in states)


async def test_wait_gives_up_when_nothing_answers(moto_aws: MotoServer) -> None:
    backend = AwsBackend(_config(), poll_interval=0.05)
    machine = (await backend.create_instance(CreateSpec(Provider.AWS, "t3.micro"))).machine
    backend.aws.ssh_host_overrides = {machine.id: "127.0.0.1:9"}
    with pytest.raises(BackendError, match=r"SSH on 127\.0\.0\.1:9 did not answer"):
        await backend.wait_until_ready(machine.id, timeout=0.5)
    await backend.terminate(machine.id)
    with pytest.raises(BackendError, match="terminated"):
        await backend.wait_until_ready(machine.id, timeout=5)
    assert not await ssh_answers("127.0.0.1", 9, timeout=1)


async def test_ssh_override_by_public_ip(moto_aws: MotoServer) -> None:
    backend = AwsBackend(_config(ssh_user="ec2-user", ssh_key="/k/id"))
    machine = (await backend.create_instance(CreateSpec(Provider.AWS, "t3.micro"))).machine
    described = _instances()[0]
    backend.aws.ssh_host_overrides = {described["PublicIpAddress"]: "127.0.0.1:2222"}
    listed = await backend.get_machine(machine.id)
    assert listed.ssh is not None
    assert (listed.ssh.host, listed.ssh.port, listed.ssh.user, listed.ssh.key_path) == (
        "127.0.0.1",
        2222,
        "ec2-user",
        "/k/id",
    )


def test_price_table_is_dated_sourced_and_overridable(tmp_path: Path) -> None:
    table = aws_prices.load_price_table()
    assert table.region == "us-east-1"
    assert table.as_of and "AWS" in table.source
    assert table.on_demand("g5.xlarge") == pytest.approx(1.006)
    assert table.on_demand("nope.large") is None
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps({"as_of": "2026-11", "source": "my invoice", "prices": {"g5.xlarge": 0.9}})
    )
    mine = aws_prices.load_price_table(str(override))
    assert mine.on_demand("g5.xlarge") == pytest.approx(0.9)
    assert mine.on_demand("t3.micro") == pytest.approx(0.0104)
    assert (mine.as_of, mine.source, mine.overridden_by) == ("2026-11", "my invoice", str(override))
    override.write_text('{"prices": {"g5.xlarge": "cheap"}}')
    with pytest.raises(ConfigError, match=r"g5\.xlarge"):
        aws_prices.load_price_table(str(override))
    override.write_text("{nope")
    with pytest.raises(ConfigError, match="invalid JSON"):
        aws_prices.load_price_table(str(override))
    with pytest.raises(ConfigError, match="cannot read"):
        aws_prices.load_price_table(str(tmp_path / "missing.json"))


async def test_offers_combine_table_gpus_and_live_spot(moto_aws: MotoServer) -> None:
    offers = {o.id: o for o in await AwsBackend(_config()).offers()}
    g5 = offers["g5.xlarge"]
    assert g5.gpu_count == 1 and "A10G" in g5.display_name
    assert g5.price_per_hour == pytest.approx(1.006) and g5.price_is_estimate
    assert g5.spot_price_per_hour == pytest.approx(0.00001)
    assert offers["t3.micro"].gpu_count == 0


def test_config_region_from_file_reaches_clients(
    moto_aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[aws]\nregion = "eu-central-1"\n')
    config = load_config(path)
    clients: Callable[[], AwsClients] = lambda: AwsClients(config.aws)  # noqa: E731
    assert clients().ec2.meta.region_name == "eu-central-1"


async def test_terminate_forgets_the_host_key_unless_overridden(moto_aws: MotoServer) -> None:
    from runctl_tui.core.ssh import known_hosts_path

    backend = AwsBackend(_config())
    first = (await backend.create_instance(CreateSpec(Provider.AWS, "t3.micro"))).machine
    second = (await backend.create_instance(CreateSpec(Provider.AWS, "t3.micro"))).machine
    ip1, ip2 = first.tags["public_ip"], second.tags["public_ip"]
    known = known_hosts_path()
    known.parent.mkdir(parents=True, exist_ok=True)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    known.write_text(f"{ip1} {key}\n{ip2} {key}\n")
    await backend.terminate(first.id)
    assert ip1 not in known.read_text() and ip2 in known.read_text()
    backend.aws.ssh_host_overrides = {second.id: "127.0.0.1:2222"}
    await backend.terminate(second.id)
    assert ip2 in known.read_text()


async def test_run_state_follows_the_instance_without_ssh(moto_aws: MotoServer) -> None:
    import fcntl
    import time

    from runctl_tui.core.aws_training import AwsRunInfo, inspect_run, reconcile_runs, resume_run
    from runctl_tui.core.errors import RunctlError
    from runctl_tui.core.models import Run, RunStatus
    from runctl_tui.core.runs import RunRegistry

    backend = AwsBackend(_config())
    registry = RunRegistry()
    runs = {}
    for name in ("taken", "killed"):
        machine = (
            await backend.create_instance(CreateSpec(Provider.AWS, "g5.xlarge", spot=True))
        ).machine
        run = Run(
            id=f"run-{name}",
            backend=Provider.AWS,
            machine=machine.id,
            script="train.py",
            args=(),
            cwd="/p",
            status=RunStatus.RUNNING,
            started=time.time(),
            log_path=f"/p/runs/run-{name}/train.log",
            checkpoint_dir="/p/checkpoints",
        )
        registry.add(run)
        AwsRunInfo(
            run_id=run.id,
            instance_id=machine.id,
            instance_type="g5.xlarge",
            spot=True,
            local_dir="/l",
            remote_dir="/p",
            run_dir=f"/p/runs/{run.id}",
            log_path=run.log_path,
            exit_code_path=f"/p/runs/{run.id}/exit_code",
            pid_path=f"/p/runs/{run.id}/pid",
            checkpoint_dir="/p/checkpoints",
            script="train.py",
            args=[],
        ).save()
        runs[name] = machine.id
    mark_spot_interrupted(runs["taken"])
    await backend.terminate(runs["killed"])
    changed = {r.id: r for r in await reconcile_runs(Config(), backend, registry=registry)}
    taken, killed = changed["run-taken"], changed["run-killed"]
    assert taken.status is RunStatus.INTERRUPTED
    assert f"spot instance {runs['taken']} taken back by AWS" in taken.note
    assert killed.status is RunStatus.LOST and "terminated" in killed.note
    assert await reconcile_runs(Config(), backend, registry=registry) == []
    assert (await inspect_run(Config(), backend, "run-taken", registry=registry)).run == taken
    with pytest.raises(NotFoundError):
        await inspect_run(Config(), backend, "nope", registry=registry)
    # Two runctl processes never resume one run twice.
    lock_path = AwsRunInfo.path_for("run-taken").with_suffix(".resume.lock")
    with lock_path.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunctlError, match="being resumed by another"):
            await resume_run(Config(), backend, "run-taken", registry=registry)
    # Not locked: refused for its own reason (no --output-s3 to resume from).
    with pytest.raises(RunctlError, match="no --output-s3"):
        await resume_run(Config(), backend, "run-taken", registry=registry)
