"""Telemetry: the one ingest service every transport stores through, and its queries."""
