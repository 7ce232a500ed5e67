"""Plain-SQL reads of whole model rows, for the few lookups every API request makes.

Why: building and compiling a queryset costs several times what PostgreSQL takes to answer an indexed
lookup (an invoke's key lookup: ~0.27 ms of compiling against ~0.1 ms of database). A ``RowSelect``
writes its SELECT once per database alias and converts each column exactly as the ORM's
compiler does (the backend's and the field's converters: SQLite's UUIDs, datetimes and booleans come
back as text and integers), so the instances equal what the ORM would have built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections
from django.db.models import Model


class RowSelect:
    """``SELECT <the columns of each model> FROM ...`` with a WHERE built by ``where``.

    ``tables`` are ``(alias, model)`` pairs (every concrete column) or ``(alias, model, field names)``
    (those columns only: a deferred instance, like ``.only()``). ``joins(q, meta_of)`` returns the
    JOIN text after the first table, ``where(q, meta_of)`` the WHERE text; both may hold ``%s``
    placeholders, filled by ``fetch``'s params in that order (``q`` quotes a name, ``meta_of(alias)``
    is that model's ``_meta``). ``fetch`` returns one instance per table from the first row, None for
    a table whose primary key came back NULL (a LEFT JOIN that matched nothing), or None for no row.
    """

    def __init__(
        self,
        tables: Sequence[tuple[str, type[Model]] | tuple[str, type[Model], Sequence[str]]],
        *,
        joins: Callable[[Callable[[str], str], Callable[[str], Any]], str],
        where: Callable[[Callable[[str], str], Callable[[str], Any]], str],
    ) -> None:
        self.tables = list(tables)
        self.joins = joins
        self.where = where
        self._compiled: dict[str, tuple[str, list]] = {}
        self._lock = threading.Lock()

    def _compile(self, connection) -> tuple[str, list]:
        key = connection.alias
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled
        q = connection.ops.quote_name
        metas = {table[0]: table[1]._meta for table in self.tables}
        columns, plan = [], []
        for alias, model, *only in self.tables:
            meta = model._meta
            fields = [meta.get_field(name) for name in only[0]] if only else list(meta.concrete_fields)
            if meta.pk not in fields:
                fields.insert(0, meta.pk)
            converters = []
            for field in fields:
                col = field.get_col(alias)
                convs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                converters.append((col, convs))
                columns.append(f"{q(alias)}.{q(field.column)}")
            plan.append((model, [f.attname for f in fields], converters, fields.index(meta.pk)))
        first_alias, first_model = self.tables[0][:2]
        sql = (
            f"SELECT {', '.join(columns)} FROM {q(first_model._meta.db_table)} {q(first_alias)} "
            f"{self.joins(q, metas.__getitem__)} WHERE {self.where(q, metas.__getitem__)}"
        )
        compiled = (sql, plan)
        with self._lock:
            self._compiled[key] = compiled
        return compiled

    def fetch(self, params: Sequence[Any], *, using: str = "default") -> list[Model | None] | None:
        connection = connections[using]
        sql, plan = self._compile(connection)
        with connection.cursor() as cursor:
            cursor.execute(sql + " LIMIT 1", list(params))
            row = cursor.fetchone()
        if row is None:
            return None
        out, start = [], 0
        for model, attnames, converters, pk_at in plan:
            if row[start + pk_at] is None:  # an outer join that matched nothing
                out.append(None)
                start += len(converters)
                continue
            values = []
            for offset, (col, convs) in enumerate(converters):
                value = row[start + offset]
                for convert in convs:
                    value = convert(value, col, connection)
                values.append(value)
            start += len(converters)
            out.append(model.from_db(using, attnames, values))
        return out


def db_value(model: type[Model], field_name: str, value: Any, *, using: str = "default") -> Any:
    """``value`` prepared for a query on ``model.field_name`` as the ORM would send it."""
    return model._meta.get_field(field_name).get_db_prep_value(value, connections[using])
