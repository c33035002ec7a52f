"""Threat's resource names: `tracks/{id}`, `alerts/{id}`, `assets/{id}`, `sensors/{id}`."""

from __future__ import annotations

from shared.errors import InvalidArgument


def resource_id(name: str, collection: str, field: str = "name") -> int:
    """The positive integer id in `name` (`<collection>/<id>`); InvalidArgument naming
    `field` otherwise."""
    prefix = f"{collection}/"
    tail = name[len(prefix):] if name.startswith(prefix) else ""
    if not tail.isdigit() or int(tail) <= 0 or len(tail) > 18:
        raise InvalidArgument(f"{field} must look like {collection}/{{id}}",
                              violations=[(field, f"must be {collection}/<positive integer>")])
    return int(tail)
