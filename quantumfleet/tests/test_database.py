"""Statements that select rows by a list of values, on PostgreSQL and SQLite alike."""

from __future__ import annotations

import pytest

from apps.tenants.models import Tenant
from quantumfleet.database import rows_where_in

pytestmark = pytest.mark.django_db

AWKWARD_NAMES = ["a,b", 'say "hi"', "back\\slash", "{braces}", " spaced ", "NULL", ""]


def test_each_value_matches_itself_however_it_is_written():
    tenants = {
        name: Tenant.objects.create(name=name, slug=f"awkward-{index}")
        for index, name in enumerate(AWKWARD_NAMES)
    }
    Tenant.objects.create(name="a", slug="not-asked")

    rows = rows_where_in("SELECT name, id FROM tenants WHERE {}", "name", AWKWARD_NAMES, "text")

    assert dict(rows) == {name: tenant.pk for name, tenant in tenants.items()}


def test_numbers_and_conditions_around_the_list():
    kept = [Tenant.objects.create(name=f"t{n}", slug=f"t{n}") for n in range(3)]
    Tenant.objects.create(name="other", slug="other")
    ids = [tenant.pk for tenant in kept] + [0]

    rows = rows_where_in(
        "SELECT id FROM tenants WHERE name <> 't1' AND {} ORDER BY id", "id", ids, "bigint"
    )

    assert [row[0] for row in rows] == [kept[0].pk, kept[2].pk]


def test_no_values_ask_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert rows_where_in("SELECT id FROM tenants WHERE {}", "id", [], "bigint") == []
