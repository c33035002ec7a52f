"""Track life cycle: tentative -> confirmed (M-of-N) -> coasting -> dropped.

Vectorised over tracks.  An *opportunity* is one processed frame time (all
sensors reporting at that time); a *hit* is at least one associated detection
at that frame.  The last ``n`` opportunities are kept as a bit mask.

* tentative -> confirmed when at least ``m`` of the last ``n`` opportunities
  were hits;
* tentative -> dropped when ``m`` hits are no longer reachable within ``n``
  opportunities, or no hit for ``tentative_timeout_s``;
* confirmed -> coasting when no hit for ``coast_after_s`` seconds;
* coasting -> confirmed on the next hit;
* confirmed/coasting -> dropped when no hit for ``drop_after_s`` seconds, when
  the position 1-sigma exceeds ``max_position_sigma_m``, or when the estimate
  is below ``min_altitude_m`` (the object has hit the ground).

``drop_after_s`` is 900 s: a ballistic track coasting through a coverage gap of the
4-satellite train stays within tens of metres of its missile for many minutes (the
ballistic model is that good above the atmosphere), so it should wait to be
re-acquired.  At 300 s, tracks were dropped in gaps and the missile re-initiated
later as a new track, whose first frames were 1-2 km off (default seeds 14 and 15;
22 and 64 re-initiations in the two 100-target scenarios, now 0 and 44).  A
diverging track still goes by ``max_position_sigma_m``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class Status(enum.IntEnum):
    """Life-cycle codes, stored as int8 in the tracker's ``status`` column and compared
    vectorised (an IntEnum member is its int, so ``status == Status.DROPPED`` works on
    arrays; a StrEnum could not live in an int8 array)."""

    TENTATIVE = 0
    CONFIRMED = 1
    COASTING = 2
    DROPPED = 3


TENTATIVE = Status.TENTATIVE
CONFIRMED = Status.CONFIRMED
COASTING = Status.COASTING
DROPPED = Status.DROPPED
STATUS_NAMES = tuple(s.name.lower() for s in Status)
"""Lower-case names indexed by code: ("tentative", "confirmed", "coasting", "dropped")."""


@dataclass(frozen=True)
class LifecycleConfig:
    m: int = 3
    n: int = 5
    tentative_timeout_s: float = 5.0
    coast_after_s: float = 5.0
    drop_after_s: float = 900.0
    max_position_sigma_m: float = 300e3
    min_altitude_m: float = -2_000.0

    def __post_init__(self) -> None:
        if not (1 <= self.m <= self.n <= 63):
            raise ValueError("need 1 <= m <= n <= 63")


def held(status: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """True where a status is CONFIRMED or COASTING: the rows of a track's history that
    count as its estimates (TENTATIVE rows are not yet a track; a DROPPED row closes a
    track, tentative or not)."""
    s = np.asarray(status)
    out: npt.NDArray[np.bool_] = (s == CONFIRMED) | (s == COASTING)
    return out


def popcount(bits: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Number of set bits of uint64 arrays."""
    b = np.asarray(bits, np.uint64)
    n: npt.NDArray[np.int64] = np.unpackbits(b.view(np.uint8).reshape(b.shape + (8,)), axis=-1).sum(axis=-1)
    return n


@dataclass(frozen=True)
class LifecycleUpdate:
    status: npt.NDArray[np.int8]
    hit_bits: npt.NDArray[np.uint64]
    n_opportunities: npt.NDArray[np.int64]


def update_lifecycle(
    status: npt.NDArray[np.int8],
    hit_bits: npt.NDArray[np.uint64],
    n_opportunities: npt.NDArray[np.int64],
    hit: npt.NDArray[np.bool_],
    now_s: float,
    last_hit_s: npt.NDArray[np.float64],
    position_sigma_m: npt.NDArray[np.float64],
    altitude_m: npt.NDArray[np.float64],
    cfg: LifecycleConfig,
) -> LifecycleUpdate:
    """Advance every track by one opportunity (vectorised over tracks)."""
    mask = np.uint64((1 << cfg.n) - 1)
    bits = ((np.asarray(hit_bits, np.uint64) << np.uint64(1)) | np.asarray(hit, np.uint64)) & mask
    n_opp = np.asarray(n_opportunities) + 1
    hits = popcount(bits)
    st = np.asarray(status).copy()
    since = now_s - np.asarray(last_hit_s, float)

    tent = st == TENTATIVE
    remaining = np.maximum(cfg.n - n_opp, 0)
    st[tent & (hits >= cfg.m)] = CONFIRMED
    st[tent & (hits < cfg.m) & ((hits + remaining < cfg.m) | (since > cfg.tentative_timeout_s))] = DROPPED

    live = held(st)
    st[live & hit] = CONFIRMED
    st[live & ~hit & (since > cfg.coast_after_s)] = COASTING
    bad = (since > cfg.drop_after_s) | (position_sigma_m > cfg.max_position_sigma_m) | (
        altitude_m < cfg.min_altitude_m
    )
    st[(st != DROPPED) & bad & ~tent] = DROPPED
    st[tent & (altitude_m < cfg.min_altitude_m)] = DROPPED
    return LifecycleUpdate(st, bits, n_opp)
