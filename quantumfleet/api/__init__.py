"""Conventions shared by every app's API: routing, paging, errors and the schema."""
