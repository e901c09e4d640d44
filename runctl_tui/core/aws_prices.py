"""EC2 prices: on-demand $/h from a shipped, dated table; spot $/h from the EC2 API.

AWS's pricing API is a separate, slow service that needs extra permissions, so on-demand
prices come from `data/aws_on_demand_prices.json` (us-east-1 list prices, dated, with their
source), which `[aws] prices_file` can extend or replace type by type. Those figures are
estimates and are labelled as such (`Machine.price_is_estimate`). Spot prices are live:
`describe_spot_price_history` gives the current market price per availability zone.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from runctl_tui.core.errors import ConfigError

_SHIPPED = "aws_on_demand_prices.json"
_SPOT_PRODUCT = "Linux/UNIX"


@dataclass(frozen=True)
class PriceTable:
    """On-demand $/h by instance type, with where the figures come from."""

    prices: dict[str, float] = field(default_factory=dict)
    region: str = ""
    as_of: str = ""
    source: str = ""
    overridden_by: str = ""
    """The `[aws] prices_file` merged over the shipped table, if any."""

    def on_demand(self, instance_type: str) -> float | None:
        """The on-demand $/h of `instance_type`, or None when the table does not know it."""
        return self.prices.get(instance_type)


def _validate(data: Any, origin: str) -> dict[str, float]:
    if not isinstance(data, dict) or not isinstance(data.get("prices"), dict):
        raise ConfigError('price file must be a JSON object with a "prices" object', origin)
    prices: dict[str, float] = {}
    for name, value in data["prices"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(
                f"price of {name!r} must be a non-negative number of $/h, found {value!r}",
                origin,
            )
        prices[str(name)] = float(value)
    return prices


def load_price_table(prices_file: str = "") -> PriceTable:
    """The shipped on-demand table, with `prices_file` (if given) merged over it.

    Args:
        prices_file: `[aws] prices_file`: a JSON file shaped like the shipped one
            (`{"prices": {"g5.xlarge": 1.006}, "as_of": ..., "source": ...}`).

    Returns:
        The merged table; types in `prices_file` win.

    Raises:
        ConfigError: The override file is missing, not JSON, or has a non-numeric price.
    """
    text = resources.files("runctl_tui.core.data").joinpath(_SHIPPED).read_text("utf-8")
    shipped = json.loads(text)
    prices = _validate(shipped, _SHIPPED)
    as_of = str(shipped.get("as_of", ""))
    source = str(shipped.get("source", ""))
    overridden = ""
    if prices_file:
        path = Path(prices_file).expanduser()
        try:
            data = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read [aws] prices_file: {exc.strerror}", path) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON: {exc.msg}", path, exc.lineno, exc.colno) from None
        prices.update(_validate(data, str(path)))
        overridden = str(path)
        if isinstance(data, dict):
            as_of = str(data.get("as_of", as_of))
            source = str(data.get("source", source))
    return PriceTable(
        prices=prices,
        region=str(shipped.get("region", "")),
        as_of=as_of,
        source=source,
        overridden_by=overridden,
    )


def current_spot_prices(ec2: Any, instance_types: list[str]) -> dict[str, float]:
    """The lowest current Linux spot price per instance type across the region's zones.

    Blocking (one paginated boto3 call): run it with `asyncio.to_thread`.

    Args:
        ec2: A boto3 EC2 client.
        instance_types: Types to price.

    Returns:
        `{instance_type: $/h}` for the types the API priced; types it did not price are absent.
    """
    if not instance_types:
        return {}
    # StartTime=now asks for the price in effect now (one entry per zone), not the history.
    now = _dt.datetime.now(_dt.timezone.utc)
    paginator = ec2.get_paginator("describe_spot_price_history")
    found: dict[str, float] = {}
    for page in paginator.paginate(
        InstanceTypes=sorted(set(instance_types)),
        ProductDescriptions=[_SPOT_PRODUCT],
        StartTime=now,
    ):
        for entry in page.get("SpotPriceHistory", []):
            try:
                price = float(entry["SpotPrice"])
            except (KeyError, ValueError):
                continue
            name = entry.get("InstanceType", "")
            if name and (name not in found or price < found[name]):
                found[name] = price
    return found


def describe_prices(on_demand: float | None, spot: float | None) -> str:
    """A sentence stating both prices, e.g. for a spot fallback question.

    Args:
        on_demand: On-demand $/h (an estimate from the table), if known.
        spot: Spot $/h (live), if known.

    Returns:
        E.g. `spot $0.3512/h (live), on-demand ~$1.0060/h (price table estimate)`.
    """
    spot_text = f"spot ${spot:.4f}/h (live)" if spot is not None else "spot price unknown"
    od_text = (
        f"on-demand ~${on_demand:.4f}/h (price table estimate)"
        if on_demand is not None
        else "on-demand price unknown (not in the price table)"
    )
    return f"{spot_text}, {od_text}"
