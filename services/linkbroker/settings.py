"""Link-broker settings, read from ``SKYBRIDGE_LINKBROKER_*`` environment variables.

| variable | default | meaning |
|---|---|---|
| CONSTELLATION_GROUP | groups/starlink-gen1 | the orbit group whose satellites carry traffic |
| TERMINAL_MIN_ELEVATION_DEG | 25 | terminals use satellites at or above this elevation |
| MAX_WINDOW_HOURS | 24 | longest link or estimate window |
| MAX_LEAD_DAYS | 7 | a window starts at most this far ahead |
| BLOCK_SLOTS | 240 | slots fetched from the orbit service at once (one hour) |
| GEOMETRY_BUDGET_MB | 1024 | memory for geometry (blocks, graphs, trees, paths); least recently used goes first |
| CATALOG_POLL_SECONDS | 30 | how often the broker asks orbit whether the catalog changed |
| SWEEP_SECONDS | 5 | how often expired links are closed and past ledger rows dropped |
| FEED_RETRY_SECONDS | 1 | pause before re-following provisioning's feed after an error |
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import EnvReader


@dataclass(frozen=True)
class BrokerSettings:
    constellation_group: str = "groups/starlink-gen1"
    terminal_min_elevation_deg: float = 25.0
    max_window_hours: float = 24.0
    max_lead_days: float = 7.0
    block_slots: int = 240
    geometry_budget_mb: float = 1024.0
    catalog_poll_seconds: float = 30.0
    sweep_seconds: float = 5.0
    feed_retry_seconds: float = 1.0

    @classmethod
    def from_env(cls) -> BrokerSettings:
        read = EnvReader(prefix="SKYBRIDGE_LINKBROKER_")
        d = cls()
        return cls(
            constellation_group=read.str("CONSTELLATION_GROUP", d.constellation_group),
            terminal_min_elevation_deg=read.float("TERMINAL_MIN_ELEVATION_DEG",
                                                  d.terminal_min_elevation_deg),
            max_window_hours=read.float("MAX_WINDOW_HOURS", d.max_window_hours),
            max_lead_days=read.float("MAX_LEAD_DAYS", d.max_lead_days),
            block_slots=read.int("BLOCK_SLOTS", d.block_slots),
            geometry_budget_mb=read.float("GEOMETRY_BUDGET_MB", d.geometry_budget_mb,
                                          minimum=1.0),
            catalog_poll_seconds=read.float("CATALOG_POLL_SECONDS", d.catalog_poll_seconds),
            sweep_seconds=read.float("SWEEP_SECONDS", d.sweep_seconds),
            feed_retry_seconds=read.float("FEED_RETRY_SECONDS", d.feed_retry_seconds),
        )
