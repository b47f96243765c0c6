"""The long-lived ingest processes: the Teltonika TCP/UDP server and the MQTT consumer.

Protocol code in the sub-packages is pure (bytes in, records out) and imports nothing
from Django; the management commands wrap it in servers that store through the
telemetry ingest service.
"""
