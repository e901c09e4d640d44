"""Whether a running pod or instance answers SSH yet, so training is offered only once it does.

A provider says RUNNING well before the machine's sshd accepts a login (the image is still
booting, cloud-init has not installed the key yet). `SshReadiness` logs in with the configured
key (`SshSession.connect`, then `true`) once per boot of each machine, retrying with backoff
until it succeeds; the dashboard shows `ssh…` until then and `ready` after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from runctl_tui.core.aio import wait_for
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.models import Machine, MachineState, Provider
from runctl_tui.core.secrets import scrub

_log = get_logger("ssh-ready")

PROBE_TIMEOUT_SECONDS = 8.0
"""Seconds for one login attempt (connect, handshake, authentication and `true`)."""
MAX_RETRY_SECONDS = 30.0
"""The longest wait between two attempts on a machine that does not answer yet."""

CHECKING = "checking"
WAITING = "waiting"
READY = "ready"


@dataclass(frozen=True)
class SshState:
    """What is known about one machine's SSH since it last started."""

    state: str
    """`checking` (first login attempt under way), `waiting` (an attempt failed), `ready`."""
    started_at: float | None
    """The machine's `started_at` this applies to (a restart is checked again)."""
    attempts: int = 0
    last_attempt: float = 0.0
    """Epoch seconds the last attempt ended."""
    error: str | None = None
    """Why the last attempt failed."""

    @property
    def word(self) -> str:
        """The word for the machine's row: `ssh…` until a login worked, then `ready`."""
        return "ready" if self.state == READY else "ssh…"


def wants_probe(machine: Machine) -> bool:
    """Whether this machine's SSH should be checked: a running cloud machine with direct SSH."""
    return (
        machine.provider is not Provider.LOCAL
        and machine.state is MachineState.RUNNING
        and machine.ssh is not None
        and not machine.ssh.interactive_only
    )


async def try_login(machine: Machine, timeout: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    """Log in to the machine with its endpoint's key and run `true`.

    Returns:
        None when that worked, else the reason (a sentence, secrets scrubbed).
    """
    from runctl_tui.core.ssh import SshSession

    assert machine.ssh is not None
    try:
        session = await wait_for(SshSession.connect(machine.ssh, timeout=timeout), timeout + 2)
        async with session:
            result = await session.run("true", timeout=timeout)
    except asyncio.CancelledError:
        raise
    except (TimeoutError, asyncio.TimeoutError):
        return f"SSH to {machine.ssh.host}:{machine.ssh.port} did not answer within {timeout:g} s"
    except Exception as exc:
        return scrub(str(exc) or type(exc).__name__)
    if result.exit_status != 0:
        return f"`true` exited with status {result.exit_status} over SSH"
    return None


class SshReadiness:
    """SSH state of every running cloud machine, checked once per boot.

    Args:
        interval: Seconds between the first retries (doubling up to `MAX_RETRY_SECONDS`).
        clock: Epoch-seconds clock.
        login: The login attempt (default `try_login`).
    """

    def __init__(
        self,
        interval: float = 2.0,
        clock: Callable[[], float] = time.time,
        login: Callable[[Machine], Awaitable[str | None]] | None = None,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._login = login or try_login
        self.states: dict[str, SshState] = {}
        self._busy: set[str] = set()

    def get(self, machine: Machine) -> SshState | None:
        """The SSH state of this machine's current boot, None when not checked."""
        found = self.states.get(machine.key)
        if found is None or not wants_probe(machine) or found.started_at != machine.started_at:
            return None
        return found

    def due(self, machines: Iterable[Machine]) -> list[Machine]:
        """Machines to check now; each is marked as being checked (call `check` for each).

        Args:
            machines: The machines just listed by a provider.
        """
        now = self.clock()
        due: list[Machine] = []
        for machine in machines:
            if not wants_probe(machine) or machine.key in self._busy:
                continue
            known = self.states.get(machine.key)
            if known is not None and known.started_at == machine.started_at:
                if known.state == READY:
                    continue
                wait = min(MAX_RETRY_SECONDS, self.interval * 2 ** max(0, known.attempts - 1))
                if now - known.last_attempt < wait:
                    continue
            else:
                self.states[machine.key] = SshState(CHECKING, machine.started_at)
            self._busy.add(machine.key)
            due.append(machine)
        return due

    async def check(self, machine: Machine) -> bool:
        """One login attempt; records the outcome.

        Returns:
            Whether the machine's state word changed (`ssh…` -> `ready`).
        """
        try:
            error = await self._login(machine)
        finally:
            self._busy.discard(machine.key)
        before = self.states.get(machine.key) or SshState(CHECKING, machine.started_at)
        if before.started_at != machine.started_at:
            before = SshState(CHECKING, machine.started_at)
        now = self.clock()
        if error is None:
            after = replace(before, state=READY, last_attempt=now, error=None)
        else:
            _log.info("%s not reachable yet: %s", machine.key, error)
            after = replace(
                before,
                state=WAITING,
                attempts=before.attempts + 1,
                last_attempt=now,
                error=str(error),
            )
        self.states[machine.key] = after
        return after.state != before.state or after.error != before.error

    def forget(self, keep: Iterable[str]) -> None:
        """Drop machines no longer listed."""
        wanted = set(keep)
        for key in list(self.states):
            if key not in wanted:
                del self.states[key]
