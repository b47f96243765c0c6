"""Tenants, the roles users hold in them, and the one mechanism that scopes requests."""
