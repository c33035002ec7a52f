"""A least-recently-used cache held under one byte budget, for geometry that can be rebuilt.

The link broker keeps blocks of constellation positions and, derived from each block, slot
routers, shortest-path trees per region and terminals' paths. Every entry is stored with its
size in bytes and, for derived entries, the key of the entry it was derived from (its
*owner*): evicting or discarding an owner takes everything derived from it along. When the
total passes the budget, the least recently used entries go first; a *pinned* key (a block
a plan is using) is never evicted, so the total can pass the budget by what is pinned (the
broker bounds that: see ``LinkBroker``).

Not thread-safe: the caller serialises access (``Constellation`` holds its lock).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

__all__ = ["ByteBudgetCache"]


@dataclass
class _Entry:
    value: object
    nbytes: int
    owner: Hashable | None


class ByteBudgetCache:
    """Entries ``key -> value`` with sizes; at most ``budget_bytes`` of unpinned entries.

    Args:
        budget_bytes: the byte budget (> 0).
        on_discard: called with ``(key, value)`` for every entry that leaves the cache
            (evicted, discarded or replaced), under the caller's lock.
    """

    def __init__(self, budget_bytes: int,
                 on_discard: Callable[[Hashable, object], None] | None = None) -> None:
        if budget_bytes <= 0:
            raise ValueError("budget_bytes must be > 0")
        self.budget_bytes = int(budget_bytes)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._owned: dict[Hashable, set[Hashable]] = {}
        self._pins: Counter[Hashable] = Counter()
        self._on_discard = on_discard
        self.total_bytes = 0
        #: Entries evicted for the budget since creation (not discarded on purpose).
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def keys(self) -> Iterator[Hashable]:
        return iter(list(self._entries))

    def sizes(self) -> dict[Hashable, int]:
        """Bytes of each entry, least recently used first."""
        return {key: entry.nbytes for key, entry in self._entries.items()}

    def get(self, key: Hashable):
        """The value under ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.value

    def put(self, key: Hashable, value: object, nbytes: int,
            owner: Hashable | None = None) -> bool:
        """Store ``value``; then evict to the budget. An entry whose owner is not (any
        more) in the cache is not stored: it would outlive what it was derived from.
        Returns whether the value is stored."""
        if owner is not None and owner not in self._entries:
            return False
        if key in self._entries:
            self._remove(key)
        self._entries[key] = _Entry(value, int(nbytes), owner)
        self.total_bytes += int(nbytes)
        if owner is not None:
            self._owned.setdefault(owner, set()).add(key)
        self._evict()
        return key in self._entries

    def discard(self, key: Hashable) -> None:
        """Remove ``key`` and everything derived from it (nothing if absent)."""
        if key in self._entries:
            self._remove(key)

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> None:
        """Remove every entry whose key satisfies ``predicate`` (with what it owns)."""
        for key in [k for k in self._entries if predicate(k)]:
            self.discard(key)

    # -- pins ---------------------------------------------------------------------------

    def pin(self, key: Hashable) -> None:
        """Keep ``key`` from eviction until as many :meth:`unpin` calls (it need not be
        stored yet). Discarding it on purpose still removes it."""
        self._pins[key] += 1

    def unpin(self, key: Hashable) -> None:
        self._pins[key] -= 1
        if self._pins[key] <= 0:
            del self._pins[key]
        self._evict()

    def pinned(self, key: Hashable) -> bool:
        return self._pins[key] > 0 if key in self._pins else False

    # -- internals ------------------------------------------------------------------------

    def _remove(self, key: Hashable) -> None:
        for child in list(self._owned.pop(key, ())):
            if child in self._entries:
                self._remove(child)
        entry = self._entries.pop(key)
        self.total_bytes -= entry.nbytes
        if entry.owner is not None:
            siblings = self._owned.get(entry.owner)
            if siblings is not None:
                siblings.discard(key)
        if self._on_discard is not None:
            self._on_discard(key, entry.value)

    def _evict(self) -> None:
        if self.total_bytes <= self.budget_bytes:
            return
        for key in list(self._entries):
            if self.total_bytes <= self.budget_bytes:
                return
            if key not in self._entries or key in self._pins:
                continue
            self._remove(key)
            self.evictions += 1
