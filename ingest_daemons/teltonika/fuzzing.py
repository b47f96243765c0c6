"""Fuzzing of the Teltonika codec: generated and damaged frames through every decoder.

Valid frames are built by the codec's own encoders from random records, I/O elements and
command messages; mutations then flip, overwrite, insert, delete, duplicate and cut bytes,
and write extreme values into length and count fields. A damaged TCP frame usually gets
its length field and CRC put right again, so that the bytes reach the record parser
instead of stopping at the CRC check; sometimes the CRC is left wrong on purpose.

``check(data)`` runs one input through every decoder and the stream reader and raises
``FuzzFailureError`` when a decoder lets out anything but ``CodecError``, runs longer than its
time bound or allocates more than its memory bound. The CI test and the long-run script
(bench/fuzz_codec.py) share all of it.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ingest_daemons.teltonika import codec

IMEI_DIGITS = "0123456789"
# Values that break parsers: zero, one, the signed and unsigned edges of each width.
INTERESTING_U32 = (
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x3FFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFE,
    0xFFFFFFFF,
)
INTERESTING_U8 = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
# A decode that runs past this much CPU time is a hang as far as a server is concerned.
# CPU time, not wall time: on a busy machine a decode may wait for a core far longer.
DECODE_TIME_LIMIT = 0.5
# Memory a decode may allocate: the decoded records take several times the input's size
# (a dict per record, an int object per value), never anything near a declared length.
MEMORY_BASE_BYTES = 256 * 1024
MEMORY_PER_INPUT_BYTE = 64


class FuzzFailureError(AssertionError):
    """A decoder broke one of the rules: only CodecError, bounded time, bounded memory."""

    def __init__(self, decoder: str, data: bytes, problem: str) -> None:
        super().__init__(f"{decoder}: {problem} (input of {len(data)} bytes: {data.hex()})")
        self.decoder = decoder
        self.data = data
        self.problem = problem


class DecodeTimeout(BaseException):
    """Raised by the CPU-time alarm inside a decode that ran too long (not an Exception on
    purpose: a decoder's ``except Exception`` must not swallow it)."""


# Generation of valid frames


def random_imei(rng: random.Random) -> str:
    return "".join(rng.choice(IMEI_DIGITS) for _ in range(codec.IMEI_LENGTH))


def random_record(rng: random.Random, codec_id: int) -> codec.AvlRecord:
    """A record any device of ``codec_id`` could send: random position and I/O elements."""
    wide_ids = codec_id != codec.CODEC_8
    max_id = 0xFFFF if wide_ids else 0xFF
    io: dict[int, int | bytes] = {}
    io_sizes: dict[int, int] = {}
    # Mostly a handful of elements, as devices send; now and then many.
    element_count = rng.choice((0, 1, 3, 6, 12, rng.randint(0, 60)))
    for _ in range(element_count):
        io_id = rng.randint(0, max_id)
        if codec_id == codec.CODEC_8E and rng.random() < 0.15:
            io[io_id] = rng.randbytes(rng.choice((0, 1, 8, rng.randint(0, 200))))
            io_sizes[io_id] = len(io[io_id])  # type: ignore[arg-type]
            continue
        width = rng.choice((1, 2, 4, 8))
        io[io_id] = rng.choice((0, (1 << (8 * width)) - 1, rng.getrandbits(8 * width)))
        io_sizes[io_id] = width
    gps = codec.GpsElement(
        longitude=rng.randint(-1_800_000_000, 1_800_000_000) / 10_000_000,
        latitude=rng.randint(-900_000_000, 900_000_000) / 10_000_000,
        altitude=rng.randint(-32768, 32767),
        angle=rng.randint(0, 0xFFFF),
        satellites=rng.randint(0, 0xFF),
        speed=rng.randint(0, 0xFFFF),
    )
    return codec.AvlRecord(
        timestamp_ms=rng.choice((0, rng.getrandbits(64), rng.randint(1, 2_000_000_000_000))),
        priority=rng.randint(0, 0xFF),
        gps=gps,
        event_io_id=rng.randint(0, max_id),
        io=io,
        generation_type=rng.randint(0, 0xFF) if codec_id == codec.CODEC_16 else None,
        io_sizes=io_sizes,
    )


def random_records(rng: random.Random, codec_id: int) -> list[codec.AvlRecord]:
    count = rng.choice((0, 1, 1, 2, 3, rng.randint(0, 40)))
    return [random_record(rng, codec_id) for _ in range(count)]


def random_avl_codec(rng: random.Random) -> int:
    return rng.choice((codec.CODEC_8, codec.CODEC_8E, codec.CODEC_16))


def random_avl_frame(rng: random.Random) -> bytes:
    codec_id = random_avl_codec(rng)
    return codec.encode_avl_frame(codec_id, random_records(rng, codec_id))


def random_datagram(rng: random.Random) -> bytes:
    codec_id = random_avl_codec(rng)
    # A datagram's length field is 2 bytes: keep the records few enough to fit.
    records = random_records(rng, codec_id)[:8]
    try:
        return codec.encode_udp_datagram(
            rng.getrandbits(16), rng.getrandbits(8), random_imei(rng), codec_id, records
        )
    except codec.CodecError:
        return codec.encode_udp_datagram(1, 1, random_imei(rng), codec_id, [])


def random_command_frame(rng: random.Random) -> bytes:
    codec_id = rng.choice(sorted(codec.COMMAND_CODECS))
    messages = [
        codec.CommandMessage(
            type=rng.choice(
                (
                    codec.TYPE_COMMAND,
                    codec.TYPE_RESPONSE,
                    codec.TYPE_DEVICE_MESSAGE,
                    codec.TYPE_NACK,
                    rng.getrandbits(8),
                )
            ),
            payload=rng.randbytes(rng.choice((0, 1, 7, rng.randint(0, 300)))),
            timestamp=rng.getrandbits(32),
            imei=random_imei(rng),
        )
        for _ in range(rng.choice((0, 1, 1, 2, rng.randint(0, 10))))
    ]
    return codec.encode_command_frame(codec_id, messages)


def random_imei_frame(rng: random.Random) -> bytes:
    return codec.encode_imei(random_imei(rng))


def random_stream(rng: random.Random) -> bytes:
    """What a device sends on a TCP connection: its IMEI, then AVL and command frames."""
    parts = [random_imei_frame(rng)]
    for _ in range(rng.randint(0, 3)):
        parts.append(random_avl_frame(rng) if rng.random() < 0.7 else random_command_frame(rng))
    return b"".join(parts)


GENERATORS: dict[str, Callable[[random.Random], bytes]] = {
    "avl": random_avl_frame,
    "udp": random_datagram,
    "command": random_command_frame,
    "imei": random_imei_frame,
    "stream": random_stream,
}


# Mutation


def _random_span(rng: random.Random, length: int) -> tuple[int, int]:
    start = rng.randint(0, max(length - 1, 0))
    return start, min(length, start + rng.choice((1, 2, 4, rng.randint(1, 64))))


def mutate(data: bytes, rng: random.Random, donors: list[bytes] | None = None) -> bytes:
    """``data`` damaged by one to five mutations, and sometimes its TCP framing repaired."""
    buffer = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        action = rng.randrange(10)
        length = len(buffer)
        if action == 0 and length:
            position = rng.randrange(length)
            buffer[position] ^= 1 << rng.randrange(8)
        elif action == 1 and length:
            buffer[rng.randrange(length)] = rng.choice(INTERESTING_U8)
        elif action == 2 and length >= 4:
            # A length, count or size field set to an extreme: 0, 2^31, 2^32 - 1...
            position = rng.randrange(length - 3)
            value = rng.choice((*INTERESTING_U32, length, length - 12, length + 1))
            buffer[position : position + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")
        elif action == 3 and length >= 2:
            position = rng.randrange(length - 1)
            value = rng.choice(INTERESTING_U32) & 0xFFFF
            buffer[position : position + 2] = value.to_bytes(2, "big")
        elif action == 4:
            position = rng.randint(0, length)
            buffer[position:position] = rng.randbytes(rng.choice((1, 2, 4, rng.randint(1, 32))))
        elif action == 5 and length:
            start, end = _random_span(rng, length)
            del buffer[start:end]
        elif action == 6 and length:
            del buffer[rng.randint(0, length - 1) :]
        elif action == 7 and length:
            start, end = _random_span(rng, length)
            buffer[end:end] = buffer[start:end]
        elif action == 8 and donors:
            donor = rng.choice(donors)
            start, end = _random_span(rng, len(donor))
            position = rng.randint(0, length)
            buffer[position:position] = donor[start:end]
        elif length:
            buffer[rng.randrange(length)] = rng.getrandbits(8)
    repair = rng.random()
    if repair < 0.6:
        return fix_tcp_frame(bytes(buffer))
    if repair < 0.7:
        return fix_tcp_frame(bytes(buffer), crc=False)
    if repair < 0.8:
        return fix_udp_length(bytes(buffer))
    return bytes(buffer)


def fix_tcp_frame(data: bytes, crc: bool = True) -> bytes:
    """``data`` with a TCP frame's length field, and unless ``crc`` is false its CRC, true
    to its bytes, so that a decoder gets past both checks."""
    if len(data) < codec.FRAME_OVERHEAD:
        return data
    payload = data[codec.FRAME_HEADER_LENGTH : -4]
    checksum = codec.crc16_ibm(payload) if crc else int.from_bytes(data[-4:], "big")
    return data[:4] + len(payload).to_bytes(4, "big") + payload + checksum.to_bytes(4, "big")


def fix_udp_length(data: bytes) -> bytes:
    if len(data) < 2 or len(data) - 2 > 0xFFFF:
        return data
    return (len(data) - 2).to_bytes(2, "big") + data[2:]


def random_bytes(rng: random.Random) -> bytes:
    """Bytes with no structure at all, now and then behind a plausible frame header."""
    body = rng.randbytes(rng.choice((0, 1, 3, 8, 15, rng.randint(0, 2048))))
    if rng.random() < 0.5:
        return fix_tcp_frame(b"\x00\x00\x00\x00" + bytes(4) + body + bytes(4))
    return body


def inputs(rng: random.Random, donors: list[bytes] | None = None) -> Iterator[tuple[str, bytes]]:
    """Endless ``(origin, bytes)``: valid frames, damaged frames and bare noise."""
    kinds = list(GENERATORS)
    pool: list[bytes] = list(donors or [])
    while True:
        choice = rng.random()
        if choice < 0.1:
            yield "noise", random_bytes(rng)
            continue
        if pool and choice > 0.75:
            # Earlier frames and the seed corpus damaged again: mutations pile up.
            yield "corpus-mutated", mutate(rng.choice(pool), rng, pool)
            continue
        origin = rng.choice(kinds)
        seed = GENERATORS[origin](rng)
        if len(pool) < 256:
            pool.append(seed)
        else:
            pool[rng.randrange(len(pool))] = seed
        if choice < 0.2:
            yield f"{origin}-valid", seed
        else:
            yield f"{origin}-mutated", mutate(seed, rng, pool)


# Checking


def _stream_frames(data: bytes, chunk: int) -> list[codec.Frame]:
    """Cut ``data`` as the server reads it, ``chunk`` bytes at a time, and decode each frame
    as the server would."""
    reader = codec.TcpFrameReader()
    frames = []
    for start in range(0, len(data), chunk):
        frames.extend(reader.feed(data[start : start + chunk]))
    for frame in frames:
        if frame.kind == "imei":
            codec.decode_imei(frame.raw)
        elif frame.kind == "avl":
            codec.decode_avl_frame(frame.raw)
        else:
            codec.decode_command_frame(frame.raw)
    return frames


def _stream_whole(data: bytes) -> object:
    return _stream_frames(data, max(len(data), 1))


def _stream_in_pieces(data: bytes) -> object:
    return _stream_frames(data, 7)


def _avl_stream(data: bytes) -> object:
    # After the handshake: only AVL and command frames.
    reader = codec.TcpFrameReader(expect_imei=False)
    return reader.feed(data)


DECODERS: dict[str, Callable[[bytes], object]] = {
    "decode_avl_frame": codec.decode_avl_frame,
    # The data field of a TCP frame, which has no CRC of its own to stop garbage.
    "decode_avl_data": lambda data: codec.decode_avl_data(data[codec.FRAME_HEADER_LENGTH : -4]),
    "decode_udp_datagram": codec.decode_udp_datagram,
    "decode_command_frame": codec.decode_command_frame,
    "decode_imei": codec.decode_imei,
    "decode_udp_ack": codec.decode_udp_ack,
    "read_command_frame_length": lambda data: codec.read_command_frame_length(data[:8]),
    "tcp_stream": _stream_whole,
    "tcp_stream_in_pieces": _stream_in_pieces,
    "tcp_stream_after_imei": _avl_stream,
}


@dataclass
class Tally:
    """What a run has seen: inputs, outcomes per decoder, the slowest and largest decode."""

    inputs: int = 0
    memory_checked: int = 0
    decodes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    origins: Counter[str] = field(default_factory=Counter)
    slowest_seconds: float = 0.0
    slowest: str = ""
    peak_bytes: int = 0
    peak: str = ""


def _traced_peak(decoder: Callable[[bytes], object], data: bytes) -> int:
    """Peak bytes traced while ``decoder`` runs on ``data`` again (tracemalloc is on)."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    with contextlib.suppress(codec.CodecError):
        decoder(data)
    return tracemalloc.get_traced_memory()[1] - before


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise DecodeTimeout()


class Checker:
    """Runs inputs through every decoder under a time alarm and tracemalloc.

    Use as a context manager from the main thread (the alarm is a SIGPROF timer, which
    counts the process's CPU time).
    Memory is traced for one input in ``memory_every`` (0: never): tracemalloc makes a
    decode several times slower, and the long run would take hours with it on throughout.
    """

    def __init__(self, *, memory_every: int = 1, time_limit: float = DECODE_TIME_LIMIT) -> None:
        self.memory_every = memory_every
        self.time_limit = time_limit
        self.tally = Tally()
        self._previous_handler: Any = None

    def __enter__(self) -> Checker:
        self._previous_handler = signal.signal(signal.SIGPROF, _on_alarm)
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, self._previous_handler)
        if tracemalloc.is_tracing():
            tracemalloc.stop()

    def check(self, data: bytes, origin: str = "") -> None:
        """Run ``data`` through every decoder; FuzzFailureError on the first broken rule."""
        tally = self.tally
        tally.inputs += 1
        tally.origins[origin or "given"] += 1
        measure_memory = bool(self.memory_every) and tally.inputs % self.memory_every == 0
        if measure_memory:
            tally.memory_checked += 1
            tracemalloc.start()
        try:
            self._check(data, origin, measure_memory)
        finally:
            if measure_memory:
                tracemalloc.stop()

    def _check(self, data: bytes, origin: str, measure_memory: bool) -> None:
        tally = self.tally
        memory_limit = MEMORY_BASE_BYTES + MEMORY_PER_INPUT_BYTE * len(data)
        for name, decoder in DECODERS.items():
            if measure_memory:
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
            started = time.process_time()
            signal.setitimer(signal.ITIMER_PROF, self.time_limit)
            try:
                decoder(data)
                outcome = "ok"
            except DecodeTimeout:
                raise FuzzFailureError(
                    name, data, f"took over {self.time_limit} s of CPU"
                ) from None
            except codec.CodecError as error:
                outcome = type(error).__name__
            except Exception as error:
                raise FuzzFailureError(
                    name, data, f"raised {type(error).__name__}: {error}"
                ) from error
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            elapsed = time.process_time() - started
            tally.decodes += 1
            tally.outcomes[f"{name}: {outcome}"] += 1
            if elapsed > tally.slowest_seconds:
                tally.slowest_seconds = elapsed
                tally.slowest = f"{name} on {len(data)} bytes ({origin})"
            if measure_memory:
                peak = tracemalloc.get_traced_memory()[1] - before
                if peak > tally.peak_bytes:
                    tally.peak_bytes = peak
                    tally.peak = f"{name} on {len(data)} bytes ({origin})"
                # tracemalloc counts every thread's allocations, so in a process with other
                # threads a burst of theirs can land in this window: a decoder is blamed
                # only if it goes over again on its own second try.
                if peak > memory_limit and _traced_peak(decoder, data) > memory_limit:
                    raise FuzzFailureError(
                        name, data, f"allocated {peak} bytes, over {memory_limit} for this input"
                    )
