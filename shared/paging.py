"""Pagination for every list of the suite (AIP-158): one page size rule and opaque tokens.

Page size: 0 asks for `DEFAULT_PAGE_SIZE` (100), a size above `MAX_PAGE_SIZE` (1,000) is
served at the maximum, a negative one is INVALID_ARGUMENT naming ``page_size``.

A token is base64url JSON ``{"s": scope, "k": key}``: a page's last key, bound to the
request it came from; ``scope`` names the list and its filters, so a token from one request
is refused by another (INVALID_ARGUMENT naming ``page_token``), never silently misapplied.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from shared.errors import InvalidArgument, Violations

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode_token", "encode_token", "page_size"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(value: int, check: Violations | None = None, field: str = "page_size") -> int:
    """The page size to serve for a requested ``value``. A negative one is a violation
    added to ``check`` (the default size is returned so other checks can go on), or
    INVALID_ARGUMENT when no ``check`` is given."""
    if value < 0:
        description = "must not be negative"
        if check is None:
            raise InvalidArgument(f"{field} {description}", violations=[(field, description)])
        check.add(field, description)
        return DEFAULT_PAGE_SIZE
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(scope: str, key: object) -> str:
    raw = json.dumps({"s": scope, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, scope: str, path: str = "page_token",
                 kinds: Sequence[type] | None = None) -> Any:
    """The key in ``token`` (None for an empty token). With ``kinds``, the key must be a
    list of one value of each kind (``float`` accepts an integer too)."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["s"] != scope:
            raise ValueError
        key = data["k"]
        if kinds is not None:
            if not isinstance(key, list) or len(key) != len(kinds):
                raise ValueError
            key = [float(v) if k is float and isinstance(v, int) and not isinstance(v, bool)
                   else v for v, k in zip(key, kinds, strict=True)]
            if not all(isinstance(v, k) for v, k in zip(key, kinds, strict=True)):
                raise ValueError
        return key
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(f"{path} is not valid for this request",
                              violations=[(path, "is not a token from a previous response "
                                                 "to the same request")]) from None
