"""The top line: total burn rate, spend today, how fresh each backend is, and a readonly badge."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import Static

from runctl_tui.core.fleet import FleetTotals, ProviderSnapshot
from runctl_tui.core.models import Provider
from runctl_tui.ui.widgets.machines_table import fmt_duration, fmt_money


def freshness(snapshot: ProviderSnapshot, now: float, interval: float) -> tuple[str, str]:
    """A short word for how fresh a backend's data is, and its style.

    Args:
        snapshot: The backend's last answer.
        now: Epoch seconds.
        interval: The poll interval; data older than two intervals is stale.

    Returns:
        (`✓`, `… 3m old`, `✗ error`, `… waiting`) and a style name.
    """
    if snapshot.error is not None:
        stale = ""
        if snapshot.fetched_at is not None:
            stale = f", data {fmt_duration(now - snapshot.fetched_at)} old"
        return f"✗ error{stale}", "bold red"
    if snapshot.fetched_at is None:
        return "… waiting", "yellow"
    age = now - snapshot.fetched_at
    if age > 2 * interval + 2:
        return f"… {fmt_duration(age)} old", "yellow"
    return "✓", "green"


def header_text(
    totals: FleetTotals,
    snapshots: Mapping[Provider, ProviderSnapshot],
    now: float,
    interval: float | Mapping[Provider, float],
    readonly: bool,
) -> Text:
    """The header line.

    Args:
        totals: Burn rate and spend today.
        snapshots: Each backend's last answer.
        now: Epoch seconds.
        interval: Seconds between polls (for staleness), or each backend's own (a quiet
            backend is polled less often).
        readonly: Whether the readonly badge shows.

    Returns:
        The rendered line.
    """
    text = Text()
    text.append(" runctl ", style="bold reverse")
    if readonly:
        text.append(" ")
        text.append(" READONLY ", style="bold reverse yellow")
    burn = ("~" if totals.burn_is_estimate else "") + fmt_money(totals.burn_per_hour)
    text.append("  burn ")
    text.append(f"{burn}/h", style="bold")
    text.append("  today ")
    # `~`: part of it is price x time, not yet what a provider billed.
    spent = ("~" if totals.spend_is_estimate else "") + fmt_money(totals.spend_today)
    text.append(spent, style="bold")
    if totals.unpriced:
        text.append(f" (+{totals.unpriced} unpriced)", style="yellow")
    text.append("  ")
    for provider, snapshot in snapshots.items():
        gap = interval if isinstance(interval, (int, float)) else interval.get(provider, 0.0)
        word, style = freshness(snapshot, now, gap)
        text.append(f" {provider.value} ")
        text.append(word, style=style)
    return text


class HeaderBar(Static):
    """One line of totals and backend freshness; redraws only when its text changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._shown: Text | None = None

    def show(
        self,
        totals: FleetTotals,
        snapshots: Mapping[Provider, ProviderSnapshot],
        now: float,
        interval: float | Mapping[Provider, float],
        readonly: bool,
    ) -> None:
        """Update the line (no-op when nothing visible changed).

        Args:
            totals: Burn rate and spend today.
            snapshots: Each backend's last answer.
            now: Epoch seconds.
            interval: Seconds between polls, or each backend's own.
            readonly: Whether the dashboard is readonly.
        """
        text = header_text(totals, snapshots, now, interval, readonly)
        if (
            self._shown is None
            or text.plain != self._shown.plain
            or text.spans != self._shown.spans
        ):
            self._shown = text
            # One line of fixed size (`#header`): a new figure needs no layout of the screen.
            self.update(text, layout=False)
