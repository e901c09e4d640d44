"""The small set of calls every backend answers, so the dashboard treats providers alike.

A backend's SDK or HTTP client is imported lazily inside its module, so a missing or slow
dependency of one provider costs nothing at start-up and breaks nothing else.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from runctl_tui.core.models import CreateSpec, GpuOffer, Machine, Provider


@runtime_checkable
class Backend(Protocol):
    """A provider of machines. All calls are async and never block the event loop."""

    provider: Provider

    async def list_machines(self) -> list[Machine]:
        """The machines this backend knows, newest first."""
        ...

    async def offers(self) -> list[GpuOffer]:
        """What can be created, with live prices and availability."""
        ...

    async def create(self, spec: CreateSpec) -> Machine:
        """Ask for a new machine; returns it in its first (provisioning) state."""
        ...

    async def stop(self, machine_id: str) -> Machine:
        """Stop (keep the disk, stop compute billing)."""
        ...

    async def start(self, machine_id: str) -> Machine:
        """Start a stopped machine."""
        ...

    async def terminate(self, machine_id: str) -> None:
        """Destroy the machine and its disk."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
