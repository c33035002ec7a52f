"""Bearer-token authentication and per-method scopes.

Tokens are JWTs signed with Ed25519 (`EdDSA`), carrying:

- `sub`: the caller (a person, a customer application, or `service:<name>`);
- `scope`: space-separated scopes (OAuth 2.0 style), e.g. `orbit.read defense`;
- `tenant`: the organisation the caller acts for; customers see only their tenant's data;
- `iss`, `aud`, `iat`, `exp`: checked on every call.

A servicer declares next to each method what it needs with `@requires(...)`; the auth
interceptor refuses a call with UNAUTHENTICATED when the token is missing, forged or expired,
and with PERMISSION_DENIED when it holds none of the method's scopes. A method without a
declaration is refused: access is closed by default. The handler reads the caller with
`current_principal()`.

`make run` creates a development key pair under `var/keys/` on first start; production keys
come from `SKYBRIDGE_JWT_PUBLIC_KEY` / `SKYBRIDGE_JWT_PRIVATE_KEY`. `python -m shared.tokens`
mints tokens.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.errors import PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey, Ed448PublicKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from shared.config import Settings

ALGORITHM = "EdDSA"
#: The scope a service's own token carries besides the ones it names.
SERVICE_SCOPE = "service"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of the current RPC."""

    subject: str
    scopes: frozenset[str]
    tenant: str
    expires_at: float

    def has(self, *scopes: str) -> bool:
        """True when the caller holds at least one of `scopes`."""
        return not self.scopes.isdisjoint(scopes)


#: A servicer method (or any callable) that `requires` or `public` marks.
F = TypeVar("F", bound=Callable[..., Any])


class _Declared(Protocol):
    """A method marked with its scopes."""

    __skybridge_scopes__: frozenset[str]


_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "skybridge_principal", default=None
)


def current_principal() -> Principal:
    """The caller of the RPC being handled; raises UNAUTHENTICATED outside of one."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("no authenticated caller", reason="MISSING_CREDENTIALS")
    return principal


def bind_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _principal.set(principal)


def unbind_principal(token: contextvars.Token[Principal | None]) -> None:
    _principal.reset(token)


def requires(*scopes: str) -> Callable[[F], F]:
    """Declare the scopes a servicer method needs; holding any one of them is enough."""
    if not scopes:
        raise ValueError("requires() needs at least one scope; use public() for none")

    def mark(method: F) -> F:
        cast(_Declared, method).__skybridge_scopes__ = frozenset(scopes)
        return method

    return mark


def public(method: F) -> F:
    """Declare a method that needs no token at all (use sparingly)."""
    cast(_Declared, method).__skybridge_scopes__ = frozenset()
    return method


def declared_scopes(servicer: object, method_name: str) -> frozenset[str] | None:
    """The scopes a servicer declared for a method; None when it declared nothing."""
    method = getattr(servicer, method_name, None)
    return getattr(method, "__skybridge_scopes__", None)


def authorize(principal: Principal, needed: frozenset[str], method: str) -> None:
    if needed and principal.scopes.isdisjoint(needed):
        raise PermissionDenied(
            f"{method} needs one of the scopes: {', '.join(sorted(needed))}",
            reason="MISSING_SCOPE",
            metadata={"required_scopes": " ".join(sorted(needed))},
        )


class TokenVerifier:
    """Verifies bearer tokens, caching each valid token until it expires."""

    def __init__(self, public_key_pem: bytes, *, issuer: str, audience: str,
                 leeway_seconds: float = 30.0, cache_size: int = 10_000):
        # EdDSA verifies with an Ed25519 (or Ed448) key; jwt.decode refuses any other kind.
        self._key = cast("Ed25519PublicKey | Ed448PublicKey",
                         serialization.load_pem_public_key(public_key_pem))
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size

    def verify_header(self, authorization: str | None) -> Principal:
        """The principal for an `authorization` metadata value, or UNAUTHENTICATED."""
        if not authorization:
            raise Unauthenticated("missing bearer token in the authorization metadata",
                                  reason="MISSING_CREDENTIALS")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'",
                                  reason="MALFORMED_CREDENTIALS")
        return self.verify(token.strip())

    def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None:
            if cached.expires_at + self._leeway > now:
                return cached
            self._cache.pop(token, None)
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired", reason="TOKEN_EXPIRED") from None
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not valid", reason="TOKEN_INVALID") from None
        scope = claims.get("scope", "")
        tenant = claims.get("tenant", "")
        if not isinstance(scope, str) or not isinstance(tenant, str) or not tenant:
            raise Unauthenticated("the bearer token lacks a scope or tenant claim",
                                  reason="TOKEN_INVALID")
        principal = Principal(
            subject=str(claims["sub"]),
            scopes=frozenset(scope.split()),
            tenant=tenant,
            expires_at=float(claims["exp"]),
        )
        self._cache[token] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal


class TokenMinter:
    """Signs tokens with the private key (development, tests and service tokens)."""

    def __init__(self, private_key_pem: bytes, *, issuer: str, audience: str):
        # EdDSA signs with an Ed25519 (or Ed448) key; jwt.encode refuses any other kind.
        self._key = cast("Ed25519PrivateKey | Ed448PrivateKey",
                         serialization.load_pem_private_key(private_key_pem, password=None))
        self._issuer = issuer
        self._audience = audience

    def mint(self, subject: str, scopes: Iterable[str], tenant: str,
             ttl_seconds: float = 3600.0) -> str:
        now = int(time.time())
        claims = {
            "sub": subject,
            "scope": " ".join(sorted(set(scopes))),
            "tenant": tenant,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + int(ttl_seconds),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)


class ServiceCredentials:
    """The token a service sends on its own calls, re-minted before it expires."""

    TTL_SECONDS = 3600.0
    RENEW_BEFORE_SECONDS = 300.0

    def __init__(self, minter: TokenMinter, service: str, scopes: Iterable[str]):
        self._minter = minter
        self._subject = f"service:{service}"
        self._scopes = frozenset(scopes) | {SERVICE_SCOPE}
        self._token = ""
        self._renew_at = 0.0

    def authorization(self) -> str:
        now = time.time()
        if now >= self._renew_at:
            self._token = self._minter.mint(self._subject, self._scopes, "skybridge",
                                            self.TTL_SECONDS)
            self._renew_at = now + self.TTL_SECONDS - self.RENEW_BEFORE_SECONDS
        return f"Bearer {self._token}"


def ensure_dev_keys(private_path: Path, public_path: Path) -> bool:
    """Create an Ed25519 key pair when none exists; True when one was created."""
    if private_path.exists() and public_path.exists():
        return False
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    return True


def verifier_from_settings(settings: Settings) -> TokenVerifier:
    if settings.dev_keys:
        ensure_dev_keys(settings.jwt_private_key_path, settings.jwt_public_key_path)
    return TokenVerifier(settings.jwt_public_key_path.read_bytes(),
                         issuer=settings.jwt_issuer, audience=settings.jwt_audience)


def minter_from_settings(settings: Settings) -> TokenMinter:
    if settings.dev_keys:
        ensure_dev_keys(settings.jwt_private_key_path, settings.jwt_public_key_path)
    return TokenMinter(settings.jwt_private_key_path.read_bytes(),
                       issuer=settings.jwt_issuer, audience=settings.jwt_audience)
