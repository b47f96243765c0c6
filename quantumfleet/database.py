"""Cursors for the statements that run on every ingested batch."""

from __future__ import annotations

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
