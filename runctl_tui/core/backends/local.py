"""This computer as a backend: one machine, always running, never billed by the hour.

It cannot be created, started, stopped or terminated from runctl; those calls raise a
`RunctlError` that says so. GPU details come from `nvidia-smi` when it is installed.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil

from runctl_tui.core.aio import wait_for
from runctl_tui.core.config import Config
from runctl_tui.core.errors import RunctlError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.models import CreateSpec, GpuInfo, GpuOffer, Machine, MachineState, Provider

MACHINE_ID = "local"
_NVIDIA_SMI_TIMEOUT = 3.0
_QUERY = "index,name,utilization.gpu,memory.used,memory.total"

_log = get_logger("backends.local")


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        # nvidia-smi prints `[N/A]` or `[Not Supported]` for what a GPU does not report.
        return None


def parse_nvidia_smi(output: str) -> tuple[list[str], list[GpuInfo]]:
    """Parse `nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total
    --format=csv,noheader,nounits` output.

    Args:
        output: The command's stdout.

    Returns:
        The GPU model names and their utilisation, in index order.
    """
    names: list[str] = []
    gpus: list[GpuInfo] = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != 5 or not cells[0].isdigit():
            continue
        index, name, util, used, total = cells
        used_mib, total_mib = _number(used), _number(total)
        memory = 100.0 * used_mib / total_mib if used_mib is not None and total_mib else None
        names.append(name)
        gpus.append(
            GpuInfo(index=int(index), utilisation_percent=_number(util), memory_percent=memory)
        )
    return names, gpus


class LocalBackend:
    """The `Backend` for this computer.

    Args:
        config: The effective configuration (unused today; kept for the common signature).
    """

    provider = Provider.LOCAL

    def __init__(self, config: Config) -> None:
        self.config = config
        self.hostname = platform.node() or "this computer"

    async def _gpus(self) -> tuple[list[str], list[GpuInfo]]:
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return [], []
        try:
            proc = await asyncio.create_subprocess_exec(
                smi,
                f"--query-gpu={_QUERY}",
                "--format=csv,noheader,nounits",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            _log.info("nvidia-smi could not run: %s", exc)
            return [], []
        try:
            stdout, _ = await wait_for(proc.communicate(), _NVIDIA_SMI_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            _log.info("nvidia-smi did not answer within %.0f s", _NVIDIA_SMI_TIMEOUT)
            return [], []
        if proc.returncode != 0:
            return [], []
        return parse_nvidia_smi(stdout.decode("utf-8", "replace"))

    async def list_machines(self) -> list[Machine]:
        """This computer, with its GPUs (when nvidia-smi reports them) and uptime."""
        names, gpus = await self._gpus()
        gpu_type = names[0] if names and len(set(names)) == 1 else ", ".join(sorted(set(names)))
        return [
            Machine(
                provider=Provider.LOCAL,
                id=MACHINE_ID,
                name=self.hostname,
                state=MachineState.RUNNING,
                raw_state="running",
                gpu_type=gpu_type,
                gpu_count=len(gpus),
                price_per_hour=None,
                started_at=_boot_time(),
                created_at=None,
                gpus=tuple(gpus),
                tags={
                    "os": f"{platform.system()} {platform.release()}",
                    "cpus": str(os.cpu_count() or 0),
                },
            )
        ]

    async def offers(self) -> list[GpuOffer]:
        """Nothing: this computer cannot be created or resized."""
        return []

    async def create(self, spec: CreateSpec) -> Machine:
        """Refused: runctl cannot create a local machine."""
        raise RunctlError(
            "runctl cannot create a local machine; this computer is always listed. "
            "Create a RunPod pod or an EC2 instance instead"
        )

    async def stop(self, machine_id: str) -> Machine:
        """Refused: runctl never shuts this computer down; stop a run instead."""
        raise RunctlError(
            "runctl does not stop this computer; stop a training run with `runctl stop RUN_ID`"
        )

    async def start(self, machine_id: str) -> Machine:
        """Refused: this computer is already running."""
        raise RunctlError("this computer is already running; there is nothing to start")

    async def terminate(self, machine_id: str) -> None:
        """Refused: runctl never destroys this computer."""
        raise RunctlError(
            "runctl cannot terminate this computer; only RunPod pods and EC2 instances can be "
            "terminated"
        )

    async def aclose(self) -> None:
        """Nothing to release."""
