"""Commands to devices through the API: queue, list, roles and validation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.devices import services
from apps.devices.models import CommandStatus, DeviceCommand
from apps.tenants.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def tracker(tenant_a):
    device, _ = services.create_device(
        tenant=tenant_a.tenant, name="FMC650", external_id="356307042441013", protocol="teltonika"
    )
    return device


@pytest.mark.parametrize("role", [Role.MANAGER, Role.ADMIN])
def test_managers_and_admins_queue_a_command(client_for, tenant_a, tracker, role):
    client = client_for(tenant_a.member(role))
    before = timezone.now()

    response = client.post(
        f"/devices/{tracker.pk}/commands", {"text": "setdigout 1"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["text"] == "setdigout 1"
    assert body["device_id"] == tracker.pk
    assert body["sent_at"] is None
    command = DeviceCommand.objects.get(pk=body["id"])
    assert command.created_by == tenant_a.member(role)
    assert command.expires_at >= before + timedelta(seconds=3600)


def test_viewers_neither_queue_nor_read_commands(client_for, tenant_a, tracker):
    client = client_for(tenant_a.viewer)

    queued = client.post(f"/devices/{tracker.pk}/commands", {"text": "getinfo"}, format="json")
    listed = client.get(f"/devices/{tracker.pk}/commands")

    assert queued.status_code == listed.status_code == 403
    assert not DeviceCommand.objects.exists()


def test_a_ttl_sets_the_expiry(client_for, tenant_a, tracker):
    client = client_for(tenant_a.manager)

    response = client.post(
        f"/devices/{tracker.pk}/commands", {"text": "getver", "ttl_seconds": 60}, format="json"
    )

    command = DeviceCommand.objects.get(pk=response.json()["id"])
    assert timedelta(seconds=55) < command.expires_at - command.created_at <= timedelta(seconds=61)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": "x" * 513}, "text"),
        ({"text": "setdigout ñ"}, "text"),
        ({"text": "get\tinfo"}, "text"),
        ({"text": "getinfo", "ttl_seconds": 0}, "ttl_seconds"),
        ({"text": "getinfo", "ttl_seconds": "soon"}, "ttl_seconds"),
    ],
)
def test_a_bad_command_names_the_field(client_for, tenant_a, tracker, body, field):
    response = client_for(tenant_a.manager).post(
        f"/devices/{tracker.pk}/commands", body, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not DeviceCommand.objects.exists()


def test_the_list_shows_one_devices_commands_newest_first(client_for, tenant_a, tracker):
    other, _ = services.create_device(tenant=tenant_a.tenant, name="Other")
    services.queue_command(tracker, "getinfo")
    services.queue_command(tracker, "getver")
    services.queue_command(other, "getio")

    listed = client_for(tenant_a.manager).get(f"/devices/{tracker.pk}/commands").json()

    assert [command["text"] for command in listed] == ["getver", "getinfo"]


def test_one_command_can_be_read(client_for, tenant_a, tracker):
    command = services.queue_command(tracker, "getinfo")

    response = client_for(tenant_a.manager).get(f"/devices/{tracker.pk}/commands/{command.pk}")

    assert response.status_code == 200
    assert response.json()["text"] == "getinfo"


class TestLifecycle:
    def test_a_claimed_command_is_sent_once(self, tracker):
        first = services.queue_command(tracker, "getinfo")
        second = services.queue_command(tracker, "getver")

        claimed = services.claim_next_command(tracker.pk, "daemon-1")
        next_claimed = services.claim_next_command(tracker.pk, "daemon-2")
        none_left = services.claim_next_command(tracker.pk, "daemon-1")

        assert (claimed.pk, next_claimed.pk, none_left) == (first.pk, second.pk, None)
        assert DeviceCommand.objects.get(pk=first.pk).sent_by == "daemon-1"

    def test_an_answer_is_stored_once(self, tracker):
        services.queue_command(tracker, "getinfo")
        claimed = services.claim_next_command(tracker.pk, "daemon-1")

        assert services.record_command_answer(claimed.pk, "INI:ok") is True
        assert services.record_command_answer(claimed.pk, "late copy") is False
        command = DeviceCommand.objects.get(pk=claimed.pk)
        assert (command.status, command.response) == (CommandStatus.ANSWERED, "INI:ok")

    def test_expired_and_silent_commands_are_closed(self, tracker, settings):
        stale = services.queue_command(tracker, "getinfo", ttl=timedelta(seconds=1))
        DeviceCommand.objects.filter(pk=stale.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        services.queue_command(tracker, "getver")
        silent = services.claim_next_command(tracker.pk, "daemon-1")
        DeviceCommand.objects.filter(pk=silent.pk).update(
            sent_at=timezone.now() - timedelta(seconds=settings.DEVICE_COMMAND_ANSWER_TIMEOUT + 1)
        )

        assert services.expire_commands() == (1, 1)
        assert DeviceCommand.objects.get(pk=stale.pk).status == CommandStatus.EXPIRED
        assert DeviceCommand.objects.get(pk=silent.pk).status == CommandStatus.TIMED_OUT
        assert services.claim_next_command(tracker.pk, "daemon-1") is None
