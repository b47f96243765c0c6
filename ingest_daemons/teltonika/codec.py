"""Teltonika FM tracker protocol: framing, AVL records and GPRS commands, without any I/O.

Covers the IMEI handshake, AVL data packets in Codec 8, 8 Extended and 16 over TCP and UDP,
their acknowledgements, and the command codecs 12, 13, 14 and 15. Every decode function
either returns a complete, checked value or raises ``CodecError``: a frame is never half
decoded. All integers on the wire are big-endian.

Decisions where the vendor documentation leaves room:

* An IMEI is exactly 15 ASCII digits. The check digit is not verified, so test and
  simulated devices may use any 15-digit number.
* Codec 13 and 15 timestamps are the 4-byte field read as UNIX seconds, kept raw. The
  published Codec 13 example only makes sense with an 8-byte field; it is decoded by the
  documented 4-byte layout all the same, so its text starts with four stray bytes.
* Command text is kept byte for byte (``payload``); ``text`` is the payload as UTF-8 when
  it is valid UTF-8 and as Latin-1 otherwise, so no byte is ever lost or replaced.
* An I/O id repeated inside one record keeps its last value.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from fastcrc import crc16

CODEC_8 = 0x08
CODEC_8E = 0x8E
CODEC_16 = 0x10
CODEC_12 = 0x0C
CODEC_13 = 0x0D
CODEC_14 = 0x0E
CODEC_15 = 0x0F

AVL_CODECS = frozenset({CODEC_8, CODEC_8E, CODEC_16})
COMMAND_CODECS = frozenset({CODEC_12, CODEC_13, CODEC_14, CODEC_15})

# Command message types.
TYPE_COMMAND = 0x05
TYPE_RESPONSE = 0x06
TYPE_DEVICE_MESSAGE = 0x0B
TYPE_NACK = 0x11

# The server's one-byte answers to the IMEI frame.
IMEI_ACCEPTED = b"\x01"
IMEI_REFUSED = b"\x00"

# Whole TCP frame, header and CRC included. The vendor caps packets at 1280 bytes; NX
# elements in Codec 8 Extended can be longer, so the default leaves generous room.
MAX_FRAME_LENGTH = 16384
IMEI_LENGTH = 15
# The reader hands over IMEI frames up to this length so that the server can refuse a
# malformed IMEI with 00; a longer length field means the stream is not a tracker's.
MAX_IMEI_FIELD_LENGTH = 32

# Preamble (4) + data field length (4) before the data field, CRC (4) after it.
FRAME_HEADER_LENGTH = 8
FRAME_OVERHEAD = 12
# Codec id and the two record or message counts: the smallest possible data field.
MIN_DATA_FIELD_LENGTH = 3
# Bytes before the AVL data of a UDP datagram, so also the offset of its codec id: length 2,
# packet id 2, not-usable byte 1, AVL packet id 1, IMEI length 2, IMEI 15.
UDP_HEADER_LENGTH = 23
UDP_NOT_USABLE_BYTE = 0x01

BytesLike = bytes | bytearray | memoryview


class CodecError(ValueError):
    """Malformed or unsupported bytes."""


class CrcMismatchError(CodecError):
    """The frame's CRC does not match its data field."""


class FrameTooLongError(CodecError):
    """A frame declares more bytes than the reader accepts."""


def crc16_ibm(data: BytesLike) -> int:
    """CRC-16/IBM of ``data``, as Teltonika computes it over a frame's data field.

    CRC-16/IBM is also known as CRC-16/ARC: reflected polynomial 0xA001, initial value 0.
    The checksum runs over every byte of every frame; computed in Python it took a tenth of
    the daemon's time under load, so it comes from a compiled library.
    """
    return crc16.arc(data)


# AVL records

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COORDINATE_SCALE = 10_000_000

# Timestamp, priority, longitude, latitude, altitude, angle, satellites, speed.
_RECORD_TIME_AND_GPS = ">QBiihHBH"
_RECORD_HEAD = struct.Struct(_RECORD_TIME_AND_GPS)
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U16_PAIR = struct.Struct(">HH")
_FRAME_HEAD = struct.Struct(">II")
_U32 = struct.Struct(">I")
_UDP_HEAD = struct.Struct(">HHBB")
_UDP_ACK = struct.Struct(">HHBBB")
_COMMAND_HEAD = struct.Struct(">BI")

_FIXED_WIDTHS = (1, 2, 4, 8)
_VALUE_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True, slots=True)
class GpsElement:
    """Where a record was taken. Without a fix the position repeats the last known one."""

    longitude: float
    latitude: float
    altitude: int
    angle: int
    satellites: int
    speed: int

    @property
    def valid(self) -> bool:
        """Whether the device had a fix: only then do the coordinates describe the record."""
        return self.satellites > 0


@dataclass(frozen=True, slots=True)
class AvlRecord:
    """One AVL record: a timestamped position plus the device's I/O element values.

    ``io`` holds fixed-size values as unsigned integers and variable-length (NX) values as
    bytes; ``io_sizes`` the byte width each value travelled in, which signedness and
    re-encoding need. ``raw`` is the record's bytes as received (empty for a record built
    in code) and takes no part in comparisons.
    """

    timestamp_ms: int
    priority: int
    gps: GpsElement
    event_io_id: int
    io: dict[int, int | bytes]
    generation_type: int | None = None
    io_sizes: dict[int, int] = field(default_factory=dict)
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def timestamp(self) -> datetime:
        """The record's time as an aware UTC datetime (OverflowError past year 9999)."""
        return _EPOCH + timedelta(milliseconds=self.timestamp_ms)


@dataclass(frozen=True, slots=True)
class AvlPacket:
    """The records of one AVL data packet and the codec they were sent in."""

    codec_id: int
    records: tuple[AvlRecord, ...]


@dataclass(frozen=True, slots=True)
class _IoLayout:
    """How one AVL codec writes the I/O part of a record."""

    id_format: str
    id_size: int
    count: struct.Struct
    max_id: int
    max_count: int
    has_variable_length: bool
    # Timestamp and GPS element, then the event I/O id and the element count (and, in
    # Codec 16, the generation type between them).
    head: struct.Struct
    # Unpackers of the fixed-size I/O elements, keyed by their four counts.
    shapes: dict[tuple[int, int, int, int], tuple[struct.Struct, tuple[int, ...]]]


_IO_LAYOUTS = {
    CODEC_8: _IoLayout(
        id_format="B",
        id_size=1,
        count=_U8,
        max_id=0xFF,
        max_count=0xFF,
        has_variable_length=False,
        head=struct.Struct(_RECORD_TIME_AND_GPS + "BB"),
        shapes={},
    ),
    CODEC_8E: _IoLayout(
        id_format="H",
        id_size=2,
        count=_U16,
        max_id=0xFFFF,
        max_count=0xFFFF,
        has_variable_length=True,
        head=struct.Struct(_RECORD_TIME_AND_GPS + "HH"),
        shapes={},
    ),
    CODEC_16: _IoLayout(
        id_format="H",
        id_size=2,
        count=_U8,
        max_id=0xFFFF,
        max_count=0xFF,
        has_variable_length=False,
        head=struct.Struct(_RECORD_TIME_AND_GPS + "HBB"),
        shapes={},
    ),
}
# Devices repeat a handful of record shapes; a forged stream could invent many more.
_MAX_CACHED_SHAPES = 1024


def _io_shape(
    layout: _IoLayout, counts: tuple[int, int, int, int]
) -> tuple[struct.Struct, tuple[int, ...]]:
    """One unpacker for every fixed-size (id, value) pair of a record, and their widths.

    The unpacker starts after the first count and skips the other three counts as padding,
    so a record's fixed-size elements come out of a single call.
    """
    shape = layout.shapes.get(counts)
    if shape is not None:
        return shape
    pad = "x" * layout.count.size
    runs = [
        (layout.id_format + _VALUE_FORMATS[width]) * count
        for width, count in zip(_FIXED_WIDTHS, counts, strict=True)
    ]
    widths = tuple(
        width for width, count in zip(_FIXED_WIDTHS, counts, strict=True) for _ in range(count)
    )
    shape = (struct.Struct(">" + pad.join(runs)), widths)
    if len(layout.shapes) >= _MAX_CACHED_SHAPES:
        layout.shapes.clear()
    layout.shapes[counts] = shape
    return shape


def _decode_records(view: memoryview, codec_id: int, record_count: int) -> tuple[AvlRecord, ...]:
    """Decode ``record_count`` records that must fill ``view`` exactly."""
    layout = _IO_LAYOUTS[codec_id]
    head = layout.head
    count_unpack = layout.count.unpack_from
    count_size = layout.count.size
    # Bytes of one (id, value) pair of each fixed width.
    size_1, size_2, size_4, size_8 = (layout.id_size + width for width in _FIXED_WIDTHS)
    has_generation_type = codec_id == CODEC_16
    end = len(view)
    records = []
    position = 0
    for _ in range(record_count):
        start = position
        fields = head.unpack_from(view, position)
        position += head.size
        generation_type = None
        if has_generation_type:
            event_io_id, generation_type, total = fields[8:]
        else:
            event_io_id, total = fields[8:]

        # Find the four counts first, so the elements between them are read in one call.
        first_pair = position + count_size
        (count_1,) = count_unpack(view, position)
        position = first_pair + count_1 * size_1
        (count_2,) = count_unpack(view, position)
        position += count_size + count_2 * size_2
        (count_4,) = count_unpack(view, position)
        position += count_size + count_4 * size_4
        (count_8,) = count_unpack(view, position)
        position += count_size + count_8 * size_8
        if position > end:
            raise CodecError("fixed-size I/O elements overrun the record")
        unpacker, widths = _io_shape(layout, (count_1, count_2, count_4, count_8))
        pairs = unpacker.unpack_from(view, first_pair)
        ids = pairs[0::2]
        io: dict[int, int | bytes] = dict(zip(ids, pairs[1::2], strict=True))
        io_sizes = dict(zip(ids, widths, strict=True))
        element_count = len(widths)

        if layout.has_variable_length:
            (count,) = _U16.unpack_from(view, position)
            position += 2
            for _ in range(count):
                io_id, length = _U16_PAIR.unpack_from(view, position)
                position += 4
                if position + length > end:
                    raise CodecError(f"I/O element {io_id} of {length} bytes overruns the record")
                io[io_id] = bytes(view[position : position + length])
                io_sizes[io_id] = length
                position += length
            element_count += count

        if element_count != total:
            raise CodecError(f"record declares {total} I/O elements but carries {element_count}")
        gps = GpsElement(
            fields[2] / _COORDINATE_SCALE,
            fields[3] / _COORDINATE_SCALE,
            fields[4],
            fields[5],
            fields[6],
            fields[7],
        )
        records.append(
            AvlRecord(
                fields[0],
                fields[1],
                gps,
                event_io_id,
                io,
                generation_type,
                io_sizes,
                bytes(view[start:position]),
            )
        )
    if position != end:
        raise CodecError(f"{end - position} bytes left over after {record_count} records")
    return tuple(records)


def _decode_avl_view(data: memoryview) -> AvlPacket:
    if len(data) < MIN_DATA_FIELD_LENGTH:
        raise CodecError(f"AVL data field of {len(data)} bytes is too short")
    codec_id = data[0]
    if codec_id not in AVL_CODECS:
        raise CodecError(f"unsupported AVL codec 0x{codec_id:02X}")
    first_count = data[1]
    last_count = data[-1]
    if first_count != last_count:
        raise CodecError(f"record counts disagree: {first_count} then {last_count}")
    try:
        records = _decode_records(data[2:-1], codec_id, first_count)
    except struct.error as error:
        raise CodecError(f"AVL records end early: {error}") from None
    return AvlPacket(codec_id, records)


def decode_avl_data(codec_id_and_body: BytesLike) -> AvlPacket:
    """Decode an AVL data field: codec id, record count, records, record count again."""
    return _decode_avl_view(memoryview(codec_id_and_body).cast("B"))


def _checked_data_field(frame: BytesLike) -> memoryview:
    """The data field of a whole TCP frame, once its header, length and CRC are checked."""
    view = memoryview(frame).cast("B")
    if len(view) < FRAME_OVERHEAD + MIN_DATA_FIELD_LENGTH:
        raise CodecError(f"frame of {len(view)} bytes is too short")
    preamble, length = _FRAME_HEAD.unpack_from(view)
    if preamble:
        raise CodecError(f"non-zero preamble 0x{preamble:08X}")
    if length != len(view) - FRAME_OVERHEAD:
        raise CodecError(f"data field length {length} but {len(view) - FRAME_OVERHEAD} bytes")
    data = view[FRAME_HEADER_LENGTH:-4]
    (received,) = _U32.unpack_from(view, len(view) - 4)
    computed = crc16_ibm(data)
    if received != computed:
        raise CrcMismatchError(f"CRC 0x{received:08X} received, 0x{computed:04X} computed")
    return data


def decode_avl_frame(frame: BytesLike) -> AvlPacket:
    """Decode a whole TCP AVL frame: preamble, data field length, data field and CRC."""
    return _decode_avl_view(_checked_data_field(frame))


def _encode_int(value: int, width: int, what: str) -> bytes:
    try:
        return value.to_bytes(width, "big")
    except OverflowError:
        raise CodecError(f"{what} {value} does not fit {width} bytes unsigned") from None


def _encode_record(codec_id: int, layout: _IoLayout, record: AvlRecord) -> bytes:
    gps = record.gps
    try:
        head = _RECORD_HEAD.pack(
            record.timestamp_ms,
            record.priority,
            round(gps.longitude * _COORDINATE_SCALE),
            round(gps.latitude * _COORDINATE_SCALE),
            gps.altitude,
            gps.angle,
            gps.satellites,
            gps.speed,
        )
    except (struct.error, ValueError, OverflowError) as error:
        raise CodecError(f"record header out of range: {error}") from None

    groups: dict[int, list[tuple[int, int]]] = {width: [] for width in _FIXED_WIDTHS}
    variable: list[tuple[int, bytes]] = []
    for io_id, value in record.io.items():
        if not 0 <= io_id <= layout.max_id:
            raise CodecError(f"I/O id {io_id} does not fit codec 0x{codec_id:02X}")
        if isinstance(value, bytes):
            if not layout.has_variable_length:
                raise CodecError(f"codec 0x{codec_id:02X} cannot carry bytes for I/O {io_id}")
            if len(value) > 0xFFFF:
                raise CodecError(f"I/O element {io_id} is longer than 65535 bytes")
            variable.append((io_id, value))
            continue
        width = record.io_sizes.get(io_id) or _smallest_width(value)
        if width not in groups:
            raise CodecError(f"I/O element {io_id} has width {width}, not 1, 2, 4 or 8")
        groups[width].append((io_id, value))

    total = len(record.io)
    if total > layout.max_count:
        raise CodecError(f"{total} I/O elements do not fit codec 0x{codec_id:02X}")
    id_width = layout.id_size
    count_width = layout.count.size
    if codec_id == CODEC_16:
        if record.generation_type is None:
            raise CodecError("a Codec 16 record needs a generation type")
        parts = [head, _encode_int(record.event_io_id, 2, "event I/O id")]
        parts.append(_encode_int(record.generation_type, 1, "generation type"))
        parts.append(_encode_int(total, 1, "I/O element count"))
    else:
        parts = [head, _encode_int(record.event_io_id, id_width, "event I/O id")]
        parts.append(_encode_int(total, count_width, "I/O element count"))
    for width, pairs in groups.items():
        parts.append(len(pairs).to_bytes(count_width, "big"))
        for io_id, value in pairs:
            parts.append(io_id.to_bytes(id_width, "big"))
            parts.append(_encode_int(value, width, f"I/O element {io_id}"))
    if layout.has_variable_length:
        parts.append(len(variable).to_bytes(2, "big"))
        for io_id, value in variable:
            parts.append(_U16_PAIR.pack(io_id, len(value)))
            parts.append(value)
    return b"".join(parts)


def _smallest_width(value: int) -> int:
    for width in _FIXED_WIDTHS:
        if 0 <= value < 1 << (8 * width):
            return width
    raise CodecError(f"I/O value {value} does not fit 8 bytes unsigned")


def encode_avl_data(codec_id: int, records: Sequence[AvlRecord]) -> bytes:
    """The AVL data field for ``records``: codec id, count, records, count.

    A value's width comes from ``io_sizes``, or is the smallest that holds it. Byte values
    travel as NX elements, which only Codec 8 Extended has. A generation type is written
    in Codec 16 only.
    """
    layout = _IO_LAYOUTS.get(codec_id)
    if layout is None:
        raise CodecError(f"unsupported AVL codec 0x{codec_id:02X}")
    if len(records) > 0xFF:
        raise CodecError(f"{len(records)} records do not fit one packet (255 at most)")
    count = bytes((len(records),))
    body = b"".join(_encode_record(codec_id, layout, record) for record in records)
    return bytes((codec_id,)) + count + body + count


def frame_data_field(data: bytes) -> bytes:
    """A whole TCP frame around an encoded data field: zero preamble, length, data, CRC."""
    return _FRAME_HEAD.pack(0, len(data)) + data + _U32.pack(crc16_ibm(data))


def encode_avl_frame(codec_id: int, records: Sequence[AvlRecord]) -> bytes:
    """A whole TCP AVL frame for ``records``, as a device sends it."""
    return frame_data_field(encode_avl_data(codec_id, records))


def encode_tcp_ack(record_count: int) -> bytes:
    """The server's answer to a TCP AVL packet: the number of records it accepted."""
    return _encode_int(record_count, 4, "record count")


# IMEI


def _checked_imei(imei: str) -> str:
    if len(imei) != IMEI_LENGTH or not (imei.isascii() and imei.isdigit()):
        raise CodecError(f"IMEI must be {IMEI_LENGTH} ASCII digits, got {imei!r}")
    return imei


def encode_imei(imei: str) -> bytes:
    """The IMEI frame a device opens a TCP session with: 2-byte length and ASCII digits.

    The text is not validated beyond being ASCII, so tests can send malformed IMEIs.
    """
    if not imei.isascii() or len(imei) > 0xFFFF:
        raise CodecError(f"IMEI {imei!r} is not short ASCII text")
    return len(imei).to_bytes(2, "big") + imei.encode("ascii")


def decode_imei(frame: BytesLike) -> str:
    """The IMEI of a whole IMEI frame; 15 ASCII digits or CodecError."""
    raw = bytes(frame)
    if len(raw) < 2:
        raise CodecError("IMEI frame is shorter than its length field")
    length = int.from_bytes(raw[:2], "big")
    if length != len(raw) - 2:
        raise CodecError(f"IMEI length field {length} but {len(raw) - 2} bytes follow")
    return _checked_imei(raw[2:].decode("latin-1"))


# UDP


@dataclass(frozen=True, slots=True)
class UdpPacket:
    """One UDP datagram: its channel and AVL packet ids, the sender's IMEI and records."""

    packet_id: int
    avl_packet_id: int
    imei: str
    avl: AvlPacket


def decode_udp_datagram(datagram: BytesLike) -> UdpPacket:
    """Decode a UDP AVL datagram. UDP has no CRC, so every length and count is checked."""
    view = memoryview(datagram).cast("B")
    if len(view) < UDP_HEADER_LENGTH + MIN_DATA_FIELD_LENGTH:
        raise CodecError(f"datagram of {len(view)} bytes is too short")
    length, packet_id, _not_usable, avl_packet_id = _UDP_HEAD.unpack_from(view)
    if length != len(view) - 2:
        raise CodecError(f"datagram length field {length} but {len(view) - 2} bytes follow")
    imei_length = int.from_bytes(view[6:8], "big")
    if imei_length != IMEI_LENGTH:
        raise CodecError(f"IMEI length {imei_length}, expected {IMEI_LENGTH}")
    imei = _checked_imei(bytes(view[8:UDP_HEADER_LENGTH]).decode("latin-1"))
    avl = _decode_avl_view(view[UDP_HEADER_LENGTH:])
    return UdpPacket(packet_id, avl_packet_id, imei, avl)


def encode_udp_datagram(
    packet_id: int, avl_packet_id: int, imei: str, codec_id: int, records: Sequence[AvlRecord]
) -> bytes:
    """A UDP AVL datagram for ``records``, as a device sends it."""
    body = encode_imei(_checked_imei(imei)) + encode_avl_data(codec_id, records)
    length = len(body) + 4
    try:
        head = _UDP_HEAD.pack(length, packet_id, UDP_NOT_USABLE_BYTE, avl_packet_id)
    except struct.error as error:
        raise CodecError(f"datagram header out of range: {error}") from None
    return head + body


def encode_udp_ack(packet_id: int, avl_packet_id: int, accepted: int) -> bytes:
    """The server's 7-byte answer to a datagram: ids echoed, records accepted from the start."""
    try:
        return _UDP_ACK.pack(5, packet_id, UDP_NOT_USABLE_BYTE, avl_packet_id, accepted)
    except struct.error as error:
        raise CodecError(f"UDP acknowledgement out of range: {error}") from None


def decode_udp_ack(ack: BytesLike) -> tuple[int, int, int]:
    """``(packet_id, avl_packet_id, accepted)`` of a server's UDP acknowledgement."""
    raw = bytes(ack)
    if len(raw) != _UDP_ACK.size:
        raise CodecError(f"UDP acknowledgement of {len(raw)} bytes, expected 7")
    length, packet_id, _not_usable, avl_packet_id, accepted = _UDP_ACK.unpack(raw)
    if length != _UDP_ACK.size - 2:
        raise CodecError(f"UDP acknowledgement length field {length}, expected 5")
    return packet_id, avl_packet_id, accepted


# GPRS commands (Codec 12, 13, 14, 15)

_COMMAND_TIMESTAMP_LENGTH = 4
_COMMAND_IMEI_LENGTH = 8
_CODECS_WITH_TIMESTAMP = frozenset({CODEC_13, CODEC_15})
_CODECS_WITH_IMEI = frozenset({CODEC_14, CODEC_15})


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """One command, response or serial-port message of a command frame.

    ``payload`` is the text bytes exactly as sent; ``timestamp`` is the raw 4-byte field of
    Codec 13 and 15 (UNIX seconds); ``imei`` the target or sender of Codec 14 and 15.
    """

    type: int
    payload: bytes
    timestamp: int | None = None
    imei: str | None = None

    @property
    def text(self) -> str:
        """The payload as UTF-8 when it is valid UTF-8, otherwise as Latin-1."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError:
            return self.payload.decode("latin-1")


@dataclass(frozen=True, slots=True)
class CommandPacket:
    """The messages of one command frame and the codec they were sent in."""

    codec_id: int
    messages: tuple[CommandMessage, ...]


def _imei_from_field(field_bytes: bytes) -> str:
    # The 15-digit IMEI is written as 16 hex digits with a leading zero.
    digits = field_bytes.hex()
    if not digits.isdigit():
        raise CodecError(f"IMEI field {digits} is not decimal")
    return digits[1:] if digits[0] == "0" else digits


def _imei_field(imei: str) -> bytes:
    if not (imei.isascii() and imei.isdigit()) or len(imei) > 2 * _COMMAND_IMEI_LENGTH:
        raise CodecError(f"IMEI {imei!r} does not fit the 8-byte IMEI field")
    return bytes.fromhex(imei.rjust(2 * _COMMAND_IMEI_LENGTH, "0"))


def decode_command_frame(frame: BytesLike) -> CommandPacket:
    """Decode a whole Codec 12, 13, 14 or 15 frame, CRC checked."""
    data = _checked_data_field(frame)
    codec_id = data[0]
    if codec_id not in COMMAND_CODECS:
        raise CodecError(f"unsupported command codec 0x{codec_id:02X}")
    first_count = data[1]
    last_count = data[-1]
    if first_count != last_count:
        raise CodecError(f"message counts disagree: {first_count} then {last_count}")
    has_timestamp = codec_id in _CODECS_WITH_TIMESTAMP
    has_imei = codec_id in _CODECS_WITH_IMEI
    extra = has_timestamp * _COMMAND_TIMESTAMP_LENGTH + has_imei * _COMMAND_IMEI_LENGTH
    end = len(data) - 1
    position = 2
    messages = []
    for _ in range(first_count):
        if position + _COMMAND_HEAD.size > end:
            raise CodecError("command message header runs past the frame")
        message_type, size = _COMMAND_HEAD.unpack_from(data, position)
        position += _COMMAND_HEAD.size
        if size < extra or position + size > end:
            raise CodecError(f"command message size {size} does not fit the frame")
        content = bytes(data[position : position + size])
        position += size
        timestamp = None
        imei = None
        if has_timestamp:
            timestamp = int.from_bytes(content[:_COMMAND_TIMESTAMP_LENGTH], "big")
            content = content[_COMMAND_TIMESTAMP_LENGTH:]
        if has_imei:
            imei = _imei_from_field(content[:_COMMAND_IMEI_LENGTH])
            content = content[_COMMAND_IMEI_LENGTH:]
        messages.append(CommandMessage(message_type, content, timestamp, imei))
    if position != end:
        raise CodecError(f"{end - position} bytes left over after {first_count} messages")
    return CommandPacket(codec_id, tuple(messages))


def encode_command_frame(codec_id: int, messages: Sequence[CommandMessage]) -> bytes:
    """A whole command frame of ``codec_id`` carrying ``messages``.

    Codec 13 and 15 messages need a timestamp, Codec 14 and 15 messages an IMEI; fields a
    codec does not carry are ignored.
    """
    if codec_id not in COMMAND_CODECS:
        raise CodecError(f"unsupported command codec 0x{codec_id:02X}")
    if len(messages) > 0xFF:
        raise CodecError(f"{len(messages)} messages do not fit one frame (255 at most)")
    count = bytes((len(messages),))
    parts = [bytes((codec_id,)), count]
    for message in messages:
        content = message.payload
        if codec_id in _CODECS_WITH_IMEI:
            if message.imei is None:
                raise CodecError(f"codec 0x{codec_id:02X} messages need an IMEI")
            content = _imei_field(message.imei) + content
        if codec_id in _CODECS_WITH_TIMESTAMP:
            if message.timestamp is None:
                raise CodecError(f"codec 0x{codec_id:02X} messages need a timestamp")
            content = _encode_int(message.timestamp, 4, "timestamp") + content
        parts.append(_encode_int(message.type, 1, "message type"))
        parts.append(_encode_int(len(content), 4, "message size"))
        parts.append(content)
    parts.append(count)
    return frame_data_field(b"".join(parts))


def encode_command(text: str, *, imei: str | None = None) -> bytes:
    """A command frame for a device: Codec 12, or Codec 14 addressed to ``imei``."""
    codec_id = CODEC_12 if imei is None else CODEC_14
    message = CommandMessage(TYPE_COMMAND, text.encode("utf-8"), imei=imei)
    return encode_command_frame(codec_id, [message])


def encode_command_response(
    text: str, *, codec_id: int = CODEC_12, imei: str | None = None
) -> bytes:
    """A device's answer to a command (type 06), as the simulated tracker sends it."""
    message = CommandMessage(TYPE_RESPONSE, text.encode("utf-8"), imei=imei)
    return encode_command_frame(codec_id, [message])


def read_command_frame_length(header: BytesLike) -> int:
    """How many bytes follow a frame's 8-byte header: its data field plus the CRC.

    For a device-side reader that has just read the preamble and length of a frame the
    server sent.
    """
    view = memoryview(header).cast("B")
    if len(view) != FRAME_HEADER_LENGTH:
        raise CodecError(f"frame header of {len(view)} bytes, expected 8")
    preamble, length = _FRAME_HEAD.unpack_from(view)
    if preamble:
        raise CodecError(f"non-zero preamble 0x{preamble:08X}")
    return int(length) + 4


# Splitting a device's TCP stream


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole frame cut from a device's TCP stream, not yet decoded."""

    kind: Literal["imei", "avl", "command"]
    raw: bytes
    codec_id: int | None


class TcpFrameReader:
    """Sans-IO splitter of a device's TCP byte stream into whole frames.

    The first frame is the IMEI frame (unless ``expect_imei`` is false), then AVL and
    command frames, told apart by their codec id. A frame's header is checked as soon as
    its bytes arrive, so a stream that cannot be framed fails at once instead of waiting
    for bytes that will never make sense. After a CodecError the stream is unusable and
    every further ``feed`` raises again; frames completed by the same call are dropped with
    it, which costs nothing since a device resends whatever was not acknowledged.
    """

    def __init__(self, max_frame_length: int = MAX_FRAME_LENGTH, expect_imei: bool = True) -> None:
        self.max_frame_length = max_frame_length
        self._expect_imei = expect_imei
        self._buffer = bytearray()
        self._error: CodecError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that wait for the rest of their frame."""
        return len(self._buffer)

    def feed(self, data: BytesLike) -> list[Frame]:
        """Take the next bytes of the stream and return every frame they complete."""
        if self._error is not None:
            raise CodecError(f"stream already failed: {self._error}")
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        position = 0
        try:
            while True:
                frame = self._next_frame(buffer, position)
                if frame is None:
                    break
                frames.append(frame)
                position += len(frame.raw)
        except CodecError as error:
            self._error = error
            raise
        finally:
            del buffer[:position]
        return frames

    def _next_frame(self, buffer: bytearray, position: int) -> Frame | None:
        available = len(buffer) - position
        if self._expect_imei:
            if available < 2:
                return None
            length = int.from_bytes(buffer[position : position + 2], "big")
            if not 0 < length <= MAX_IMEI_FIELD_LENGTH:
                raise CodecError(f"IMEI length field {length} is not a tracker's")
            if available < 2 + length:
                return None
            self._expect_imei = False
            return Frame("imei", bytes(buffer[position : position + 2 + length]), None)

        if buffer[position : position + min(available, 4)].count(0) != min(available, 4):
            raise CodecError("non-zero preamble")
        if available < FRAME_HEADER_LENGTH:
            return None
        (length,) = _U32.unpack_from(buffer, position + 4)
        total = FRAME_OVERHEAD + length
        if length < MIN_DATA_FIELD_LENGTH:
            raise CodecError(f"data field length {length} is too short for any frame")
        if total > self.max_frame_length:
            raise FrameTooLongError(f"frame of {total} bytes exceeds {self.max_frame_length}")
        if available == FRAME_HEADER_LENGTH:
            return None
        codec_id = buffer[position + FRAME_HEADER_LENGTH]
        kind: Literal["avl", "command"]
        if codec_id in AVL_CODECS:
            kind = "avl"
        elif codec_id in COMMAND_CODECS:
            kind = "command"
        else:
            raise CodecError(f"unknown codec 0x{codec_id:02X}")
        if available < total:
            return None
        return Frame(kind, bytes(buffer[position : position + total]), codec_id)
