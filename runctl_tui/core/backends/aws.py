"""AWS EC2 instances: list, create (spot or on-demand, with an honest fallback), wait, stop,
start, terminate.

boto3 is imported lazily and every call runs in a worker thread (`asyncio.to_thread`), so the
event loop never blocks. One factory (`AwsClients`) builds every client (EC2, S3, SSM) from the
same session, so `[aws] region/profile/endpoint_url` (or, when empty, boto3's own chain:
AWS_REGION, AWS_DEFAULT_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, ...) apply to all of them alike
and the dashboard and the CLI always look at the same region.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from runctl_tui.core.aio import wait_for
from runctl_tui.core.aws_prices import PriceTable, current_spot_prices, describe_prices
from runctl_tui.core.aws_prices import load_price_table as _load_price_table
from runctl_tui.core.config import AwsConfig, Config
from runctl_tui.core.errors import BackendError, ConfigError, NotFoundError, RunctlError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.models import (
    CreateSpec,
    GpuOffer,
    Machine,
    MachineState,
    Provider,
    SshEndpoint,
)
from runctl_tui.core.secrets import register_secret, scrub

log = get_logger("aws")

T = TypeVar("T")

MANAGED_TAG = "runctl:managed"
"""Every instance runctl creates carries `runctl:managed=true`."""
TAG_RUN_ID = "runctl:run-id"
TAG_OUTPUT_S3 = "runctl:output-s3"
TAG_MARKET = "runctl:market"
"""`spot`, or `on-demand` (with `TAG_FALLBACK` when it replaced a refused spot request)."""
TAG_FALLBACK = "runctl:fallback"
TAG_RESUMED_FROM = "runctl:resumed-from"

SPOT_INTERRUPTION_CODES = frozenset(
    {
        "Server.SpotInstanceTermination",
        "Server.SpotInstanceShutdown",
        "Server.SpotInstanceHibernate",
    }
)
"""EC2 state-reason codes meaning AWS took a spot instance back."""

NO_SPOT_CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "UnfulfillableCapacity",
    }
)
"""RunInstances error codes that mean "no spot instance for you now", not "bad request"."""

FALLBACK_CHOICES = ("ask", "on-demand", "never")

DLAMI_NAME_PATTERNS = (
    "Deep Learning OSS Nvidia Driver AMI GPU PyTorch * (Ubuntu 22.04) *",
    "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
    "Deep Learning AMI*Ubuntu*",
)
"""AWS Deep Learning AMI names, most wanted first; the newest image of the first pattern that
has any is used."""

CLIENT_HOOKS: list[Callable[[str, Any], None]] = []
"""Called as `hook(service_name, client)` for every boto3 client the factory creates.

Lets tests attach botocore event handlers to our real clients (e.g. make RunInstances answer
InsufficientInstanceCapacity), which moto cannot be told to do.
"""

_STATE_MAP = {
    "pending": MachineState.PROVISIONING,
    "running": MachineState.RUNNING,
    "stopping": MachineState.STOPPING,
    "stopped": MachineState.STOPPED,
    "shutting-down": MachineState.TERMINATING,
    "terminated": MachineState.TERMINATED,
}
_SPOT_PRICE_TTL = 60.0


class SpotFallbackRequired(BackendError):
    """Spot capacity was refused and `[aws] spot_fallback = "ask"`: the user must choose.

    The CLI turns it into a message (retry with `--fallback on-demand`); the dashboard turns it
    into a question and, on yes, calls `create` again with `CreateSpec.fallback="on-demand"`.

    Attributes:
        instance_type: The type asked for.
        spot_price: Live spot $/h, if known.
        on_demand_price: On-demand $/h from the price table (an estimate), if known.
        reason: AWS's error code and message.
    """

    def __init__(
        self,
        instance_type: str,
        spot_price: float | None,
        on_demand_price: float | None,
        reason: str,
    ) -> None:
        self.instance_type = instance_type
        self.spot_price = spot_price
        self.on_demand_price = on_demand_price
        self.reason = reason
        super().__init__(
            f"no spot capacity for {instance_type} ({reason}); "
            f"{describe_prices(on_demand_price, spot_price)}. "
            "Launch on-demand instead with --fallback on-demand (or set "
            '[aws] spot_fallback = "on-demand"), or try another type or region.'
        )


@dataclass(frozen=True)
class CreateOutcome:
    """What `AwsBackend.create_instance` did."""

    machine: Machine
    requested_spot: bool
    fell_back: bool
    """True when spot was refused and an on-demand instance was launched instead."""
    message: str
    """One sentence for the user: market, prices, max price, fallback taken."""


def parse_ssh_override(value: str) -> tuple[str, int | None]:
    """Split `host[:port]` (IPv6 in brackets) into host and port."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, None


class AwsClients:
    """The one place boto3 sessions and clients are made, so every service sees one region.

    Args:
        aws: The `[aws]` config section; empty region/profile/endpoint_url defer to boto3.
    """

    def __init__(self, aws: AwsConfig) -> None:
        self._aws = aws
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.RLock()

    @property
    def session(self) -> Any:
        """The boto3 session (created on first use; blocking)."""
        with self._lock:
            if self._session is None:
                import boto3
                import botocore.exceptions

                # botocore reads AWS_DEFAULT_REGION but not AWS_REGION, which the AWS CLI v2
                # and the other SDKs honour first; do the same so every tool agrees.
                region = self._aws.region or os.environ.get("AWS_REGION") or None
                try:
                    self._session = boto3.Session(
                        profile_name=self._aws.profile or None, region_name=region
                    )
                except botocore.exceptions.ProfileNotFound:
                    name, origin = (
                        (self._aws.profile, "[aws] profile")
                        if self._aws.profile
                        else (os.environ.get("AWS_PROFILE", ""), "AWS_PROFILE")
                    )
                    raise ConfigError(
                        f"AWS profile {name!r} (from {origin}) is not in your AWS config; fix "
                        "the name or create it with `aws configure --profile`."
                    ) from None
                credentials = self._session.get_credentials()
                if credentials is not None:
                    frozen = credentials.get_frozen_credentials()
                    for value in (frozen.access_key, frozen.secret_key, frozen.token):
                        register_secret(value)
            return self._session

    @property
    def region(self) -> str:
        """The region every client uses.

        Raises:
            ConfigError: Neither the config nor boto3's chain names a region.
        """
        region = self.session.region_name
        if not region:
            raise ConfigError(
                "no AWS region: set [aws] region, AWS_REGION or a region in your AWS profile"
            )
        return str(region)

    @property
    def endpoint_url(self) -> str | None:
        """`[aws] endpoint_url` when set; else None (boto3 then reads AWS_ENDPOINT_URL)."""
        return self._aws.endpoint_url or None

    def client(self, service: str) -> Any:
        """A cached boto3 client for `service` (`ec2`, `s3`, `ssm`) in the configured region."""
        with self._lock:
            cached = self._clients.get(service)
            if cached is not None:
                return cached
            return self._make_client(service)

    def _make_client(self, service: str) -> Any:
        # Called with the lock held: boto3 sessions are not thread-safe, clients are.
        from botocore.config import Config as BotoConfig

        region = self.region
        kwargs: dict[str, Any] = {
            "region_name": region,
            "config": BotoConfig(
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        }
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        client = self.session.client(service, **kwargs)
        for hook in list(CLIENT_HOOKS):
            hook(service, client)
        self._clients[service] = client
        return client

    @property
    def ec2(self) -> Any:
        """The EC2 client."""
        return self.client("ec2")

    @property
    def s3(self) -> Any:
        """The S3 client."""
        return self.client("s3")

    def agent_environment(self, *, forward_credentials: bool) -> dict[str, str]:
        """Variables the agents on an instance need to reach the same region and endpoint.

        Args:
            forward_credentials: Include this session's credentials (secrets!).

        Returns:
            `AWS_DEFAULT_REGION`, `AWS_REGION`, `AWS_ENDPOINT_URL` (when one is in use) and,
            if asked, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`.
        """
        region = self.region
        env = {"AWS_DEFAULT_REGION": region, "AWS_REGION": region}
        endpoint = self.ec2.meta.endpoint_url if self._uses_custom_endpoint() else None
        if endpoint:
            env["AWS_ENDPOINT_URL"] = str(endpoint)
        if forward_credentials:
            credentials = self.session.get_credentials()
            if credentials is None:
                raise BackendError(
                    "[aws] forward_credentials is on but no AWS credentials were found here"
                )
            frozen = credentials.get_frozen_credentials()
            env["AWS_ACCESS_KEY_ID"] = frozen.access_key
            env["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
            if frozen.token:
                env["AWS_SESSION_TOKEN"] = frozen.token
        return env

    def _uses_custom_endpoint(self) -> bool:
        return bool(self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))


@contextlib.contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn botocore exceptions into RunctlErrors whose message says what to do.

    Args:
        action: What was being done, e.g. `list instances`.
    """
    import botocore.exceptions as bex

    try:
        yield
    except RunctlError:
        raise
    except bex.NoCredentialsError:
        raise BackendError(
            f"cannot {action}: no AWS credentials found; configure a profile "
            "(`aws configure`), set [aws] profile / AWS_PROFILE, or use an instance role"
        ) from None
    except bex.EndpointConnectionError as exc:
        raise BackendError(
            f"cannot {action}: AWS endpoint {exc.kwargs.get('endpoint_url', '')} is unreachable; "
            "check the network and [aws] endpoint_url / AWS_ENDPOINT_URL"
        ) from None
    except bex.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = scrub(str(error.get("Message", "")))
        if code.startswith(("InvalidInstanceID", "InvalidAMIID.NotFound", "NoSuchBucket")):
            raise NotFoundError(f"cannot {action}: {code}: {message}") from None
        if code in ("UnauthorizedOperation", "AccessDenied", "AuthFailure"):
            raise BackendError(
                f"cannot {action}: AWS refused ({code}): {message}. Check the IAM permissions "
                "of the credentials in use."
            ) from None
        raise BackendError(f"cannot {action}: {code}: {message}") from None
    except bex.BotoCoreError as exc:
        raise BackendError(f"cannot {action}: {scrub(str(exc))}") from None


def _client_error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class AwsBackend:
    """EC2 instances as `Machine`s, with live spot prices and table on-demand estimates.

    Args:
        config: The effective configuration (`[aws]`, and `[ui] show_all_aws`).
        show_all: List every instance in the region, not only runctl's; None: the config's.
        poll_interval: Seconds between polls while waiting for an instance.
    """

    provider = Provider.AWS

    def __init__(
        self, config: Config, *, show_all: bool | None = None, poll_interval: float = 3.0
    ) -> None:
        self.config = config
        self.aws = config.aws
        self.clients = AwsClients(config.aws)
        self.show_all = config.ui.show_all_aws if show_all is None else show_all
        self.poll_interval = poll_interval
        self._prices: PriceTable | None = None
        self._gpus: dict[str, tuple[str, int]] = {}
        self._spot: dict[str, tuple[float, float]] = {}

    # -- prices and instance types -------------------------------------------------------

    @property
    def price_table(self) -> PriceTable:
        """The on-demand table (shipped, with `[aws] prices_file` over it)."""
        if self._prices is None:
            self._prices = _load_price_table(self.aws.prices_file)
        return self._prices

    def _gpu_info_sync(self, instance_types: list[str]) -> dict[str, tuple[str, int]]:
        missing = sorted({t for t in instance_types if t and t not in self._gpus})
        if missing:
            paginator = self.clients.ec2.get_paginator("describe_instance_types")
            # A filter (not InstanceTypes=) so an unknown type is skipped rather than fatal.
            for start in range(0, len(missing), 100):
                chunk = missing[start : start + 100]
                with aws_errors("describe instance types"):
                    pages = paginator.paginate(Filters=[{"Name": "instance-type", "Values": chunk}])
                    for page in pages:
                        for item in page.get("InstanceTypes", []):
                            gpus = item.get("GpuInfo", {}).get("Gpus", [])
                            name = ", ".join(
                                f"{g.get('Manufacturer', '')} {g.get('Name', '')}".strip()
                                for g in gpus
                            )
                            count = sum(int(g.get("Count", 0)) for g in gpus)
                            self._gpus[item["InstanceType"]] = (name, count)
            for name in missing:
                self._gpus.setdefault(name, ("", 0))
        return {t: self._gpus.get(t, ("", 0)) for t in instance_types}

    def _spot_prices_sync(self, instance_types: list[str]) -> dict[str, float]:
        now = time.monotonic()
        stale = [
            t
            for t in set(instance_types)
            if t not in self._spot or now - self._spot[t][1] > _SPOT_PRICE_TTL
        ]
        if stale:
            with aws_errors("read spot prices"):
                fresh = current_spot_prices(self.clients.ec2, stale)
            for name, price in fresh.items():
                self._spot[name] = (price, now)
        return {t: self._spot[t][0] for t in instance_types if t in self._spot}

    async def spot_prices(self, instance_types: list[str]) -> dict[str, float]:
        """Live spot $/h per type (lowest across the region's zones), cached for a minute."""
        return await asyncio.to_thread(self._spot_prices_sync, instance_types)

    async def offers(self) -> list[GpuOffer]:
        """Every type in the price table, with its GPUs, on-demand estimate and live spot price."""
        return await asyncio.to_thread(self._offers_sync)

    def _offers_sync(self) -> list[GpuOffer]:
        table = self.price_table
        types = sorted(table.prices)
        gpus = self._gpu_info_sync(types)
        spot = self._spot_prices_sync(types)
        offers = []
        for name in types:
            gpu_name, count = gpus.get(name, ("", 0))
            offers.append(
                GpuOffer(
                    provider=Provider.AWS,
                    id=name,
                    display_name=f"{name} ({count}x {gpu_name})" if count else name,
                    gpu_count=count,
                    price_per_hour=table.on_demand(name),
                    spot_price_per_hour=spot.get(name),
                    price_is_estimate=True,
                )
            )
        return offers

    # -- listing --------------------------------------------------------------------------

    def ssh_endpoint_for(self, instance_id: str, public_ip: str, private_ip: str) -> SshEndpoint:
        """Where to SSH to an instance, after `[aws] ssh_host_overrides` (id, IPs, then `*`)."""
        overrides = self.aws.ssh_host_overrides
        host, port = public_ip or private_ip, 22
        for key in (instance_id, public_ip, private_ip, "*"):
            if key and key in overrides:
                host, maybe_port = parse_ssh_override(overrides[key])
                port = maybe_port or 22
                break
        return SshEndpoint(
            host=host,
            port=port,
            user=self.aws.ssh_user,
            key_path=self.aws.ssh_key or None,
        )

    def _to_machine(
        self, item: dict[str, Any], gpus: dict[str, tuple[str, int]], spot: dict[str, float]
    ) -> Machine:
        tags = {t["Key"]: t["Value"] for t in item.get("Tags", []) or []}
        raw_state = str(item.get("State", {}).get("Name", ""))
        reason = item.get("StateReason") or {}
        reason_code = str(reason.get("Code", "") or "")
        reason_text = str(reason.get("Message", "") or "") or str(
            item.get("StateTransitionReason", "") or ""
        )
        state = _STATE_MAP.get(raw_state, MachineState.UNKNOWN)
        if reason_code in SPOT_INTERRUPTION_CODES:
            state = MachineState.INTERRUPTED
        instance_type = str(item.get("InstanceType", ""))
        is_spot = item.get("InstanceLifecycle") == "spot"
        price: float | None = None
        estimate = False
        if state.is_billing:
            if is_spot and instance_type in spot:
                price = spot[instance_type]
            else:
                price = self.price_table.on_demand(instance_type)
                estimate = price is not None
        launch = item.get("LaunchTime")
        launched = launch.timestamp() if launch is not None else None
        public_ip = str(item.get("PublicIpAddress", "") or "")
        private_ip = str(item.get("PrivateIpAddress", "") or "")
        gpu_name, gpu_count = gpus.get(instance_type, ("", 0))
        instance_id = str(item["InstanceId"])
        has_address = bool(public_ip or private_ip)
        return Machine(
            provider=Provider.AWS,
            id=instance_id,
            name=tags.get("Name", instance_id),
            state=state,
            raw_state=raw_state,
            state_reason=reason_text,
            gpu_type=gpu_name or instance_type,
            gpu_count=gpu_count,
            price_per_hour=price,
            price_is_estimate=estimate,
            spot=is_spot,
            region=str(item.get("Placement", {}).get("AvailabilityZone", "")) or "",
            created_at=launched,
            started_at=launched if state.is_billing else None,
            ssh=self.ssh_endpoint_for(instance_id, public_ip, private_ip)
            if has_address
            or instance_id in self.aws.ssh_host_overrides
            or "*" in self.aws.ssh_host_overrides
            else None,
            actions=_actions_for(state),
            # Machine has no fields for these: they travel with the tags, not as EC2 tags.
            tags={
                **tags,
                "instance_type": instance_type,
                "public_ip": public_ip,
                "private_ip": private_ip,
            },
        )

    def _describe_sync(self, instance_ids: list[str] | None = None) -> list[Machine]:
        ec2 = self.clients.ec2
        kwargs: dict[str, Any] = {}
        if instance_ids:
            kwargs["InstanceIds"] = instance_ids
        elif not self.show_all:
            kwargs["Filters"] = [{"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]
        items: list[dict[str, Any]] = []
        with aws_errors("list EC2 instances"):
            for page in ec2.get_paginator("describe_instances").paginate(**kwargs):
                for reservation in page.get("Reservations", []):
                    items.extend(reservation.get("Instances", []))
        types = sorted({str(i.get("InstanceType", "")) for i in items})
        gpus = self._gpu_info_sync(types)
        spot_types = sorted(
            {str(i.get("InstanceType", "")) for i in items if i.get("InstanceLifecycle") == "spot"}
        )
        try:
            spot = self._spot_prices_sync(spot_types)
        except BackendError as exc:
            # A listing without live spot prices beats no listing; prices fall back to the table.
            log.warning("spot prices unavailable: %s", exc)
            spot = {}
        machines = [self._to_machine(i, gpus, spot) for i in items]
        machines.sort(key=lambda m: m.created_at or 0.0, reverse=True)
        return machines

    async def list_machines(self) -> list[Machine]:
        """runctl's instances (or all of the region's with `show_all`), newest first."""
        return await asyncio.to_thread(self._describe_sync)

    async def get_machine(self, instance_id: str) -> Machine:
        """One instance by id.

        Raises:
            NotFoundError: No such instance in the region.
        """
        machines = await asyncio.to_thread(self._describe_sync, [instance_id])
        if not machines:
            raise NotFoundError(f"no EC2 instance {instance_id} in {self.clients.region}")
        return machines[0]

    # -- create ---------------------------------------------------------------------------

    def _resolve_ami_sync(self, requested: str, instance_type: str) -> tuple[str, str]:
        """(AMI id, root device name)."""
        ec2 = self.clients.ec2
        ami = requested or self.aws.ami
        if ami:
            with aws_errors(f"look up AMI {ami}"):
                images = ec2.describe_images(ImageIds=[ami]).get("Images", [])
            if not images:
                raise NotFoundError(f"AMI {ami} does not exist in {self.clients.region}")
            return ami, str(images[0].get("RootDeviceName") or "/dev/sda1")
        architecture = "x86_64"
        with aws_errors(f"describe instance type {instance_type}"):
            found = ec2.describe_instance_types(
                Filters=[{"Name": "instance-type", "Values": [instance_type]}]
            ).get("InstanceTypes", [])
        if found:
            archs = found[0].get("ProcessorInfo", {}).get("SupportedArchitectures", [])
            if archs and "x86_64" not in archs:
                architecture = str(archs[0])
        for pattern in DLAMI_NAME_PATTERNS:
            with aws_errors("find the AWS Deep Learning AMI"):
                images = ec2.describe_images(
                    Owners=["amazon"],
                    Filters=[
                        {"Name": "name", "Values": [pattern]},
                        {"Name": "state", "Values": ["available"]},
                        {"Name": "architecture", "Values": [architecture]},
                    ],
                ).get("Images", [])
            if images:
                newest = max(images, key=lambda i: (str(i.get("CreationDate", "")), i["Name"]))
                log.info("using Deep Learning AMI %s (%s)", newest["ImageId"], newest["Name"])
                return str(newest["ImageId"]), str(newest.get("RootDeviceName") or "/dev/sda1")
        raise NotFoundError(
            f"no AWS Deep Learning AMI for {architecture} found in {self.clients.region}; "
            "set [aws] ami or pass --ami"
        )

    def _run_instances_sync(self, params: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.clients.ec2.run_instances(**params)
        return dict(response["Instances"][0])

    def _create_sync(self, spec: CreateSpec, extra_tags: dict[str, str]) -> CreateOutcome:
        aws = self.aws
        instance_type = spec.machine_type or aws.instance_type
        fallback = spec.fallback or aws.spot_fallback
        if fallback not in FALLBACK_CHOICES:
            raise ConfigError(
                f"spot fallback must be one of {', '.join(FALLBACK_CHOICES)}, found {fallback!r}"
            )
        ami, root_device = self._resolve_ami_sync(spec.image, instance_type)
        on_demand = self.price_table.on_demand(instance_type)
        name = spec.name or f"runctl-{instance_type}"
        tags = {"Name": name, MANAGED_TAG: "true", **extra_tags}
        params: dict[str, Any] = {
            "ImageId": ami,
            "InstanceType": instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "BlockDeviceMappings": [
                {
                    "DeviceName": root_device,
                    "Ebs": {
                        "VolumeSize": int(spec.disk_gb or aws.root_volume_gb),
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ],
        }
        if aws.key_name:
            params["KeyName"] = aws.key_name
        if aws.security_group_ids:
            params["SecurityGroupIds"] = list(aws.security_group_ids)
        if aws.subnet_id:
            params["SubnetId"] = aws.subnet_id
        if aws.iam_instance_profile:
            params["IamInstanceProfile"] = {"Name": aws.iam_instance_profile}

        def with_tags(market: str, fell_back: bool) -> dict[str, Any]:
            all_tags = {**tags, TAG_MARKET: market}
            if fell_back:
                all_tags[TAG_FALLBACK] = "spot-refused"
            tag_list = [{"Key": k, "Value": v} for k, v in all_tags.items()]
            return {
                **params,
                "TagSpecifications": [
                    {"ResourceType": "instance", "Tags": tag_list},
                    {"ResourceType": "volume", "Tags": tag_list},
                ],
            }

        if not spec.spot:
            with aws_errors(f"launch an on-demand {instance_type}"):
                item = self._run_instances_sync(with_tags("on-demand", False))
            price = f"~${on_demand:.4f}/h (estimate)" if on_demand is not None else "unknown $/h"
            machine = self._machine_from_item(item)
            return CreateOutcome(
                machine, False, False, f"Launched on-demand {instance_type} {machine.id}, {price}."
            )

        max_price = spec.max_price if spec.max_price is not None else (aws.spot_max_price or None)
        spot_options: dict[str, Any] = {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        }
        if max_price is not None:
            spot_options["MaxPrice"] = f"{max_price:.4f}"
            cap = f"max price ${max_price:.4f}/h"
        else:
            # No MaxPrice: AWS caps a spot bid at the current on-demand price itself, which is
            # always right, unlike any figure of ours (the table can be stale).
            cap = "max price = the on-demand price" + (
                f" (~${on_demand:.4f}/h)" if on_demand is not None else ""
            )
        spot_params = with_tags("spot", False)
        spot_params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot_options}
        try:
            spot_price = self._spot_prices_sync([instance_type]).get(instance_type)
        except BackendError:
            spot_price = None
        try:
            with aws_errors(f"launch a spot {instance_type}"):
                try:
                    item = self._run_instances_sync(spot_params)
                except Exception as exc:
                    code = _client_error_code(exc)
                    if code not in NO_SPOT_CAPACITY_CODES:
                        raise
                    message = scrub(
                        str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
                    )
                    raise _SpotRefused(f"{code}: {message}".rstrip(": ")) from None
        except _SpotRefused as refused:
            prices = describe_prices(on_demand, spot_price)
            log.warning("spot refused for %s: %s; fallback=%s", instance_type, refused, fallback)
            if fallback == "never":
                raise BackendError(
                    f"no spot capacity for {instance_type} ({refused}); {prices}. "
                    '[aws] spot_fallback = "never", so nothing was launched.'
                ) from None
            if fallback == "ask":
                raise SpotFallbackRequired(
                    instance_type, spot_price, on_demand, str(refused)
                ) from None
            with aws_errors(f"launch an on-demand {instance_type}"):
                item = self._run_instances_sync(with_tags("on-demand", True))
            machine = self._machine_from_item(item)
            return CreateOutcome(
                machine,
                True,
                True,
                f"Spot capacity for {instance_type} was refused ({refused}); launched "
                f"on-demand {machine.id} instead: {prices}.",
            )
        machine = self._machine_from_item(item)
        now = f"${spot_price:.4f}/h now" if spot_price is not None else "price unknown"
        return CreateOutcome(
            machine,
            True,
            False,
            f"Launched spot {instance_type} {machine.id}: {now}, {cap}.",
        )

    def _machine_from_item(self, item: dict[str, Any]) -> Machine:
        instance_type = str(item.get("InstanceType", ""))
        gpus = self._gpu_info_sync([instance_type])
        spot = {}
        if item.get("InstanceLifecycle") == "spot":
            with contextlib.suppress(BackendError):
                spot = self._spot_prices_sync([instance_type])
        return self._to_machine(item, gpus, spot)

    async def create_instance(
        self, spec: CreateSpec, *, tags: dict[str, str] | None = None
    ) -> CreateOutcome:
        """Launch an instance; spot when `spec.spot`, with the configured fallback.

        Args:
            spec: Type (`machine_type`), AMI (`image`), `disk_gb`, `spot`, `max_price`
                (None: the on-demand price), `fallback` (None: `[aws] spot_fallback`).
            tags: Extra tags (run metadata) for the instance and its volume.

        Returns:
            The machine in its first state and a sentence saying what was launched at what price.

        Raises:
            SpotFallbackRequired: Spot was refused and the fallback is `ask`.
            BackendError: Spot was refused with fallback `never`, or AWS refused the request.
        """
        outcome = await asyncio.to_thread(self._create_sync, spec, dict(tags or {}))
        log.info("%s", outcome.message)
        return outcome

    async def create(self, spec: CreateSpec) -> Machine:
        """Backend interface: `create_instance` without the outcome sentence."""
        return (await self.create_instance(spec)).machine

    # -- waiting --------------------------------------------------------------------------

    async def wait_until_ready(
        self,
        instance_id: str,
        on_state: Callable[[str], None] | None = None,
        *,
        timeout: float | None = None,
    ) -> Machine:
        """Wait for `running`, then for SSH to answer, reporting each state as it changes.

        Args:
            instance_id: The instance.
            on_state: Called with a short description at each change (`pending`, `running`,
                `waiting for SSH on host:port`, `SSH answers on host:port`).
            timeout: Seconds in all; None: `[aws] wait_timeout_seconds`.

        Returns:
            The running machine.

        Raises:
            BackendError: The instance ended up stopped/terminated/interrupted, or the wait
                timed out (the message says in which state).
        """
        deadline = time.monotonic() + (timeout or self.aws.wait_timeout_seconds)
        report = on_state or (lambda _text: None)
        last = ""
        while True:
            machine = await self.get_machine(instance_id)
            if machine.raw_state != last:
                last = machine.raw_state
                reason = f" ({machine.state_reason})" if machine.state_reason else ""
                report(f"{machine.raw_state}{reason}")
            if machine.state is MachineState.RUNNING:
                break
            if machine.state not in (MachineState.PROVISIONING, MachineState.STARTING):
                raise BackendError(
                    f"instance {instance_id} is {machine.raw_state}"
                    f"{' (' + machine.state_reason + ')' if machine.state_reason else ''} "
                    "instead of running"
                )
            if time.monotonic() > deadline:
                raise BackendError(f"instance {instance_id} still {last} after the wait timeout")
            await asyncio.sleep(self.poll_interval)
        if machine.ssh is None:
            raise BackendError(f"instance {instance_id} has no IP address to SSH to")
        target = f"{machine.ssh.host}:{machine.ssh.port}"
        report(f"waiting for SSH on {target}")
        while not await ssh_answers(machine.ssh.host, machine.ssh.port):
            if time.monotonic() > deadline:
                raise BackendError(
                    f"instance {instance_id} is running but SSH on {target} did not answer "
                    "in time; check the security group allows port 22 from here"
                )
            await asyncio.sleep(self.poll_interval)
        report(f"SSH answers on {target}")
        return machine

    # -- lifecycle ------------------------------------------------------------------------

    def _lifecycle_sync(self, verb: str, instance_id: str) -> None:
        ec2 = self.clients.ec2
        call = {
            "stop": ec2.stop_instances,
            "start": ec2.start_instances,
            "terminate": ec2.terminate_instances,
        }[verb]
        with aws_errors(f"{verb} {instance_id}"):
            call(InstanceIds=[instance_id])
        log.info("%s %s", verb, instance_id)

    async def stop(self, machine_id: str) -> Machine:
        """Stop an instance (EBS kept, compute billing stops)."""
        await asyncio.to_thread(self._lifecycle_sync, "stop", machine_id)
        return await self.get_machine(machine_id)

    async def start(self, machine_id: str) -> Machine:
        """Start a stopped instance."""
        await asyncio.to_thread(self._lifecycle_sync, "start", machine_id)
        return await self.get_machine(machine_id)

    async def terminate(self, machine_id: str) -> None:
        """Terminate an instance and its root volume, and forget its SSH host key.

        The key is forgotten (unless the address is an `ssh_host_overrides` target, a tunnel
        or bastion that outlives the instance) so a new instance that gets the same public
        IP is trusted on first use instead of refused as a changed key.
        """
        machine = await self.get_machine(machine_id)
        await asyncio.to_thread(self._lifecycle_sync, "terminate", machine_id)
        await asyncio.to_thread(_record_end, machine)
        if machine.ssh is not None and not self._ssh_overridden(machine):
            from runctl_tui.core.ssh import forget_host_key

            await asyncio.to_thread(forget_host_key, machine.ssh.host, machine.ssh.port)

    def _ssh_overridden(self, machine: Machine) -> bool:
        overrides = self.aws.ssh_host_overrides
        keys = {machine.id, "*"}
        return any(key in overrides for key in keys) or any(
            value and value in overrides
            for value in (machine.tags.get("public_ip", ""), machine.tags.get("private_ip", ""))
        )

    def _tag_sync(self, instance_id: str, tags: dict[str, str]) -> None:
        with aws_errors(f"tag {instance_id}"):
            self.clients.ec2.create_tags(
                Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )

    async def tag(self, instance_id: str, tags: dict[str, str]) -> None:
        """Add or overwrite tags on an instance (run metadata)."""
        await asyncio.to_thread(self._tag_sync, instance_id, tags)

    async def aclose(self) -> None:
        """Nothing to release: boto3 clients hold pooled connections that close with them."""
        return


class _SpotRefused(Exception):
    """Internal: RunInstances said there is no spot capacity."""


def _record_end(machine: Machine) -> None:
    """Keep a terminated instance's cost in today's spend (the spend ledger); EC2 has no
    per-instance bill to ask later. A ledger that cannot be written never fails a terminate."""
    from runctl_tui.core.spend import record_machine_end

    try:
        record_machine_end(machine, time.time())
    except (RunctlError, OSError) as exc:
        log.warning("spend of %s not recorded: %s", machine.id, exc)


def _actions_for(state: MachineState) -> tuple[str, ...]:
    if state is MachineState.RUNNING:
        return ("stop", "terminate")
    if state is MachineState.STOPPED:
        return ("start", "terminate")
    if state in (MachineState.PROVISIONING, MachineState.STARTING, MachineState.STOPPING):
        return ("terminate",)
    return ()


async def ssh_answers(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether an SSH server answers on host:port (it sends its `SSH-` banner).

    Args:
        host: Host name or IP.
        port: TCP port.
        timeout: Seconds for connecting and reading the banner.
    """
    writer = None
    try:
        reader, writer = await wait_for(asyncio.open_connection(host, port), timeout)
        banner = await wait_for(reader.readline(), timeout)
        return banner.startswith(b"SSH-")
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
