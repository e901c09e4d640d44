"""The plain data the core hands to the CLI and the dashboard: machines, runs, prices.

Frozen dataclasses, no behaviour beyond derived values; every backend maps its provider's
answers onto these so the UI never sees a provider's own shapes.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class Provider(str, enum.Enum):
    """Where a machine lives."""

    LOCAL = "local"
    RUNPOD = "runpod"
    AWS = "aws"


class MachineState(str, enum.Enum):
    """A provider-neutral lifecycle state; `Machine.raw_state` keeps the provider's own word."""

    PROVISIONING = "provisioning"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    INTERRUPTED = "interrupted"
    """A spot instance taken back by the provider."""
    UNKNOWN = "unknown"

    @property
    def is_billing(self) -> bool:
        """Whether compute is (or may be) billed in this state."""
        return self in (
            MachineState.PROVISIONING,
            MachineState.STARTING,
            MachineState.RUNNING,
            MachineState.STOPPING,
            MachineState.UNKNOWN,
        )


class RunStatus(str, enum.Enum):
    """Status of a training run in the run registry."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    LOST = "lost"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        """Whether the run has ended."""
        return self is not RunStatus.RUNNING


@dataclass(frozen=True)
class SshEndpoint:
    """How to reach a machine over SSH."""

    host: str
    port: int = 22
    user: str = "root"
    key_path: str | None = None
    """Private key file; None: the SSH agent and the user's ~/.ssh defaults."""
    interactive_only: bool = False
    """True for RunPod's SSH proxy, which gives a shell but no exec, SFTP or port forwarding."""


@dataclass(frozen=True)
class GpuInfo:
    """Live utilisation of one GPU, where the provider reports it."""

    index: int
    utilisation_percent: float | None = None
    memory_percent: float | None = None


@dataclass(frozen=True)
class Machine:
    """One machine runs can be started on: this computer, a RunPod pod or an EC2 instance."""

    provider: Provider
    id: str
    name: str
    state: MachineState
    raw_state: str = ""
    """The provider's own status word (e.g. RunPod `EXITED`, EC2 `stopped`)."""
    state_reason: str = ""
    gpu_type: str = ""
    gpu_count: int = 0
    price_per_hour: float | None = None
    """$/h while running; None when unknown (local) or not billed."""
    price_is_estimate: bool = False
    """True when the price comes from a shipped table, not the provider's live answer."""
    spot: bool = False
    region: str = ""
    """Region (AWS) or data centre (RunPod)."""
    created_at: float | None = None
    """Epoch seconds."""
    started_at: float | None = None
    """Epoch seconds of the current uptime's start, for uptime and accrued cost."""
    accrued_cost: float | None = None
    """$ spent so far, from the provider where it reports it, else price x uptime."""
    ssh: SshEndpoint | None = None
    gpus: tuple[GpuInfo, ...] = ()
    actions: tuple[str, ...] = ()
    """Provider actions valid in the current state (RunPod's `actions`)."""
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def uptime_seconds(self, now: float | None = None) -> float | None:
        """Seconds since `started_at`, or None when not started."""
        if self.started_at is None:
            return None
        return max(0.0, (now if now is not None else time.time()) - self.started_at)

    def cost_so_far(self, now: float | None = None) -> float | None:
        """`accrued_cost` when known, else price x uptime, else None."""
        if self.accrued_cost is not None:
            return self.accrued_cost
        uptime = self.uptime_seconds(now)
        if uptime is None or self.price_per_hour is None:
            return None
        return self.price_per_hour * uptime / 3600.0

    @property
    def key(self) -> str:
        """A unique key across providers, e.g. `runpod:abc123`."""
        return f"{self.provider.value}:{self.id}"


@dataclass(frozen=True)
class GpuOffer:
    """A machine type that can be created, with its live price and availability."""

    provider: Provider
    id: str
    """Provider's id: RunPod GPU type id, EC2 instance type."""
    display_name: str
    gpu_count: int = 1
    memory_gb: float | None = None
    price_per_hour: float | None = None
    spot_price_per_hour: float | None = None
    """RunPod community / EC2 spot price, where offered."""
    price_is_estimate: bool = False
    available: bool | None = None
    """None when the provider did not say."""
    stock: str = ""
    """Provider's stock word (e.g. RunPod `High`/`Low`)."""


@dataclass(frozen=True)
class CreateSpec:
    """What to create; each backend reads the fields that apply to it."""

    provider: Provider
    machine_type: str
    """RunPod GPU type id or EC2 instance type."""
    name: str = ""
    gpu_count: int = 1
    spot: bool = False
    """EC2 spot, or RunPod COMMUNITY cloud."""
    max_price: float | None = None
    image: str = ""
    """Container image (RunPod) or AMI (AWS); empty: the config default."""
    disk_gb: int | None = None
    volume_gb: int | None = None
    data_centers: tuple[str, ...] = ()
    fallback: str | None = None
    """AWS spot fallback override: `on-demand` or `never`; None: the config's choice."""


@dataclass(frozen=True)
class Run:
    """One training run, as recorded in the run registry."""

    id: str
    backend: Provider
    machine: str
    """Machine id (`local` for this computer)."""
    script: str
    args: tuple[str, ...]
    cwd: str
    status: RunStatus
    started: float
    """Epoch seconds."""
    log_path: str
    checkpoint_dir: str
    interpreter: str = ""
    pid: int | None = None
    pid_start_time: float | None = None
    """Process start time, so a reused PID is never taken for the run."""
    ended: float | None = None
    exit_code: int | None = None
    note: str = ""
    """Free text: why it was lost, interrupted, resumed from what."""
