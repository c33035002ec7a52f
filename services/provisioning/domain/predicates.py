"""Conditions on a row's columns, stated once and evaluated in three places.

A rule the one-statement PostgreSQL path must enforce inside its SQL (who may see a
customer, whether a subscription takes another terminal, whether a terminal may be
activated) is declared here as a small expression over column names and constants. The
same expression is

- evaluated in Python (`holds`) by the transactional path and the domain checks,
- rendered as a SQLAlchemy clause (`clause`) for the ORM queries, and
- rendered as SQL text with psycopg parameters (`sql`) for the fast path's statements,

so the rule cannot say one thing on a laptop (SQLite, the transactional path) and another
in production (PostgreSQL, the fast path). Constants travel as bound parameters, never as
literals in the SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Always", "And", "Eq", "In", "Less", "Never", "Not", "Or", "Predicate", "SqlText"]

class SqlText:
    """SQL text being built, with its psycopg `%(name)s` parameters. Names are numbered in
    order, so one shape of predicate always renders the same text (a prepared statement)."""

    def __init__(self, prefix: str = "r") -> None:
        self.prefix = prefix
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"


class Predicate:
    """A condition on one row: `holds(row)` in Python, `clause(column)` in SQLAlchemy,
    `sql(alias, text)` as SQL text."""

    def holds(self, row: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def clause(self, column: Callable[[str], Any]) -> Any:
        raise NotImplementedError

    def sql(self, alias: str, out: SqlText) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Always(Predicate):
    def holds(self, row: Mapping[str, Any]) -> bool:
        return True

    def clause(self, column: Callable[[str], Any]) -> Any:
        from sqlalchemy import true

        return true()

    def sql(self, alias: str, out: SqlText) -> str:
        return "TRUE"


@dataclass(frozen=True)
class Never(Predicate):
    def holds(self, row: Mapping[str, Any]) -> bool:
        return False

    def clause(self, column: Callable[[str], Any]) -> Any:
        from sqlalchemy import false

        return false()

    def sql(self, alias: str, out: SqlText) -> str:
        return "FALSE"


@dataclass(frozen=True)
class Eq(Predicate):
    """`column = value` (a None value never matches, as in SQL)."""

    column: str
    value: Any

    def holds(self, row: Mapping[str, Any]) -> bool:
        return self.value is not None and row[self.column] == self.value

    def clause(self, column: Callable[[str], Any]) -> Any:
        if self.value is None:  # SQLAlchemy would write IS NULL
            from sqlalchemy import false

            return false()
        return column(self.column) == self.value

    def sql(self, alias: str, out: SqlText) -> str:
        return f"{alias}.{self.column} = {out.bind(self.value)}"


@dataclass(frozen=True)
class In(Predicate):
    """`column` is one of `values`."""

    column: str
    values: frozenset[Any]

    def __init__(self, column: str, values: Collection[Any]) -> None:
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "values", frozenset(values))

    def holds(self, row: Mapping[str, Any]) -> bool:
        return row[self.column] in self.values

    def clause(self, column: Callable[[str], Any]) -> Any:
        return column(self.column).in_(sorted(self.values))

    def sql(self, alias: str, out: SqlText) -> str:
        return f"{alias}.{self.column} = ANY({out.bind(sorted(self.values))})"


@dataclass(frozen=True)
class Less(Predicate):
    """`left < right`, both column names."""

    left: str
    right: str

    def holds(self, row: Mapping[str, Any]) -> bool:
        return bool(row[self.left] < row[self.right])

    def clause(self, column: Callable[[str], Any]) -> Any:
        return column(self.left) < column(self.right)

    def sql(self, alias: str, out: SqlText) -> str:
        return f"{alias}.{self.left} < {alias}.{self.right}"


@dataclass(frozen=True)
class Not(Predicate):
    inner: Predicate

    def holds(self, row: Mapping[str, Any]) -> bool:
        return not self.inner.holds(row)

    def clause(self, column: Callable[[str], Any]) -> Any:
        from sqlalchemy import not_

        return not_(self.inner.clause(column))

    def sql(self, alias: str, out: SqlText) -> str:
        return f"NOT ({self.inner.sql(alias, out)})"


@dataclass(frozen=True)
class And(Predicate):
    parts: tuple[Predicate, ...]

    def __init__(self, *parts: Predicate) -> None:
        object.__setattr__(self, "parts", parts)

    def holds(self, row: Mapping[str, Any]) -> bool:
        return all(p.holds(row) for p in self.parts)

    def clause(self, column: Callable[[str], Any]) -> Any:
        from sqlalchemy import and_

        return and_(*(p.clause(column) for p in self.parts))

    def sql(self, alias: str, out: SqlText) -> str:
        return "(" + " AND ".join(p.sql(alias, out) for p in self.parts) + ")"


@dataclass(frozen=True)
class Or(Predicate):
    parts: tuple[Predicate, ...]

    def __init__(self, *parts: Predicate) -> None:
        object.__setattr__(self, "parts", parts)

    def holds(self, row: Mapping[str, Any]) -> bool:
        return any(p.holds(row) for p in self.parts)

    def clause(self, column: Callable[[str], Any]) -> Any:
        from sqlalchemy import false, or_

        return or_(*(p.clause(column) for p in self.parts)) if self.parts else false()

    def sql(self, alias: str, out: SqlText) -> str:
        if not self.parts:
            return "FALSE"
        return "(" + " OR ".join(p.sql(alias, out) for p in self.parts) + ")"
