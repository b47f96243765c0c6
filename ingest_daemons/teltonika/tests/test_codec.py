"""The codec's framing, checks and encoders, case by case."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest

from ingest_daemons.teltonika import codec

IMEI = "356307042441013"
T0_MS = 1_700_000_000_000

# Documented frames (the vendor's examples).
GETINFO_COMMAND = bytes.fromhex("000000000000000F0C010500000007676574696E666F0100004312")
GETIO_COMMAND = bytes.fromhex("000000000000000D0C010500000005676574696F01000000CB")
GETVER_COMMAND_CODEC_14 = bytes.fromhex(
    "00000000000000160E01050000000E0352093081452251676574766572010000D2C1"
)
CODEC_8_FRAME = bytes.fromhex(
    "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101"
    "425E0F01F10000601A014E0000000000000000010000C7CF"
)


def bitwise_crc16_ibm(data: bytes) -> int:
    """The CRC as the protocol describes it, one bit at a time."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def record(io=None, io_sizes=None, **changes: Any) -> codec.AvlRecord:
    base = codec.AvlRecord(
        timestamp_ms=T0_MS,
        priority=1,
        gps=codec.GpsElement(-70.61, -33.41, 520, 90, 9, 18),
        event_io_id=0,
        io={239: 1, 66: 24_100} if io is None else io,
        io_sizes={239: 1, 66: 2} if io_sizes is None else io_sizes,
    )
    return dataclasses.replace(base, **changes)


def stream() -> bytes:
    """A whole session's bytes: IMEI, two AVL packets, a command response."""
    return (
        codec.encode_imei(IMEI)
        + CODEC_8_FRAME
        + codec.encode_avl_frame(codec.CODEC_8E, [record(), record(timestamp_ms=T0_MS + 1)])
        + codec.encode_command_response("OK")
    )


class TestCrc:
    def test_it_gives_the_check_value_of_the_algorithm(self):
        assert codec.crc16_ibm(b"123456789") == 0xBB3D

    def test_it_is_zero_for_no_bytes(self):
        assert codec.crc16_ibm(b"") == 0

    @pytest.mark.parametrize("length", [1, 2, 3, 17, 256, 1001])
    def test_it_agrees_with_the_bit_by_bit_definition(self, length):
        data = bytes((index * 131 + length) % 256 for index in range(length))

        assert codec.crc16_ibm(data) == bitwise_crc16_ibm(data)

    def test_it_accepts_a_memoryview_slice(self):
        data = b"x123456789y"

        assert codec.crc16_ibm(memoryview(data)[1:-1]) == 0xBB3D


class TestTcpFrameReader:
    def expected_frames(self) -> list[codec.Frame]:
        return codec.TcpFrameReader().feed(stream())

    def test_it_cuts_a_session_fed_at_once_into_its_frames(self):
        frames = self.expected_frames()

        assert [frame.kind for frame in frames] == ["imei", "avl", "avl", "command"]
        assert [frame.codec_id for frame in frames] == [None, 0x08, 0x8E, 0x0C]
        assert b"".join(frame.raw for frame in frames) == stream()

    def test_it_gives_the_same_frames_whatever_offset_the_stream_is_split_at(self):
        data = stream()
        expected = self.expected_frames()

        for split in range(len(data) + 1):
            reader = codec.TcpFrameReader()
            frames = reader.feed(data[:split])
            frames += reader.feed(data[split:])

            assert frames == expected, split
            assert reader.buffered == 0

    def test_it_gives_the_same_frames_when_fed_one_byte_at_a_time(self):
        data = stream()
        reader = codec.TcpFrameReader()

        frames = []
        for index in range(len(data)):
            frames += reader.feed(data[index : index + 1])

        assert frames == self.expected_frames()

    def test_it_buffers_a_partial_frame(self):
        reader = codec.TcpFrameReader(expect_imei=False)

        assert reader.feed(CODEC_8_FRAME[:-1]) == []
        assert reader.buffered == len(CODEC_8_FRAME) - 1
        assert reader.feed(CODEC_8_FRAME[-1:]) == [codec.Frame("avl", CODEC_8_FRAME, 0x08)]
        assert reader.buffered == 0

    def test_it_rejects_a_frame_longer_than_its_cap_from_the_header_alone(self):
        reader = codec.TcpFrameReader(max_frame_length=len(CODEC_8_FRAME) - 1, expect_imei=False)

        with pytest.raises(codec.FrameTooLongError):
            reader.feed(CODEC_8_FRAME[:8])

    def test_it_accepts_a_frame_exactly_at_its_cap(self):
        reader = codec.TcpFrameReader(max_frame_length=len(CODEC_8_FRAME), expect_imei=False)

        assert len(reader.feed(CODEC_8_FRAME)) == 1

    def test_its_default_cap_is_16_kib(self):
        header = struct.pack(">II", 0, codec.MAX_FRAME_LENGTH - 12 + 1)

        with pytest.raises(codec.FrameTooLongError):
            codec.TcpFrameReader(expect_imei=False).feed(header)

    def test_it_rejects_a_non_zero_preamble_at_its_first_byte(self):
        reader = codec.TcpFrameReader(expect_imei=False)

        with pytest.raises(codec.CodecError, match="preamble"):
            reader.feed(b"\x00\x00\x01")

    def test_it_rejects_an_unknown_codec(self):
        frame = bytearray(CODEC_8_FRAME)
        frame[8] = 0x99

        with pytest.raises(codec.CodecError, match="codec 0x99"):
            codec.TcpFrameReader(expect_imei=False).feed(bytes(frame[:9]))

    def test_it_rejects_a_data_field_too_short_for_any_frame(self):
        with pytest.raises(codec.CodecError):
            codec.TcpFrameReader(expect_imei=False).feed(bytes(8))

    @pytest.mark.parametrize("length", [0, codec.MAX_IMEI_FIELD_LENGTH + 1, 0xFFFF])
    def test_it_rejects_an_imei_length_no_tracker_sends(self, length):
        with pytest.raises(codec.CodecError, match="IMEI length"):
            codec.TcpFrameReader().feed(length.to_bytes(2, "big"))

    def test_it_hands_over_a_malformed_imei_so_that_the_server_can_refuse_it(self):
        raw = codec.encode_imei("12345abc")

        (frame,) = codec.TcpFrameReader().feed(raw)

        assert frame.kind == "imei"
        with pytest.raises(codec.CodecError):
            codec.decode_imei(frame.raw)

    def test_it_stays_failed_after_an_error(self):
        reader = codec.TcpFrameReader(expect_imei=False)
        with pytest.raises(codec.CodecError):
            reader.feed(b"\x01")

        with pytest.raises(codec.CodecError, match="already failed"):
            reader.feed(CODEC_8_FRAME)

    def test_it_treats_a_second_imei_like_frame_as_a_broken_stream(self):
        reader = codec.TcpFrameReader()
        reader.feed(codec.encode_imei(IMEI))

        with pytest.raises(codec.CodecError, match="preamble"):
            reader.feed(codec.encode_imei(IMEI))


class TestAvl:
    def test_records_survive_an_encode_decode_round_trip(self):
        records = [record(), record(io={}, io_sizes={}, timestamp_ms=T0_MS + 1)]

        packet = codec.decode_avl_frame(codec.encode_avl_frame(codec.CODEC_8, records))

        assert packet.records == tuple(records)

    def test_negative_coordinates_are_signed(self):
        (decoded,) = codec.decode_avl_frame(
            codec.encode_avl_frame(codec.CODEC_8, [record()])
        ).records

        assert decoded.gps.longitude == -70.61
        assert decoded.gps.latitude == -33.41

    def test_a_record_without_satellites_has_no_valid_position(self):
        assert codec.GpsElement(25.0, 54.0, 100, 0, 0, 0).valid is False
        assert codec.GpsElement(25.0, 54.0, 100, 0, 3, 0).valid is True

    def test_the_timestamp_is_an_aware_utc_datetime(self):
        timestamp = record(timestamp_ms=1_560_161_086_123).timestamp

        assert timestamp.isoformat() == "2019-06-10T10:04:46.123000+00:00"

    def test_a_value_without_a_width_travels_in_the_smallest_that_holds_it(self):
        io = {1: 255, 2: 256, 3: 65_536, 4: 1 << 32}

        (decoded,) = codec.decode_avl_frame(
            codec.encode_avl_frame(codec.CODEC_8E, [record(io=io, io_sizes={})])
        ).records

        assert decoded.io == io
        assert decoded.io_sizes == {1: 1, 2: 2, 3: 4, 4: 8}

    def test_a_value_keeps_the_width_it_was_given(self):
        (decoded,) = codec.decode_avl_frame(
            codec.encode_avl_frame(codec.CODEC_8E, [record(io={16: 5}, io_sizes={16: 4})])
        ).records

        assert decoded.io_sizes == {16: 4}

    def test_variable_length_values_travel_in_codec_8_extended(self):
        vin = b"WDB9634031L123456"

        (decoded,) = codec.decode_avl_frame(
            codec.encode_avl_frame(codec.CODEC_8E, [record(io={528: vin}, io_sizes={})])
        ).records

        assert decoded.io == {528: vin}
        assert decoded.io_sizes == {528: len(vin)}

    @pytest.mark.parametrize("codec_id", [codec.CODEC_8, codec.CODEC_16])
    def test_variable_length_values_cannot_travel_in_other_codecs(self, codec_id):
        with pytest.raises(codec.CodecError):
            codec.encode_avl_data(codec_id, [record(io={528: b"x"}, generation_type=0)])

    def test_codec_8_cannot_carry_ids_above_255(self):
        with pytest.raises(codec.CodecError, match="I/O id 256"):
            codec.encode_avl_data(codec.CODEC_8, [record(io={256: 1})])

    def test_a_value_too_wide_for_its_size_is_refused(self):
        with pytest.raises(codec.CodecError):
            codec.encode_avl_data(codec.CODEC_8E, [record(io={66: 70_000}, io_sizes={66: 2})])

    def test_a_negative_value_is_refused(self):
        with pytest.raises(codec.CodecError):
            codec.encode_avl_data(codec.CODEC_8E, [record(io={66: -1}, io_sizes={})])

    def test_codec_16_needs_a_generation_type(self):
        with pytest.raises(codec.CodecError, match="generation type"):
            codec.encode_avl_data(codec.CODEC_16, [record()])

    def test_codec_16_keeps_the_generation_type(self):
        (decoded,) = codec.decode_avl_frame(
            codec.encode_avl_frame(codec.CODEC_16, [record(io={300: 1}, generation_type=5)])
        ).records

        assert decoded.generation_type == 5

    def test_an_unknown_codec_is_refused_both_ways(self):
        with pytest.raises(codec.CodecError):
            codec.encode_avl_data(0x09, [])
        with pytest.raises(codec.CodecError, match="unsupported"):
            codec.decode_avl_data(b"\x09\x00\x00")

    def test_a_packet_may_carry_no_records(self):
        packet = codec.decode_avl_frame(codec.encode_avl_frame(codec.CODEC_8, []))

        assert packet.records == ()
        assert codec.encode_tcp_ack(0) == b"\x00\x00\x00\x00"

    def test_the_data_field_decodes_on_its_own(self):
        data = codec.encode_avl_data(codec.CODEC_8E, [record()])

        assert codec.decode_avl_data(data).records == (record(),)

    def test_a_record_decodes_again_from_its_own_bytes(self):
        (decoded,) = codec.decode_avl_frame(
            codec.encode_avl_frame(codec.CODEC_8E, [record()])
        ).records

        again = codec.decode_avl_data(bytes([codec.CODEC_8E, 1]) + decoded.raw + b"\x01")

        assert again.records == (decoded,)

    def test_trailing_bytes_after_the_records_are_rejected(self):
        data = bytearray(codec.encode_avl_data(codec.CODEC_8, [record()]))
        data[-1:-1] = b"\x00"

        with pytest.raises(codec.CodecError, match="left over"):
            codec.decode_avl_data(bytes(data))

    def test_a_wrong_element_total_is_rejected(self):
        data = bytearray(codec.encode_avl_data(codec.CODEC_8, [record()]))
        # Codec 8: codec id, count, 24 bytes of time and GPS, event id, then the total.
        data[2 + 24 + 1] += 1

        with pytest.raises(codec.CodecError, match="declares"):
            codec.decode_avl_data(bytes(data))

    def test_a_frame_whose_length_field_disagrees_with_its_size_is_rejected(self):
        with pytest.raises(codec.CodecError, match="data field length"):
            codec.decode_avl_frame(CODEC_8_FRAME + b"\x00")

    def test_a_frame_with_a_non_zero_upper_crc_half_is_rejected(self):
        frame = bytearray(CODEC_8_FRAME)
        frame[-4] = 1

        with pytest.raises(codec.CrcMismatchError):
            codec.decode_avl_frame(bytes(frame))

    def test_the_tcp_ack_is_the_record_count_in_four_bytes(self):
        assert codec.encode_tcp_ack(2) == b"\x00\x00\x00\x02"


class TestImei:
    def test_it_round_trips(self):
        assert codec.decode_imei(codec.encode_imei(IMEI)) == IMEI

    @pytest.mark.parametrize("imei", ["35630704244101", "3563070424410134", "35630704244101x", ""])
    def test_it_accepts_nothing_but_15_digits(self, imei):
        with pytest.raises(codec.CodecError):
            codec.decode_imei(codec.encode_imei(imei))

    def test_it_rejects_characters_that_are_digits_only_outside_ascii(self):
        # Latin-1 0xB2 is "²", which str.isdigit() accepts.
        with pytest.raises(codec.CodecError):
            codec.decode_imei(b"\x00\x0f" + IMEI[:14].encode() + b"\xb2")

    def test_it_rejects_a_length_field_that_disagrees(self):
        with pytest.raises(codec.CodecError):
            codec.decode_imei(b"\x00\x10" + IMEI.encode())


class TestUdp:
    def datagram(self, **changes: Any) -> bytes:
        arguments: dict[str, Any] = {
            "packet_id": 0xCAFE,
            "avl_packet_id": 7,
            "imei": IMEI,
            "codec_id": codec.CODEC_8E,
            "records": [record()],
        }
        arguments.update(changes)
        return codec.encode_udp_datagram(**arguments)

    def test_a_datagram_round_trips(self):
        packet = codec.decode_udp_datagram(self.datagram())

        assert (packet.packet_id, packet.avl_packet_id, packet.imei) == (0xCAFE, 7, IMEI)
        assert packet.avl == codec.AvlPacket(codec.CODEC_8E, (record(),))

    def test_a_length_field_that_disagrees_with_the_datagram_is_rejected(self):
        with pytest.raises(codec.CodecError, match="length"):
            codec.decode_udp_datagram(self.datagram() + b"\x00")

    def test_a_malformed_imei_is_rejected(self):
        raw = bytearray(self.datagram())
        raw[10] = ord("x")

        with pytest.raises(codec.CodecError, match="IMEI"):
            codec.decode_udp_datagram(bytes(raw))

    def test_an_ack_is_seven_bytes_and_decodes_back(self):
        ack = codec.encode_udp_ack(0xCAFE, 5, 1)

        assert ack == bytes.fromhex("0005CAFE010501")
        assert codec.decode_udp_ack(ack) == (0xCAFE, 5, 1)

    def test_an_ack_out_of_range_is_refused(self):
        with pytest.raises(codec.CodecError):
            codec.encode_udp_ack(0xCAFE, 5, 256)

    def test_a_malformed_ack_is_rejected(self):
        with pytest.raises(codec.CodecError):
            codec.decode_udp_ack(bytes.fromhex("0006CAFE010501"))


class TestCommands:
    def test_getinfo_is_encoded_as_documented(self):
        assert codec.encode_command("getinfo") == GETINFO_COMMAND

    def test_getio_is_encoded_as_documented(self):
        assert codec.encode_command("getio") == GETIO_COMMAND

    def test_a_command_with_an_imei_is_encoded_in_codec_14_as_documented(self):
        assert codec.encode_command("getver", imei="352093081452251") == GETVER_COMMAND_CODEC_14

    def test_a_response_decodes_to_its_text(self):
        packet = codec.decode_command_frame(codec.encode_command_response("DI1:1 DO1:0"))

        assert packet.codec_id == codec.CODEC_12
        assert packet.messages == (codec.CommandMessage(codec.TYPE_RESPONSE, b"DI1:1 DO1:0"),)
        assert packet.messages[0].text == "DI1:1 DO1:0"

    def test_a_codec_14_response_carries_the_imei(self):
        frame = codec.encode_command_response("Ver:1", codec_id=codec.CODEC_14, imei=IMEI)

        (message,) = codec.decode_command_frame(frame).messages

        assert (message.type, message.imei, message.text) == (codec.TYPE_RESPONSE, IMEI, "Ver:1")

    def test_utf_8_text_round_trips(self):
        (message,) = codec.decode_command_frame(codec.encode_command("setparam 1001:Ω")).messages

        assert message.text == "setparam 1001:Ω"

    def test_codec_15_needs_a_timestamp_and_an_imei(self):
        message = codec.CommandMessage(codec.TYPE_DEVICE_MESSAGE, b"Hello!\n", imei=IMEI)

        with pytest.raises(codec.CodecError, match="timestamp"):
            codec.encode_command_frame(codec.CODEC_15, [message])

    def test_an_imei_field_that_is_not_decimal_is_rejected(self):
        frame = bytearray(GETVER_COMMAND_CODEC_14)
        frame[15] = 0xAB
        data = bytes(frame[8:-4])
        frame[-4:] = codec.crc16_ibm(data).to_bytes(4, "big")

        with pytest.raises(codec.CodecError, match="not decimal"):
            codec.decode_command_frame(bytes(frame))

    def test_a_message_size_beyond_the_frame_is_rejected(self):
        data = bytes.fromhex("0C01050000FFFF") + b"getinfo" + b"\x01"
        frame = struct.pack(">II", 0, len(data)) + data + struct.pack(">I", codec.crc16_ibm(data))

        with pytest.raises(codec.CodecError, match="size"):
            codec.decode_command_frame(frame)

    def test_an_avl_frame_is_not_a_command_frame(self):
        with pytest.raises(codec.CodecError, match="command codec"):
            codec.decode_command_frame(CODEC_8_FRAME)

    def test_a_command_frame_is_not_an_avl_frame(self):
        with pytest.raises(codec.CodecError, match="AVL codec"):
            codec.decode_avl_frame(GETINFO_COMMAND)

    def test_the_length_to_read_after_a_header_covers_the_data_field_and_crc(self):
        assert codec.read_command_frame_length(GETINFO_COMMAND[:8]) == len(GETINFO_COMMAND) - 8

    def test_the_length_helper_rejects_a_non_zero_preamble(self):
        with pytest.raises(codec.CodecError):
            codec.read_command_frame_length(b"\x00\x00\x00\x05\x00\x00\x00\x0f")
