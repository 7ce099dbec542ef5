"""SQL the ORM makes slow: many rows updated with their own values in one statement, and a large
statement run many times over planned once.

Django's `bulk_update` builds a `CASE WHEN id = ... THEN ...` expression per row and per field; for the
order flow's batches that compilation cost more CPU than the statement itself. `update_rows` sends the
same change as one `UPDATE ... FROM (VALUES ...)`, with each value adapted by its field as the ORM
would (`get_db_prep_save`) and cast to the column's type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from django.db import connection
from django.db.models import Field, Model


def update_rows(model: type[Model], rows: Iterable[Model], fields: Sequence[str]) -> int:
    """UPDATE each row of `model` (by primary key) to its instance's values of `fields`; returns the count.

    Only what `fields` names is written: the rows' other columns stay as the database has them.
    """
    objects = sorted(rows, key=lambda row: row.pk)  # row locks in id order (the global lock order)
    if not objects:
        return 0
    meta = model._meta
    columns: list[Field[Any, Any]] = []
    for name in [meta.pk.name, *fields]:
        field = meta.get_field(name)
        if not isinstance(field, Field) or not field.concrete:
            raise ValueError(f"{model.__name__}.{name} is not a column")
        columns.append(field)
    quote = connection.ops.quote_name
    cast = ", ".join(f"%s::{field.db_type(connection)}" for field in columns)
    values = ", ".join([f"({cast})"] * len(objects))
    params: list[Any] = []
    for row in objects:
        for field in columns:
            params.append(field.get_db_prep_save(getattr(row, field.attname), connection))
    names = ", ".join(quote(str(field.column)) for field in columns)
    assignments = ", ".join(f"{quote(str(field.column))} = v.{quote(str(field.column))}" for field in columns[1:])
    table, pk = quote(meta.db_table), quote(str(columns[0].column))
    sql = f"UPDATE {table} AS t SET {assignments} FROM (VALUES {values}) AS v ({names}) WHERE t.{pk} = v.{pk}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# psycopg's default: what a server-binding cursor on the connection would use had Django not turned
# preparing off (Django's own cursors bind client-side, which never prepares, so they are unaffected).
_PREPARE_THRESHOLD = 5


def execute_prepared(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement as a server-side prepared statement on the current connection; its rows.

    For a large statement run again and again with new values (the reporting aggregation's day: a dozen
    CTEs, about 1 ms to plan against 12 ms to run): Postgres plans it once per connection, then reuses
    the plan. Django's cursors bind parameters client-side, which cannot prepare, hence a psycopg cursor
    on the same connection (and transaction). It bypasses Django's query logging and execute wrappers.
    Parameters are sent typed (a `None` as an untyped NULL), so the statement must give every parameter
    a type by its context or a cast.
    """
    connection.ensure_connection()
    raw = connection.connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"execute_prepared needs a psycopg 3 connection, not {type(raw).__name__}")
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _PREPARE_THRESHOLD
    with psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall() if cursor.description is not None else []
