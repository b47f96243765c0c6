"""``manage.py runmqtt``: the MQTT ingest consumer."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from prometheus_client import start_http_server

from ingest_daemons.mqtt.consumer import ConsumerOptions, MqttConsumer, broker_problem


class Command(BaseCommand):
    help = (
        "Subscribe to MQTT_TOPIC (ingest/+) at QoS 1 on the broker at EMQX_HOST:EMQX_PORT, "
        "store each message through the ingest service and acknowledge it after the commit."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", help=f"Broker host (default {settings.EMQX_HOST}).")
        parser.add_argument("--port", type=int, help=f"Broker port (default {settings.EMQX_PORT}).")
        parser.add_argument("--topic", help=f"Topic filter (default {settings.MQTT_TOPIC}).")
        parser.add_argument(
            "--shared-group", help="Join the shared subscription $share/<group>/<topic>."
        )
        parser.add_argument(
            "--client-id", help=f"MQTT client id, the session's name ({settings.MQTT_CLIENT_ID})."
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.MQTT_METRICS_PORT,
            help="Serve Prometheus counters on this port (0: off).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only say whether the broker accepts the consumer's login; exit 1 if not.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        consumer_options = ConsumerOptions.from_settings(
            host=options["host"],
            port=options["port"],
            topic=options["topic"],
            shared_group=options["shared_group"],
            client_id=options["client_id"],
        )
        broker = f"{consumer_options.host}:{consumer_options.port}"
        if options["check"]:
            problem = broker_problem(consumer_options)
            if problem is not None:
                raise CommandError(problem, returncode=1)
            self.stdout.write(f"MQTT broker at {broker} accepts the consumer.")
            return

        try:
            consumer = MqttConsumer(consumer_options)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if options["metrics_port"]:
            start_http_server(options["metrics_port"])

        def stop(signal_number: int, frame: FrameType | None) -> None:
            consumer.stop()

        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, stop)
        consumer.run()
        totals = consumer.totals
        self.stdout.write(
            f"runmqtt: {totals.messages} messages from {broker}, {totals.stored} points stored, "
            f"{totals.duplicates} duplicates, {totals.rejected} messages rejected."
        )
