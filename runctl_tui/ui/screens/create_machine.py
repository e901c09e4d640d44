"""The `c` form: create a RunPod pod or an EC2 instance, seeing its $/h before confirming."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from runctl_tui.core.backends.base import Backend
from runctl_tui.core.config import Config
from runctl_tui.core.models import CreateSpec, GpuOffer, Provider
from runctl_tui.core.secrets import scrub

TIERS: dict[Provider, tuple[tuple[str, str], ...]] = {
    Provider.RUNPOD: (
        ("Secure cloud (on-demand)", "secure"),
        ("Community cloud (cheaper)", "community"),
    ),
    Provider.AWS: (("On-demand", "on-demand"), ("Spot (can be interrupted)", "spot")),
}
"""Tier choices per provider; distinct values, so switching provider always shows its own."""
SPOT_TIERS = frozenset({"community", "spot"})


def offer_price(offer: GpuOffer, spot: bool) -> float | None:
    """$/h of one unit of the offer on the chosen tier."""
    return offer.spot_price_per_hour if spot else offer.price_per_hour


def offer_label(offer: GpuOffer) -> str:
    """One line per offer: name, memory, on-demand and spot price, availability."""
    parts = [offer.display_name]
    if offer.memory_gb:
        parts.append(f"{offer.memory_gb:g}GB")
    est = "~" if offer.price_is_estimate else ""
    if offer.price_per_hour is not None:
        parts.append(f"{est}${offer.price_per_hour:.2f}/h")
    if offer.spot_price_per_hour is not None:
        parts.append(f"spot ${offer.spot_price_per_hour:.2f}")
    if offer.available is False:
        parts.append("unavailable")
    elif offer.stock:
        parts.append(offer.stock)
    return "  ".join(parts)


def resulting_price(
    provider: Provider, offer: GpuOffer | None, spot: bool, count: int
) -> tuple[float | None, str]:
    """The $/h the new machine will cost, and a sentence explaining it.

    Args:
        provider: RunPod prices per GPU; EC2 per instance.
        offer: The chosen offer.
        spot: Community cloud / spot.
        count: GPUs per pod (RunPod only).

    Returns:
        ($/h or None, explanation).
    """
    if offer is None:
        return None, "choose a GPU / instance type"
    unit = offer_price(offer, spot)
    tier = "spot/community" if spot else "on-demand"
    if unit is None:
        return None, f"no {tier} price offered for {offer.display_name}"
    est = "~" if offer.price_is_estimate else ""
    if provider is Provider.RUNPOD:
        total = unit * count
        return total, f"{est}${total:.2f}/h ({count} x ${unit:.2f}, {tier})"
    note = " (estimate)" if offer.price_is_estimate else ""
    return unit, f"{est}${unit:.2f}/h ({tier}){note}"


class CreateMachineScreen(ModalScreen[CreateSpec | None]):
    """Choose provider, type, count, tier, image, disk and name; confirm with the price shown.

    Args:
        backends: The cloud backends that can create machines.
        config: Defaults for image, disk and type.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, backends: Mapping[Provider, Backend], config: Config) -> None:
        super().__init__()
        self.backends: dict[Provider, Backend] = {
            p: b for p, b in backends.items() if p is not Provider.LOCAL
        }
        self.config = config
        self.offers: dict[Provider, list[GpuOffer]] = {}
        self.offer_errors: dict[Provider, str] = {}

    def compose(self) -> ComposeResult:
        providers = list(self.backends)
        with Vertical(id="create-dialog", classes="dialog"):
            yield Static("Create a machine", classes="dialog-title")
            if not providers:
                yield Static(
                    "No cloud provider is configured. Set RUNPOD_API_KEY (or [runpod] api_key), "
                    "or configure AWS ([aws] region / AWS_PROFILE), then restart.",
                    id="create-none",
                    classes="dialog-error",
                )
                with Horizontal(classes="dialog-buttons"):
                    yield Button("Close", id="cancel", compact=True)
                return
            first = providers[0]
            with Vertical(classes="dialog-body"):
                with Horizontal(classes="dialog-row"):
                    with Vertical():
                        yield Label("Provider")
                        yield Select(
                            [(p.value, p) for p in providers],
                            value=first,
                            allow_blank=False,
                            id="provider",
                            compact=True,
                        )
                    with Vertical():
                        yield Label("Tier")
                        yield Select(
                            list(TIERS[first]),
                            value=self._default_tier(first),
                            allow_blank=False,
                            id="tier",
                            compact=True,
                        )
                yield Label("GPU / instance type")
                yield Select[str]([], prompt="loading offers…", id="offer", compact=True)
                yield Static("", id="offer-status", classes="dialog-note")
                with Horizontal(classes="dialog-row"):
                    with Vertical():
                        yield Label("GPUs (RunPod)")
                        yield Input("1", id="count", type="integer", compact=True)
                    with Vertical():
                        yield Label("Disk GB")
                        yield Input(
                            str(self._default_disk(first)), id="disk", type="integer", compact=True
                        )
                    with Vertical():
                        yield Label("Name")
                        yield Input("", id="name", placeholder="runctl-…", compact=True)
                yield Label("Image (RunPod) / AMI (AWS); empty: the config default")
                yield Input(self._default_image(first), id="image", compact=True)
            yield Static("choose a GPU / instance type", id="create-price", classes="dialog-price")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create", id="confirm", variant="primary", disabled=True, compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def _default_tier(self, provider: Provider) -> str:
        if provider is Provider.RUNPOD:
            return "community" if self.config.runpod.cloud_type == "COMMUNITY" else "secure"
        return "spot" if self.config.aws.spot else "on-demand"

    def _default_image(self, provider: Provider) -> str:
        return self.config.runpod.image if provider is Provider.RUNPOD else self.config.aws.ami

    def _default_disk(self, provider: Provider) -> int:
        if provider is Provider.RUNPOD:
            return int(self.config.runpod.container_disk_gb)
        return int(self.config.aws.root_volume_gb)

    def on_mount(self) -> None:
        if self.backends:
            self.query_one("#provider", Select).focus()
            self._load_offers(self.provider)

    @property
    def provider(self) -> Provider:
        """The provider chosen."""
        value = self.query_one("#provider", Select).value
        return value if isinstance(value, Provider) else next(iter(self.backends))

    @work(exclusive=True, group="offers", exit_on_error=False)
    async def _load_offers(self, provider: Provider) -> None:
        status = self.query_one("#offer-status", Static)
        if provider not in self.offers:
            status.update(f"asking {provider.value} for prices and availability…")
            try:
                offers = await self.backends[provider].offers()
            except Exception as exc:
                self.offer_errors[provider] = scrub(str(exc) or type(exc).__name__)
                self.offers[provider] = []
            else:
                self.offer_errors.pop(provider, None)
                self.offers[provider] = list(offers)
        if provider is not self.provider:
            return
        offers = self.offers[provider]
        select: Select[str] = self.query_one("#offer", Select)
        select.set_options([(offer_label(o), o.id) for o in offers])
        default = (
            self.config.runpod.gpu_type
            if provider is Provider.RUNPOD
            else self.config.aws.instance_type
        )
        if any(o.id == default for o in offers):
            select.value = default
        error = self.offer_errors.get(provider)
        if error:
            status.update(f"could not list {provider.value} offers: {error}")
            status.add_class("-error")
        else:
            status.remove_class("-error")
            estimated = any(o.price_is_estimate for o in offers)
            note = "; ~ marks estimated prices" if estimated else ", live prices"
            status.update(f"{len(offers)} types from {provider.value}{note}")
        self._update_price()

    @on(Select.Changed, "#provider")
    def _provider_changed(self, event: Select.Changed) -> None:
        provider = self.provider
        tier: Select[str] = self.query_one("#tier", Select)
        tier.set_options(list(TIERS[provider]))
        tier.value = self._default_tier(provider)
        self.query_one("#image", Input).value = self._default_image(provider)
        self.query_one("#disk", Input).value = str(self._default_disk(provider))
        self.query_one("#count", Input).disabled = provider is Provider.AWS
        offer: Select[str] = self.query_one("#offer", Select)
        offer.set_options([])
        self._load_offers(provider)

    @on(Select.Changed, "#offer")
    @on(Select.Changed, "#tier")
    @on(Input.Changed)
    def _inputs_changed(self, event: Any) -> None:
        self._update_price()

    def chosen_offer(self) -> GpuOffer | None:
        """The offer selected, if any."""
        value = self.query_one("#offer", Select).value
        return next((o for o in self.offers.get(self.provider, []) if o.id == value), None)

    def _spot(self) -> bool:
        return self.query_one("#tier", Select).value in SPOT_TIERS

    def _count(self) -> int | None:
        if self.provider is Provider.AWS:
            return 1
        text = self.query_one("#count", Input).value.strip()
        return int(text) if text.isdigit() and int(text) >= 1 else None

    def _update_price(self) -> None:
        offer = self.chosen_offer()
        count = self._count()
        button = self.query_one("#confirm", Button)
        label = self.query_one("#create-price", Static)
        if count is None:
            label.update("GPUs per pod must be a whole number, 1 or more")
            button.disabled = True
            return
        price, sentence = resulting_price(self.provider, offer, self._spot(), count)
        label.update(f"Resulting cost: {sentence}" if price is not None else sentence)
        disk = self.query_one("#disk", Input).value.strip()
        button.disabled = offer is None or (disk != "" and not disk.isdigit())

    def build_spec(self) -> CreateSpec | None:
        """The CreateSpec from the form, or None while it is incomplete."""
        offer = self.chosen_offer()
        count = self._count()
        if offer is None or count is None:
            return None
        disk = self.query_one("#disk", Input).value.strip()
        provider = self.provider
        return CreateSpec(
            provider=provider,
            machine_type=offer.id,
            name=self.query_one("#name", Input).value.strip(),
            gpu_count=count if provider is Provider.RUNPOD else offer.gpu_count,
            spot=self._spot(),
            image=self.query_one("#image", Input).value.strip(),
            disk_gb=int(disk) if disk.isdigit() else None,
        )

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        spec = self.build_spec()
        if spec is not None:
            self.dismiss(spec)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without creating anything."""
        self.dismiss(None)
