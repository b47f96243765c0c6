"""Query-string filters shared by every app's filter sets."""

from __future__ import annotations

from typing import Any

from django import forms
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

# The largest value of a 64-bit primary key (BigAutoField, DEFAULT_AUTO_FIELD): a larger
# number would reach the database and fail there instead of being refused as input.
MAX_ID = 2**63 - 1
ID_SCHEMA: dict[str, Any] = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}


class IdFilter(filters.NumberFilter):
    """An object's id: a whole number from 1 to ``MAX_ID``, else a 400 naming the field.

    django-filter's NumberFilter takes any decimal (``1.5``, ``-1e263``), which the
    database then refuses with an error instead of the client getting a 400.
    """

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)
        # Documented as the range it accepts; an override replaces the label, so it is kept.
        label = kwargs.get("label")
        extend_schema_field({**ID_SCHEMA, **({"description": label} if label else {})})(self)


class IdInFilter(filters.BaseInFilter, IdFilter):
    """Comma-separated ids (``?device_id=3,7``), each as IdFilter takes it."""
