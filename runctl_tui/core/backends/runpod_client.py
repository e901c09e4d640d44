"""The HTTP client of RunPod's REST API v2: Bearer auth, rate limits, retries, readable errors.

Every call has a timeout. Answers 429 and 5xx are retried with exponential backoff and jitter
(bounded by `[runpod] max_retries`), waiting at least what `Retry-After` asks; the `RateLimit`
header of every answer is read, and when a window is spent the next call waits for its reset
instead of hammering the API. Errors become `BackendError`s whose sentence says what to do; the
API key never appears in them, in the log, or in a chained exception (httpx's exceptions carry
the request, so they are re-raised without their context).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runctl_tui import __version__
from runctl_tui.core.config import Config
from runctl_tui.core.errors import BackendError, ConfigError, NotFoundError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.paths import user_config_file
from runctl_tui.core.secrets import register_secret, scrub

if TYPE_CHECKING:
    import httpx

log = get_logger("runpod")

_RATE_MEMBER = re.compile(r'"?(?P<name>[A-Za-z0-9_-]+)"?\s*((?:;\s*[A-Za-z]+=[^;,]+)*)')
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD"})
MAX_RATE_LIMIT_WAIT = 120.0
"""Longest wait for a rate-limit window to reset before giving up with an error."""


class RunPodAPIError(BackendError):
    """RunPod answered with an error status.

    Attributes:
        status: The HTTP status code.
        detail: RunPod's `detail` sentence (scrubbed).
        errors: RunPod's per-field validation errors, if any.
    """

    def __init__(
        self, message: str, *, status: int, detail: str = "", errors: list[str] | None = None
    ) -> None:
        super().__init__(scrub(message))
        self.status = status
        self.detail = scrub(detail)
        self.errors = [scrub(e) for e in errors or []]


class RunPodAuthError(RunPodAPIError):
    """The API key was missing, malformed or rejected (401)."""


class RunPodConflictError(RunPodAPIError):
    """The action is not valid in the pod's current status (409)."""


class RunPodBadRequestError(RunPodAPIError):
    """RunPod refused the request (400); on create this usually means no capacity."""


class RunPodNotFoundError(RunPodAPIError, NotFoundError):
    """The pod (or other resource) does not exist (404)."""


@dataclass(frozen=True)
class SseEvent:
    """One Server-Sent Event."""

    id: str | None
    event: str
    data: str


@dataclass
class RateLimitState:
    """What the last `RateLimit` header said, per window (`minute`, `hour`, `day`)."""

    remaining: dict[str, int] = field(default_factory=dict)
    reset_at: dict[str, float] = field(default_factory=dict)

    def blocked_until(self) -> tuple[str, float] | None:
        """The spent window with the latest reset, or None when quota remains."""
        spent = [(self.reset_at[name], name) for name, left in self.remaining.items() if left <= 0]
        if not spent:
            return None
        reset, name = max(spent)
        return name, reset


def parse_rate_limit(header: str) -> dict[str, tuple[int, int]]:
    """Parse `"minute";r=0;t=12, "hour";r=2800;t=1812` into {window: (remaining, reset_s)}.

    Args:
        header: The value of a `RateLimit` header (IETF ratelimit-headers structured list).

    Returns:
        Each window that carries both `r` and `t`; malformed members are skipped.
    """
    out: dict[str, tuple[int, int]] = {}
    for member in header.split(","):
        match = _RATE_MEMBER.match(member.strip())
        if not match:
            continue
        params = dict(
            part.strip().split("=", 1) for part in match.group(2).split(";") if "=" in part
        )
        try:
            out[match.group("name")] = (int(params["r"]), int(params["t"]))
        except (KeyError, ValueError):
            continue
    return out


def key_origin(config: Config) -> str:
    """Where the API key came from, in words, for error sentences."""
    variable = config.overrides.get("runpod.api_key")
    if variable:
        return f"the {variable} environment variable"
    if config.source is not None:
        return f"api_key in [runpod] of {config.source}"
    return "nowhere (no key is set)"


def how_to_set_key() -> str:
    """The sentence that tells a user how to give runctl a RunPod key."""
    return (
        "Create a key in the RunPod console (Settings > API Keys) and export it as "
        f"RUNPOD_API_KEY, or set api_key under [runpod] in {user_config_file()}."
    )


class RunPodClient:
    """Async client of the RunPod REST API v2.

    Args:
        api_key: The Bearer key.
        base_url: API root, e.g. `https://api.runpod.io`.
        timeout: Seconds for one call (connect, read, write, pool each).
        max_retries: Retries of a call answered 429 or 5xx (or, for reads, timed out).
        key_source: Where the key came from, for the 401 sentence.
        transport: An httpx transport (tests); None: a real connection pool.
        backoff_base: First backoff step in seconds (doubles each retry, with jitter).
        backoff_max: Upper bound of one backoff step.
        sleep: The sleep function (tests may record waits).
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.runpod.io",
        timeout: float = 30.0,
        max_retries: int = 5,
        key_source: str = "the RUNPOD_API_KEY environment variable",
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        # httpx is imported here, not at the top: importing it loads its CLI's dependencies
        # (rich among them), which neither the core nor `runctl --help` should pay for.
        import httpx

        if not api_key:
            raise ConfigError(f"no RunPod API key is set. {how_to_set_key()}")
        register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.key_source = key_source
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.rate_limit = RateLimitState()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": f"runctl-tui/{__version__}",
            },
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> RunPodClient:
        """A client built from `[runpod]` (api_key, api_url, timeout_seconds, max_retries)."""
        section = config.runpod
        if not section.api_key:
            raise ConfigError(f"no RunPod API key is set. {how_to_set_key()}")
        return cls(
            section.api_key,
            base_url=section.api_url,
            timeout=section.timeout_seconds,
            max_retries=section.max_retries,
            key_source=key_origin(config),
            **kwargs,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- the API -------------------------------------------------------------------------------

    async def list_pods(self) -> list[dict[str, Any]]:
        """`GET /v2/pods`: the account's pods."""
        data = await self._json("GET", "/v2/pods", what="listing pods")
        return list(data.get("pods", []))

    async def get_pod(self, pod_id: str) -> dict[str, Any]:
        """`GET /v2/pods/{id}`."""
        return dict(await self._json("GET", f"/v2/pods/{pod_id}", what=f"reading pod {pod_id}"))

    async def create_pod(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /v2/pods` with a `CreatePodRequest` body; returns the new pod."""
        return dict(
            await self._json("POST", "/v2/pods", json_body=dict(body), what="creating a pod")
        )

    async def pod_action(self, pod_id: str, action: str) -> dict[str, Any] | None:
        """`POST /v2/pods/{id}/action`; the updated pod, or None for `terminate` (204)."""
        response = await self._send(
            "POST",
            f"/v2/pods/{pod_id}/action",
            json_body={"action": action},
            what=f"asking pod {pod_id} to {action}",
        )
        if response.status_code == 204 or not response.content:
            return None
        return dict(self._decode(response, f"asking pod {pod_id} to {action}"))

    async def delete_pod(self, pod_id: str) -> None:
        """`DELETE /v2/pods/{id}`: terminate the pod and delete its disk."""
        await self._send("DELETE", f"/v2/pods/{pod_id}", what=f"terminating pod {pod_id}")

    async def list_gpu_types(
        self, *, availability: bool = False, count: int = 1, cloud: str = "SECURE"
    ) -> list[dict[str, Any]]:
        """`GET /v2/catalog/gpus`, with pod stock for `count` GPUs in `cloud` when asked."""
        params: dict[str, str] = {}
        if availability:
            params = {"include": "AVAILABILITY", "product": "POD", "count": str(count)}
            params["cloud"] = cloud
        data = await self._json(
            "GET", "/v2/catalog/gpus", params=params, what="reading the GPU catalog"
        )
        return list(data.get("gpus", []))

    async def pod_billing(
        self,
        *,
        pod_id: str | None = None,
        last_n: int = 30,
        bucket: str = "day",
        start_time: str | None = None,
    ) -> dict[str, Any]:
        """`GET /v2/billing/pods` for the last `last_n` buckets, or from `start_time` (RFC 3339)
        to now when given (optionally one pod)."""
        params = {"lastN": str(last_n), "bucketSize": bucket}
        if start_time is not None:
            params = {"startTime": start_time, "bucketSize": bucket}
        if pod_id:
            params["podId"] = pod_id
        return dict(
            await self._json("GET", "/v2/billing/pods", params=params, what="reading pod billing")
        )

    async def ssh_keys(self) -> list[str]:
        """`GET /v2/account/ssh-keys`: the public keys pods created with `startSsh` accept."""
        data = await self._json(
            "GET", "/v2/account/ssh-keys", what="reading the account's SSH keys"
        )
        return [str(k) for k in data.get("keys", [])]

    @asynccontextmanager
    async def stream_events(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        idle_timeout: float = 90.0,
    ) -> AsyncIterator[AsyncIterator[SseEvent]]:
        """Open a Server-Sent Events stream; yields an iterator of its events.

        Args:
            path: API path, e.g. `/v2/pods/abc/logs`.
            params: Query parameters.
            last_event_id: Resume after this event id (`Last-Event-ID`).
            idle_timeout: Seconds without a byte (events or keep-alives) before the read fails.
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        response = await self._send(
            "GET",
            path,
            params=params,
            headers=headers,
            what="opening the log stream",
            stream=True,
            read_timeout=idle_timeout,
        )
        try:
            yield _iter_sse(response)
        finally:
            await response.aclose()

    # -- machinery -------------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> dict[str, Any]:
        response = await self._send(method, path, params=params, json_body=json_body, what=what)
        return self._decode(response, what)

    def _decode(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise BackendError(
                f"RunPod answered {what} with something that is not JSON "
                f"(HTTP {response.status_code}); is [runpod] api_url ({self.base_url}) RunPod's API?"
            ) from None
        if not isinstance(data, dict):
            raise BackendError(f"RunPod answered {what} with an unexpected JSON shape.")
        return data

    def _backoff(self, attempt: int) -> float:
        step = min(self.backoff_max, self.backoff_base * float(2**attempt))
        return step / 2 + random.uniform(0, step / 2)

    def _note_rate_limit(self, response: httpx.Response) -> None:
        header = response.headers.get("RateLimit")
        if not header:
            return
        now = time.monotonic()
        for name, (remaining, reset) in parse_rate_limit(header).items():
            self.rate_limit.remaining[name] = remaining
            self.rate_limit.reset_at[name] = now + reset
            if remaining <= 0:
                log.info("RunPod %s rate-limit window spent; it resets in %d s", name, reset)

    async def _wait_for_quota(self, what: str) -> None:
        blocked = self.rate_limit.blocked_until()
        if blocked is None:
            return
        name, reset_at = blocked
        # A little past the reset, so the server's window has surely rolled over.
        wait = reset_at - time.monotonic() + 0.5 + random.uniform(0, 0.25)
        if wait <= 0:
            self.rate_limit.remaining.pop(name, None)
            return
        if wait > MAX_RATE_LIMIT_WAIT:
            raise BackendError(
                f"RunPod's {name} rate limit for this API key is used up, so runctl did not send "
                f"{what}; it resets in {wait / 60:.0f} min. Poll less often ([monitor] "
                "poll_seconds) or close other clients using the same key."
            )
        log.info("waiting %.1f s for RunPod's %s rate-limit window before %s", wait, name, what)
        await self._sleep(wait)
        self.rate_limit.remaining.pop(name, None)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> httpx.Response:
        import httpx

        timeout = httpx.Timeout(self.timeout, read=read_timeout or self.timeout)
        attempt = 0
        while True:
            await self._wait_for_quota(what)
            request = self._http.build_request(
                method,
                path,
                params=params,
                json=json_body,
                headers=headers,
                timeout=timeout,
            )
            started = time.monotonic()
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TimeoutException as exc:
                retry_ok = method in _IDEMPOTENT or isinstance(exc, httpx.ConnectTimeout)
                log.info("RunPod %s %s timed out (attempt %d)", method, path, attempt + 1)
                if retry_ok and attempt < self.max_retries:
                    await self._sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise BackendError(self._timeout_sentence(method, what)) from None
            except httpx.TransportError as exc:
                retry_ok = method in _IDEMPOTENT or isinstance(exc, httpx.ConnectError)
                log.info(
                    "RunPod %s %s failed: %s (attempt %d)",
                    method,
                    path,
                    scrub(str(exc)) or type(exc).__name__,
                    attempt + 1,
                )
                if retry_ok and attempt < self.max_retries:
                    await self._sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise BackendError(
                    f"cannot reach RunPod at {self.base_url} while {what}: "
                    f"{scrub(str(exc)) or type(exc).__name__}. Check your network, or "
                    "[runpod] api_url / RUNCTL_RUNPOD_API_URL."
                ) from None
            self._note_rate_limit(response)
            status = response.status_code
            log.debug(
                "RunPod %s %s -> %d in %.0f ms (attempt %d)",
                method,
                path,
                status,
                (time.monotonic() - started) * 1000,
                attempt + 1,
            )
            if status < 400:
                return response
            if stream:
                await response.aread()
                await response.aclose()
            if (status == 429 or status >= 500) and attempt < self.max_retries:
                delay = self._backoff(attempt)
                if status == 429:
                    delay = max(delay, self._retry_after(response))
                    if delay > MAX_RATE_LIMIT_WAIT:
                        raise self._error(response, what)
                log.info(
                    "RunPod %s %s answered %d; retrying in %.2f s", method, path, status, delay
                )
                self._forget_windows_reset_by(time.monotonic() + delay)
                await self._sleep(delay)
                attempt += 1
                continue
            raise self._error(response, what, attempts=attempt + 1)

    def _forget_windows_reset_by(self, moment: float) -> None:
        """Drop spent windows that reset before `moment` (the retry waits them out anyway)."""
        for name, reset_at in list(self.rate_limit.reset_at.items()):
            if reset_at <= moment + 0.5:
                self.rate_limit.remaining.pop(name, None)

    def _retry_after(self, response: httpx.Response) -> float:
        value = response.headers.get("Retry-After", "")
        if value.strip().isdigit():
            return float(value) + random.uniform(0, 0.1)
        blocked = self.rate_limit.blocked_until()
        if blocked is not None:
            return max(0.0, blocked[1] - time.monotonic())
        return 0.0

    def _timeout_sentence(self, method: str, what: str) -> str:
        sentence = (
            f"RunPod did not answer {what} within {self.timeout:g} s ([runpod] timeout_seconds)"
        )
        if method == "POST":
            return (
                sentence + "; the request may still have taken effect, so check "
                "`runctl runpod list` before trying again."
            )
        return sentence + f" after {self.max_retries + 1} attempts; try again later."

    def _error(self, response: httpx.Response, what: str, attempts: int = 1) -> RunPodAPIError:
        status = response.status_code
        detail, errors = "", []
        try:
            body = json.loads(response.content or b"{}")
            if isinstance(body, dict):
                detail = str(body.get("detail") or body.get("title") or "")
                errors = [str(e) for e in body.get("errors") or []]
        except ValueError:
            detail = response.text[:200]
        said = f" ({detail})" if detail else ""
        if status == 401:
            return RunPodAuthError(
                f"RunPod rejected the API key from {self.key_source}{said}. {how_to_set_key()}",
                status=status,
                detail=detail,
            )
        if status == 403:
            return RunPodAPIError(
                f"RunPod refused {what}: the API key from {self.key_source} lacks the permission"
                f"{said}. Give the key read/write access in the RunPod console (Settings > API Keys).",
                status=status,
                detail=detail,
            )
        if status == 404:
            return RunPodNotFoundError(
                f"RunPod found nothing for {what}{said}; `runctl runpod list` shows your pods.",
                status=status,
                detail=detail,
            )
        if status == 409:
            return RunPodConflictError(
                f"RunPod refused {what}{said}.", status=status, detail=detail
            )
        if status == 400:
            return RunPodBadRequestError(
                f"RunPod refused {what}{said}.", status=status, detail=detail, errors=errors
            )
        if status == 402:
            return RunPodAPIError(
                f"RunPod refused {what}: insufficient balance{said}. Add credit in the RunPod "
                "console (Billing) and try again.",
                status=status,
                detail=detail,
            )
        if status == 422:
            listed = "; ".join(errors) or detail
            return RunPodAPIError(
                f"RunPod rejected the request for {what} as invalid: {listed}. This is a bug in "
                "runctl or an unsupported option; please report it.",
                status=status,
                detail=detail,
                errors=errors,
            )
        if status == 429:
            wait = response.headers.get("Retry-After", "?")
            return RunPodAPIError(
                f"RunPod kept rate-limiting {what} after {attempts} attempts (it asks to wait "
                f"{wait} s){said}. Poll less often ([monitor] poll_seconds) or close other "
                "clients that use the same key.",
                status=status,
                detail=detail,
            )
        if status >= 500:
            return RunPodAPIError(
                f"RunPod failed {what} with HTTP {status}{said} after {attempts} attempts; "
                "RunPod may be having an outage, try again in a few minutes "
                "([runpod] max_retries sets how often runctl retries).",
                status=status,
                detail=detail,
            )
        return RunPodAPIError(
            f"RunPod answered {what} with HTTP {status}{said}.", status=status, detail=detail
        )


async def _iter_sse(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse an SSE body (the WHATWG event-stream format) into events."""
    event_id: str | None = None
    event_type = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SseEvent(event_id, event_type or "message", "\n".join(data))
            event_type, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value
        elif name == "event":
            event_type = value
    # An event cut off by the end of the stream is discarded, as the SSE standard says.
