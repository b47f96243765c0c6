"""Devices of a tenant and the ingest tokens they authenticate with."""
