"""The MQTT ingest consumer: messages stored through the ingest service, then acknowledged.

paho-mqtt's network thread receives the messages of ``ingest/+`` at QoS 1 and queues them.
The consumer's own thread takes what has queued (up to a size; after a few milliseconds
when the stream is quiet), parses every message, resolves all their device tokens with one
query and writes all their points as one batch of the telemetry ingest service. Only once
that batch is committed does it acknowledge the messages (PUBACK), in the order they came.

The session is persistent (``clean_start`` off, a session expiry): a consumer killed with
messages received but not acknowledged gets them again when it reconnects, and
deduplication on (device, time) absorbs the repeats. Only a point without ``ts`` is not
absorbed: it takes its arrival time, so a redelivered copy is stored again at a new time.

A message that can never be stored (invalid JSON, an unknown or inactive token, ``data``
not an object, an absurd ``ts``) is logged with its token shortened, counted, optionally
republished to a dead-letter topic, and acknowledged so that it is not delivered forever.
While the database is unreachable nothing is acknowledged: the batch is retried with a
growing delay, and the broker stops sending once ``receive_maximum`` messages are
unacknowledged, which bounds the memory held meanwhile.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import Counter, Gauge

from apps.telemetry.batching import Refusal, Submission, write_submissions
from ingest_daemons.mqtt.buffered_client import BufferedClient
from ingest_daemons.mqtt.payload import BadMessageError, Reason, TopicPattern, parse_payload
from ingest_daemons.writer import with_usable_connection

logger = logging.getLogger(__name__)

PROTOCOLS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}
# Waits of the storage retries while the database is unreachable: doubled up to the cap.
FIRST_RETRY_DELAY = 0.5
# How long rejected messages wait for the broker to take their dead letters.
DEAD_LETTER_TIMEOUT = 10.0
DISCONNECT_TIMEOUT = 10.0
# A topic filter no consumer subscribes to. Unsubscribing from it changes nothing; the
# broker's answer only tells that it has read every packet sent before.
CLOSING_FILTER = "quantumfleet/consumer-closing/{}"
# How often an idle consumer thread looks at the stop flag.
IDLE_WAKEUP = 0.5
DETAIL_SHOWN = 200

MESSAGES = Counter("mqtt_messages", "Messages received.")
MESSAGES_ACKNOWLEDGED = Counter("mqtt_messages_acknowledged", "Messages acknowledged (PUBACK).")
MESSAGES_REJECTED = Counter(
    "mqtt_messages_rejected", "Messages refused, acknowledged without storing.", ["reason"]
)
POINTS_STORED = Counter("mqtt_points_stored", "Points newly stored.")
POINTS_DUPLICATE = Counter("mqtt_points_duplicate", "Points already stored.")
POINTS_REJECTED = Counter("mqtt_points_rejected", "Points of stored messages the ingest refused.")
STORAGE_FAILURES = Counter("mqtt_storage_failures", "Batch writes that failed, to be retried.")
DEAD_LETTERS = Counter("mqtt_dead_letters", "Rejected messages republished as dead letters.")
CONNECTED = Gauge("mqtt_connected", "1 while connected to the broker.")


@dataclass(frozen=True)
class ConsumerOptions:
    """Where the consumer connects and how it batches; each field has a setting."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = field(default="", repr=False)
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    topic: str = "ingest/+"
    shared_group: str = ""
    client_id: str = "quantumfleet-ingest"
    protocol: str = "5"
    keepalive: int = 30
    session_expiry: int = 86_400
    receive_maximum: int = 10_000
    batch_max_messages: int = 5_000
    batch_max_delay: float = 0.005
    dead_letter_topic: str = ""
    reconnect_max_delay: int = 30
    retry_max_delay: float = 30.0

    @classmethod
    def from_settings(cls, **overrides: Any) -> ConsumerOptions:
        options = cls(
            host=settings.EMQX_HOST,
            port=settings.EMQX_PORT,
            username=settings.MQTT_USERNAME,
            password=settings.MQTT_PASSWORD,
            tls=settings.MQTT_TLS,
            tls_ca_file=settings.MQTT_TLS_CA_FILE,
            tls_cert_file=settings.MQTT_TLS_CERT_FILE,
            tls_key_file=settings.MQTT_TLS_KEY_FILE,
            topic=settings.MQTT_TOPIC,
            shared_group=settings.MQTT_SHARED_GROUP,
            client_id=settings.MQTT_CLIENT_ID,
            protocol=settings.MQTT_PROTOCOL,
            keepalive=settings.MQTT_KEEPALIVE,
            session_expiry=settings.MQTT_SESSION_EXPIRY,
            receive_maximum=settings.MQTT_RECEIVE_MAXIMUM,
            batch_max_messages=settings.MQTT_BATCH_MAX_MESSAGES,
            batch_max_delay=settings.MQTT_BATCH_MAX_DELAY_MS / 1000,
            dead_letter_topic=settings.MQTT_DEAD_LETTER_TOPIC,
        )
        return options.replace(**{k: v for k, v in overrides.items() if v is not None})

    def replace(self, **changes: Any) -> ConsumerOptions:
        return ConsumerOptions(**{**self.__dict__, **changes})

    @property
    def subscription(self) -> str:
        """The filter subscribed to: the topic, or the topic shared by a group of consumers."""
        return f"$share/{self.shared_group}/{self.topic}" if self.shared_group else self.topic

    @property
    def is_v5(self) -> bool:
        return self.protocol == "5"


def new_client(options: ConsumerOptions, client_id: str, *, persistent: bool) -> BufferedClient:
    """A paho client with the broker login and TLS of ``options``; acks are left to us."""
    if options.protocol not in PROTOCOLS:
        raise ValueError(f"MQTT protocol {options.protocol!r}: use 5 or 3.1.1.")
    client = BufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        # MQTT 5 says it with clean_start and a session expiry when connecting instead.
        clean_session=None if options.is_v5 else not persistent,
        protocol=PROTOCOLS[options.protocol],
        manual_ack=True,
    )
    if options.username:
        client.username_pw_set(options.username, options.password or None)
    if options.tls:
        client.tls_set(
            ca_certs=options.tls_ca_file or None,
            certfile=options.tls_cert_file or None,
            keyfile=options.tls_key_file or None,
        )
    return client


def connect_properties(options: ConsumerOptions, *, persistent: bool) -> Properties | None:
    if not options.is_v5:
        return None
    # paho leaves this constructor untyped.
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = options.session_expiry if persistent else 0
    # The broker sends at most this many messages before their PUBACKs: the size the
    # batches can reach, and the bound on what waits in memory during a database outage.
    properties.ReceiveMaximum = options.receive_maximum
    return properties


def broker_problem(options: ConsumerOptions, timeout: float = 5.0) -> str | None:
    """Why the broker cannot be used (unreachable, login refused), or None if it can."""
    answered = threading.Event()
    refusal: list[str] = []

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            refusal.append(f"the broker refused the login: {reason}")
        answered.set()

    client = new_client(options, f"{options.client_id}-check", persistent=False)
    client.on_connect = on_connect
    try:
        client.connect(
            options.host,
            options.port,
            keepalive=max(int(timeout), 5),
            properties=connect_properties(options, persistent=False),
        )
    except OSError as error:
        return f"no MQTT broker answers at {options.host}:{options.port} ({error})"
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return f"{options.host}:{options.port} did not answer as an MQTT broker"
        return refusal[0] if refusal else None
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass
class Totals:
    """What this consumer has done since it started."""

    messages: int = 0
    acknowledged: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    points_rejected: int = 0
    storage_failures: int = 0
    dead_letters: int = 0


@dataclass(slots=True)
class Delivery:
    """A received message, with the connection it came on (its mid is only valid there)."""

    mid: int
    qos: int
    topic: str
    payload: bytes | bytearray
    connection: int
    received_at: datetime


@dataclass(slots=True)
class Entry:
    """A delivery being handled: what it is to be stored as, or why it was refused."""

    delivery: Delivery
    submission: Submission | None = None
    reason: Reason | None = None
    detail: str = ""
    # Its dead letter was not taken by the broker: it must come again, so no PUBACK now.
    hold: bool = False

    def reject(self, reason: Reason, detail: str) -> None:
        self.submission = None
        self.reason = reason
        self.detail = detail[:DETAIL_SHOWN]


def store_submissions(submissions: Sequence[Submission]) -> None:
    """Write the submissions as one batch; invalid points are refused one by one."""
    write_submissions(submissions, skip_invalid=True)


class MqttConsumer:
    """One broker session: receives, stores in batches, acknowledges after each commit."""

    def __init__(
        self,
        options: ConsumerOptions,
        *,
        store: Callable[[Sequence[Submission]], None] = store_submissions,
    ) -> None:
        self.options = options
        self.pattern = TopicPattern.parse(options.topic)
        self.store = store
        self.totals = Totals()
        # Set while subscribed, for whoever waits for the consumer to be ready.
        self.subscribed = threading.Event()
        self._queue: deque[Delivery] = deque()
        # Reentrant: ``stop`` may run in a signal handler while this thread holds it.
        self._ready = threading.Condition(threading.RLock())
        self._stopping = threading.Event()
        self._drain_left: int | None = None
        # Counts connects and disconnects. A PUBACK is sent only on the connection its
        # message came on: the broker sends unacknowledged messages again after a
        # reconnect, and an old packet id may by then name another message.
        self._connection = 0
        self._ack_lock = threading.Lock()
        self._disconnected = threading.Event()
        self._unsubscribed = threading.Event()
        self.client = new_client(options, options.client_id, persistent=True)
        self.client.reconnect_delay_set(1, options.reconnect_max_delay)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_publish_received = self._on_publish_received

    def run(self) -> None:
        """Consume until ``stop``; what was received by then is stored and acknowledged."""
        options = self.options
        logger.info(
            "mqtt.starting",
            extra={
                "broker": f"{options.host}:{options.port}",
                "subscription": options.subscription,
                "client_id": options.client_id,
                "protocol": options.protocol,
            },
        )
        self.client.connect_async(
            options.host,
            options.port,
            keepalive=options.keepalive,
            # MQTT 3.1.1 said it with clean_session when the client was made.
            clean_start=False if options.is_v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=connect_properties(options, persistent=True),
        )
        self.client.loop_start()
        try:
            while batch := self._next_batch():
                self._handle(batch)
        finally:
            self._disconnect()
            connection.close()
        logger.info("mqtt.stopped", extra=self.totals.__dict__)

    def stop(self) -> None:
        """Stop taking messages: those already received are still stored and acknowledged."""
        with self._ready:
            if not self._stopping.is_set():
                self._drain_left = len(self._queue)
                self._stopping.set()
            self._ready.notify_all()

    # paho's network thread

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            logger.error("mqtt.connect_refused", extra={"reason": str(reason)})
            return
        with self._ack_lock:
            self._connection += 1
        CONNECTED.set(1)
        logger.info("mqtt.connected", extra={"session_present": flags.session_present})
        # Every time, session or not: the topic setting may have changed since.
        client.subscribe(self.options.subscription, qos=1)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        logger.warning(
            "mqtt.connect_failed",
            extra={"broker": f"{self.options.host}:{self.options.port}"},
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Before paho reconnects and drops its unsent packets: PUBACKs queued until now
        # are lost with the connection, and none is queued for it from here on.
        with self._ack_lock:
            self._connection += 1
        CONNECTED.set(0)
        self.subscribed.clear()
        # No answer to the closing round trip comes on a closed connection.
        self._unsubscribed.set()
        self._disconnected.set()
        if self._stopping.is_set():
            logger.info("mqtt.disconnected", extra={"reason": str(reason)})
        else:
            logger.warning("mqtt.connection_lost", extra={"reason": str(reason)})

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            logger.error(
                "mqtt.subscribe_refused",
                extra={"subscription": self.options.subscription, "reason": str(reasons[0])},
            )
            return
        logger.info("mqtt.subscribed", extra={"subscription": self.options.subscription})
        self.subscribed.set()

    def _on_unsubscribe(self, *answer: Any) -> None:
        # Only the closing round trip unsubscribes, and any answer to it will do.
        self._unsubscribed.set()

    def _on_publish_received(self, mid: int, qos: int, topic: bytes, payload: bytes) -> None:
        try:
            topic_text = topic.decode()
        except UnicodeDecodeError:
            # Brokers refuse such topics; should one pass, it is refused as a bad topic.
            topic_text = ""
        # What timezone.now() gives with USE_TZ, without reading the setting per message.
        received_at = datetime.now(UTC)
        delivery = Delivery(mid, qos, topic_text, payload, self._connection, received_at)
        with self._ready:
            self._queue.append(delivery)
            self._ready.notify()

    # The consumer's thread

    def _next_batch(self) -> list[Delivery]:
        """The next messages to store together; empty once stopped and drained."""
        with self._ready:
            while not self._queue and not self._stopping.is_set():
                self._ready.wait(IDLE_WAKEUP)
            quiet = self._drain_left is None and len(self._queue) == 1
        if quiet:
            # A quiet moment: the messages right behind this one may share its commit.
            # Under load the queue fills while the previous batch commits anyway.
            time.sleep(self.options.batch_max_delay)
        with self._ready:
            limit = self.options.batch_max_messages
            if self._drain_left is not None:
                limit = min(limit, self._drain_left)
            batch = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
            if self._drain_left is not None:
                self._drain_left -= len(batch)
            return batch

    def _handle(self, batch: list[Delivery]) -> None:
        self.totals.messages += len(batch)
        MESSAGES.inc(len(batch))
        entries = [self._parse(delivery) for delivery in batch]
        if not self._store(entries):
            # Stopped during a database outage: what is left is the broker's to send again.
            with self._ready:
                self._drain_left = 0
            return
        self._count(entries)
        self._send_dead_letters(entries)
        self._acknowledge(entries)

    def _parse(self, delivery: Delivery) -> Entry:
        entry = Entry(delivery)
        try:
            token = self.pattern.token_of(delivery.topic)
            readings = parse_payload(delivery.payload, delivery.received_at)
        except BadMessageError as error:
            entry.reject(error.reason, error.detail)
            return entry
        entry.submission = Submission(token, readings)
        return entry

    def _store(self, entries: list[Entry]) -> bool:
        """Write the batch; False if stopped before the database took it."""
        pending = [(entry, entry.submission) for entry in entries if entry.submission]
        if not pending:
            return True
        try:
            return self._store_retrying([submission for _, submission in pending])
        except DatabaseError:
            # Not an outage: the database refuses something in the batch. Each message is
            # written on its own, so that only the one it refuses is rejected.
            logger.exception("mqtt.batch_refused", extra={"messages": len(pending)})
        for entry, submission in pending:
            try:
                if not self._store_retrying([submission]):
                    return False
            except DatabaseError as error:
                entry.reject(Reason.DATABASE_REFUSED, str(error))
        return True

    def _store_retrying(self, submissions: list[Submission]) -> bool:
        """Write, retrying while the database is unreachable; False if stopped meanwhile."""
        delay = FIRST_RETRY_DELAY
        failures = 0
        while True:
            try:
                with_usable_connection(self.store, submissions)
            except (OperationalError, InterfaceError) as error:
                failures += 1
                self.totals.storage_failures += 1
                STORAGE_FAILURES.inc()
                logger.warning(
                    "mqtt.storage_failed",
                    extra={
                        "messages": len(submissions),
                        "failures": failures,
                        "retry_in": delay,
                        "error": str(error).strip()[:DETAIL_SHOWN],
                    },
                )
                # Nothing of this batch is acknowledged; a stop now leaves it to the broker,
                # which delivers it again to the next session.
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, self.options.retry_max_delay)
                continue
            if failures:
                logger.info("mqtt.storage_recovered", extra={"failures": failures})
            return True

    def _count(self, entries: list[Entry]) -> None:
        for entry in entries:
            submission = entry.submission
            if submission is not None:
                outcome = submission.outcome
                if outcome.refusal is Refusal.UNKNOWN_TOKEN:
                    entry.reject(Reason.UNKNOWN_TOKEN, "no device has this token")
                elif outcome.refusal is Refusal.DEVICE_INACTIVE:
                    entry.reject(Reason.DEVICE_INACTIVE, f"device {outcome.device_id} is inactive")
                elif outcome.limit is not None:
                    # MQTT has no way to say "later": the message goes the way of every
                    # refused one (the dead-letter topic when configured), counted.
                    entry.reject(Reason.LIMITED, outcome.limit.message)
                elif len(outcome.rejections) == len(submission.readings):
                    first = outcome.rejections[0]
                    entry.reject(Reason.INVALID_POINT, f"{first.field}: {first.message}")
                else:
                    self._count_stored(entry, submission)
            if entry.reason is not None:
                self.totals.rejected += 1
                MESSAGES_REJECTED.labels(entry.reason.value).inc()
                logger.warning(
                    "mqtt.message_rejected",
                    extra={
                        "topic": self.pattern.shown(entry.delivery.topic),
                        "reason": entry.reason.value,
                        "detail": entry.detail,
                    },
                )

    def _count_stored(self, entry: Entry, submission: Submission) -> None:
        outcome = submission.outcome
        self.totals.stored += outcome.stored
        self.totals.duplicates += outcome.duplicates
        POINTS_STORED.inc(outcome.stored)
        POINTS_DUPLICATE.inc(outcome.duplicates)
        if outcome.rejections:
            first = outcome.rejections[0]
            self.totals.points_rejected += len(outcome.rejections)
            POINTS_REJECTED.inc(len(outcome.rejections))
            logger.warning(
                "mqtt.points_rejected",
                extra={
                    "topic": self.pattern.shown(entry.delivery.topic),
                    "rejected": len(outcome.rejections),
                    "detail": f"{first.index}.{first.field}: {first.message}",
                },
            )

    def _send_dead_letters(self, entries: list[Entry]) -> None:
        """Republish rejected messages; one the broker did not take is not acknowledged."""
        topic = self.options.dead_letter_topic
        if not topic:
            return
        sent: list[tuple[Entry, mqtt.MQTTMessageInfo]] = []
        for entry in entries:
            if entry.reason is not None:
                sent.append((entry, self.client.publish(topic, dead_letter(entry), qos=1)))
        for entry, info in sent:
            # Raised when paho could not even queue it: ``is_published`` tells either way.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(DEAD_LETTER_TIMEOUT)
            if info.is_published():
                self.totals.dead_letters += 1
                DEAD_LETTERS.inc()
            else:
                entry.hold = True
                logger.warning(
                    "mqtt.dead_letter_failed",
                    extra={"topic": self.pattern.shown(entry.delivery.topic)},
                )

    def _acknowledge(self, entries: list[Entry]) -> None:
        with self._ack_lock:
            deliveries = [
                entry.delivery
                for entry in entries
                if not entry.hold and entry.delivery.connection == self._connection
            ]
            # QoS 0 messages have no acknowledgement; the subscription's QoS 1 caps the rest.
            self.client.ack_many(delivery.mid for delivery in deliveries if delivery.qos == 1)
        self.totals.acknowledged += len(deliveries)
        MESSAGES_ACKNOWLEDGED.inc(len(deliveries))

    def _disconnect(self) -> None:
        self._stopping.set()
        if self.client.is_connected():
            self._confirm_acknowledgements()
            self._disconnected.clear()
            self.client.disconnect()
            self._disconnected.wait(DISCONNECT_TIMEOUT)
        else:
            # Ends paho's reconnect attempts too.
            self.client.disconnect()
        self.client.loop_stop()
        CONNECTED.set(0)

    def _confirm_acknowledgements(self) -> None:
        """Wait until the broker has read every PUBACK sent, before the connection closes.

        The broker handles a connection's packets in order, so its answer to a request sent
        after the last PUBACK means every PUBACK was applied. Closed without it, PUBACKs
        still unread on the broker's side can be lost with the connection (a reset, or a
        busy broker that drops the connection before reading them), and the next session
        receives those messages again: stored once all the same, but rejected messages
        would be dead-lettered twice.
        """
        self._unsubscribed.clear()
        result, _ = self.client.unsubscribe(closing_filter(self.options.client_id))
        if result != mqtt.MQTT_ERR_SUCCESS or not self._unsubscribed.wait(DISCONNECT_TIMEOUT):
            logger.warning("mqtt.close_unconfirmed", extra={"result": str(result)})


def closing_filter(client_id: str) -> str:
    """The filter of the closing round trip: the client id with no wildcard or level in it."""
    return CLOSING_FILTER.format(re.sub(r"[+#/$]", "_", client_id))


def dead_letter(entry: Entry) -> bytes:
    """The envelope of a rejected message: where it came from, why, and its payload."""
    delivery = entry.delivery
    envelope: dict[str, Any] = {
        "topic": delivery.topic,
        "reason": entry.reason.value if entry.reason else None,
        "detail": entry.detail,
        "received_at": delivery.received_at.isoformat(),
    }
    try:
        envelope["payload"] = delivery.payload.decode()
    except UnicodeDecodeError:
        envelope["payload_base64"] = base64.b64encode(delivery.payload).decode()
    return orjson.dumps(envelope)
