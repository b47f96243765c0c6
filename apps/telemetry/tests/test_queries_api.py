"""GET/POST /telemetry/query: raw pages, cursors, keys, aggregation; /telemetry/latest."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest

from apps.telemetry.services import Point, ingest_points
from apps.tenants.models import Role

from .conftest import T0

pytestmark = pytest.mark.django_db


def iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def history(device, store):
    """Ten points a minute apart, speed 10·n, with a position on even minutes."""
    readings = []
    for n in range(10):
        data: dict[str, dict[str, float]] = {
            "gps": {"speed": 10 * n, "alt": 500 + n},
            "io": {"239": n % 2},
        }
        if n % 2 == 0:
            data["gps"] |= {"lat": -33.0 - n / 100, "lon": -70.0 - n / 100}
        readings.append((n, data))
    store(device, *readings)
    return readings


class TestRawQuery:
    def test_the_seeds_post_body_and_get_return_the_same_points_newest_first(
        self, client_for, tenant_a, device, history
    ):
        client = client_for(tenant_a.viewer)

        posted = client.post(
            "/telemetry/query", {"device_id": device.pk, "limit": 100}, format="json"
        )
        got = client.get(f"/telemetry/query?device_id={device.pk}&limit=100")

        assert posted.status_code == got.status_code == 200
        assert posted.json() == got.json()
        body = got.json()
        assert [row["ts"] for row in body] == [iso(n) for n in reversed(range(10))]
        assert body[0] == {"device_id": device.pk, "ts": iso(9), "data": history[9][1]}

    def test_device_is_an_alias_of_device_id(self, client_for, tenant_a, device, history):
        response = client_for(tenant_a.viewer).get(f"/telemetry/query?device={device.pk}&limit=1")

        assert response.json()[0]["ts"] == iso(9)

    def test_order_and_time_range(self, client_for, tenant_a, device, history):
        response = client_for(tenant_a.viewer).post(
            "/telemetry/query",
            {"device_id": device.pk, "from": iso(2), "to": iso(5), "order": "asc"},
            format="json",
        )

        assert [row["ts"] for row in response.json()] == [iso(2), iso(3), iso(4)]

    def test_keys_select_data_paths(self, client_for, tenant_a, device, history):
        response = client_for(tenant_a.viewer).get(
            f"/telemetry/query?device_id={device.pk}&limit=2&keys=gps.speed,io.239,gps.nope"
        )

        assert [row["data"] for row in response.json()] == [
            {"gps": {"speed": 90}, "io": {"239": 1}},
            {"gps": {"speed": 80}, "io": {"239": 0}},
        ]

    def test_keys_may_repeat_in_the_query_string_or_be_a_list(
        self, client_for, tenant_a, device, history
    ):
        client = client_for(tenant_a.viewer)

        repeated = client.get(
            f"/telemetry/query?device_id={device.pk}&limit=1&keys=gps.speed&keys=io.239"
        )
        listed = client.post(
            "/telemetry/query",
            {"device_id": device.pk, "limit": 1, "keys": ["gps.speed", "io.239"]},
            format="json",
        )

        assert repeated.json() == listed.json()
        assert repeated.json()[0]["data"] == {"gps": {"speed": 90}, "io": {"239": 1}}

    def test_a_cursor_walks_every_point_once(self, client_for, tenant_a, device, history):
        client = client_for(tenant_a.viewer)
        seen: list[str] = []
        url: str | None = f"/telemetry/query?device_id={device.pk}&limit=3"

        while url:
            response = client.get(url)
            seen += [row["ts"] for row in response.json()]
            link = response.headers.get("Link")
            url = link[link.index("<") + 1 : link.index(">")] if link else None
            if url:
                assert response["X-Next-Cursor"] in url

        assert seen == [iso(n) for n in reversed(range(10))]

    def test_newest_points_come_whole_across_the_recent_window(self, client_for, tenant_a, device):
        # Points of the last days and of months ago: a newest-first page reads the recent
        # weeks first and goes further back only for what they lack.
        now = datetime.now(UTC).replace(microsecond=0)
        ages = [timedelta(days=days) for days in (90, 45, 32, 30, 2)] + [timedelta(hours=1)]
        ingest_points(
            [
                Point(device.tenant_id, device.pk, now - age, {"age_s": age.total_seconds()})
                for age in ages
            ]
        )
        client = client_for(tenant_a.viewer)
        seen: list[float] = []
        url: str | None = f"/telemetry/query?device_id={device.pk}&limit=4"

        while url:
            response = client.get(url)
            seen += [row["data"]["age_s"] for row in response.json()]
            link = response.headers.get("Link")
            url = link[link.index("<") + 1 : link.index(">")] if link else None

        assert seen == sorted(age.total_seconds() for age in ages)
        newest = client.get(f"/telemetry/query?device_id={device.pk}&limit=3").json()
        assert [row["data"]["age_s"] for row in newest] == [3600, 2 * 86400, 30 * 86400]

    def test_a_cursor_from_the_other_order_is_refused(self, client_for, tenant_a, device, history):
        client = client_for(tenant_a.viewer)
        cursor = client.get(f"/telemetry/query?device_id={device.pk}&limit=3")["X-Next-Cursor"]

        response = client.get(f"/telemetry/query?device_id={device.pk}&order=asc&cursor={cursor}")

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["cursor"]

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("", "device_id"),
            ("device_id=abc", "device_id"),
            ("device_id={id}&limit=0", "limit"),
            ("device_id={id}&limit=10001", "limit"),
            ("device_id={id}&order=sideways", "order"),
            ("device_id={id}&from=yesterday", "from"),
            ("device_id={id}&from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z", "to"),
            ("device_id={id}&cursor=!!!", "cursor"),
            ("device_id={id}&keys=gps..speed", "keys"),
            ("device_id={id}&interval=7x&keys=gps.speed", "interval"),
            ("device_id={id}&interval=0m&keys=gps.speed", "interval"),
            ("device_id={id}&interval=1h", "keys"),
            ("device_id={id}&interval=1h&keys=gps.speed&agg=median", "agg"),
            ("device_id={id}&agg=avg&keys=gps.speed", "interval"),
            ("device_id={id}&format=xml", "format"),
            ("device_id={id}&format=gpx&interval=1h&keys=gps.speed", "format"),
        ],
    )
    def test_bad_parameters_are_named(self, client_for, tenant_a, device, history, query, field):
        response = client_for(tenant_a.viewer).get("/telemetry/query?" + query.format(id=device.pk))

        assert response.status_code == 400, response.content
        assert list(response.json()["errors"]) == [field]

    def test_the_limit_defaults_to_100(self, client_for, tenant_a, device, store):
        store(device, *[(n, {"n": n}) for n in range(120)])

        response = client_for(tenant_a.viewer).get(f"/telemetry/query?device_id={device.pk}")

        assert len(response.json()) == 100
        assert response["X-Next-Cursor"]


class TestAggregation:
    @pytest.fixture
    def readings(self, device, store):
        """Three hours: speeds vary, one reading per 20 minutes, plus a text value."""
        speeds = [12, 18, 30, 7, 0, 45.5, 22, 9, 16]
        readings = [
            (20 * i, {"gps": {"speed": speed}, "io": {"24": i}}) for i, speed in enumerate(speeds)
        ]
        readings.append((25, {"gps": {"speed": "fast"}}))
        store(device, *readings)
        return speeds

    def test_buckets_match_values_computed_here(self, client_for, tenant_a, device, readings):
        response = client_for(tenant_a.viewer).get(
            f"/telemetry/query?device_id={device.pk}&interval=1h&order=asc"
            "&agg=avg,min,max,sum,count,first,last&keys=gps.speed,io.24"
        )

        assert response.status_code == 200
        body = response.json()
        assert [bucket["ts"] for bucket in body] == [iso(0), iso(60), iso(120)]
        for hour, bucket in enumerate(body):
            speeds = readings[3 * hour : 3 * hour + 3]
            values = bucket["values"]["gps.speed"]
            assert values["avg"] == pytest.approx(statistics.mean(speeds))
            assert values["min"] == min(speeds)
            assert values["max"] == max(speeds)
            assert values["sum"] == pytest.approx(sum(speeds))
            assert values["count"] == 3  # the text value is not a number
            assert (values["first"], values["last"]) == (speeds[0], speeds[-1])
            assert bucket["values"]["io.24"]["sum"] == sum(range(3 * hour, 3 * hour + 3))

    def test_newest_bucket_first_by_default_and_limited(
        self, client_for, tenant_a, device, readings
    ):
        response = client_for(tenant_a.viewer).post(
            "/telemetry/query",
            {"device_id": device.pk, "interval": "30m", "keys": "gps.speed", "limit": 2},
            format="json",
        )

        body = response.json()
        assert [bucket["ts"] for bucket in body] == [iso(150), iso(120)]
        # 150-180 holds only the reading at minute 160.
        assert body[0]["values"] == {"gps.speed": {"avg": 16}}

    def test_a_day_bucket_starts_at_midnight_utc(self, client_for, tenant_a, device, readings):
        response = client_for(tenant_a.viewer).get(
            f"/telemetry/query?device_id={device.pk}&interval=1d&agg=count&keys=gps.speed"
        )

        assert response.json() == [
            {
                "device_id": device.pk,
                "ts": "2025-01-01T00:00:00Z",
                "values": {"gps.speed": {"count": 9}},
            }
        ]

    def test_a_path_without_numbers_gives_empty_values(
        self, client_for, tenant_a, device, readings
    ):
        response = client_for(tenant_a.viewer).get(
            f"/telemetry/query?device_id={device.pk}&interval=1d&agg=avg,count,first&keys=missing"
        )

        assert response.json()[0]["values"] == {"missing": {"avg": None, "count": 0, "first": None}}


class TestLatest:
    def test_every_device_with_its_latest_state(self, client_for, tenant_a, device, history):
        from apps.devices.services import create_device

        silent, _ = create_device(tenant=tenant_a.tenant, name="Silent")

        response = client_for(tenant_a.viewer).get("/telemetry/latest")

        assert response.status_code == 200
        by_id = {row["device_id"]: row for row in response.json()}
        assert by_id[device.pk]["ts"] == iso(9)
        assert by_id[device.pk]["data"] == history[9][1]
        assert by_id[device.pk]["position"] == {"lat": -33.08, "lon": -70.08, "ts": iso(8)}
        assert by_id[device.pk]["point_count"] == 10
        assert by_id[silent.pk] | {"device_id": 0} == {
            "device_id": 0,
            "name": "Silent",
            "external_id": None,
            "model": "",
            "is_active": True,
            "ts": None,
            "received_at": None,
            "data": None,
            "position": None,
            "point_count": 0,
        }

    def test_times_read_the_same_as_in_the_query_answer(self, client_for, tenant_a, device, store):
        store(device, (0.0251, {"gps": {"lat": 1.5, "lon": 2.5}}))
        client = client_for(tenant_a.viewer)

        latest = client.get("/telemetry/latest").json()[0]
        raw = client.get(f"/telemetry/query?device_id={device.pk}").json()[0]

        assert latest["ts"] == raw["ts"] == "2025-01-01T12:00:01.506000Z"
        assert latest["position"]["ts"] == raw["ts"]
        assert latest["received_at"].endswith("Z")

    def test_it_pages_and_orders_like_every_list(self, client_for, tenant_a, device, history):
        from apps.devices.services import create_device

        for name in ["Charlie", "Alpha", "Bravo"]:
            create_device(tenant=tenant_a.tenant, name=name)
        client = client_for(tenant_a.viewer)

        first = client.get("/telemetry/latest?ordering=name&limit=2")
        second = client.get("/telemetry/latest?ordering=name&limit=2&offset=2")

        assert [row["name"] for row in first.json()] == ["Alpha", "Bravo"]
        assert [row["name"] for row in second.json()] == ["Charlie", "Truck A"]
        assert first["X-Total-Count"] == second["X-Total-Count"] == "4"
        assert 'rel="next"' in first["Link"]
        assert "offset=2" in first["Link"]
        assert 'rel="next"' not in second["Link"]

    def test_it_filters_by_device(self, client_for, tenant_a, device, history):
        from apps.devices.services import create_device

        other, _ = create_device(tenant=tenant_a.tenant, name="Other")
        client = client_for(tenant_a.viewer)

        one = client.get(f"/telemetry/latest?device_id={device.pk}")
        both = client.get(f"/telemetry/latest?device_id={device.pk},{other.pk}")
        by_name = client.get("/telemetry/latest?q=other")

        assert [row["device_id"] for row in one.json()] == [device.pk]
        assert [row["device_id"] for row in both.json()] == [device.pk, other.pk]
        assert [row["device_id"] for row in by_name.json()] == [other.pk]


class TestIsolation:
    @pytest.fixture
    def foreign_history(self, foreign_device, store):
        store(foreign_device, (0, {"secret": "bravo-data"}))

    @pytest.mark.parametrize("role", list(Role))
    @pytest.mark.parametrize(
        "query",
        [
            "limit=10",
            "interval=1h&keys=secret",
            "format=csv",
            "format=gpx",
        ],
    )
    def test_another_tenants_device_is_404_for_every_form(
        self, client_for, tenant_a, foreign_device, foreign_history, role, query
    ):
        client = client_for(tenant_a.member(role))

        got = client.get(f"/telemetry/query?device_id={foreign_device.pk}&{query}")
        posted = client.post(
            "/telemetry/query", {"device_id": foreign_device.pk, "limit": 10}, format="json"
        )

        assert (got.status_code, posted.status_code) == (404, 404)
        assert b"bravo" not in got.content + posted.content

    @pytest.mark.parametrize("role", list(Role))
    def test_latest_never_shows_another_tenants_devices(
        self, client_for, tenant_a, device, foreign_device, foreign_history, role
    ):
        client = client_for(tenant_a.member(role))

        everything = client.get("/telemetry/latest")
        asked = client.get(f"/telemetry/latest?device_id={foreign_device.pk}")

        assert [row["device_id"] for row in everything.json()] == [device.pk]
        assert asked.json() == []

    def test_naming_the_other_tenant_is_forbidden(
        self, client_for, tenant_a, tenant_b, foreign_device, foreign_history
    ):
        client = client_for(tenant_a.admin, tenant=tenant_b.tenant)

        query = client.get(f"/telemetry/query?device_id={foreign_device.pk}")
        latest = client.get("/telemetry/latest")

        assert (query.status_code, latest.status_code) == (403, 403)

    def test_outsiders_and_anonymous_callers_get_nothing(
        self, client_for, outsider, anonymous, foreign_device, foreign_history
    ):
        for client, status in ((client_for(outsider), 403), (anonymous, 401)):
            query = client.get(f"/telemetry/query?device_id={foreign_device.pk}")
            latest = client.get("/telemetry/latest")
            assert (query.status_code, latest.status_code) == (status, status)
