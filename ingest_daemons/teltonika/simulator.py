"""A simulated Teltonika tracker: the device side of the TCP protocol, for tests and load.

It sends its IMEI, then Codec 8 Extended packets of FMC650-like records, and waits for
each packet's ACK before the next, as a real tracker does. Commands the server sends
(Codec 12) are answered with a Codec 12 response. Imports nothing from Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ingest_daemons.teltonika import codec

# A few of the FMC650's I/O elements, with the byte width each travels in.
IGNITION, MOVEMENT, GSM_SIGNAL, GNSS_STATUS = 239, 240, 21, 71
SPEED, EXTERNAL_VOLTAGE, BATTERY_VOLTAGE = 24, 66, 67
TOTAL_ODOMETER = 216
RECORD_IO_SIZES = {
    IGNITION: 1,
    MOVEMENT: 1,
    GSM_SIGNAL: 1,
    GNSS_STATUS: 1,
    SPEED: 2,
    EXTERNAL_VOLTAGE: 2,
    BATTERY_VOLTAGE: 2,
    TOTAL_ODOMETER: 4,
}
ACK_TIMEOUT = 30.0

# make_record's record as Codec 8 Extended bytes, packed in one call: time and GPS; event
# id and element count; then for the 1-, 2-, 4- and 8-byte groups and the variable-length
# group, the group's element count followed by its (id, value) pairs. The general encoder
# gives the same bytes at several times the cost, which a load generator cannot afford:
# its own CPU would be taken from the server it measures on the same machine.
_ONE_BYTE_IDS = (IGNITION, MOVEMENT, GSM_SIGNAL, GNSS_STATUS)
_TWO_BYTE_IDS = (SPEED, EXTERNAL_VOLTAGE, BATTERY_VOLTAGE)
_FOUR_BYTE_IDS = (TOTAL_ODOMETER,)
_RECORD_8E = struct.Struct(
    ">QBiihHBH"
    + "HH"
    + "H" + "HB" * len(_ONE_BYTE_IDS)
    + "H" + "HH" * len(_TWO_BYTE_IDS)
    + "H" + "HI" * len(_FOUR_BYTE_IDS)
    + "H"
    + "H"
)  # fmt: skip
_COORDINATE_SCALE = 10_000_000
_ALTITUDE, _ANGLE, _SATELLITES = 520, 90, 11
_GSM_SIGNAL, _EXTERNAL_MV, _BATTERY_MV = 4, 24_100, 4_050


class ImeiRefusedError(Exception):
    """The server answered the IMEI with ``00``."""


@dataclass
class Route:
    """Where the simulated vehicle is: it drives east at a constant speed."""

    latitude: float
    longitude: float
    speed_kmh: float
    odometer_m: int = 0

    def advance(self, seconds: float) -> None:
        metres = self.speed_kmh / 3.6 * seconds
        self.odometer_m += round(metres)
        metres_per_degree = 111_320 * max(math.cos(math.radians(self.latitude)), 0.01)
        self.longitude += metres / metres_per_degree


def make_record(route: Route, timestamp_ms: int) -> codec.AvlRecord:
    """One periodic record at the route's position, with FMC650-like I/O values."""
    moving = route.speed_kmh > 0
    io: dict[int, int | bytes] = {
        IGNITION: 1,
        MOVEMENT: int(moving),
        GSM_SIGNAL: _GSM_SIGNAL,
        GNSS_STATUS: 1,
        SPEED: round(route.speed_kmh),
        EXTERNAL_VOLTAGE: _EXTERNAL_MV,
        BATTERY_VOLTAGE: _BATTERY_MV,
        TOTAL_ODOMETER: route.odometer_m,
    }
    gps = codec.GpsElement(
        longitude=round(route.longitude, 7),
        latitude=round(route.latitude, 7),
        altitude=_ALTITUDE,
        angle=_ANGLE,
        satellites=_SATELLITES,
        speed=round(route.speed_kmh),
    )
    return codec.AvlRecord(
        timestamp_ms=timestamp_ms,
        priority=0,
        gps=gps,
        event_io_id=0,
        io=io,
        io_sizes=dict(RECORD_IO_SIZES),
    )


def encoded_record(route: Route, timestamp_ms: int) -> bytes:
    """``make_record(route, timestamp_ms)`` encoded for Codec 8 Extended, byte for byte."""
    speed = round(route.speed_kmh)
    return _RECORD_8E.pack(
        timestamp_ms,
        0,
        round(round(route.longitude, 7) * _COORDINATE_SCALE),
        round(round(route.latitude, 7) * _COORDINATE_SCALE),
        _ALTITUDE,
        _ANGLE,
        _SATELLITES,
        speed,
        0,
        len(RECORD_IO_SIZES),
        len(_ONE_BYTE_IDS),
        IGNITION,
        1,
        MOVEMENT,
        int(route.speed_kmh > 0),
        GSM_SIGNAL,
        _GSM_SIGNAL,
        GNSS_STATUS,
        1,
        len(_TWO_BYTE_IDS),
        SPEED,
        speed,
        EXTERNAL_VOLTAGE,
        _EXTERNAL_MV,
        BATTERY_VOLTAGE,
        _BATTERY_MV,
        len(_FOUR_BYTE_IDS),
        TOTAL_ODOMETER,
        route.odometer_m,
        0,
        0,
    )


@dataclass
class SimulatedTracker:
    """One tracker's TCP session with the server."""

    host: str
    port: int
    imei: str
    route: Route
    answer: Callable[[str], str] = field(default=lambda command: f"OK {command}")
    commands_received: list[str] = field(default_factory=list)
    records_acknowledged: int = 0
    _reader: asyncio.StreamReader | None = field(default=None, repr=False)
    _writer: asyncio.StreamWriter | None = field(default=None, repr=False)
    _acks: asyncio.Queue[int] = field(default_factory=asyncio.Queue, repr=False)
    _listening: asyncio.Task[None] | None = field(default=None, repr=False)
    _last_timestamp_ms: int = 0

    async def connect(self) -> None:
        """Connect and send the IMEI; raises ImeiRefusedError when the server answers 00."""
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._writer.write(codec.encode_imei(self.imei))
        await self._writer.drain()
        answer = await asyncio.wait_for(self._reader.readexactly(1), ACK_TIMEOUT)
        if answer != b"\x01":
            await self.close()
            raise ImeiRefusedError(self.imei)
        self._listening = asyncio.create_task(self._listen())

    def next_records(self, count: int, interval_s: float = 1.0) -> list[codec.AvlRecord]:
        """``count`` new records, each a distinct millisecond after the previous ones."""
        records = []
        for _ in range(count):
            records.append(make_record(self.route, self._next_timestamp_ms()))
            self.route.advance(interval_s)
        return records

    def next_frame(self, count: int, interval_s: float = 1.0) -> bytes:
        """``count`` new records as one Codec 8 Extended frame, as ``next_records`` makes them.

        The same bytes as encoding ``next_records(count)`` with the codec, built cheaply
        enough for the load generator (see ``encoded_record``).
        """
        records = []
        for _ in range(count):
            records.append(encoded_record(self.route, self._next_timestamp_ms()))
            self.route.advance(interval_s)
        count_byte = bytes((count,))
        data = bytes((codec.CODEC_8E,)) + count_byte + b"".join(records) + count_byte
        return codec.frame_data_field(data)

    def _next_timestamp_ms(self) -> int:
        """Now, or a millisecond after the last record if the clock has not moved on."""
        timestamp_ms = max(int(time.time() * 1000), self._last_timestamp_ms + 1)
        self._last_timestamp_ms = timestamp_ms
        return timestamp_ms

    async def send(self, records: list[codec.AvlRecord]) -> int:
        """Send one packet and return the count the server acknowledged."""
        return await self.send_raw(codec.encode_avl_frame(codec.CODEC_8E, records))

    async def send_raw(self, frame: bytes, timeout: float = ACK_TIMEOUT) -> int:
        """Send bytes as they are and wait for one ACK (TimeoutError if none comes)."""
        assert self._writer is not None
        self._writer.write(frame)
        await self._writer.drain()
        async with asyncio.timeout(timeout):
            count = await self._acks.get()
        self.records_acknowledged += count
        return count

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()

    async def _listen(self) -> None:
        """Read ACKs and commands from the server for as long as the connection lasts.

        An ACK is 4 bytes; a command frame starts with a 4-byte zero preamble. The two
        cannot be confused because this tracker never sends an empty packet, whose ACK
        would be zero too.
        """
        assert self._reader is not None
        assert self._writer is not None
        try:
            while True:
                head = await self._reader.readexactly(4)
                if head != b"\x00\x00\x00\x00":
                    self._acks.put_nowait(struct.unpack(">I", head)[0])
                    continue
                length_bytes = await self._reader.readexactly(4)
                (length,) = struct.unpack(">I", length_bytes)
                rest = await self._reader.readexactly(length + 4)
                packet = codec.decode_command_frame(head + length_bytes + rest)
                for message in packet.messages:
                    command = message.text
                    self.commands_received.append(command)
                    self._writer.write(codec.encode_command_response(self.answer(command)))
                await self._writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
