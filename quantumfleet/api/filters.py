"""Query-string filters shared by every app's filter sets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
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


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, turned to UTC before it reaches the database.

    Python takes offsets up to 23:59 and PostgreSQL only up to 15:59, so a time such as
    ``2025-01-01T00:00:00+18:30`` failed there; in UTC it is an ordinary time. A time whose
    UTC form falls outside years 1 to 9999 is a 400.
    """

    def to_python(self, value: Any) -> datetime | None:
        parsed: datetime | None = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("This time is out of range.", code="invalid") from None


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    """An ISO 8601 time filter that compares in UTC (see UtcIsoDateTimeField)."""

    field_class = UtcIsoDateTimeField
