"""Plans: what a plan sells (`PlanTerms`) and the bounds every plan keeps."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from . import validation


class PriorityClass(StrEnum):
    GOVERNMENT_PRIORITY = "GOVERNMENT_PRIORITY"
    ENTERPRISE = "ENTERPRISE"
    BEST_EFFORT = "BEST_EFFORT"


PRIORITY_CLASSES = tuple(PriorityClass)
MAX_QUANTITY = 100_000
MAX_BANDWIDTH_MBPS = 100_000.0


@dataclass(frozen=True)
class PlanTerms:
    """What a plan sells; a subscription keeps a copy of the terms it bought. Bandwidth in
    Mbit/s, prices as google.type.Money parts, regions as Azure region names (empty: all)."""

    bandwidth_mbps: float
    priority_class: str
    min_quantity: int
    max_quantity: int
    price_currency: str
    price_units: int
    price_nanos: int
    regions: tuple[str, ...] = field(default_factory=tuple)

    def problems(self, prefix: str = "terms") -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not (0 < self.bandwidth_mbps <= MAX_BANDWIDTH_MBPS):
            out.append((f"{prefix}.bandwidth_mbps",
                        f"must be above 0 and at most {MAX_BANDWIDTH_MBPS:g}"))
        if self.priority_class not in PRIORITY_CLASSES:
            out.append((f"{prefix}.priority_class", "is required"))
        if not 1 <= self.min_quantity <= MAX_QUANTITY:
            out.append((f"{prefix}.min_quantity", f"must be between 1 and {MAX_QUANTITY}"))
        if not self.min_quantity <= self.max_quantity <= MAX_QUANTITY:
            out.append((f"{prefix}.max_quantity",
                        f"must be between min_quantity and {MAX_QUANTITY}"))
        out += [(f"{prefix}.unit_price.{f}", d) for f, d in validation.money(
            self.price_currency, self.price_units, self.price_nanos)]
        if len(self.regions) > 100:
            out.append((f"{prefix}.regions", "at most 100 regions"))
        for i, name in enumerate(self.regions):
            bad = validation.region(name)
            if bad:
                out.append((f"{prefix}.regions[{i}]", bad))
        if len(set(self.regions)) != len(self.regions):
            out.append((f"{prefix}.regions", "must not repeat a region"))
        return out

    def quantity_problem(self, quantity: int) -> str | None:
        if not self.min_quantity <= quantity <= self.max_quantity:
            return (f"must be between the plan's bounds {self.min_quantity} and "
                    f"{self.max_quantity} (got {quantity})")
        return None

    def reaches(self, region: str) -> bool:
        return not self.regions or region in self.regions

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regions"] = list(self.regions)
        data["priority_class"] = str(self.priority_class)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanTerms:
        return cls(**{**data, "regions": tuple(data.get("regions", ()))})
