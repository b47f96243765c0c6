"""The pure parts: paths, transforms, templates, and which addresses are refused."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from apps.connectors.mapping import MappingError, apply_transforms, map_items, render_template
from apps.connectors.outbound import refusal_reason


def test_transforms_apply_in_order_and_leave_absent_fields_alone():
    data = {"speed": 22.2222, "temp": -55.0, "gps": {"alt": 10}}
    transforms: dict[str, list[dict[str, Any]]] = {
        "speed": [{"scale": 3.6, "offset": 0}, {"round": 1}],
        "temp": [{"clamp": [-40, None]}],
        "gps.alt": [{"scale": 0.001, "offset": 1}, {"round": 3}],
        "missing": [{"round": 0}],
    }

    assert apply_transforms(data, transforms) == {
        "speed": 80.0,
        "temp": -40,
        "gps": {"alt": 1.01},
    }


def test_round_to_zero_digits_gives_an_integer():
    assert apply_transforms({"v": 2.6}, {"v": [{"round": 0}]}) == {"v": 3}


def test_a_text_value_cannot_be_transformed():
    with pytest.raises(MappingError) as raised:
        apply_transforms({"v": "12"}, {"v": [{"round": 0}]}, "items.2.data.")

    assert raised.value.field == "items.2.data.v"


def test_a_single_object_is_one_item_and_data_defaults_to_the_whole_of_it():
    [item] = map_items({"imei": 5, "speed": 3}, {"device": "imei", "device_by": "external_id"})

    assert (item.device_key, item.ts, item.data) == ("5", None, {"imei": 5, "speed": 3})


def test_templates_keep_types_for_whole_placeholders_and_write_text_inside_strings():
    context = {"device": {"name": "Truck"}, "telemetry": {"data": {"speed": 131.5}}}
    template = {
        "speed": "{{telemetry.data.speed}}",
        "text": "{{device.name}} at {{ telemetry.data.speed }} km/h",
        "list": ["{{device.name}}", 1, None],
        "missing": "{{payload.x}}",
        "missing_in_text": "[{{payload.x}}]",
    }

    assert render_template(template, context) == {
        "speed": 131.5,
        "text": "Truck at 131.5 km/h",
        "list": ["Truck", 1, None],
        "missing": None,
        "missing_in_text": "[]",
    }


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.8",
        "172.16.4.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_addresses_only_the_server_can_reach_are_refused(settings, address):
    settings.CONNECTOR_ALLOWED_NETWORKS = []

    assert refusal_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::6810:84e5"])
def test_public_addresses_are_allowed(settings, address):
    settings.CONNECTOR_ALLOWED_NETWORKS = []

    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_an_allowed_network_is_let_through(settings):
    settings.CONNECTOR_ALLOWED_NETWORKS = ["10.20.0.0/16"]

    assert refusal_reason(ipaddress.ip_address("10.20.3.4")) is None
    assert refusal_reason(ipaddress.ip_address("10.21.3.4")) is not None
