"""Fuzzing in CI: a few thousand generated and damaged frames through every decoder.

Each decode may only raise CodecError, must finish within its time bound and must
allocate memory in proportion to the bytes it was given, never to a length it declares.
bench/fuzz_codec.py runs the same checks over millions of frames, out of CI.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_daemons.teltonika import codec, fuzzing

CORPUS = Path(__file__).parent / "corpus"
CI_SEED = 20_261_204
CI_INPUTS = 3_000


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.bin"))


def test_the_seed_corpus_is_small_and_covers_every_codec() -> None:
    files = corpus_files()
    assert 5 <= len(files) <= 40
    assert sum(path.stat().st_size for path in files) < 16 * 1024
    codecs = set()
    for path in files:
        data = path.read_bytes()
        if len(data) > codec.FRAME_HEADER_LENGTH and data[:4] == bytes(4):
            codecs.add(data[codec.FRAME_HEADER_LENGTH])
    assert codecs >= codec.AVL_CODECS | codec.COMMAND_CODECS


@pytest.mark.parametrize("path", corpus_files(), ids=lambda path: path.name)
def test_corpus_frame_passes_every_decoder(path: Path) -> None:
    with fuzzing.Checker() as checker:
        checker.check(path.read_bytes(), path.name)
    assert checker.tally.decodes == len(fuzzing.DECODERS)


def test_generated_frames_decode_to_the_records_they_were_built_from() -> None:
    rng = random.Random(CI_SEED)  # noqa: S311  (reproducible, not secret)
    for _ in range(300):
        codec_id = fuzzing.random_avl_codec(rng)
        records = fuzzing.random_records(rng, codec_id)
        packet = codec.decode_avl_frame(codec.encode_avl_frame(codec_id, records))
        assert packet.codec_id == codec_id
        assert list(packet.records) == records


def test_thousands_of_generated_and_damaged_frames_only_raise_codec_errors() -> None:
    rng = random.Random(CI_SEED)  # noqa: S311  (reproducible, not secret)
    corpus = [path.read_bytes() for path in corpus_files()]
    started = time.monotonic()
    with fuzzing.Checker(memory_every=1) as checker:
        for _, (origin, data) in zip(range(CI_INPUTS), fuzzing.inputs(rng, corpus), strict=False):
            checker.check(data, origin)
    tally = checker.tally
    assert tally.inputs == CI_INPUTS
    assert tally.memory_checked == CI_INPUTS
    # The damage must reach past the framing checks: some mutated frames decode whole,
    # and the record parser refuses others after a correct CRC.
    assert tally.outcomes["decode_avl_frame: ok"] > 50
    assert tally.outcomes["decode_command_frame: ok"] > 50
    assert tally.outcomes["decode_udp_datagram: ok"] > 50
    assert tally.outcomes["decode_avl_frame: CodecError"] > 1_000
    assert tally.peak_bytes < 4 * 1024 * 1024
    assert time.monotonic() - started < 60


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(lambda body: fuzzing.fix_tcp_frame(bytes(8) + body + bytes(4))),
    )
)
def test_arbitrary_bytes_only_raise_codec_errors(data: bytes) -> None:
    with fuzzing.Checker() as checker:
        checker.check(data, "hypothesis")


@pytest.mark.parametrize("declared", [2**31, 2**32 - 1])
def test_a_huge_declared_length_allocates_nothing_like_it(declared: int) -> None:
    header = bytes(4) + declared.to_bytes(4, "big") + b"\x8e\x01"
    # A reader allowed frames of any length still only keeps the bytes it was given.
    reader = codec.TcpFrameReader(max_frame_length=2**40, expect_imei=False)
    tracemalloc.start()
    try:
        for _ in range(100):
            assert reader.feed(header[:1] if reader.buffered else header) == []
        with pytest.raises(codec.CodecError):
            codec.decode_avl_frame(header + bytes(64))
        with pytest.raises(codec.FrameTooLongError):
            codec.TcpFrameReader(expect_imei=False).feed(header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader.buffered == len(header) + 99
    assert peak < 64 * 1024


class _Broken:
    """Decoders that break each rule, to prove the checker notices."""

    @staticmethod
    def raises_index_error(data: bytes) -> object:
        return data[len(data) + 5]

    @staticmethod
    def hangs(data: bytes) -> object:
        while True:
            pass

    @staticmethod
    def allocates(data: bytes) -> object:
        return bytearray(8 * 1024 * 1024)


@pytest.mark.parametrize(
    ("decoder", "problem"),
    [
        (_Broken.raises_index_error, "raised IndexError"),
        (_Broken.hangs, "took over"),
        (_Broken.allocates, "allocated"),
    ],
)
def test_the_checker_reports_a_decoder_that_breaks_a_rule(
    monkeypatch: pytest.MonkeyPatch, decoder: object, problem: str
) -> None:
    monkeypatch.setattr(fuzzing, "DECODERS", {"broken": decoder})
    with (
        fuzzing.Checker(time_limit=0.2) as checker,
        pytest.raises(fuzzing.FuzzFailureError) as failure,
    ):
        checker.check(b"\x00\x01", "test")
    assert failure.value.decoder == "broken"
    assert problem in failure.value.problem


def test_a_burst_of_memory_that_does_not_come_back_is_not_blamed_on_the_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As when another thread of the process allocates while a decoder is measured.
    calls: list[bytes] = []

    def allocates_once(data: bytes) -> object:
        calls.append(data)
        return bytearray(8 * 1024 * 1024) if len(calls) == 1 else None

    monkeypatch.setattr(fuzzing, "DECODERS", {"bursty": allocates_once})
    with fuzzing.Checker(time_limit=0.2) as checker:
        checker.check(b"\x00\x01", "test")

    assert len(calls) == 2
    assert checker.tally.peak_bytes >= 8 * 1024 * 1024


@pytest.mark.parametrize("engine", ["random", "atheris"])
def test_the_long_run_script_runs_with_each_engine(tmp_path: Path, engine: str) -> None:
    pytest.importorskip(engine)
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    script = Path(__file__).resolve().parents[3] / "bench" / "fuzz_codec.py"

    arguments = ["--engine", engine, "--frames", "400", "--seed", "1", "--memory-every", "1"]
    finished = subprocess.run(  # noqa: S603  (our own script, fixed arguments)
        [sys.executable, str(script), *arguments, "--corpus", str(corpus)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "frames tried        4" in finished.stdout
    assert "decode_avl_frame: " in finished.stdout
    assert sorted(path.name for path in corpus.iterdir()) == sorted(
        path.name for path in CORPUS.iterdir()
    )
