"""Serializer behaviour shared by the apps."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models


class ReplaceOnPutMixin:
    """Makes PUT replace the object: writable fields left out get their model default.

    DRF's PUT keeps the stored value of an omitted optional field, which is a merge; the
    seed's PUT replaced. PATCH still merges.
    """

    instance: Any
    partial: bool
    fields: Any

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        values: dict[str, Any] = super().to_internal_value(data)  # type: ignore[misc]
        if self.instance is None or self.partial:
            return values

        model_meta = type(self.instance)._meta
        for field in self.fields.values():
            if field.read_only or field.source in values or field.source == "*":
                continue
            try:
                model_field = model_meta.get_field(field.source)
            except FieldDoesNotExist:
                continue
            if isinstance(model_field, models.Field):
                values[field.source] = model_field.get_default()
        return values
