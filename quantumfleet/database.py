"""Cursors and statements for the queries that run on every ingested batch."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psycopg
from django.db import connection


def bound_cursor() -> psycopg.Cursor[Any]:
    """A cursor of Django's PostgreSQL connection that binds parameters on the server.

    Django's own cursors bind on the client, so PostgreSQL parses and plans every statement
    anew; for the ingest statements over the partitioned table that costs more than running
    them. A statement run through this cursor is prepared after a few uses (the connection's
    ``prepare_threshold``, see ``database_from_url``) and its plan kept for the session.
    Errors leave as psycopg's: callers wrap them with ``connection.wrap_database_errors``.
    """
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def rows_where_in(
    statement: str, column: str, values: Collection[int | str], array_type: str
) -> list[tuple[Any, ...]]:
    """Rows of ``statement`` whose ``column`` is one of ``values``, in one statement.

    ``statement`` holds one ``{}`` where the condition goes; ``array_type`` is the
    PostgreSQL type of the values (``bigint``, ``text``). The statement, column and type
    are the caller's own SQL, never outside input; the values are always parameters.

    On PostgreSQL the values travel as one array literal (psycopg would adapt a list
    element by element in Python) through a prepared statement, sent untyped so that
    PostgreSQL reads it once as the array type. A cast from text written in the statement
    would instead parse the literal again for every row compared: seconds for a batch of a
    thousand devices. On SQLite, one placeholder per value.
    """
    if not values:
        return []
    if connection.vendor == "postgresql":
        sql = statement.format(f"{column} = ANY(%s::{array_type}[])")
        with connection.wrap_database_errors, bound_cursor() as cursor:
            cursor.execute(sql, [array_literal(values)])
            return cursor.fetchall()
    placeholders = ", ".join(["%s"] * len(values))
    with connection.cursor() as cursor:
        cursor.execute(statement.format(f"{column} IN ({placeholders})"), list(values))
        return list(cursor.fetchall())


def array_literal(values: Collection[int | str]) -> str:
    """A PostgreSQL array literal of ``values``, strings quoted so no value splits in two."""
    items = (
        str(value)
        if isinstance(value, int)
        else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for value in values
    )
    return "{" + ",".join(items) + "}"
