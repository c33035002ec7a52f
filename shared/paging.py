"""Opaque page tokens (AIP-158): a page's last key, bound to the request it came from.

A token is base64url JSON ``{"s": scope, "k": key}``; ``scope`` names the list and its
filters, so a token from one request is refused by another (INVALID_ARGUMENT naming
``page_token``), never silently misapplied.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from shared.errors import InvalidArgument

__all__ = ["decode_token", "encode_token"]


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
