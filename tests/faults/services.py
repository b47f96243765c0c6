"""Private PostgreSQL, Redis and Mosquitto instances on free ports, to stop and restart.

A fault run restarts the services the system depends on, so it never uses the shared ones
of a machine: each instance here lives in a temporary directory of its own, listens on
127.0.0.1 only and is removed when it is closed. Nothing here imports Django.
"""

from __future__ import annotations

import contextlib
import getpass
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

START_TIMEOUT = 30.0


class ServiceUnavailableError(RuntimeError):
    """A binary the fault runs need is not installed, or cannot be run here."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def find_binary(name: str, patterns: Sequence[str] = ()) -> str:
    """The path of ``name``: on the PATH, else the first match of ``patterns``."""
    found = shutil.which(name)
    if found:
        return found
    for pattern in patterns:
        matches = sorted(glob.glob(pattern), reverse=True)
        if matches:
            return matches[0]
    raise ServiceUnavailableError(f"{name} is not installed")


class PrivatePostgres:
    """A PostgreSQL cluster of its own: initdb in a temporary directory, pg_ctl to run it.

    PostgreSQL refuses to run as root; as root, the cluster belongs to the ``postgres``
    user and every command runs as that user. Durability settings are the defaults, so a
    commit that was answered survives a restart, including an immediate (crash) one.
    """

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.bin_dir = (
            Path(find_binary("initdb", ["/usr/lib/postgresql/*/bin/initdb"])).resolve().parent
        )
        self.directory = root / "postgres"
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailableError("running as root and no postgres user") from None
            runuser = find_binary("runuser", ["/usr/sbin/runuser", "/sbin/runuser"])
            self.run_as = [runuser, "-u", "postgres", "--"]
            self.directory.mkdir()
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            # That user must be able to reach its directory inside the temporary root.
            os.chmod(root, 0o711)  # noqa: S103  (others may only pass through)
        else:
            self.directory.mkdir()

    def url(self, database: str = "quantumfleet") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(  # noqa: S603  (our own command line)
            [*self.run_as, *command],
            check=check,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
        )

    def create(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.directory}'",
            "max_connections = 100",
            "shared_buffers = 32MB",
            # Kept on: a commit answered before a crash must be there after it.
            "synchronous_commit = on",
            # Only the machine crashing could lose what the OS holds, not a restart.
            "fsync = off",
            "full_page_writes = off",
            "logging_collector = off",
        ]
        with (self.data / "postgresql.conf").open("a") as config:
            config.write("\n".join(settings) + "\n")
        self.start()
        self._run(
            str(self.bin_dir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "quantumfleet",
        )

    def start(self) -> None:
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends the sessions and checkpoints; ``immediate`` is a crash."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, downtime: float, mode: str = "immediate") -> None:
        self.stop(mode)
        time.sleep(downtime)
        self.start()

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
                check=False,
            )


class PrivateRedis:
    """``redis-server`` without persistence, as a cache and Celery broker usually runs."""

    def __init__(self) -> None:
        self.binary = find_binary("redis-server")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603  (our own command line)
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_answers(self.port), START_TIMEOUT, "redis to listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self, downtime: float) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()

    def close(self) -> None:
        self.stop()


class PrivateMosquitto:
    """A Mosquitto with persistence, as an operator runs it: a restart keeps the sessions
    and the QoS 1 messages queued for them (written to disk when it stops)."""

    def __init__(self, root: Path) -> None:
        self.binary = find_binary("mosquitto", ["/usr/sbin/mosquitto"])
        self.port = free_port()
        directory = root / "mosquitto"
        directory.mkdir()
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            # The default of 1,000 would drop what waits for a consumer that is away.
            "max_queued_messages 100000\n"
            "log_dest file " + str(directory / "mosquitto.log") + "\n"
            # Started as root, Mosquitto would switch to a user who could not write here.
            f"user {getpass.getuser()}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603  (our own command line)
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_answers(self.port), START_TIMEOUT, "mosquitto to listen")

    def stop(self) -> None:
        # SIGTERM: Mosquitto writes its sessions and queued messages to disk first.
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self, downtime: float) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()

    def close(self) -> None:
        self.stop()


class PrivateServices:
    """PostgreSQL (migrated), Redis and, on demand, Mosquitto, in one temporary directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="qf-faults-"))
        self.postgres: PrivatePostgres | None = None
        self.redis: PrivateRedis | None = None
        self.mosquitto: PrivateMosquitto | None = None

    def start(self, *, mosquitto: bool) -> None:
        self.postgres = PrivatePostgres(self.root)
        self.postgres.create()
        self.redis = PrivateRedis()
        self.redis.start()
        if mosquitto:
            self.mosquitto = PrivateMosquitto(self.root)
            self.mosquitto.start()

    def close(self) -> None:
        for service in (self.mosquitto, self.redis, self.postgres):
            if service is not None:
                with contextlib.suppress(Exception):
                    service.close()
        shutil.rmtree(self.root, ignore_errors=True)


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started with ``start_new_session`` and everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
