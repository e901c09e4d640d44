"""RunPod GPU pods through RunPod's REST API v2: list, create, wait, stop, start, terminate.

`RunPodBackend` answers the `Backend` protocol over `RunPodClient` (runpod_client.py) and maps
pods with runpod_models.py. Errors a user can fix become sentences: an action the pod's status
does not allow lists the actions it does allow; a create refused for capacity names GPU types
and data centres the catalog has in stock right now.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import time
from collections.abc import Callable
from typing import Any

from runctl_tui.core.aio import wait_for
from runctl_tui.core.backends.runpod_client import (
    RunPodBadRequestError,
    RunPodClient,
    RunPodConflictError,
    RunPodNotFoundError,
)
from runctl_tui.core.backends.runpod_logs import RunPodLogSource
from runctl_tui.core.backends.runpod_models import (
    gpu_type_to_offer,
    list_price,
    parse_time,
    pod_to_machine,
    stocked_data_centers,
)
from runctl_tui.core.config import Config
from runctl_tui.core.errors import BackendError, NotFoundError, RunctlError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.models import CreateSpec, GpuOffer, Machine, MachineState, Provider

log = get_logger("runpod")

BILLING_CACHE_SECONDS = 60.0
"""Billing changes slowly and costs quota: read it at most once a minute."""


class RunPodBackend:
    """RunPod pods as runctl machines.

    Args:
        config: The effective configuration (`[runpod]` section).
        client: A client to use instead of one built from the config (tests).
    """

    provider = Provider.RUNPOD

    def __init__(self, config: Config, *, client: RunPodClient | None = None) -> None:
        self.config = config
        self.client = client or RunPodClient.from_config(config)
        self._billing: dict[str, float] = {}
        self._billing_read = 0.0
        self._spend_cache: tuple[float, float, dict[str, float]] | None = None

    # -- Backend protocol ------------------------------------------------------------------------

    async def list_machines(self) -> list[Machine]:
        """Every pod of the account (newest first), with accrued cost from billing."""
        pods = await self.client.list_pods()
        billing = await self._accrued()
        machines = [self._machine(pod, billing) for pod in pods]
        machines.sort(key=lambda m: m.created_at or 0.0, reverse=True)
        return machines

    async def offers(self, *, cloud: str | None = None, count: int = 1) -> list[GpuOffer]:
        """The GPU catalog with list prices and pod stock for `count` GPUs in `cloud`."""
        tier = (cloud or self.config.runpod.cloud_type).upper()
        gpus = await self.client.list_gpu_types(availability=True, count=count, cloud=tier)
        return [gpu_type_to_offer(gpu, cloud=tier) for gpu in gpus]

    async def create(self, spec: CreateSpec) -> Machine:
        """Create a pod (SSH on, `22/tcp` exposed); returns it in its first state.

        Raises:
            BackendError: RunPod refused; for capacity the sentence names alternatives in stock.
        """
        body = self.create_body(spec)
        try:
            pod = await self.client.create_pod(body)
        except RunPodBadRequestError as exc:
            raise BackendError(await self._capacity_sentence(spec, exc.detail)) from None
        machine = self._machine(pod)
        log.info(
            "created pod %s (%s x%d, %s, %s) at $%s/h",
            machine.id,
            machine.gpu_type,
            machine.gpu_count,
            body.get("cloud"),
            machine.region,
            machine.price_per_hour,
        )
        return machine

    async def stop(self, machine_id: str) -> Machine:
        """Stop a pod (keeps its volume; compute billing stops)."""
        return await self._action(machine_id, "stop")

    async def start(self, machine_id: str) -> Machine:
        """Start a stopped pod."""
        return await self._action(machine_id, "start")

    async def restart(self, machine_id: str) -> Machine:
        """Restart a running pod's container."""
        return await self._action(machine_id, "restart")

    async def terminate(self, machine_id: str) -> None:
        """Terminate a pod: its container disk and volume are deleted."""
        try:
            await self.client.delete_pod(machine_id)
        except RunPodConflictError as exc:
            raise BackendError(
                f"RunPod refused to terminate pod {machine_id} ({exc.detail}); a pod that "
                "belongs to a cluster is terminated by deleting the cluster."
            ) from None
        log.info("terminated pod %s", machine_id)

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self.client.aclose()

    # -- beyond the protocol -----------------------------------------------------------------------

    async def get(self, pod_id: str) -> Machine:
        """One pod, fresh from the API."""
        return self._machine(await self.client.get_pod(pod_id))

    async def resolve(self, name_or_id: str) -> Machine:
        """The pod whose id, or else unique name, is `name_or_id`.

        Raises:
            NotFoundError: No pod has that id or name, or the name is ambiguous.
        """
        machines = await self.list_machines()
        for machine in machines:
            if machine.id == name_or_id:
                return machine
        named = [m for m in machines if m.name == name_or_id]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            ids = ", ".join(m.id for m in named)
            raise NotFoundError(
                f"{len(named)} RunPod pods are named '{name_or_id}' ({ids}); name one by its id."
            )
        try:
            return await self.get(name_or_id)
        except RunPodNotFoundError:
            pass
        known = ", ".join(f"{m.id} ({m.name})" for m in machines[:10]) or "none"
        raise NotFoundError(f"no RunPod pod has the id or name '{name_or_id}'. Your pods: {known}.")

    async def quote(self, gpu_type: str, count: int, cloud: str) -> tuple[float | None, str]:
        """The catalog's $/h for `count` x `gpu_type` in `cloud`, and its stock word."""
        for gpu in await self.client.list_gpu_types(availability=True, count=count, cloud=cloud):
            if gpu.get("id") == gpu_type:
                return list_price(gpu, cloud, count), str(gpu.get("availability") or "")
        known = ", ".join(str(g.get("id")) for g in await self.client.list_gpu_types())
        raise NotFoundError(
            f"RunPod's catalog has no GPU type '{gpu_type}'. Known types: {known} "
            "(`runctl runpod gpus` lists them with prices)."
        )

    def create_body(self, spec: CreateSpec) -> dict[str, Any]:
        """The `CreatePodRequest` body for `spec`, defaults from `[runpod]`."""
        section = self.config.runpod
        cloud = "COMMUNITY" if spec.spot else "SECURE"
        body: dict[str, Any] = {
            "name": spec.name or f"runctl-{time.strftime('%Y%m%d-%H%M%S')}",
            "image": spec.image or section.image,
            "gpu": {"id": spec.machine_type or section.gpu_type, "count": spec.gpu_count},
            "cloud": cloud,
            "disk": spec.disk_gb if spec.disk_gb is not None else section.container_disk_gb,
            "ports": ["22/tcp"],
            "startSsh": True,
        }
        volume = spec.volume_gb if spec.volume_gb is not None else section.volume_gb
        if volume:
            body["mounts"] = {"persistent": {"size": volume, "path": "/workspace"}}
        centres = list(spec.data_centers) or list(section.data_centers)
        if centres:
            body["dataCenterIds"] = centres
        return body

    async def wait_until_ready(
        self,
        pod_id: str,
        *,
        timeout: float = 900.0,
        poll_seconds: float = 3.0,
        on_change: Callable[[Machine, bool], None] | None = None,
        require_ssh: bool = True,
    ) -> Machine:
        """Poll until the pod is RUNNING and (when `require_ssh`) its sshd answers.

        Args:
            pod_id: The pod.
            timeout: Seconds before giving up.
            poll_seconds: Seconds between polls.
            on_change: Called with the machine and whether SSH answers, each time either
                changes.
            require_ssh: Also wait for an SSH banner on `ssh.direct`.

        Raises:
            BackendError: The pod stopped, failed, or was not ready within `timeout`.
        """
        deadline = time.monotonic() + timeout
        last: tuple[str, bool] | None = None
        while True:
            machine = await self.get(pod_id)
            ssh_ok = False
            if (
                machine.state is MachineState.RUNNING
                and require_ssh
                and machine.ssh is not None
                and not machine.ssh.interactive_only
            ):
                ssh_ok = await ssh_answers(machine.ssh.host, machine.ssh.port)
            seen = (machine.raw_state, ssh_ok)
            if seen != last and on_change is not None:
                on_change(machine, ssh_ok)
            last = seen
            if machine.state is MachineState.RUNNING and (ssh_ok or not require_ssh):
                return machine
            if machine.raw_state in ("EXITED", "ERROR", "TERMINATED"):
                raise BackendError(
                    f"pod {pod_id} became {machine.raw_state} while runctl waited for it to run"
                    + (f" ({machine.state_reason})" if machine.state_reason else "")
                    + "; `runctl runpod monitor "
                    + pod_id
                    + " --container` shows its container log."
                )
            if time.monotonic() >= deadline:
                where = (
                    "its SSH port never answered; was the pod's image built with sshd?"
                    if machine.state is MachineState.RUNNING
                    else f"it is still {machine.raw_state}"
                )
                raise BackendError(
                    f"pod {pod_id} was not ready after {timeout:.0f} s: {where} It keeps "
                    f"billing at ${machine.price_per_hour or 0:.2f}/h until you stop or "
                    f"terminate it (`runctl runpod terminate {pod_id} --yes`)."
                )
            await asyncio.sleep(poll_seconds)

    def container_logs(self, pod_id: str, *, source: str | None = "container") -> RunPodLogSource:
        """The pod's container log stream (SSE), resumable after a dropped connection."""
        return RunPodLogSource(self.client, pod_id, source=source)

    # -- helpers -----------------------------------------------------------------------------------

    def _machine(self, pod: dict[str, Any], billing: dict[str, float] | None = None) -> Machine:
        ssh_key = self.config.runpod.ssh_key or None
        accrued = (billing or self._billing).get(str(pod.get("id")))
        return pod_to_machine(pod, ssh_key=ssh_key, accrued_cost=accrued)

    async def _accrued(self) -> dict[str, float]:
        """$ billed per pod over the last 30 days (cached; an error leaves it unknown)."""
        if time.monotonic() - self._billing_read < BILLING_CACHE_SECONDS and self._billing_read:
            return self._billing
        try:
            data = await self.client.pod_billing(last_n=30, bucket="day")
        except RunctlError as exc:
            log.info("pod billing unavailable: %s", exc)
            return self._billing
        totals: dict[str, float] = {}
        for record in data.get("records") or []:
            pod_id = str(record.get("podId"))
            amount = record.get("totalAmount")
            if isinstance(amount, (int, float)):
                totals[pod_id] = totals.get(pod_id, 0.0) + float(amount)
        self._billing, self._billing_read = totals, time.monotonic()
        return totals

    async def spend_since(self, start: float) -> dict[str, float]:
        """$ RunPod billed each pod from `start` (epoch seconds) to now, terminated pods included.

        Hourly buckets from `GET /v2/billing/pods`; a bucket that began before `start` (a
        time zone not on a whole hour) counts in proportion. Cached for
        `BILLING_CACHE_SECONDS` per `start`.

        Raises:
            RunctlError: Billing could not be read.
        """
        cached = self._spend_cache
        fresh = cached is not None and time.monotonic() - cached[1] < BILLING_CACHE_SECONDS
        if cached is not None and fresh and cached[0] == start:
            return dict(cached[2])
        moment = _dt.datetime.fromtimestamp(start, tz=_dt.timezone.utc)
        data = await self.client.pod_billing(
            bucket="hour", start_time=moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        totals: dict[str, float] = {}
        for record in data.get("records") or []:
            amount = record.get("totalAmount")
            first = parse_time(record.get("startTime"))
            last = parse_time(record.get("endTime"))
            if not isinstance(amount, (int, float)) or first is None or last is None:
                continue
            share = 1.0
            if first < start < last:
                share = (last - start) / (last - first)
            elif last <= start:
                continue
            pod_id = str(record.get("podId"))
            totals[pod_id] = totals.get(pod_id, 0.0) + float(amount) * share
        self._spend_cache = (start, time.monotonic(), totals)
        return dict(totals)

    async def _action(self, pod_id: str, action: str) -> Machine:
        try:
            pod = await self.client.pod_action(pod_id, action)
        except RunPodConflictError as exc:
            raise BackendError(await self._conflict_sentence(pod_id, action, exc.detail)) from None
        if pod is None:
            return await self.get(pod_id)
        log.info("pod %s: %s -> %s", pod_id, action, pod.get("status"))
        return self._machine(pod)

    async def _conflict_sentence(self, pod_id: str, action: str, detail: str) -> str:
        try:
            machine = await self.get(pod_id)
        except RunctlError:
            return f"RunPod refused to {action} pod {pod_id}: {detail or 'not valid now'}."
        valid = ", ".join(machine.actions) or "none"
        return (
            f"cannot {action} pod {pod_id} while it is {machine.raw_state}; "
            f"valid actions now: {valid}."
        )

    async def _capacity_sentence(self, spec: CreateSpec, detail: str) -> str:
        body = self.create_body(spec)
        gpu_id, count, cloud = body["gpu"]["id"], body["gpu"]["count"], body["cloud"]
        refused = f"RunPod could not place {count} x {gpu_id} ({cloud})"
        if body.get("dataCenterIds"):
            refused += f" in {', '.join(body['dataCenterIds'])}"
        refused += f": {detail or 'no capacity'}"
        try:
            gpus = await self.client.list_gpu_types(availability=True, count=count, cloud=cloud)
        except RunctlError:
            return refused + ". `runctl runpod gpus` shows what is in stock."
        same = next((g for g in gpus if g.get("id") == gpu_id), None)
        hints: list[str] = []
        if same is not None:
            centres = [dc for dc, _ in stocked_data_centers(same)]
            if centres:
                hints.append(f"{gpu_id} is in stock in {', '.join(centres)} (--data-center)")
        others: list[tuple[int, float, str]] = []
        for gpu in gpus:
            if gpu.get("id") == gpu_id or gpu.get("availability") in (None, "NONE"):
                continue
            price = list_price(gpu, cloud, count)
            priced = f" at ${price:.2f}/h" if price is not None else ""
            rank = -{"HIGH": 3, "MEDIUM": 2, "LOW": 1}.get(str(gpu.get("availability")), 0)
            label = f"{gpu.get('id')} ({gpu.get('availability')} stock{priced})"
            others.append((rank, price if price is not None else float("inf"), label))
        if others:
            best = [label for _, _, label in sorted(others)[:4]]
            hints.append("other GPU types in stock: " + ", ".join(best))
        other_cloud = "COMMUNITY" if cloud == "SECURE" else "SECURE"
        if not hints:
            return (
                refused + f". Nothing in the catalog has {count} GPU(s) in stock in {cloud} "
                f"right now; try --cloud {other_cloud.lower()}, fewer GPUs, or later."
            )
        return refused + ". Try: " + "; ".join(hints) + "."


async def ssh_answers(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether an SSH server greets on host:port (reads its `SSH-` banner, no login)."""
    try:
        reader, writer = await wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        banner = await wait_for(reader.readline(), timeout)
        return banner.startswith(b"SSH-")
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
