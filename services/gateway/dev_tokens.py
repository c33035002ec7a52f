"""Development tokens: `POST /dev/tokens` mints a bearer token for the scopes a developer
picks in the console's sign-in, when `SKYBRIDGE_GATEWAY_DEV_TOKENS=true` (`make run`; the
settings refuse it without development keys, so never in production).

Body (JSON): `{"subject": "ada", "tenant": "contoso", "scopes": ["orbit.read"],
"ttlSeconds": 3600}`; answer: `{"token": "<jwt>", "expiresInSeconds": 3600}`. Each field is
checked; a bad one is INVALID_ARGUMENT naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared import errors
from shared.auth import TokenMinter

#: Largest body read.
MAX_BODY_BYTES = 4096
MAX_SCOPES = 16
MIN_TTL_SECONDS = 60.0
MAX_TTL_SECONDS = 86_400.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_SCOPE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class TokenRequest:
    subject: str
    tenant: str
    scopes: tuple[str, ...]
    ttl_seconds: float


def parse(body: bytes) -> TokenRequest:
    """The request in `body`, or InvalidArgument naming every bad field."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise errors.InvalidArgument("the body is not JSON", reason="MALFORMED_REQUEST",
                                     violations=[("request", "is not JSON")]) from None
    if not isinstance(value, Mapping):
        raise errors.InvalidArgument("the body is not a JSON object",
                                     reason="MALFORMED_REQUEST",
                                     violations=[("request", "is not a JSON object")])
    problems = errors.Violations()
    unknown = sorted(set(value) - {"subject", "tenant", "scopes", "ttlSeconds"})
    for name in unknown[:4]:
        problems.add(str(name)[:64], "is not a field of the request")
    names: dict[str, str] = {}
    for field in ("subject", "tenant"):
        text = value.get(field)
        if problems.check(isinstance(text, str) and _NAME.fullmatch(text) is not None, field,
                          "must be 1-64 letters, digits or ._@- starting with a letter or "
                          "digit"):
            names[field] = str(text)
    scopes = value.get("scopes")
    if problems.check(isinstance(scopes, list) and 0 < len(scopes) <= MAX_SCOPES, "scopes",
                      f"must be a list of 1 to {MAX_SCOPES} scopes"):
        assert isinstance(scopes, list)
        for index, scope in enumerate(scopes):
            problems.check(isinstance(scope, str) and _SCOPE.fullmatch(scope) is not None,
                           f"scopes[{index}]", "is not a scope (lower-case, e.g. orbit.read)")
    ttl = value.get("ttlSeconds", 3600)
    problems.check(isinstance(ttl, int | float) and not isinstance(ttl, bool)
                   and MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS, "ttlSeconds",
                   f"must be a number of seconds from {MIN_TTL_SECONDS:g} to "
                   f"{MAX_TTL_SECONDS:g}")
    problems.raise_if_any("the token request has invalid fields")
    return TokenRequest(subject=names["subject"], tenant=names["tenant"],
                        scopes=tuple(scopes),  # type: ignore[arg-type]  # checked above
                        ttl_seconds=float(ttl))


def mint(minter: TokenMinter, request: TokenRequest) -> dict[str, object]:
    token = minter.mint(request.subject, request.scopes, request.tenant, request.ttl_seconds)
    return {"token": token, "expiresInSeconds": request.ttl_seconds}
