"""Properties over generated input: garbage only ever raises CodecError, records round-trip.

Example counts are kept modest so that the file runs in seconds; raise ``max_examples``
locally when changing the codec.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_daemons.teltonika import codec

IMEI = "356307042441013"
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Valid frames of every kind, to be damaged.
SEED_RECORD = codec.AvlRecord(
    timestamp_ms=1_700_000_000_000,
    priority=1,
    gps=codec.GpsElement(-70.61, -33.41, 520, 90, 9, 18),
    event_io_id=239,
    io={239: 1, 66: 24_100, 216: 1_234_567, 78: 0, 385: b"\x01\x02\x03"},
    io_sizes={239: 1, 66: 2, 216: 4, 78: 8},
)
SEED_AVL_FRAMES = [
    codec.encode_avl_frame(codec.CODEC_8E, [SEED_RECORD, SEED_RECORD]),
    codec.encode_avl_frame(
        codec.CODEC_8, [codec.AvlRecord(1, 0, SEED_RECORD.gps, 1, {1: 1, 66: 2}, None, {66: 2})]
    ),
    codec.encode_avl_frame(
        codec.CODEC_16, [codec.AvlRecord(1, 0, SEED_RECORD.gps, 300, {300: 1, 66: 2}, 5)]
    ),
]
SEED_COMMAND_FRAMES = [
    codec.encode_command("getinfo"),
    codec.encode_command("getver", imei=IMEI),
    codec.encode_command_frame(
        codec.CODEC_15,
        [codec.CommandMessage(codec.TYPE_DEVICE_MESSAGE, b"Hello!\n", 1_699_440_036, IMEI)],
    ),
]
SEED_DATAGRAM = codec.encode_udp_datagram(0xCAFE, 5, IMEI, codec.CODEC_8E, [SEED_RECORD])
SEED_STREAM = codec.encode_imei(IMEI) + SEED_AVL_FRAMES[0] + SEED_COMMAND_FRAMES[0]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid frame with a few bytes flipped, inserted or deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete" and data:
            del data[position : position + draw(st.integers(1, 4))]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


def garbage(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), mutated(seeds))


def only_codec_errors(decode: Any, data: bytes) -> None:
    with contextlib.suppress(codec.CodecError):
        decode(data)


class TestGarbage:
    @FAST
    @given(garbage(SEED_AVL_FRAMES))
    def test_decode_avl_frame_raises_nothing_but_codec_errors(self, data):
        only_codec_errors(codec.decode_avl_frame, data)

    @FAST
    @given(garbage([frame[8:-4] for frame in SEED_AVL_FRAMES]))
    def test_decode_avl_data_raises_nothing_but_codec_errors(self, data):
        only_codec_errors(codec.decode_avl_data, data)

    @FAST
    @given(garbage([SEED_DATAGRAM]))
    def test_decode_udp_datagram_raises_nothing_but_codec_errors(self, data):
        only_codec_errors(codec.decode_udp_datagram, data)

    @FAST
    @given(garbage(SEED_COMMAND_FRAMES))
    def test_decode_command_frame_raises_nothing_but_codec_errors(self, data):
        only_codec_errors(codec.decode_command_frame, data)

    @FAST
    @given(garbage([codec.encode_imei(IMEI)]))
    def test_decode_imei_raises_nothing_but_codec_errors(self, data):
        only_codec_errors(codec.decode_imei, data)

    @FAST
    @given(garbage([codec.encode_udp_ack(1, 2, 3)]))
    def test_decode_udp_ack_raises_nothing_but_codec_errors(self, data):
        only_codec_errors(codec.decode_udp_ack, data)

    @FAST
    @given(garbage([SEED_STREAM]), st.integers(0, 400))
    def test_the_frame_reader_raises_nothing_but_codec_errors(self, data, split):
        reader = codec.TcpFrameReader()
        try:
            frames = reader.feed(data[:split]) + reader.feed(data[split:])
        except codec.CodecError:
            return
        # Whatever it accepted adds up to the bytes it was given.
        assert sum(len(frame.raw) for frame in frames) + reader.buffered == len(data)
        for frame in frames:
            decode = {
                "imei": codec.decode_imei,
                "avl": codec.decode_avl_frame,
                "command": codec.decode_command_frame,
            }[frame.kind]
            only_codec_errors(decode, frame.raw)


def fixed_values(width: int) -> st.SearchStrategy[tuple[int, int | bytes]]:
    return st.tuples(st.just(width), st.integers(0, (1 << (8 * width)) - 1))


@st.composite
def records(draw: st.DrawFn, codec_id: int) -> codec.AvlRecord:
    """A record any device could send in ``codec_id``."""
    max_id = 0xFF if codec_id == codec.CODEC_8 else 0xFFFF
    # Codec 8 and 16 count elements in one byte; a few dozen is what devices send.
    ids = draw(st.lists(st.integers(0, max_id), unique=True, max_size=40))
    io: dict[int, int | bytes] = {}
    io_sizes: dict[int, int] = {}
    value_kinds = [fixed_values(width) for width in (1, 2, 4, 8)]
    if codec_id == codec.CODEC_8E:
        value_kinds.append(st.binary(max_size=64).map(lambda blob: (len(blob), blob)))
    for io_id in ids:
        width, value = draw(st.one_of(value_kinds))
        io[io_id] = value
        io_sizes[io_id] = width
    coordinate = st.integers(-(2**31), 2**31 - 1).map(lambda raw: raw / 10_000_000)
    gps = codec.GpsElement(
        longitude=draw(coordinate),
        latitude=draw(coordinate),
        altitude=draw(st.integers(-(2**15), 2**15 - 1)),
        angle=draw(st.integers(0, 0xFFFF)),
        satellites=draw(st.integers(0, 0xFF)),
        speed=draw(st.integers(0, 0xFFFF)),
    )
    return codec.AvlRecord(
        timestamp_ms=draw(st.integers(0, 2**64 - 1)),
        priority=draw(st.integers(0, 0xFF)),
        gps=gps,
        event_io_id=draw(st.integers(0, max_id)),
        io=io,
        generation_type=draw(st.integers(0, 0xFF)) if codec_id == codec.CODEC_16 else None,
        io_sizes=io_sizes,
    )


@st.composite
def packets(draw: st.DrawFn) -> tuple[int, list[codec.AvlRecord]]:
    codec_id = draw(st.sampled_from([codec.CODEC_8, codec.CODEC_8E, codec.CODEC_16]))
    return codec_id, draw(st.lists(records(codec_id), max_size=5))


class TestRoundTrips:
    @FAST
    @given(packets())
    def test_records_round_trip_over_tcp(self, packet):
        codec_id, generated = packet

        frame = codec.encode_avl_frame(codec_id, generated)
        decoded = codec.decode_avl_frame(frame)

        assert decoded == codec.AvlPacket(codec_id, tuple(generated))
        assert codec.encode_avl_frame(codec_id, decoded.records) == frame

    @FAST
    @given(packets(), st.integers(0, 0xFFFF), st.integers(0, 0xFF))
    def test_records_round_trip_over_udp(self, packet, packet_id, avl_packet_id):
        codec_id, generated = packet

        datagram = codec.encode_udp_datagram(packet_id, avl_packet_id, IMEI, codec_id, generated)
        decoded = codec.decode_udp_datagram(datagram)

        assert decoded == codec.UdpPacket(
            packet_id, avl_packet_id, IMEI, codec.AvlPacket(codec_id, tuple(generated))
        )

    @FAST
    @given(packets(), st.data())
    def test_the_reader_cuts_generated_frames_wherever_they_are_split(self, packet, data):
        codec_id, generated = packet
        frame = codec.encode_avl_frame(codec_id, generated)
        stream = codec.encode_imei(IMEI) + frame + frame
        split = data.draw(st.integers(0, len(stream)))
        reader = codec.TcpFrameReader(max_frame_length=len(frame))

        frames = reader.feed(stream[:split]) + reader.feed(stream[split:])

        assert [f.raw for f in frames] == [codec.encode_imei(IMEI), frame, frame]

    @FAST
    @given(
        st.sampled_from([codec.CODEC_12, codec.CODEC_13, codec.CODEC_14, codec.CODEC_15]),
        st.lists(
            st.tuples(st.integers(0, 0xFF), st.binary(max_size=200), st.integers(0, 2**32 - 1)),
            max_size=3,
        ),
        st.from_regex(r"[0-9]{15}", fullmatch=True),
    )
    def test_command_frames_round_trip(self, codec_id, contents, imei):
        has_timestamp = codec_id in (codec.CODEC_13, codec.CODEC_15)
        has_imei = codec_id in (codec.CODEC_14, codec.CODEC_15)
        messages = tuple(
            codec.CommandMessage(
                message_type,
                payload,
                timestamp if has_timestamp else None,
                imei if has_imei else None,
            )
            for message_type, payload, timestamp in contents
        )

        frame = codec.encode_command_frame(codec_id, messages)

        assert codec.decode_command_frame(frame) == codec.CommandPacket(codec_id, messages)

    @FAST
    @given(st.text(max_size=100))
    def test_command_text_round_trips(self, text):
        (message,) = codec.decode_command_frame(codec.encode_command(text)).messages

        assert message.text == text
        assert message.type == codec.TYPE_COMMAND
