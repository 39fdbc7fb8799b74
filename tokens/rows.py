"""Model instances from a plain SQL row, for the hot paths whose statement is written once.

The ORM compiles its query again on every call (for a lookup of one row by a unique key that cost
more than the query itself: issue 12); a :class:`RowShape` says which models' concrete columns a
statement selects, in order, and builds the instances from its row as the ORM does: each column
through its field's converters (the backend's, then the field's own: JSON, SQLite's datetimes and
UUIDs), then ``Model.from_db``. Only the statement's text and the list of converters are kept; every
row is read from the database by the caller.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

Converter = Callable[[Any, Any, Any], Any]


def database() -> BaseDatabaseWrapper:
    """The default connection itself (``django.db.connection`` is a proxy that looks it up on every
    attribute, through a thread-local)."""
    return connections[DEFAULT_DB_ALIAS]


@dataclass(frozen=True)
class _Part:
    model: type[Model]
    alias: str
    names: tuple[str, ...]  # attnames, in the model's concrete-field order
    start: int  # the first column of this model in the row
    fields: tuple[Field[Any, Any], ...]
    pk: int  # the primary key's column in the row: NULL when an outer join found no row


class RowShape:
    """The concrete columns of ``models`` (each with its table alias in the statement), in order."""

    def __init__(self, db: BaseDatabaseWrapper, *models: tuple[type[Model], str]) -> None:
        quote = db.ops.quote_name
        parts: list[_Part] = []
        columns: list[str] = []
        for model, alias in models:
            fields = tuple(model._meta.concrete_fields)
            names = tuple(field.attname for field in fields)
            pk = len(columns) + names.index(model._meta.pk.attname)  # type: ignore[union-attr]
            parts.append(
                _Part(model=model, alias=alias, names=names, start=len(columns), fields=fields, pk=pk)
            )
            columns.extend(f"{alias}.{quote(field.column or field.attname)}" for field in fields)
        self.parts = tuple(parts)
        self.width = len(columns)
        self.select = ", ".join(columns)  # the statement's select list
        self._converters: weakref.WeakKeyDictionary[
            BaseDatabaseWrapper, tuple[tuple[int, tuple[Converter, ...], Any], ...]
        ] = weakref.WeakKeyDictionary()

    def _column_converters(
        self, db: BaseDatabaseWrapper
    ) -> tuple[tuple[int, tuple[Converter, ...], Any], ...]:
        known = self._converters.get(db)
        if known is not None:
            return known
        found = []
        for part in self.parts:
            for offset, field in enumerate(part.fields):
                col = field.get_col(part.alias)
                functions = tuple(db.ops.get_db_converters(col) + col.get_db_converters(db))
                if functions:
                    found.append((part.start + offset, functions, col))
        known = tuple(found)
        self._converters[db] = known
        return known

    def instances(self, db: BaseDatabaseWrapper, row: Sequence[Any]) -> list[Any]:
        """One instance per model of the shape from the first :attr:`width` columns of ``row``; ``None``
        for a model whose primary key is NULL (an outer join that found no row)."""
        values = list(row[: self.width])
        for index, functions, col in self._column_converters(db):
            for function in functions:
                values[index] = function(values[index], col, db)
        return [
            None
            if values[part.pk] is None
            else part.model.from_db(
                db.alias, list(part.names), values[part.start : part.start + len(part.names)]
            )
            for part in self.parts
        ]
