"""Long fuzzing run of the Teltonika codec: millions of generated and damaged frames.

Run it from the root of a checkout after ``make install``; it needs no database::

    nice -n 10 .venv/bin/python bench/fuzz_codec.py --frames 1000000
    .venv/bin/python bench/fuzz_codec.py --frames 50000 --seed 7 --memory-every 1

With ``--engine atheris`` the inputs come from libFuzzer instead, guided by the coverage
of the instrumented codec, and damaged by its mutations and this project's in turn::

    nice -n 10 .venv/bin/python bench/fuzz_codec.py --engine atheris --frames 1000000

Every input goes through every decoder (see ``ingest_daemons/teltonika/fuzzing.py``).
The run stops at the first decoder that lets out anything but ``CodecError``, runs past
its time bound or allocates past its memory bound, writes that input next to the seed
corpus as ``crash-<sha1>.bin`` and exits with status 1. Otherwise it prints the frames
tried, the outcomes per decoder and exception type, the slowest decode and the largest
memory peak, and exits 0. docs/hardening.md records the figures of a run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest_daemons.teltonika import fuzzing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT / "ingest_daemons" / "teltonika" / "tests" / "corpus"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def load_corpus(directory: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(directory.glob("*.bin"))]


def report(checker: fuzzing.Checker, elapsed: float) -> None:
    tally = checker.tally
    say(f"frames tried        {tally.inputs:,}")
    say(f"decodes             {tally.decodes:,}")
    say(f"seconds             {elapsed:,.0f} ({tally.inputs / max(elapsed, 1e-9):,.0f} frames/s)")
    say(f"slowest decode      {tally.slowest_seconds * 1000:.2f} ms CPU: {tally.slowest}")
    say(
        f"peak memory         {tally.peak_bytes / 1024:,.0f} KiB: {tally.peak} "
        f"(traced on {tally.memory_checked:,} frames)"
    )
    say("inputs by origin")
    for origin, count in sorted(tally.origins.items()):
        say(f"  {origin:<28} {count:>12,}")
    say("outcomes by decoder")
    for outcome, count in sorted(tally.outcomes.items()):
        say(f"  {outcome:<52} {count:>12,}")


def keep_failure(corpus: Path, failure: fuzzing.FuzzFailureError, number: int) -> None:
    name = f"crash-{hashlib.sha1(failure.data).hexdigest()[:12]}.bin"  # noqa: S324
    (corpus / name).write_bytes(failure.data)
    say(f"FAILURE after {number:,} frames: {failure}")
    say(f"input written to {corpus / name}")


def run_random(options: argparse.Namespace, seed: int, corpus: list[bytes]) -> int:
    """This project's generator and mutator alone: fast, and the same run for a seed."""
    from ingest_daemons.teltonika import fuzzing

    rng = random.Random(seed)  # noqa: S311  (reproducible, not secret)
    started = time.perf_counter()
    with fuzzing.Checker(memory_every=options.memory_every) as checker:
        # The corpus as it is first, then generated and damaged frames.
        stream = fuzzing.inputs(rng, corpus)
        pending = [("corpus-valid", data) for data in corpus]
        for number in range(options.frames):
            origin, data = pending.pop() if pending else next(stream)
            try:
                checker.check(data, origin)
            except fuzzing.FuzzFailureError as failure:
                keep_failure(options.corpus, failure, number)
                report(checker, time.perf_counter() - started)
                return 1
            if options.progress and (number + 1) % options.progress == 0:
                elapsed = time.perf_counter() - started
                say(f"  {number + 1:,} frames, {elapsed:,.0f} s")
    report(checker, time.perf_counter() - started)
    return 0


def run_atheris(options: argparse.Namespace, seed: int, corpus: list[bytes]) -> int:
    """libFuzzer through atheris, guided by the coverage of the instrumented codec.

    libFuzzer ends the process itself, so the report is printed from inside the target
    once enough frames were tried.
    """
    try:
        import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        say("atheris is not installed: make install brings it (requirements/dev.txt)")
        return 2
    with atheris.instrument_imports(include=["ingest_daemons.teltonika.codec"]):
        from ingest_daemons.teltonika import codec  # noqa: F401  (instrumented here)
    from ingest_daemons.teltonika import fuzzing

    checker = fuzzing.Checker(memory_every=options.memory_every).__enter__()
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-codec-"))
    for index, data in enumerate(corpus):
        (workdir / f"seed-{index}").write_bytes(data)

    def finish(status: int) -> None:
        report(checker, time.perf_counter() - started)
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(status)

    def one_input(data: bytes) -> None:
        # As libFuzzer made it, and with its TCP framing put right to get past the CRC.
        for candidate in (data, fuzzing.fix_tcp_frame(data)):
            try:
                checker.check(candidate, "atheris")
            except fuzzing.FuzzFailureError as failure:
                keep_failure(options.corpus, failure, checker.tally.inputs)
                finish(1)
        tried = checker.tally.inputs
        if options.progress and tried % options.progress < 2:
            say(f"  {tried:,} frames, {time.perf_counter() - started:,.0f} s")
        if tried >= options.frames:
            finish(0)

    def mutate(data: bytes, max_size: int, mutation_seed: int) -> bytes:
        rng = random.Random(mutation_seed)  # noqa: S311  (reproducible, not secret)
        if rng.random() < 0.5:
            return bytes(atheris.Mutate(data, max_size))
        return fuzzing.mutate(data, rng, corpus)[:max_size]

    argv = [sys.argv[0], f"-seed={seed}", "-max_len=16384", "-rss_limit_mb=4096", str(workdir)]
    atheris.Setup(argv, one_input, custom_mutator=mutate)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    parser.add_argument(
        "--memory-every",
        type=int,
        default=4,
        help="trace memory on one input in N (1: all; tracemalloc slows a decode ~5x)",
    )
    parser.add_argument("--progress", type=int, default=100_000, help="print every N frames")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="seed corpus directory")
    parser.add_argument(
        "--engine",
        choices=["random", "atheris"],
        default="random",
        help="where inputs come from: this project's mutator, or libFuzzer via atheris",
    )
    options = parser.parse_args(argv)
    seed = options.seed if options.seed is not None else time.time_ns() % 2**32
    say(f"seed {seed}, {options.frames:,} frames, engine {options.engine}")
    corpus = load_corpus(options.corpus)
    if options.engine == "atheris":
        return run_atheris(options, seed, corpus)
    return run_random(options, seed, corpus)


if __name__ == "__main__":
    sys.exit(main())
