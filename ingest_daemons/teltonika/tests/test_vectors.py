"""Every documented packet decodes to its documented values, or is rejected.

``vectors.json`` holds packets from the vendor's examples plus a few derived ones, each
with the values a decoder must find (``expected``). Valid packets are also encoded again
from their decoded values and must come out byte for byte the same.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from ingest_daemons.teltonika import codec

VECTORS: list[dict[str, Any]] = json.loads(
    Path(__file__).with_name("vectors.json").read_text("utf-8")
)
AVL_CODECS = {"8": codec.CODEC_8, "8E": codec.CODEC_8E, "16": codec.CODEC_16}
COMMAND_CODECS = {
    "12": codec.CODEC_12,
    "13": codec.CODEC_13,
    "14": codec.CODEC_14,
    "15": codec.CODEC_15,
}


def vectors(*, transport: str, kind: str, valid: bool) -> list[Any]:
    """The vectors of one kind (``imei``, ``avl`` or ``command``), as pytest params."""
    chosen = []
    for vector in VECTORS:
        if vector["transport"] != transport or vector["valid"] is not valid:
            continue
        if vector_kind(vector) == kind:
            chosen.append(pytest.param(vector, id=vector["name"]))
    return chosen


def vector_kind(vector: dict[str, Any]) -> str:
    declared = vector["codec"]
    if declared is None:
        return "imei"
    if declared.split()[0] in AVL_CODECS:
        return "avl"
    return "command"


def assert_records_match(records: tuple[codec.AvlRecord, ...], expected: list[dict[str, Any]]):
    assert len(records) == len(expected)
    for record, documented in zip(records, expected, strict=True):
        assert record.timestamp_ms == documented["timestamp_ms"]
        assert record.timestamp.tzinfo is UTC
        assert record.timestamp.isoformat(timespec="milliseconds") == documented["time"].replace(
            "Z", "+00:00"
        )
        assert record.priority == documented["priority"]
        assert record.gps.latitude == documented["lat"]
        assert record.gps.longitude == documented["lon"]
        assert record.gps.altitude == documented["altitude"]
        assert record.gps.angle == documented["angle"]
        assert record.gps.satellites == documented["satellites"]
        assert record.gps.speed == documented["speed"]
        assert record.gps.valid is (documented["satellites"] > 0)
        assert record.event_io_id == documented["event_io_id"]
        assert record.generation_type == documented.get("generation_type")
        assert len(record.io) == documented["io_count"]
        assert set(record.io_sizes) == set(record.io)
        decoded_io = {
            str(io_id): value.hex().upper() if isinstance(value, bytes) else value
            for io_id, value in record.io.items()
        }
        assert decoded_io == documented["io"]


class TestImeiHandshake:
    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="imei", valid=True))
    def test_it_decodes_the_imei_and_encodes_it_back(self, vector):
        raw = bytes.fromhex(vector["hex"])
        expected = vector["expected"]

        imei = codec.decode_imei(raw)

        assert imei == expected["imei"]
        assert len(imei) == expected["imei_length"]
        assert codec.encode_imei(imei) == raw
        assert codec.IMEI_ACCEPTED.hex() == expected["server_accept_hex"]
        assert codec.IMEI_REFUSED.hex() == expected["server_reject_hex"]

    def test_a_reader_returns_the_imei_frame_first(self):
        (vector,) = [v for v in VECTORS if vector_kind(v) == "imei"]
        raw = bytes.fromhex(vector["hex"])

        frames = codec.TcpFrameReader().feed(raw)

        assert frames == [codec.Frame("imei", raw, None)]


class TestTcpAvlVectors:
    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="avl", valid=True))
    def test_it_decodes_every_documented_value(self, vector):
        raw = bytes.fromhex(vector["hex"])
        expected = vector["expected"]

        packet = codec.decode_avl_frame(raw)

        assert packet.codec_id == AVL_CODECS[vector["codec"]]
        assert len(packet.records) == expected["record_count"]
        assert_records_match(packet.records, expected["records"])
        assert int.from_bytes(raw[4:8], "big") == expected["data_field_length"]
        assert codec.crc16_ibm(raw[8:-4]) == int(expected["crc"], 16)
        assert codec.encode_tcp_ack(len(packet.records)).hex().upper() == expected["server_ack_hex"]

    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="avl", valid=True))
    def test_it_encodes_the_decoded_records_to_the_same_bytes(self, vector):
        raw = bytes.fromhex(vector["hex"])
        packet = codec.decode_avl_frame(raw)

        assert codec.encode_avl_frame(packet.codec_id, packet.records) == raw

    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="avl", valid=True))
    def test_each_record_keeps_its_own_bytes(self, vector):
        raw = bytes.fromhex(vector["hex"])
        packet = codec.decode_avl_frame(raw)

        joined = b"".join(record.raw for record in packet.records)

        assert raw[10:-5] == joined

    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="avl", valid=True))
    def test_the_reader_cuts_it_as_one_avl_frame(self, vector):
        raw = bytes.fromhex(vector["hex"])
        reader = codec.TcpFrameReader(expect_imei=False)

        assert reader.feed(raw) == [codec.Frame("avl", raw, AVL_CODECS[vector["codec"]])]
        assert reader.buffered == 0

    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="avl", valid=False))
    def test_it_rejects_a_corrupt_frame(self, vector):
        raw = bytes.fromhex(vector["hex"])

        with pytest.raises(codec.CodecError):
            codec.decode_avl_frame(raw)

    def test_a_bad_crc_is_reported_as_a_crc_mismatch(self):
        vector = next(v for v in VECTORS if v["name"] == "derived_codec8_example1_bad_crc")
        raw = bytes.fromhex(vector["hex"])

        with pytest.raises(codec.CrcMismatchError, match="C7CF"):
            codec.decode_avl_frame(raw)

    def test_a_count_mismatch_is_rejected_although_the_crc_is_valid(self):
        vector = next(v for v in VECTORS if v["name"] == "derived_codec8_count_mismatch")
        raw = bytes.fromhex(vector["hex"])
        assert codec.crc16_ibm(raw[8:-4]) == int(vector["expected"]["crc"], 16)

        with pytest.raises(codec.CodecError, match="counts disagree"):
            codec.decode_avl_frame(raw)


class TestUdpVectors:
    @pytest.mark.parametrize("vector", vectors(transport="udp", kind="avl", valid=True))
    def test_it_decodes_every_documented_value(self, vector):
        raw = bytes.fromhex(vector["hex"])
        expected = vector["expected"]
        envelope = expected["udp"]

        packet = codec.decode_udp_datagram(raw)

        assert packet.avl.codec_id == AVL_CODECS[vector["codec"]]
        assert len(packet.avl.records) == expected["record_count"]
        assert_records_match(packet.avl.records, expected["records"])
        assert int.from_bytes(raw[:2], "big") == envelope["packet_length"]
        assert packet.packet_id == int(envelope["packet_id"], 16)
        assert raw[4] == envelope["not_usable_byte"]
        assert packet.avl_packet_id == envelope["avl_packet_id"]
        assert packet.imei == envelope["imei"]

    @pytest.mark.parametrize("vector", vectors(transport="udp", kind="avl", valid=True))
    def test_it_answers_with_the_documented_acknowledgement(self, vector):
        packet = codec.decode_udp_datagram(bytes.fromhex(vector["hex"]))

        ack = codec.encode_udp_ack(packet.packet_id, packet.avl_packet_id, len(packet.avl.records))

        assert ack.hex().upper() == vector["expected"]["server_ack_hex"]
        assert codec.decode_udp_ack(ack) == (
            packet.packet_id,
            packet.avl_packet_id,
            len(packet.avl.records),
        )

    @pytest.mark.parametrize("vector", vectors(transport="udp", kind="avl", valid=True))
    def test_it_encodes_the_decoded_datagram_to_the_same_bytes(self, vector):
        raw = bytes.fromhex(vector["hex"])
        packet = codec.decode_udp_datagram(raw)

        encoded = codec.encode_udp_datagram(
            packet.packet_id,
            packet.avl_packet_id,
            packet.imei,
            packet.avl.codec_id,
            packet.avl.records,
        )

        assert encoded == raw

    def test_it_rejects_a_datagram_whose_codec_byte_does_not_match_its_records(self):
        vector = next(v for v in VECTORS if v["name"] == "udp_legacy_example_codec_byte_mismatch")
        raw = bytes.fromhex(vector["hex"])

        with pytest.raises(codec.CodecError):
            codec.decode_udp_datagram(raw)

    def test_the_same_datagram_decodes_once_its_codec_byte_is_corrected(self):
        vector = next(v for v in VECTORS if v["name"] == "udp_legacy_example_codec_byte_mismatch")
        raw = bytearray.fromhex(vector["hex"])
        as_codec_8 = vector["expected"]["if_parsed_with_codec8_rules"]
        assert raw[codec.UDP_HEADER_LENGTH] == codec.CODEC_8E
        raw[codec.UDP_HEADER_LENGTH] = codec.CODEC_8

        packet = codec.decode_udp_datagram(bytes(raw))

        assert_records_match(packet.avl.records, as_codec_8["records"])
        assert packet.imei == as_codec_8["udp"]["imei"]
        assert packet.avl_packet_id == as_codec_8["udp"]["avl_packet_id"]
        # The only documented datagram with 00 in the not-usable byte: it is not checked.
        assert raw[4] == as_codec_8["udp"]["not_usable_byte"] == 0


class TestCommandVectors:
    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="command", valid=True))
    def test_it_decodes_every_documented_value(self, vector):
        raw = bytes.fromhex(vector["hex"])
        expected = vector["expected"]

        packet = codec.decode_command_frame(raw)

        assert packet.codec_id == COMMAND_CODECS[vector["codec"]]
        assert len(packet.messages) == expected["message_count"]
        assert int.from_bytes(raw[4:8], "big") == expected["data_field_length"]
        assert codec.crc16_ibm(raw[8:-4]) == int(expected["crc"], 16)
        for message, documented in zip(packet.messages, expected["messages"], strict=True):
            assert message.type == documented["type"] == int(documented["type_hex"], 16)
            assert message.text == documented["text"]
            extra = (4 if message.timestamp is not None else 0) + (8 if message.imei else 0)
            assert len(message.payload) + extra == documented["size"]
            if "imei_field_hex" in documented:
                assert message.imei.rjust(16, "0") == documented["imei_field_hex"]
            else:
                assert message.imei is None
            if "timestamp_s" in documented:
                assert message.timestamp == documented["timestamp_s"]
        for key in ("command_text", "response_text"):
            if key in expected:
                assert packet.messages[0].text == expected[key]

    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="command", valid=True))
    def test_it_encodes_the_decoded_messages_to_the_same_bytes(self, vector):
        raw = bytes.fromhex(vector["hex"])
        packet = codec.decode_command_frame(raw)

        assert codec.encode_command_frame(packet.codec_id, packet.messages) == raw

    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="command", valid=True))
    def test_the_reader_cuts_it_as_one_command_frame(self, vector):
        raw = bytes.fromhex(vector["hex"])
        reader = codec.TcpFrameReader(expect_imei=False)

        frames = reader.feed(raw)

        assert frames == [codec.Frame("command", raw, COMMAND_CODECS[vector["codec"]])]

    def test_codec_13_timestamps_are_read_as_four_bytes_even_where_the_example_used_eight(self):
        # The published Codec 13 example is CRC-valid but only makes sense with an 8-byte
        # millisecond timestamp. The documented layout wins: 4 bytes, and the other four
        # stay at the start of the text, where whoever reads it can see them.
        vector = next(v for v in VECTORS if v["name"] == "codec13_getinfo_wiki_example")
        expected = vector["expected"]["messages"][0]
        eight_byte_reading = vector["expected"]["alt_reading_8_byte_timestamp"]

        (message,) = codec.decode_command_frame(bytes.fromhex(vector["hex"])).messages

        assert message.timestamp == expected["timestamp_raw"] == 0x0000016C
        assert message.payload == bytes.fromhex("0A81C320") + b"getinfo"
        # The stray bytes are not valid UTF-8, so the text falls back to Latin-1 and keeps
        # every byte as one character.
        assert message.text == expected["text"]
        assert (
            int.from_bytes(message.timestamp.to_bytes(4, "big") + message.payload[:4], "big")
            == (eight_byte_reading["timestamp_ms"])
        )
        assert message.payload[4:].decode() == eight_byte_reading["text"]

    def test_a_truncated_codec_13_frame_never_completes_in_the_reader(self):
        vector = next(v for v in VECTORS if v["name"] == "codec13_getinfo_wiki_example_truncated")
        raw = bytes.fromhex(vector["hex"])
        reader = codec.TcpFrameReader(expect_imei=False)

        assert reader.feed(raw) == []
        assert reader.buffered == len(raw)

    def test_a_truncated_codec_13_frame_does_not_decode(self):
        vector = next(v for v in VECTORS if v["name"] == "codec13_getinfo_wiki_example_truncated")

        with pytest.raises(codec.CodecError):
            codec.decode_command_frame(bytes.fromhex(vector["hex"]))

    @pytest.mark.parametrize("vector", vectors(transport="tcp", kind="command", valid=False))
    def test_it_rejects_every_invalid_command_vector(self, vector):
        with pytest.raises(codec.CodecError):
            codec.decode_command_frame(bytes.fromhex(vector["hex"]))


def test_every_vector_is_exercised():
    kinds = {
        (transport, kind, valid)
        for transport in ("tcp", "udp")
        for kind in ("imei", "avl", "command")
        for valid in (True, False)
    }
    covered = {
        param.values[0]["name"]
        for transport, kind, valid in kinds
        for param in vectors(transport=transport, kind=kind, valid=valid)
    }

    assert covered == {vector["name"] for vector in VECTORS}
    assert len(VECTORS) == 30
