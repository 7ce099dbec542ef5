"""SQL the ORM makes slow: many rows updated with their own values in one statement, a query compiled
once and run many times, and a large statement run many times over planned once.

Django's `bulk_update` builds a `CASE WHEN id = ... THEN ...` expression per row and per field; for the
order flow's batches that compilation cost more CPU than the statement itself. `update_rows` sends the
same change as one `UPDATE ... FROM (VALUES ...)`, with each value adapted by its field as the ORM
would (`get_db_prep_save`) and cast to the column's type.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import NOT_PROVIDED, BooleanField, Field, ForeignObject, Lookup, Model, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.query import get_related_populators
from django.db.transaction import TransactionManagementError

M = TypeVar("M", bound=Model)


def update_rows(model: type[Model], rows: Iterable[Model], fields: Sequence[str]) -> int:
    """UPDATE each row of `model` (by primary key) to its instance's values of `fields`; returns the count.

    Only what `fields` names is written: the rows' other columns stay as the database has them.
    """
    objects = sorted(rows, key=lambda row: row.pk)  # row locks in id order (the global lock order)
    if not objects:
        return 0
    sql, columns = _update_sql(model, tuple(fields), len(objects))
    params = [field.get_db_prep_save(getattr(row, field.attname), connection) for row in objects for field in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# (model, rows, with primary keys) -> the INSERT's SQL and its columns.
_INSERTS: dict[tuple[type[Model], int, bool], tuple[str, tuple[Field[Any, Any], ...], tuple[Field[Any, Any], ...]]] = {}
# Rows per INSERT: Postgres takes at most 65,535 parameters a statement.
_INSERT_ROWS = 500


# (model, fields, rows) -> the UPDATE and its columns: written once, as `_insert_sql` is (building it
# took as long as running it for the order flow's one- and two-row updates).
_UPDATES: dict[tuple[type[Model], tuple[str, ...], int], tuple[str, tuple[Field[Any, Any], ...]]] = {}


def _update_sql(model: type[Model], fields: tuple[str, ...], rows: int) -> tuple[str, tuple[Field[Any, Any], ...]]:
    key = (model, fields, rows)
    cached = _UPDATES.get(key)
    if cached is None:
        meta = model._meta
        columns: list[Field[Any, Any]] = []
        for name in [meta.pk.name, *fields]:
            field = meta.get_field(name)
            if not isinstance(field, Field) or not field.concrete:
                raise ValueError(f"{model.__name__}.{name} is not a column")
            columns.append(field)
        quote = connection.ops.quote_name
        cast = ", ".join(f"%s::{field.db_type(connection)}" for field in columns)
        values = ", ".join([f"({cast})"] * rows)
        names = ", ".join(quote(str(field.column)) for field in columns)
        assignments = ", ".join(f"{quote(str(field.column))} = v.{quote(str(field.column))}" for field in columns[1:])
        table, pk = quote(meta.db_table), quote(str(columns[0].column))
        sql = f"UPDATE {table} AS t SET {assignments} FROM (VALUES {values}) AS v ({names}) WHERE t.{pk} = v.{pk}"  # noqa: S608
        cached = _UPDATES[key] = (sql, tuple(columns))
    return cached


def literal_in(model: type[Model], name: str, values: Iterable[str]) -> RawSQL:
    """A filter `name IN (values)` with the values written into the statement instead of bound.

    For a query that a partial index serves (`Index(condition=Q(status="New"))`) and that psycopg
    prepares: Postgres's plan for a prepared statement is generic, made without the bound values, so it
    cannot prove the index's condition from `status = $2` and scans an index of every row instead (the
    route claim read all the ticker's orders of the day through the ticker index, 73 rows a claim after
    1,000 orders, and growing). Written as literals, the condition is proven and the partial index
    used. Only for constants of our own code (choices' values): anything else is refused.
    """
    texts = [str(value) for value in values]
    if not texts or any(not _LITERAL.fullmatch(text) for text in texts):
        raise ValueError(f"literal_in takes choice values only, not {texts!r}")
    quote = connection.ops.quote_name
    column = f"{quote(model._meta.db_table)}.{quote(str(model._meta.get_field(name).column))}"  # type: ignore[union-attr]
    listed = ", ".join(f"'{text}'" for text in texts)
    return RawSQL(f"{column} IN ({listed})", (), output_field=BooleanField())  # noqa: S611  (checked above)


_LITERAL = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def insert_rows(model: type[M], objs: Sequence[M]) -> list[M]:
    """INSERT `objs` as `bulk_create(objs)` does and return them, saved: `auto_now` stamps set, related
    objects' ids taken, new primary keys read back (RETURNING), `_state` marked saved.

    The statement is written once per model, row count and whether the rows carry their primary key,
    then only its values change: `bulk_create` compiles it again every time, and for the order flow's
    children, trades, book orders and executions that was about a third of its cost (and `save()` of
    one order at the gateway 7% of a web process's CPU). Columns with a database default (`db_default`)
    are left to the database and read back with the new primary keys. Rows must all carry a primary
    key or none; a parent model or a generated field goes to `bulk_create` instead.
    """
    objs = list(objs)
    if not objs:
        return objs
    meta = model._meta
    with_pk = objs[0].pk is not None
    if (
        any((obj.pk is not None) != with_pk for obj in objs)
        or meta.parents
        or any(field.generated for field in meta.concrete_fields)
    ):
        return model._default_manager.bulk_create(objs)
    for obj in objs:
        # Model's own step of bulk_create (private, not in the stubs): a related object assigned before it
        # was saved gives its id now, and one still unsaved is an error.
        getattr(obj, "_prepare_related_fields_for_save")(operation_name="bulk_create")  # noqa: B009
    for start in range(0, len(objs), _INSERT_ROWS):
        chunk = objs[start : start + _INSERT_ROWS]
        sql, fields, returned = _insert_sql(model, len(chunk), with_pk)
        params = [field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in chunk for field in fields]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if returned:
                # RETURNING gives the rows in the VALUES' order (as bulk_create relies on too).
                for obj, values in zip(chunk, cursor.fetchall(), strict=True):
                    for field, value in zip(returned, values, strict=True):
                        setattr(obj, field.attname, value)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = DEFAULT_DB_ALIAS
    return objs


def _insert_sql(
    model: type[Model], rows: int, with_pk: bool
) -> tuple[str, tuple[Field[Any, Any], ...], tuple[Field[Any, Any], ...]]:
    """The INSERT, the fields whose values it sends, and the fields it reads back (RETURNING): the
    primary key when the rows have none, and every column the database fills in (`db_default`)."""
    key = (model, rows, with_pk)
    cached = _INSERTS.get(key)
    if cached is None:
        meta = model._meta
        fields = tuple(
            field
            for field in meta.concrete_fields
            if (with_pk or not field.primary_key) and field.db_default is NOT_PROVIDED
        )
        returned = tuple(
            field
            for field in meta.concrete_fields
            if (field.primary_key and not with_pk) or field.db_default is not NOT_PROVIDED
        )
        quote = connection.ops.quote_name
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(str(field.column)) for field in fields)}) "  # noqa: S608
            f"VALUES {', '.join([row] * rows)}"
        )
        if returned:
            sql += f" RETURNING {', '.join(quote(str(field.column)) for field in returned)}"
        cached = _INSERTS[key] = (sql, fields, returned)
    return cached


def script_cursor() -> Any:
    """A Django cursor on the current connection that binds parameters client-side: for a query string
    of several statements, sent as one simple query (one round trip; in autocommit, one transaction).

    The connection's own cursors bind server-side (settings: so that statements can be prepared), and
    the server refuses several statements in one parameterized query. Queries run on this cursor are
    logged and wrapped like any other (`connection.make_debug_cursor`, as Django's `cursor()` does).
    """
    connection.ensure_connection()
    raw = connection.connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"script_cursor needs a psycopg 3 connection, not {type(raw).__name__}")
    cursor: Any = psycopg.ClientCursor(raw)  # django-stubs type the argument as the wrapper itself
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


# Statements whose conversion psycopg keeps: any the order flow runs. psycopg rewrites every query's
# `%s` placeholders into `$1, $2...` on every execute, and keeps the result only for statements of at most
# 4,096 characters and 50 parameters (its defaults, against ORMs' one-off INSERTs of any number of rows).
# The order flow's INSERTs of trades, children, book orders and executions, its batched UPDATEs and its
# select_related queries are past that, yet each is written once per row count and run again and again
# (broker.sql's whole point): converting a 2-row trade INSERT cost 54 us, a 10-row one 250 us, against
# about 1 us cached; 11% of the order workers' GIL time at 100 orders/s went there. psycopg's cache
# holds the last 128 statements either way.
CACHED_STATEMENT_LENGTH = 65_536
CACHED_STATEMENT_PARAMS = 2_000


def psycopg_keep_conversions() -> None:
    """Raise psycopg's limits on the statements whose conversion it caches (above); at start-up
    (broker.apps). They are module constants of `psycopg._queries`, read on every execute."""
    from psycopg import _queries

    _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, CACHED_STATEMENT_LENGTH)
    _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, CACHED_STATEMENT_PARAMS)


# psycopg's default, for a connection configured without one (settings set DATABASE_PREPARE_THRESHOLD).
_PREPARE_THRESHOLD = 5


def execute_prepared(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement as a server-side prepared statement on the current connection; its rows.

    For a large statement run again and again with new values (the reporting aggregation's day: a dozen
    CTEs, about 1 ms to plan against 12 ms to run): Postgres plans it once per connection, then reuses
    the plan, from its first run (the connection's own cursors prepare a statement on its fifth run).
    A psycopg cursor on the same connection (and transaction): it bypasses Django's query logging and
    execute wrappers.
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


class AnyOf(Lookup):
    """`field__any=[...]`: `field = ANY(%s)`, the whole list one parameter (an array).

    `__in` writes one placeholder per value, so its SQL changes with the list's length; this one's does
    not, which is what lets `CompiledQuery` compile a query with a list in it once.
    """

    lookup_name = "any"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


# Every column, foreign keys too (they keep lookups of their own).
Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)


class _Marker(list[int]):
    """A list parameter told apart by its type (the ORM keeps it; `__any` passes the list on whole)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[tuple[int, str], ...]  # (position in params, value name)
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]
    # Model instances only: the model, its columns' slice and attribute names, the select_related fillers.
    model: type[Model] | None
    start: int
    end: int
    init_list: tuple[str, ...]
    populators: tuple[Any, ...]
    for_update: bool
    columns: int  # the query's own columns; the ORM may select more (e.g. DISTINCT's ORDER BY columns)


class CompiledQuery(Generic[M]):
    """A SELECT written with the ORM, compiled to SQL once per process and run with new values each time.

    The order flow runs the same handful of queries for every order, and Django compiles each one again
    every time: for a `select_related`, `select_for_update` query about 1 ms of CPU, more than the query
    takes in Postgres, and 40% of the order workers' CPU in all. `build(shape, **values)` returns the
    queryset; it is called once per `shape` (any hashable naming a variant of the query, e.g. whether a
    halt narrows it) with markers in place of the values, and the SQL is kept with the markers'
    positions among its parameters. Each run substitutes the real values and builds rows or model
    instances (with their `select_related` objects) exactly as the ORM would, without compiling.

    Values may be ints, strings, Decimals (passed to the ORM as they are given) or lists (for `__any`
    only, so the SQL does not depend on their length). Nothing database-specific is cached: the
    converters and populators depend on the query alone, not on a connection.
    """

    def __init__(
        self, build: Callable[..., QuerySet[M, Any]], *, rehearse: Iterable[tuple[Hashable, Mapping[str, Any]]] = ()
    ) -> None:
        """`rehearse`: the (shape, values) a new process compiles and runs before its first order
        (`rehearse_compiled`); values that match no row, since the run may take row locks."""
        self._build = build
        self._compiled: dict[Hashable, _Compiled] = {}
        self._lock = threading.Lock()
        self._rehearsals = tuple(rehearse)
        if self._rehearsals:
            _REHEARSED.append(self)

    def objects(self, shape: Hashable = None, **values: Any) -> list[M]:
        """The query's model instances, `select_related` objects attached."""
        compiled, rows = self._run(shape, values)
        model = compiled.model
        assert model is not None, "objects() of a values() query: use rows()"
        db = DEFAULT_DB_ALIAS
        result = []
        for row in rows:
            obj = model.from_db(db, compiled.init_list, row[compiled.start : compiled.end])
            for populator in compiled.populators:
                populator.populate(row, obj)
            result.append(obj)
        return result  # type: ignore[return-value]  # from_db returns the model it was called on

    def rows(self, shape: Hashable = None, **values: Any) -> list[tuple[Any, ...]]:
        """The query's rows as tuples, in its select order (a `values_list()` query's columns)."""
        compiled, rows = self._run(shape, values)
        return [tuple(row[: compiled.columns]) for row in rows]

    def _run(self, shape: Hashable, values: Mapping[str, Any]) -> tuple[_Compiled, list[list[Any]]]:
        compiled = self._compiled.get(shape)
        if compiled is None:
            compiled = self._compile(shape, values)
        elif compiled.for_update and connection.get_autocommit():
            # The ORM's own check, which runs when it compiles: a row lock outside a transaction is
            # released as soon as it is taken.
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(compiled.params)
        for position, name in compiled.slots:
            value = values[name]
            params[position] = list(value) if isinstance(value, (list, tuple, set, frozenset)) else value
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = [list(row) for row in cursor.fetchall()]
        for position, converters, expression in compiled.converters:
            for row in rows:
                value = row[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                row[position] = value
        return compiled, rows

    def _compile(self, shape: Hashable, values: Mapping[str, Any]) -> _Compiled:
        markers: dict[str, Any] = {}
        for number, (name, value) in enumerate(sorted(values.items())):
            markers[name] = _marker(number, value)
        queryset = self._build(shape, **markers)
        compiler = queryset.query.get_compiler(using=DEFAULT_DB_ALIAS)
        sql, params = compiler.as_sql()
        slots = []
        for position, param in enumerate(params):
            for name, marker in markers.items():
                if _same(param, marker):
                    slots.append((position, name))
        found = {name for _, name in slots}
        if found != set(markers):
            missing = sorted(set(markers) - found)
            raise ValueError(f"CompiledQuery: values {missing} did not reach the SQL as parameters")
        fields = [column[0] for column in compiler.select[: compiler.col_count]]
        converters = tuple(
            (position, tuple(converters), expression)
            for position, (converters, expression) in compiler.get_converters(fields).items()
        )
        model, start, end = None, 0, 0
        init_list: tuple[str, ...] = ()
        populators: tuple[Any, ...] = ()
        klass_info = compiler.klass_info
        if klass_info is not None and not queryset._fields:  # type: ignore[attr-defined]  # values() sets it
            model = klass_info["model"]
            start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
            init_list = tuple(column[0].target.attname for column in compiler.select[start:end])
            # django-stubs describe a later Django's signature (with fetch_mode).
            populators = tuple(get_related_populators(klass_info, compiler.select, DEFAULT_DB_ALIAS))  # type: ignore[call-arg]
        compiled = _Compiled(
            sql, tuple(params), tuple(slots), converters, model, start, end, init_list, populators,
            for_update=queryset.query.select_for_update, columns=compiler.col_count,
        )  # fmt: skip
        with self._lock:
            self._compiled[shape] = compiled
        return compiled


_REHEARSED: list[CompiledQuery[Any]] = []


def rehearse_compiled() -> int:
    """Compile every hot query (those given `rehearse` shapes) and run it once, in a transaction rolled
    back at the end; returns how many ran. For a process's warm-up (broker/warmup.py): the first order
    after a start no longer pays the compiling (about 1 ms a query) nor its connection's first run of
    each statement, when Postgres loads the tables' and indexes' catalog entries into the backend."""
    from django.db import transaction

    count = 0
    with transaction.atomic():  # select_for_update needs one; the rehearsal values lock nothing anyway
        for query in _REHEARSED:
            for shape, values in query._rehearsals:
                query._run(shape, values)
                count += 1
        transaction.set_rollback(True)
    return count


def _same(param: Any, marker: Any) -> bool:
    # The ORM rebuilds a list value as a new list of the same type, so a list marker is told by its type
    # and its unique content.
    return type(param) is type(marker) and param == marker


def _marker(number: int, value: Any) -> Any:
    """A stand-in for `value` that no real parameter equals: the compiled SQL's params are searched for it."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return _Marker([-(10**15) - number])
    if isinstance(value, bool):
        raise TypeError("CompiledQuery: a bool value would change the SQL, not its parameters; make it the shape")
    if isinstance(value, int):
        return -(10**15) - number
    if isinstance(value, Decimal):
        return Decimal(-(10**9) - number)
    if isinstance(value, str):
        return f"compiled-query-marker-{number}"
    raise TypeError(f"CompiledQuery: a {type(value).__name__} value is not supported")
