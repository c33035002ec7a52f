"""Resource names, etags, cursors and page tokens seen in OK answers, so that generated
requests name things that exist (and get past NOT_FOUND into the code behind it).

Names are filed by their collection path: `customers/abc/subscriptions/s1` under
`customers.subscriptions`; a request field asks by the collection it refers to
(`subscription`, `name` of `GetSubscription` -> `subscriptions`).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

from google.protobuf.descriptor import FieldDescriptor as FD

_NAME = re.compile(r"^[a-z][A-Za-z]*/[^/\s]+(?:/[a-z][A-Za-z]*/[^/\s]+)*$")
#: How many values of one kind are kept (the oldest drop out).
KEEP = 200


def collection_key(name: str) -> str:
    """`customers/a/terminals/t` -> `customers.terminals`."""
    return ".".join(name.split("/")[0::2])


def _norm(word: str) -> str:
    return word.replace("_", "").lower()


def plural(word: str) -> str:
    """`ground_station` -> `groundstations`, `policy` -> `policies` (normalised, lowercase)."""
    word = _norm(word)
    if word.endswith("s"):
        return word
    if word.endswith("y") and not word.endswith(("ay", "ey", "oy")):
        return word[:-1] + "ies"
    return word + "s"


class Pool:
    """What OK answers named, by collection, kind and tenant."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = defaultdict(list)
        #: tenant -> names its callers were answered with (a customer sees its own only)
        self.by_tenant: dict[str, set[str]] = defaultdict(set)
        self._seen: set[str] = set()
        self.etags: dict[str, str] = {}
        self.values: dict[str, list[str]] = defaultdict(list)  # cursor, page_token, request_id
        self.numbers: dict[str, list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._seen)

    def add_name(self, name: str, tenant: str | None = None) -> None:
        if not _NAME.match(name) or len(name) > 300:
            return
        if tenant is not None:
            self.by_tenant[tenant].add(name)
        if name in self._seen:
            return
        self._seen.add(name)
        bucket = self.names[collection_key(name)]
        bucket.append(name)
        if len(bucket) > KEEP:
            dropped = bucket.pop(0)
            self._seen.discard(dropped)
            for names in self.by_tenant.values():
                names.discard(dropped)
        last = name.rsplit("/", 1)[1]
        if name.startswith("satellites/") and last.isdigit():
            self._add(self.numbers["catalog_number"], int(last))

    def add_value(self, kind: str, value: str) -> None:
        if value and len(value) <= 300:
            self._add(self.values[kind], value)

    @staticmethod
    def _add(bucket: list, value) -> None:
        if value not in bucket:
            bucket.append(value)
            if len(bucket) > KEEP:
                bucket.pop(0)

    def harvest(self, message, tenant: str | None = None, context: str = "") -> None:
        """File every name-like string of an answer (recursively); `tenant` is whose call
        it answered, `context` the method (page tokens are only good for the same one)."""
        self._walk(message, 0, tenant, context)

    def _walk(self, message, depth: int, tenant: str | None, context: str) -> None:
        if depth > 6:
            return
        name = etag = None
        for fd, value in message.ListFields():
            if fd.type == FD.TYPE_STRING:
                values = value if fd.is_repeated else (value,)
                for item in values:
                    if "/" in item:
                        self.add_name(item, tenant)
                if fd.name == "name":
                    name = value
                elif fd.name == "etag":
                    etag = value
                elif fd.name == "cursor":
                    self.add_value("cursor", value)
                elif fd.name == "next_page_token":
                    self.add_value(f"page_token:{context}", value)
            elif fd.type == FD.TYPE_MESSAGE:
                if fd.message_type.GetOptions().map_entry:
                    continue
                items = value if fd.is_repeated else (value,)
                for item in list(items)[:50]:
                    self._walk(item, depth + 1, tenant, context)
        if name and etag:
            self.etags[name] = etag
            if len(self.etags) > 10 * KEEP:
                self.etags.pop(next(iter(self.etags)))

    # --- lookups --------------------------------------------------------------------------

    def of_collection(self, collection: str) -> list[str]:
        """Names whose last collection is `collection` (normalised plural)."""
        want = plural(collection)
        out: list[str] = []
        for key, names in self.names.items():
            if _norm(key.rsplit(".", 1)[-1]) == want:
                out.extend(names)
        return out

    def any_name(self, rng: random.Random) -> str | None:
        keys = sorted(k for k, v in self.names.items() if v)
        if not keys:
            return None
        return rng.choice(self.names[rng.choice(keys)])

    def pick(self, rng: random.Random, collections: tuple[str, ...],
             tenant: str | None = None) -> str | None:
        """A known name from the first of `collections` that has any, most of the time one
        that `tenant`'s callers were shown."""
        for collection in collections:
            names = self.of_collection(collection)
            if not names:
                continue
            own = [n for n in names if n in self.by_tenant.get(tenant, ())]
            if own and rng.random() < 0.8:
                return rng.choice(own)
            return rng.choice(names)
        return None

    def spelling(self, collection: str) -> str | None:
        """How the servers spell a collection (`groundStations` for `ground_station`)."""
        want = plural(collection)
        for key in sorted(self.names):
            last = key.rsplit(".", 1)[-1]
            if _norm(last) == want:
                return last
        return None

    def parent_of(self, rng: random.Random, collection: str) -> str | None:
        """The parent of a known name in `collection` (`customers/a` for a subscription)."""
        names = [n for n in self.of_collection(collection) if n.count("/") >= 3]
        if not names:
            return None
        return rng.choice(names).rsplit("/", 2)[0]
