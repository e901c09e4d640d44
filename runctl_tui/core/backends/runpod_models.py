"""RunPod's JSON shapes (REST API v2 `Pod`, `GpuType`) mapped onto runctl's models."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from runctl_tui.core.models import GpuInfo, GpuOffer, Machine, MachineState, Provider, SshEndpoint

STATE_BY_STATUS: dict[str, MachineState] = {
    "PROVISIONING": MachineState.PROVISIONING,
    "STARTING": MachineState.STARTING,
    "RUNNING": MachineState.RUNNING,
    "EXITED": MachineState.STOPPED,
    "ERROR": MachineState.STOPPED,
    "TERMINATED": MachineState.TERMINATED,
}

STOCK_RANK = {"HIGH": 3, "MEDIUM": 2, "LOW": 1, "NONE": 0}


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 string, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _endpoint(block: Any, key_path: str | None, *, interactive_only: bool) -> SshEndpoint | None:
    if not isinstance(block, Mapping) or not block.get("host"):
        return None
    return SshEndpoint(
        host=str(block["host"]),
        port=int(block.get("port") or 22),
        user=str(block.get("username") or "root"),
        key_path=key_path,
        interactive_only=interactive_only,
    )


def ssh_endpoint(pod: Mapping[str, Any], key_path: str | None = None) -> SshEndpoint | None:
    """The pod's SSH endpoint: `ssh.direct`, else `ssh.proxy` (interactive shell only)."""
    ssh = pod.get("ssh") or {}
    if not isinstance(ssh, Mapping):
        return None
    direct = _endpoint(ssh.get("direct"), key_path, interactive_only=False)
    if direct is not None:
        return direct
    return _endpoint(ssh.get("proxy"), key_path, interactive_only=True)


def pod_to_machine(
    pod: Mapping[str, Any],
    *,
    ssh_key: str | None = None,
    accrued_cost: float | None = None,
    now: float | None = None,
) -> Machine:
    """Map a RunPod `Pod` object onto a `Machine`.

    Args:
        pod: The pod JSON, as `GET /v2/pods/{id}` returns it.
        ssh_key: Private key path for SSH (`[runpod] ssh_key`); None: agent and ~/.ssh.
        accrued_cost: $ billed so far for this pod (from `/v2/billing/pods`), when known.
        now: Epoch seconds, for the uptime fallback (default: the clock).

    Returns:
        The machine; `price_per_hour` is the pod's `cost` (0 while stopped), `started_at`
        the current uptime's start, `gpus` the live utilisation of `runtime.gpus`.
    """
    status = str(pod.get("status") or "")
    gpu = pod.get("gpu") or {}
    runtime = pod.get("runtime") or {}
    if not isinstance(runtime, Mapping):
        runtime = {}
    started_at = parse_time(pod.get("startedAt"))
    uptime = runtime.get("uptime")
    if started_at is None and isinstance(uptime, (int, float)) and status == "RUNNING":
        started_at = (now if now is not None else time.time()) - float(uptime)
    gpus = tuple(
        GpuInfo(
            index=index,
            utilisation_percent=_number(item.get("util")),
            memory_percent=_number(item.get("memoryUtil")),
        )
        for index, item in enumerate(runtime.get("gpus") or [])
        if isinstance(item, Mapping)
    )
    cloud = str(pod.get("cloud") or "")
    reason = ""
    if status == "ERROR":
        reason = "the container is in an error state; start or terminate the pod"
    tags = {"cloud": cloud, "image": str(pod.get("image") or "")}
    if pod.get("cudaVersion"):
        tags["cuda"] = str(pod["cudaVersion"])
    proxy = (pod.get("ssh") or {}).get("proxy") if isinstance(pod.get("ssh"), Mapping) else None
    if isinstance(proxy, Mapping) and proxy.get("command"):
        tags["ssh_proxy"] = str(proxy["command"])
    cost = _number(pod.get("cost"))
    return Machine(
        provider=Provider.RUNPOD,
        id=str(pod.get("id") or ""),
        name=str(pod.get("name") or ""),
        state=STATE_BY_STATUS.get(status, MachineState.UNKNOWN),
        raw_state=status,
        state_reason=reason,
        gpu_type=str(gpu.get("id") or "") if isinstance(gpu, Mapping) else "",
        gpu_count=int(gpu.get("count") or 1) if isinstance(gpu, Mapping) and gpu else 0,
        price_per_hour=cost,
        spot=cloud == "COMMUNITY",
        region=str(pod.get("dataCenterId") or ""),
        created_at=parse_time(pod.get("createdAt")),
        started_at=started_at,
        accrued_cost=accrued_cost,
        ssh=ssh_endpoint(pod, ssh_key),
        gpus=gpus,
        actions=tuple(str(a) for a in pod.get("actions") or []),
        tags=tags,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def gpu_type_to_offer(gpu: Mapping[str, Any], *, cloud: str = "SECURE") -> GpuOffer:
    """Map a catalog `GpuType` onto a `GpuOffer` (price per GPU; stock for `cloud` if asked).

    `price_per_hour` is the SECURE price, `spot_price_per_hour` the COMMUNITY one.
    """
    price = gpu.get("price") or {}
    availability = gpu.get("availability")
    return GpuOffer(
        provider=Provider.RUNPOD,
        id=str(gpu.get("id") or ""),
        display_name=str(gpu.get("name") or gpu.get("id") or ""),
        gpu_count=1,
        memory_gb=_number(gpu.get("memory")),
        price_per_hour=_number(price.get("secure")) if gpu.get("secure", True) else None,
        spot_price_per_hour=_number(price.get("community")) if gpu.get("community", True) else None,
        available=None if availability is None else availability != "NONE",
        stock=str(availability or ""),
    )


def list_price(gpu: Mapping[str, Any], cloud: str, count: int) -> float | None:
    """The catalog's $/h for `count` GPUs of this type in `cloud`, or None if not offered."""
    tier = "secure" if cloud == "SECURE" else "community"
    if gpu.get(tier) is False:
        return None
    price = (gpu.get("price") or {}).get(tier)
    number = _number(price)
    return None if number is None else round(number * count, 4)


def stocked_data_centers(gpu: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(data centre id, availability) of a catalog entry with stock, best stock first."""
    centres = [
        (str(dc.get("id")), str(dc.get("availability")))
        for dc in gpu.get("dataCenters") or []
        if isinstance(dc, Mapping) and dc.get("availability") not in (None, "NONE")
    ]
    return sorted(centres, key=lambda item: -STOCK_RANK.get(item[1], 0))
