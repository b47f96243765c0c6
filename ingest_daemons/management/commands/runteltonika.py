"""``manage.py runteltonika``: the Teltonika TCP and UDP server."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from prometheus_client import start_http_server

from ingest_daemons.teltonika.server import ServerOptions, TeltonikaServer

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Serve Teltonika trackers over TCP and UDP on TCP_BIND:TCP_PORT: IMEI handshake, "
        "Codec 8/8E/16 records stored and acknowledged after the commit, commands sent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", help=f"Address to listen on (default {settings.TCP_BIND}).")
        parser.add_argument("--port", type=int, help=f"Port (default {settings.TCP_PORT}).")
        parser.add_argument("--no-udp", action="store_true", help="Do not listen for UDP.")
        parser.add_argument(
            "--share-port",
            action="store_true",
            help="Listen with SO_REUSEPORT, so that several daemons share the port "
            "(TELTONIKA_SHARE_PORT).",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.TELTONIKA_METRICS_PORT,
            help="Serve Prometheus counters on this port (0: off).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        server_options = ServerOptions.from_settings(
            bind=options["bind"],
            port=options["port"],
            udp=False if options["no_udp"] else None,
            share_port=True if options["share_port"] else None,
        )
        if options["metrics_port"]:
            start_http_server(options["metrics_port"], addr=server_options.bind)
        asyncio.run(serve(server_options))


async def serve(options: ServerOptions) -> None:
    """Run the server until SIGTERM or SIGINT, then shut it down gracefully."""
    server = TeltonikaServer(options)
    await server.start()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, lambda: asyncio.ensure_future(server.stop()))
    await server.serve_until_stopped()
