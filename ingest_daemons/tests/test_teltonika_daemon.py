"""The Teltonika daemon over real sockets, against the real database."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.devices import services as device_services
from apps.devices.models import CommandStatus, DeviceCommand, DeviceProtocol, DeviceSession
from apps.telemetry.models import DeviceState, Telemetry
from ingest_daemons.teltonika import codec
from ingest_daemons.teltonika.server import ServerOptions
from ingest_daemons.teltonika.simulator import Route, make_record
from ingest_daemons.tests.conftest import IMEI, NO_ACK_WAIT, OTHER_IMEI, simulated

pytestmark = pytest.mark.django_db(transaction=True)

T0_MS = int(datetime(2026, 11, 1, 8, 0, tzinfo=UTC).timestamp() * 1000)


def records(count: int, start_ms: int = T0_MS) -> list[codec.AvlRecord]:
    route = Route(54.6676016, 25.2562916, 50.0)
    made = []
    for index in range(count):
        made.append(make_record(route, start_ms + index * 1000))
        route.advance(1)
    return made


def frame(count: int, start_ms: int = T0_MS) -> bytes:
    return codec.encode_avl_frame(codec.CODEC_8E, records(count, start_ms))


def stored(device_id: int) -> int:
    return Telemetry.objects.filter(device_id=device_id).count()


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


class TestHandshake:
    def test_a_registered_device_is_accepted(self, plain_tracker, tracker_device):
        tracker = plain_tracker()

        assert tracker.handshake(IMEI) == b"\x01"
        assert wait_for(
            lambda: DeviceSession.objects.filter(device=tracker_device, ended_at=None).exists()
        )

    def test_an_unknown_imei_is_refused_and_closed(self, plain_tracker, tracker_device):
        tracker = plain_tracker()

        assert tracker.handshake(OTHER_IMEI) == b"\x00"
        assert tracker.is_closed_by_server()

    def test_an_inactive_device_is_refused(self, plain_tracker, tracker_device):
        device_services.update_device(tracker_device, is_active=False)
        tracker = plain_tracker()

        assert tracker.handshake(IMEI) == b"\x00"
        assert tracker.is_closed_by_server()

    @pytest.mark.parametrize("change", ["deactivated", "deleted"])
    def test_a_device_removed_while_connected_is_refused_from_its_next_packet(
        self, plain_tracker, tracker_device, change
    ):
        tracker = plain_tracker()
        assert tracker.handshake(IMEI) == b"\x01"
        tracker.send(frame(2))
        assert tracker.ack() == 2

        if change == "deactivated":
            device_services.update_device(tracker_device, is_active=False)
        else:
            device_services.delete_device(tracker_device)
        tracker.send(frame(3, T0_MS + 60_000))

        assert tracker.ack(timeout=NO_ACK_WAIT) is None
        assert tracker.is_closed_by_server()
        assert stored(tracker_device.pk) == (2 if change == "deactivated" else 0)

    def test_a_malformed_imei_is_refused(self, plain_tracker, tracker_device):
        tracker = plain_tracker()
        tracker.send(b"\x00\x0f" + b"35630704244101X")

        assert tracker.receive(1) == b"\x00"
        assert tracker.is_closed_by_server()


class TestRecords:
    def test_records_are_stored_then_acknowledged(self, plain_tracker, tracker_device):
        tracker = plain_tracker()
        tracker.handshake(IMEI)

        tracker.send(frame(3))

        assert tracker.ack() == 3
        # The ACK came after the commit: the rows are there the moment it arrives.
        assert stored(tracker_device.pk) == 3
        point = Telemetry.objects.filter(device_id=tracker_device.pk).earliest("ts")
        assert point.ts == datetime.fromtimestamp(T0_MS / 1000, tz=UTC)
        assert point.data["gps"]["lat"] == pytest.approx(54.6676016)
        assert point.data["gps"]["valid"] is True
        assert point.data["io"]["239"] == 1
        assert point.data["ignition"] in (1, True)
        assert point.data["external_voltage"] == pytest.approx(24.1)
        assert point.data["codec"] == "8E"
        assert (
            codec.decode_avl_data(
                bytes([codec.CODEC_8E, 1]) + bytes.fromhex(point.data["raw"]) + bytes([1])
            )
            .records[0]
            .timestamp_ms
            == T0_MS
        )
        state = DeviceState.objects.get(device_id=tracker_device.pk)
        assert state.last_ts == datetime.fromtimestamp((T0_MS + 2000) / 1000, tz=UTC)

    def test_a_resend_after_a_lost_ack_is_acknowledged_and_stored_once(
        self, plain_tracker, tracker_device
    ):
        tracker = plain_tracker()
        tracker.handshake(IMEI)
        packet = frame(5)

        tracker.send(packet)
        assert tracker.ack() == 5
        tracker.send(packet)

        assert tracker.ack() == 5
        assert stored(tracker_device.pk) == 5

    def test_a_frame_split_into_single_bytes_is_read_whole(self, plain_tracker, tracker_device):
        tracker = plain_tracker()
        tracker.handshake(IMEI)

        for byte in frame(2):
            tracker.send(bytes([byte]))

        assert tracker.ack() == 2

    def test_a_bad_crc_is_not_acknowledged_and_the_resend_is(self, plain_tracker, tracker_device):
        tracker = plain_tracker()
        tracker.handshake(IMEI)
        good = frame(2)
        corrupted = good[:-1] + bytes([good[-1] ^ 0xFF])

        tracker.send(corrupted)
        assert tracker.ack(timeout=NO_ACK_WAIT) is None
        assert stored(tracker_device.pk) == 0

        tracker.send(good)
        assert tracker.ack() == 2
        assert stored(tracker_device.pk) == 2

    def test_repeated_bad_frames_close_the_connection(
        self, plain_tracker, tracker_device, daemon_options
    ):
        tracker = plain_tracker()
        tracker.handshake(IMEI)
        good = frame(1)
        corrupted = good[:-1] + bytes([good[-1] ^ 0xFF])

        for _ in range(daemon_options.max_bad_frames):
            tracker.send(corrupted)

        assert tracker.is_closed_by_server()
        assert wait_for(lambda: DeviceSession.objects.filter(close_reason="bad_frames").exists())

    def test_garbage_closes_only_its_own_connection(self, plain_tracker, tracker_device, tenant_a):
        device_services.create_device(
            tenant=tenant_a.tenant, name="Other", external_id=OTHER_IMEI, protocol="teltonika"
        )
        garbage = plain_tracker()
        garbage.handshake(OTHER_IMEI)
        healthy = plain_tracker()
        healthy.handshake(IMEI)

        garbage.send(b"\xde\xad\xbe\xef" * 64)

        assert garbage.is_closed_by_server()
        healthy.send(frame(1))
        assert healthy.ack() == 1

    def test_an_oversized_frame_closes_the_connection(self, plain_tracker, tracker_device):
        tracker = plain_tracker()
        tracker.handshake(IMEI)

        tracker.send(b"\x00\x00\x00\x00" + (1 << 30).to_bytes(4, "big") + b"\x8e")

        assert tracker.is_closed_by_server()

    def test_no_ack_while_the_commit_fails_and_the_resend_is_stored_once(
        self, plain_tracker, tracker_device
    ):
        packet = frame(4)
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION refuse_telemetry() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'storage is down'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_telemetry BEFORE INSERT ON telemetry "
                "FOR EACH ROW EXECUTE FUNCTION refuse_telemetry()"
            )
        try:
            tracker = plain_tracker()
            tracker.handshake(IMEI)
            tracker.send(packet)

            assert tracker.ack(timeout=NO_ACK_WAIT * 2) is None
            assert tracker.is_closed_by_server()
        finally:
            with connection.cursor() as cursor:
                cursor.execute("DROP TRIGGER refuse_telemetry ON telemetry")
                cursor.execute("DROP FUNCTION refuse_telemetry()")
        assert stored(tracker_device.pk) == 0

        again = plain_tracker()
        again.handshake(IMEI)
        again.send(packet)

        assert again.ack() == 4
        assert stored(tracker_device.pk) == 4

    def test_a_clock_before_synchronisation_is_kept_at_arrival_time(
        self, plain_tracker, tracker_device
    ):
        tracker = plain_tracker()
        tracker.handshake(IMEI)

        tracker.send(frame(2, start_ms=5_000))

        assert tracker.ack() == 2
        points = list(Telemetry.objects.filter(device_id=tracker_device.pk).order_by("ts"))
        assert [point.data["device_ts_ms"] for point in points] == [5_000, 6_000]
        assert all(point.ts.year >= 2026 for point in points)

    def test_a_record_without_a_fix_does_not_move_the_vehicle(self, plain_tracker, tracker_device):
        tracker = plain_tracker()
        tracker.handshake(IMEI)
        fixed, unfixed = records(2)
        no_fix = codec.AvlRecord(
            timestamp_ms=unfixed.timestamp_ms,
            priority=0,
            gps=codec.GpsElement(1.0, 2.0, 0, 0, 0, 0),
            event_io_id=0,
            io={},
            io_sizes={},
        )

        tracker.send(codec.encode_avl_frame(codec.CODEC_8, [fixed, no_fix]))

        assert tracker.ack() == 2
        state = DeviceState.objects.get(device_id=tracker_device.pk)
        assert state.latitude == pytest.approx(fixed.gps.latitude)
        assert state.last_ts == no_fix.timestamp


class TestManyDevices:
    def test_many_trackers_at_once_lose_nothing(self, daemon, tenant_a):
        imeis = [str(356307040000000 + number) for number in range(40)]
        for imei in imeis:
            device_services.create_device(
                tenant=tenant_a.tenant, name=imei, external_id=imei, protocol="teltonika"
            )

        async def drive(imei: str) -> int:
            tracker = simulated(daemon.port, imei)
            await tracker.connect()
            acknowledged = 0
            for _ in range(5):
                acknowledged += await tracker.send(tracker.next_records(10))
            await tracker.close()
            return acknowledged

        async def drive_all() -> list[int]:
            return await asyncio.gather(*(drive(imei) for imei in imeis))

        acknowledged = asyncio.run(drive_all())

        assert acknowledged == [50] * len(imeis)
        assert Telemetry.objects.count() == 50 * len(imeis)


class TestUdp:
    def test_a_datagram_is_stored_and_its_ids_echoed(self, daemon, tracker_device):
        datagram = codec.encode_udp_datagram(0xCAFE, 7, IMEI, codec.CODEC_8E, records(3))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(10)
            udp.sendto(datagram, ("127.0.0.1", daemon.server.udp_port))
            ack, _ = udp.recvfrom(64)

        assert codec.decode_udp_ack(ack) == (0xCAFE, 7, 3)
        assert stored(tracker_device.pk) == 3

    def test_a_device_deactivated_since_its_last_datagram_is_refused_at_once(
        self, daemon, tracker_device
    ):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(10)
            first = codec.encode_udp_datagram(1, 1, IMEI, codec.CODEC_8E, records(2))
            udp.sendto(first, ("127.0.0.1", daemon.server.udp_port))
            assert codec.decode_udp_ack(udp.recvfrom(64)[0]) == (1, 1, 2)

            device_services.update_device(tracker_device, is_active=False)
            udp.settimeout(NO_ACK_WAIT)
            later = codec.encode_udp_datagram(2, 2, IMEI, codec.CODEC_8E, records(2, T0_MS + 9000))
            udp.sendto(later, ("127.0.0.1", daemon.server.udp_port))
            with pytest.raises(TimeoutError):
                udp.recvfrom(64)
        assert stored(tracker_device.pk) == 2

    def test_a_datagram_of_an_unknown_imei_is_not_acknowledged(self, daemon, tracker_device):
        datagram = codec.encode_udp_datagram(1, 1, OTHER_IMEI, codec.CODEC_8, records(1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(NO_ACK_WAIT)
            udp.sendto(datagram, ("127.0.0.1", daemon.server.udp_port))
            with pytest.raises(TimeoutError):
                udp.recvfrom(64)
        assert Telemetry.objects.count() == 0


class TestCommands:
    def test_a_queued_command_is_delivered_and_its_answer_stored(
        self, daemon, tracker_device, client_for, tenant_a
    ):
        client = client_for(tenant_a.manager)
        response = client.post(
            f"/devices/{tracker_device.pk}/commands", {"text": "getinfo"}, format="json"
        )
        assert response.status_code == 201, response.content
        command_id = response.json()["id"]

        async def converse() -> list[str]:
            tracker = simulated(daemon.port, IMEI)
            tracker.answer = lambda command: f"INI:2026/11/1 RTC:ok for {command}"
            await tracker.connect()
            await tracker.send(tracker.next_records(1))
            for _ in range(100):
                if tracker.commands_received:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            await tracker.close()
            return tracker.commands_received

        assert asyncio.run(converse()) == ["getinfo"]
        assert wait_for(
            lambda: DeviceCommand.objects.get(pk=command_id).status == CommandStatus.ANSWERED
        )
        listed = client.get(f"/devices/{tracker_device.pk}/commands").json()
        assert listed[0]["status"] == "answered"
        assert listed[0]["response"] == "INI:2026/11/1 RTC:ok for getinfo"

    def test_an_expired_command_is_never_sent(self, daemon, tracker_device):
        from datetime import timedelta

        command = device_services.queue_command(tracker_device, "getver", ttl=timedelta(seconds=1))
        DeviceCommand.objects.filter(pk=command.pk).update(
            expires_at=datetime(2020, 1, 1, tzinfo=UTC)
        )

        async def converse() -> list[str]:
            tracker = simulated(daemon.port, IMEI)
            await tracker.connect()
            await tracker.send(tracker.next_records(1))
            await asyncio.sleep(0.5)
            await tracker.close()
            return tracker.commands_received

        assert asyncio.run(converse()) == []
        device_services.expire_commands()
        assert DeviceCommand.objects.get(pk=command.pk).status == CommandStatus.EXPIRED

    def test_an_unanswered_command_times_out(self, daemon, tracker_device, daemon_options):
        command = device_services.queue_command(tracker_device, "getio")
        tracker = None

        async def converse() -> None:
            nonlocal tracker
            tracker = simulated(daemon.port, IMEI)
            tracker.answer = lambda command: ""
            await tracker.connect()
            # A tracker that reads the command and never answers: stop listening first.
            await tracker.send(tracker.next_records(1))
            tracker._listening.cancel()
            await asyncio.sleep(daemon_options.command_answer_timeout + 1.0)
            await tracker.close()

        asyncio.run(converse())

        assert wait_for(
            lambda: DeviceCommand.objects.get(pk=command.pk).status == CommandStatus.TIMED_OUT
        )


class TestSessions:
    def test_a_session_records_what_the_connection_carried(self, plain_tracker, tracker_device):
        tracker = plain_tracker()
        tracker.handshake(IMEI)
        packet = frame(3)
        tracker.send(packet)
        tracker.ack()
        tracker.close()

        assert wait_for(
            lambda: (
                DeviceSession.objects.filter(device=tracker_device).exclude(ended_at=None).exists()
            )
        )
        session = DeviceSession.objects.get(device=tracker_device)
        assert session.records == 3
        assert session.bytes_received == len(codec.encode_imei(IMEI)) + len(packet)
        assert session.close_reason == "closed_by_device"
        assert session.peer.startswith("127.0.0.1:")

    def test_the_connection_is_in_the_audit_trail(self, plain_tracker, tracker_device):
        tracker = plain_tracker()
        tracker.handshake(IMEI)
        tracker.send(frame(2))
        tracker.ack()
        tracker.close()

        def events() -> list[AuditEvent]:
            return list(
                AuditEvent.objects.filter(
                    device_id=tracker_device.pk,
                    type__in=["device.connected", "device.disconnected"],
                ).order_by("id")
            )

        assert wait_for(lambda: len(events()) == 2)
        connected, disconnected = events()
        session = DeviceSession.objects.get(device=tracker_device)
        assert connected.type == "device.connected"
        assert connected.tenant_id == tracker_device.tenant_id
        assert connected.ip == "127.0.0.1"
        assert connected.payload == {
            "transport": "teltonika-tcp",
            "peer": session.peer,
            "session_id": session.pk,
        }
        assert disconnected.type == "device.disconnected"
        assert disconnected.payload["reason"] == "closed_by_device"
        assert disconnected.payload["records"] == 2
        # The daemon keeps the session itself: the events open and close no other.
        assert DeviceSession.objects.filter(device=tracker_device).count() == 1


class TestAutoRegistration:
    @pytest.fixture
    def daemon_options(self, tenant_a) -> ServerOptions:
        return ServerOptions(
            bind="127.0.0.1", port=0, batch_max_delay=0.001, auto_register_tenant="alpha"
        )

    def test_an_unknown_imei_joins_the_configured_tenant(self, plain_tracker, tenant_a):
        tracker = plain_tracker()

        assert tracker.handshake(OTHER_IMEI) == b"\x01"
        device = tenant_a.tenant.devices_device_set.get(external_id=OTHER_IMEI)
        assert device.protocol == DeviceProtocol.TELTONIKA
