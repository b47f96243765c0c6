"""The Teltonika TCP and UDP server: thin asyncio loops around the codec.

A device connects, sends its IMEI and is accepted (``01``) when an active device has that
IMEI as its external id, refused (``00``) otherwise. Each AVL packet is decoded, stored
through the telemetry ingest service (batched with other connections' packets by the
``PointWriter``) and acknowledged with its record count only after the commit. A packet
that does not decode is not acknowledged, so the device sends it again; a connection that
keeps sending such packets is closed. Commands queued for a connected device are sent once
its records are acknowledged, and its answers stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

from django.conf import settings
from django.utils import timezone
from prometheus_client import Counter, Gauge

from apps.devices import services as devices
from apps.devices.models import Device, DeviceProtocol
from apps.telemetry.services import EARLIEST_TS, LATEST_TS_AHEAD, Point
from apps.tenants.models import Tenant
from ingest_daemons.teltonika import codec
from ingest_daemons.teltonika.mapping import record_data
from ingest_daemons.writer import (
    DatabaseThreads,
    DeviceRefusedError,
    LimitedError,
    PointWriter,
)

logger = logging.getLogger(__name__)

TRANSPORT_TCP = "teltonika-tcp"
# Sessions read per scan for devices that reconnected through another daemon; a whole
# fleet reconnecting at once is read over several scans.
SESSION_SCAN_LIMIT = 5000
READ_SIZE = 65_536
# UDP devices are looked up once a minute at most, not per datagram.
UDP_DEVICE_CACHE_SECONDS = 60.0
# How often an active session's last activity is written: often enough for "online".
SESSION_TOUCH_SECONDS = 60.0
MAX_CONCURRENT_DATAGRAMS = 1_000

CONNECTIONS = Gauge("teltonika_open_connections", "Open device connections.")
CONNECTIONS_TOTAL = Counter(
    "teltonika_handshakes", "Connections by handshake outcome.", ["outcome"]
)
RECORDS = Counter("teltonika_records", "AVL records acknowledged.", ["transport"])
RECORDS_STORED = Counter("teltonika_records_stored", "AVL records newly stored.")
RECORDS_DUPLICATE = Counter("teltonika_records_duplicate", "AVL records already stored.")
RECORDS_REJECTED = Counter("teltonika_records_rejected", "AVL records the ingest refused.")
BAD_FRAMES = Counter("teltonika_bad_frames", "Frames that did not decode.", ["transport"])
CONNECTIONS_REPLACED = Counter(
    "teltonika_connections_replaced", "Connections closed because the device connected again."
)
STORAGE_FAILURES = Counter("teltonika_storage_failures", "Packets not stored, so not ACKed.")
PACKETS_REFUSED = Counter(
    "teltonika_packets_refused", "Packets of a device deactivated or deleted while connected."
)
PACKETS_LIMITED = Counter(
    "teltonika_packets_limited", "Packets over an ingest limit, so not ACKed.", ["reason"]
)
COMMANDS_SENT = Counter("teltonika_commands_sent", "Commands written to devices.")
COMMANDS_ANSWERED = Counter("teltonika_commands_answered", "Command answers stored.")
BYTES_RECEIVED = Counter("teltonika_received_bytes", "Bytes received from devices.")


@dataclass(frozen=True)
class ServerOptions:
    """How the daemon listens and behaves; every field has a setting of the same purpose."""

    bind: str = "0.0.0.0"
    port: int = 5072
    udp: bool = True
    max_connections: int = 20_000
    idle_timeout: float = 600.0
    # A device sends its IMEI right after connecting: a socket that has not done so this
    # long after connecting is not a device, however slowly it trickles bytes.
    handshake_timeout: float = 30.0
    # A frame, once its first bytes arrived, must be complete this long after: a device
    # writes a frame at once, while a client sending a byte now and then would otherwise
    # hold a connection and its buffer for ever without ever being idle.
    frame_timeout: float = 30.0
    max_frame_bytes: int = codec.MAX_FRAME_LENGTH
    max_bad_frames: int = 3
    batch_max_records: int = 5_000
    batch_max_delay: float = 0.005
    auto_register_tenant: str = ""
    command_poll_seconds: float = 1.0
    command_answer_timeout: float = 60.0
    # SO_REUSEPORT: several daemons on one machine listen on the same port and the kernel
    # spreads new connections (and UDP peers) across them, one interpreter per core.
    share_port: bool = False

    @classmethod
    def from_settings(cls, **overrides: Any) -> ServerOptions:
        options = cls(
            bind=settings.TCP_BIND,
            port=settings.TCP_PORT,
            udp=settings.TELTONIKA_UDP,
            max_connections=settings.TELTONIKA_MAX_CONNECTIONS,
            idle_timeout=settings.TELTONIKA_IDLE_TIMEOUT,
            handshake_timeout=settings.TELTONIKA_HANDSHAKE_TIMEOUT,
            frame_timeout=settings.TELTONIKA_FRAME_TIMEOUT,
            max_frame_bytes=settings.TELTONIKA_MAX_FRAME_BYTES,
            max_bad_frames=settings.TELTONIKA_MAX_BAD_FRAMES,
            batch_max_records=settings.TELTONIKA_BATCH_MAX_RECORDS,
            batch_max_delay=settings.TELTONIKA_BATCH_MAX_DELAY_MS / 1000,
            auto_register_tenant=settings.TELTONIKA_AUTO_REGISTER_TENANT,
            command_poll_seconds=settings.TELTONIKA_COMMAND_POLL_SECONDS,
            command_answer_timeout=float(settings.DEVICE_COMMAND_ANSWER_TIMEOUT),
            share_port=settings.TELTONIKA_SHARE_PORT,
        )
        return options.replace(**{k: v for k, v in overrides.items() if v is not None})

    def replace(self, **changes: Any) -> ServerOptions:
        return ServerOptions(**{**self.__dict__, **changes})


@dataclass(frozen=True)
class KnownDevice:
    """What the daemon needs of a device: who it is, whose it is, how to read its I/O."""

    id: int
    tenant_id: int
    imei: str
    model: str
    is_active: bool


def find_device(imei: str, auto_register_tenant: str) -> KnownDevice | None:
    """The device with this IMEI, registered into the named tenant if allowed and unknown."""
    row = (
        Device.objects.filter(external_id=imei)
        .values("id", "tenant_id", "model", "is_active")
        .first()
    )
    if row is None and auto_register_tenant:
        tenant = Tenant.objects.filter(slug=auto_register_tenant).first()
        if tenant is None:
            logger.error(
                "teltonika.auto_register_tenant_missing", extra={"slug": auto_register_tenant}
            )
            return None
        try:
            device, _token = devices.create_device(
                tenant=tenant,
                name=f"Teltonika {imei}",
                external_id=imei,
                protocol=DeviceProtocol.TELTONIKA,
            )
        except devices.DeviceQuotaExceededError:
            logger.warning(
                "teltonika.auto_register_quota_full", extra={"imei": imei, "tenant_id": tenant.pk}
            )
            return None
        logger.info("teltonika.auto_registered", extra={"imei": imei, "device_id": device.pk})
        row = {"id": device.pk, "tenant_id": tenant.pk, "model": "", "is_active": True}
    if row is None:
        return None
    return KnownDevice(row["id"], row["tenant_id"], imei, row["model"], row["is_active"])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST_TS_MS = (EARLIEST_TS - _EPOCH) // timedelta(milliseconds=1)
_LATEST_TS_AHEAD_MS = LATEST_TS_AHEAD // timedelta(milliseconds=1)


def packet_points(
    device: KnownDevice, codec_id: int, records: tuple[codec.AvlRecord, ...]
) -> list[Point]:
    """The records of one AVL packet as points for the ingest service.

    A tracker that saves records before its clock is synchronised stamps them 1970 or
    thereabouts. Such records are kept (the device cannot resend them any better) at the
    arrival time, one microsecond apart so they stay distinct; the device's own stamp stays
    in the data as ``device_ts_ms``.
    """
    received_at = timezone.now()
    # The bounds in whole milliseconds, so that each record is checked with two integer
    # comparisons before any datetime is made: this runs for every record received.
    latest_ms = (received_at - _EPOCH) // timedelta(milliseconds=1) + _LATEST_TS_AHEAD_MS
    points = []
    for index, record in enumerate(records):
        data = record_data(record, codec_id, device.model)
        timestamp_ms = record.timestamp_ms
        if _EARLIEST_TS_MS <= timestamp_ms <= latest_ms:
            ts = _EPOCH + timedelta(milliseconds=timestamp_ms)
        else:
            ts = received_at + timedelta(microseconds=index)
            data["device_ts_ms"] = timestamp_ms
        points.append(Point(device.tenant_id, device.id, ts, data))
    return points


@dataclass(eq=False)
class Connection:
    """One device's TCP connection and what the server tracks about it."""

    writer: asyncio.StreamWriter
    peer: str
    device: KnownDevice | None = None
    session_id: int | None = None
    records: int = 0
    bytes_received: int = 0
    bad_frames_in_a_row: int = 0
    acknowledged_once: bool = False
    busy: bool = False
    close_reason: str = ""
    command_id: int | None = None
    command_deadline: float = 0.0
    sending_command: bool = False
    session_touched_at: float = field(default_factory=time.monotonic)
    reading: asyncio.Task[bytes] | None = field(default=None, repr=False)

    def closing(self) -> bool:
        """Whether the server has decided to close this connection, and why is set."""
        return bool(self.close_reason)

    @property
    def ready_for_command(self) -> bool:
        return (
            self.acknowledged_once
            and not self.busy
            and self.command_id is None
            and not self.sending_command
            and not self.close_reason
        )


class TeltonikaServer:
    """The daemon: a TCP server, a UDP endpoint, the point writer and the command poller."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.database = DatabaseThreads()
        self.writer = PointWriter(
            self.database,
            max_points=options.batch_max_records,
            max_delay=options.batch_max_delay,
        )
        # Identified connections by device id (one per device), and every open one.
        self.connections: dict[int, Connection] = {}
        self._open: set[Connection] = set()
        self.open_connections = 0
        self.stopping = False
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._udp_devices: dict[str, tuple[float, KnownDevice | None]] = {}
        self._datagram_slots = asyncio.Semaphore(MAX_CONCURRENT_DATAGRAMS)
        self._stopped = asyncio.Event()
        # Devices connected here that have a command waiting, as of the last poll.
        self._pending: set[int] = set()

    @property
    def tcp_port(self) -> int:
        """The TCP port listened on (the real one when port 0 asked for any)."""
        assert self._tcp is not None
        return int(self._tcp.sockets[0].getsockname()[1])

    @property
    def udp_port(self) -> int | None:
        if self._udp is None:
            return None
        return int(self._udp.get_extra_info("sockname")[1])

    async def start(self) -> None:
        options = self.options
        self.writer.start()
        self._tcp = await asyncio.start_server(
            self._accept,
            options.bind,
            options.port,
            limit=READ_SIZE,
            backlog=1024,
            reuse_port=options.share_port or None,
        )
        if options.udp:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: DatagramHandler(self),
                local_addr=(options.bind, options.port or self.tcp_port),
                reuse_port=options.share_port or None,
            )
        self._background.append(asyncio.create_task(self._poll_commands(), name="commands"))
        self._background.append(
            asyncio.create_task(self._close_connections_replaced_elsewhere(), name="sessions")
        )
        logger.info(
            "teltonika.listening",
            extra={"bind": options.bind, "tcp_port": self.tcp_port, "udp_port": self.udp_port},
        )

    async def serve_until_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop accepting, let packets being stored finish and be ACKed, then close all."""
        if self.stopping:
            return
        self.stopping = True
        logger.info("teltonika.stopping", extra={"connections": self.open_connections})
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        for connection in list(self._open):
            if not connection.busy and connection.reading is not None:
                connection.close_reason = connection.close_reason or "server_shutdown"
                connection.reading.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=30)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.writer.close()
        self.database.shutdown()
        self._stopped.set()
        logger.info("teltonika.stopped")

    # TCP

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_address = writer.get_extra_info("peername")
        peer = f"{peer_address[0]}:{peer_address[1]}" if peer_address else ""
        connection = Connection(writer=writer, peer=peer)
        if self.stopping or self.open_connections >= self.options.max_connections:
            CONNECTIONS_TOTAL.labels("over_limit").inc()
            logger.warning("teltonika.connection_limit", extra={"peer": peer})
            writer.close()
            return
        self.open_connections += 1
        self._open.add(connection)
        CONNECTIONS.inc()
        try:
            await self._converse(reader, connection)
        except (ConnectionError, asyncio.IncompleteReadError):
            connection.close_reason = connection.close_reason or "connection_lost"
        except Exception:
            connection.close_reason = "server_error"
            logger.exception("teltonika.connection_failed", extra=self._log_fields(connection))
        finally:
            self.open_connections -= 1
            self._open.discard(connection)
            CONNECTIONS.dec()
            await self._close(connection)

    async def _converse(self, reader: asyncio.StreamReader, connection: Connection) -> None:
        options = self.options
        frames = codec.TcpFrameReader(max_frame_length=options.max_frame_bytes)
        handshake_deadline = time.monotonic() + options.handshake_timeout
        # When the frame waiting in the reader's buffer must be complete (None: no frame).
        frame_deadline: float | None = None
        while not connection.closing():
            now = time.monotonic()
            if connection.device is None:
                timeout, reason = handshake_deadline - now, "no_imei"
            else:
                timeout, reason = options.idle_timeout, "idle_timeout"
            if frame_deadline is not None and frame_deadline - now < timeout:
                timeout, reason = frame_deadline - now, "frame_timeout"
            reading = connection.reading = asyncio.ensure_future(reader.read(READ_SIZE))
            try:
                data = await asyncio.wait_for(reading, max(timeout, 0.0))
            except TimeoutError:
                connection.close_reason = reason
                if reason == "frame_timeout":
                    logger.info(
                        "teltonika.frame_timeout",
                        extra={**self._log_fields(connection), "buffered": frames.buffered},
                    )
                return
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # Only the server cancels a read alone: it is stopping, or a newer
                # connection of the same device replaced this one.
                connection.close_reason = connection.close_reason or "server_shutdown"
                return
            finally:
                connection.reading = None
            if not data:
                connection.close_reason = "closed_by_device"
                return
            connection.bytes_received += len(data)
            BYTES_RECEIVED.inc(len(data))
            try:
                ready = frames.feed(data)
            except codec.CodecError as error:
                # The stream can no longer be cut into frames: nothing else can be read.
                BAD_FRAMES.labels("tcp").inc()
                connection.close_reason = "unframeable_stream"
                logger.warning(
                    "teltonika.unframeable",
                    extra={**self._log_fields(connection), "error": str(error)},
                )
                return
            if not frames.buffered:
                frame_deadline = None
            elif ready or frame_deadline is None:
                # A new frame has started: its clock starts now.
                frame_deadline = time.monotonic() + options.frame_timeout
            for frame in ready:
                await self._on_frame(connection, frame)
                if connection.closing():
                    return
            if self.stopping:
                connection.close_reason = "server_shutdown"
                return

    async def _on_frame(self, connection: Connection, frame: codec.Frame) -> None:
        if frame.kind == "imei":
            await self._handshake(connection, frame.raw)
        elif connection.device is None:
            connection.close_reason = "data_before_imei"
        elif frame.kind == "avl":
            await self._on_avl_frame(connection, frame.raw)
        else:
            await self._on_command_frame(connection, frame.raw)

    async def _handshake(self, connection: Connection, raw: bytes) -> None:
        if connection.device is not None:
            connection.close_reason = "second_imei"
            return
        try:
            imei = codec.decode_imei(raw)
        except codec.CodecError:
            await self._refuse(connection, "bad_imei", "malformed")
            return
        try:
            device = await self.database.run(find_device, imei, self.options.auto_register_tenant)
        except Exception:
            logger.exception("teltonika.lookup_failed", extra={"imei": imei})
            await self._refuse(connection, "lookup_failed", "database_error")
            return
        if device is None or not device.is_active:
            outcome = "unknown" if device is None else "inactive"
            logger.info(
                "teltonika.refused",
                extra={"imei": imei, "peer": connection.peer, "reason": outcome},
            )
            await self._refuse(connection, f"{outcome}_imei", outcome)
            return
        connection.device = device
        previous = self.connections.get(device.id)
        if previous is not None and previous is not connection:
            # A device reconnects when its old link died unnoticed: the new one wins. An
            # old link held by another daemon is found by _close_connections_replaced_elsewhere.
            self._retire(previous)
        self.connections[device.id] = connection
        # Accepted as soon as it is known: the session below is bookkeeping, and when a
        # whole fleet reconnects at once (a daemon restart) the trackers should not wait
        # for it. What they send meanwhile waits in the socket until it is written.
        connection.writer.write(b"\x01")
        await connection.writer.drain()
        CONNECTIONS_TOTAL.labels("accepted").inc()
        try:
            connection.session_id = await self.database.run(
                devices.connect_device,
                device.id,
                device.tenant_id,
                TRANSPORT_TCP,
                connection.peer,
            )
        except Exception:
            # A device is not turned away for its session.
            logger.exception("teltonika.session_open_failed", extra={"device_id": device.id})
        logger.info("teltonika.connected", extra=self._log_fields(connection))

    @staticmethod
    def _retire(connection: Connection) -> None:
        """Close a device's older connection once a newer one is accepted."""
        connection.close_reason = "replaced"
        CONNECTIONS_REPLACED.inc()
        # A connection in the middle of storing a packet closes once it has sent the ACK.
        if connection.reading is not None and not connection.busy:
            connection.reading.cancel()

    async def _refuse(self, connection: Connection, reason: str, outcome: str) -> None:
        CONNECTIONS_TOTAL.labels(f"refused_{outcome}").inc()
        connection.writer.write(b"\x00")
        with contextlib.suppress(ConnectionError):
            await connection.writer.drain()
        connection.close_reason = reason

    async def _on_avl_frame(self, connection: Connection, raw: bytes) -> None:
        device = connection.device
        assert device is not None
        try:
            packet = codec.decode_avl_frame(raw)
        except codec.CodecError as error:
            BAD_FRAMES.labels("tcp").inc()
            connection.bad_frames_in_a_row += 1
            logger.warning(
                "teltonika.bad_frame",
                extra={
                    **self._log_fields(connection),
                    "error": str(error),
                    "frame_bytes": len(raw),
                    "bad_in_a_row": connection.bad_frames_in_a_row,
                },
            )
            # No ACK: the device keeps the records and sends them again.
            if connection.bad_frames_in_a_row >= self.options.max_bad_frames:
                connection.close_reason = "bad_frames"
            return
        connection.bad_frames_in_a_row = 0
        connection.busy = True
        try:
            points = packet_points(device, packet.codec_id, packet.records)
            try:
                counts = await self.writer.store(points)
            except DeviceRefusedError:
                # Deactivated or deleted while connected: refused as at the handshake.
                PACKETS_REFUSED.inc()
                logger.info("teltonika.device_refused", extra=self._log_fields(connection))
                connection.close_reason = "device_inactive"
                return
            except LimitedError as error:
                # Not acknowledged and left open: the tracker keeps the records and sends
                # them again after its own response timeout, which is the pause the limit
                # asks for. Closing would make it reconnect and resend at once.
                PACKETS_LIMITED.labels(str(error.refusal.reason)).inc()
                logger.info(
                    "teltonika.limited",
                    extra={**self._log_fields(connection), "reason": str(error.refusal.reason)},
                )
                return
            except Exception:
                STORAGE_FAILURES.inc()
                # Nothing acknowledged: closing makes the device reconnect and resend soon,
                # instead of waiting for its response timeout on an open link.
                connection.close_reason = "storage_failed"
                return
            connection.writer.write(codec.encode_tcp_ack(len(packet.records)))
            await connection.writer.drain()
        finally:
            connection.busy = False
        connection.records += len(packet.records)
        connection.acknowledged_once = True
        RECORDS.labels("tcp").inc(len(packet.records))
        RECORDS_STORED.inc(counts.stored)
        RECORDS_DUPLICATE.inc(counts.duplicates)
        RECORDS_REJECTED.inc(counts.rejected)
        if counts.rejected:
            logger.warning(
                "teltonika.records_rejected",
                extra={**self._log_fields(connection), "rejected": counts.rejected},
            )
        if self.stopping:
            connection.close_reason = "server_shutdown"
            return
        await self._touch_session(connection)
        await self._send_next_command(connection)

    async def _touch_session(self, connection: Connection) -> None:
        now = time.monotonic()
        if (
            connection.session_id is None
            or now - connection.session_touched_at < SESSION_TOUCH_SECONDS
        ):
            return
        connection.session_touched_at = now
        try:
            await self.database.run(
                devices.touch_device_session,
                connection.session_id,
                connection.records,
                connection.bytes_received,
            )
        except Exception:
            logger.exception("teltonika.session_touch_failed", extra=self._log_fields(connection))

    async def _on_command_frame(self, connection: Connection, raw: bytes) -> None:
        try:
            packet = codec.decode_command_frame(raw)
        except codec.CodecError as error:
            BAD_FRAMES.labels("tcp").inc()
            logger.warning(
                "teltonika.bad_command_frame",
                extra={**self._log_fields(connection), "error": str(error)},
            )
            return
        for message in packet.messages:
            if message.type in (codec.TYPE_RESPONSE, codec.TYPE_NACK) and connection.command_id:
                command_id = connection.command_id
                connection.command_id = None
                answer = (
                    message.text if message.type == codec.TYPE_RESPONSE else "nack: IMEI mismatch"
                )
                try:
                    await self.database.run(devices.record_command_answer, command_id, answer)
                    COMMANDS_ANSWERED.inc()
                except Exception:
                    logger.exception(
                        "teltonika.answer_not_stored", extra={"command_id": command_id}
                    )
            else:
                # Serial-port data (Codec 13/15) and answers nobody asked for are logged only.
                logger.info(
                    "teltonika.device_message",
                    extra={
                        **self._log_fields(connection),
                        "codec": packet.codec_id,
                        "message_type": message.type,
                        "size": len(message.payload),
                    },
                )
        await self._send_next_command(connection)

    async def _send_next_command(self, connection: Connection) -> None:
        device = connection.device
        if device is None or not connection.ready_for_command or device.id not in self._pending:
            return
        connection.sending_command = True
        try:
            command = await self.database.run(devices.claim_next_command, device.id, self.name)
            if command is None:
                self._pending.discard(device.id)
                return
            try:
                connection.writer.write(codec.encode_command(command.text))
                await connection.writer.drain()
            except Exception:
                await self.database.run(devices.return_command_to_queue, command.pk)
                raise
            connection.command_id = command.pk
            connection.command_deadline = time.monotonic() + self.options.command_answer_timeout
            COMMANDS_SENT.inc()
            logger.info(
                "teltonika.command_sent",
                extra={**self._log_fields(connection), "command_id": command.pk},
            )
        finally:
            connection.sending_command = False

    async def _poll_commands(self) -> None:
        """Find commands for devices connected here, send them, and time out silent ones."""
        while True:
            await asyncio.sleep(self.options.command_poll_seconds)
            try:
                queued = await self.database.run(devices.devices_with_queued_commands)
            except Exception:
                logger.exception("teltonika.command_poll_failed")
                continue
            self._pending = queued & self.connections.keys()
            now = time.monotonic()
            for device_id, connection in list(self.connections.items()):
                if connection.command_id and connection.command_deadline < now:
                    command_id, connection.command_id = connection.command_id, None
                    with contextlib.suppress(Exception):
                        await self.database.run(devices.time_out_command, command_id)
                if device_id in self._pending:
                    with contextlib.suppress(Exception):
                        await self._send_next_command(connection)

    async def _close_connections_replaced_elsewhere(self) -> None:
        """Close connections whose device has connected again through another daemon.

        Every daemon opens a session when it accepts a device. A TCP session newer than
        the one a connection here opened means that the device came back through another
        daemon (several sharing a port, or behind a load balancer) and this link is dead
        or a clone's: it is closed as replaced, within about one poll interval.
        """
        # The newest session looked at; sessions from before the daemon started are not.
        seen: int | None = None
        while True:
            opened: list[tuple[int, int]] = []
            try:
                if seen is None:
                    seen = await self.database.run(devices.latest_session_id)
                else:
                    opened = await self.database.run(
                        devices.sessions_opened_after, seen, TRANSPORT_TCP, SESSION_SCAN_LIMIT
                    )
            except Exception:
                logger.exception("teltonika.session_scan_failed")
            for session_id, device_id in opened:
                seen = session_id
                connection = self.connections.get(device_id)
                # A connection whose session is not written yet cannot be ordered against
                # the new one; its own session, when written, closes the other daemon's.
                if (
                    connection is None
                    or connection.session_id is None
                    or connection.session_id >= session_id
                    or connection.closing()
                ):
                    continue
                logger.info(
                    "teltonika.replaced_elsewhere",
                    extra={**self._log_fields(connection), "session_id": session_id},
                )
                self._retire(connection)
            await asyncio.sleep(self.options.command_poll_seconds)

    async def _close(self, connection: Connection) -> None:
        writer = connection.writer
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        device = connection.device
        if device is None:
            return
        if self.connections.get(device.id) is connection:
            del self.connections[device.id]
        if connection.command_id:
            with contextlib.suppress(Exception):
                await self.database.run(devices.time_out_command, connection.command_id)
        logger.info(
            "teltonika.disconnected",
            extra={**self._log_fields(connection), "reason": connection.close_reason},
        )
        if connection.session_id is not None:
            try:
                await self.database.run(
                    partial(
                        devices.disconnect_device,
                        device.id,
                        device.tenant_id,
                        connection.session_id,
                        records=connection.records,
                        bytes_received=connection.bytes_received,
                        reason=connection.close_reason or "closed",
                    )
                )
            except Exception:
                logger.exception(
                    "teltonika.session_close_failed", extra={"session_id": connection.session_id}
                )

    @staticmethod
    def _log_fields(connection: Connection) -> dict[str, Any]:
        device = connection.device
        return {
            "peer": connection.peer,
            "imei": device.imei if device else None,
            "device_id": device.id if device else None,
        }

    # UDP

    async def on_datagram(
        self, datagram: bytes, address: tuple[str, int], transport: asyncio.DatagramTransport
    ) -> None:
        BYTES_RECEIVED.inc(len(datagram))
        try:
            packet = codec.decode_udp_datagram(datagram)
        except codec.CodecError as error:
            BAD_FRAMES.labels("udp").inc()
            logger.warning(
                "teltonika.bad_datagram",
                extra={"peer": f"{address[0]}:{address[1]}", "error": str(error)},
            )
            return
        device = await self._udp_device(packet.imei)
        if device is None or not device.is_active:
            logger.info(
                "teltonika.refused",
                extra={"imei": packet.imei, "peer": address[0], "reason": "unknown_or_inactive"},
            )
            return
        points = packet_points(device, packet.avl.codec_id, packet.avl.records)
        try:
            counts = await self.writer.store(points)
        except DeviceRefusedError:
            PACKETS_REFUSED.inc()
            # Looked up again with the next datagram.
            self._udp_devices.pop(packet.imei, None)
            return
        except LimitedError as error:
            # No ACK: the tracker sends the datagram again later.
            PACKETS_LIMITED.labels(str(error.refusal.reason)).inc()
            return
        except Exception:
            STORAGE_FAILURES.inc()
            return
        count = len(packet.avl.records)
        transport.sendto(
            codec.encode_udp_ack(packet.packet_id, packet.avl_packet_id, count), address
        )
        RECORDS.labels("udp").inc(count)
        RECORDS_STORED.inc(counts.stored)
        RECORDS_DUPLICATE.inc(counts.duplicates)
        RECORDS_REJECTED.inc(counts.rejected)

    async def _udp_device(self, imei: str) -> KnownDevice | None:
        now = time.monotonic()
        cached = self._udp_devices.get(imei)
        if cached is not None and cached[0] > now:
            return cached[1]
        device = await self.database.run(find_device, imei, self.options.auto_register_tenant)
        self._udp_devices[imei] = (now + UDP_DEVICE_CACHE_SECONDS, device)
        return device


class DatagramHandler(asyncio.DatagramProtocol):
    """Hands each datagram to the server, a bounded number at a time."""

    def __init__(self, server: TeltonikaServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.create_task(self._handle(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        async with self.server._datagram_slots:
            try:
                await self.server.on_datagram(data, addr, self.transport)
            except Exception:
                logger.exception("teltonika.datagram_failed", extra={"peer": addr[0]})
