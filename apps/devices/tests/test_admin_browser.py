"""The admin in a real browser: headless Chromium against a running server.

An operator logs in, opens the fleet overview and a device, sees its chart and its track
drawn by the vendored libraries, queues a command and downloads the CSV export.
Screenshots go to test-artifacts/ (not tracked). Without Chromium the tests are skipped,
except in CI (CI=true), where a missing browser fails them.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from apps.accounts.models import User
from apps.devices import services
from apps.devices.models import Device, DeviceCommand
from apps.telemetry.services import Point, ingest_points

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# On a closed network Chromium must not reach out on its own (updates, sync, QUIC probes).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
)
ARTIFACTS = Path(django_settings.BASE_DIR) / "test-artifacts"
PASSWORD = "Browser-Pass-42"
TRACK_POINTS = 40
WAIT_SECONDS = 10

pytestmark = pytest.mark.django_db(transaction=True)


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@pytest.fixture(scope="module")
def downloads() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="qf-downloads-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Any]:
    if not chromium_available():
        message = f"Chromium and ChromeDriver are needed at {CHROMIUM} and {CHROMEDRIVER}."
        if os.environ.get("CI") == "true":
            pytest.fail(message + " CI installs them (.ci/run, ensure_chromium).")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="qf-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(condition: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def screenshot(browser: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def console_errors(browser: Any) -> list[str]:
    """Errors the pages logged, except the favicon the admin does not have."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]


@pytest.fixture
def operator_account(db: None) -> User:
    return User.objects.create_superuser("ops@example.com", PASSWORD)


@pytest.fixture
def tracked_device(tenant_a) -> Device:
    device, _ = services.create_device(tenant=tenant_a.tenant, name="Harbour truck")
    end = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    ingest_points(
        [
            Point(
                device.tenant_id,
                device.pk,
                end - timedelta(minutes=TRACK_POINTS - index),
                {"gps": {"lat": 51.9 + index * 0.002, "lon": 4.4 + index * 0.003, "speed": index}},
            )
            for index in range(TRACK_POINTS)
        ]
    )
    return device


def log_in(browser: Any, base_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}/admin/login/")
    browser.find_element(By.ID, "id_username").send_keys("ops@example.com")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(lambda: browser.current_url.rstrip("/").endswith("/admin"), "the admin index")


def test_an_operator_follows_a_device_from_the_fleet_to_its_export(
    browser, downloads, live_server, operator_account, tracked_device, settings
):
    from selenium.webdriver.common.by import By

    settings.ADMIN_MAP_TILE_URL = ""
    browser.get_log("browser")  # Start the console log afresh.

    log_in(browser, live_server.url)
    browser.find_element(By.LINK_TEXT, "Fleet overview").click()
    wait_for(lambda: browser.find_elements(By.ID, "fleet-devices"), "the fleet table")
    screenshot(browser, "fleet-overview")
    browser.find_element(By.LINK_TEXT, "Harbour truck").click()

    drawn = wait_for(
        lambda: browser.execute_script("return Boolean(window.quantumFleetDevice)"),
        "the chart and the map",
    )
    assert drawn
    libraries = browser.execute_script(
        "return [typeof Chart === 'function' && Chart.version, window.L && L.version]"
    )
    assert libraries[0].startswith("4.")
    assert libraries[1] == "1.9.4"
    chart = browser.execute_script(
        "const c = window.quantumFleetDevice.chart;"
        "return [c.data.datasets.length, c.data.datasets[0].data.length,"
        " c.canvas.width, c.canvas.height]"
    )
    assert chart[0] == 3
    assert chart[1] >= 1
    assert chart[2] > 0
    assert chart[3] > 0
    track_length = browser.execute_script(
        "return window.quantumFleetDevice.track.line.getLatLngs().length"
    )
    assert track_length == TRACK_POINTS
    # The polyline and its two end markers are SVG paths inside the map.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#device-map svg path")) >= 3
    assert not browser.find_elements(By.CSS_SELECTOR, "#device-map img.leaflet-tile")
    screenshot(browser, "device-page")
    assert console_errors(browser) == []

    browser.find_element(By.ID, "command-text").send_keys("getinfo")
    browser.find_element(By.CSS_SELECTOR, "#command-form input[type=submit]").click()
    wait_for(lambda: "queued for Harbour truck" in browser.page_source, "the command message")
    command = DeviceCommand.objects.get(device=tracked_device)
    assert (command.text, command.created_by) == ("getinfo", operator_account)
    assert "getinfo" in browser.find_element(By.ID, "device-commands").text

    browser.find_element(By.ID, "export-csv").click()
    exported = wait_for(
        lambda: [path for path in downloads.glob("*.csv") if path.stat().st_size > 0],
        "the CSV download",
    )
    with exported[0].open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["device_id", "ts", "data"]
    assert len(rows) == 1 + TRACK_POINTS
    assert rows[-1][2] == '{"gps":{"lat":51.978,"lon":4.517,"speed":39}}'
    assert console_errors(browser) == []


def test_the_track_is_drawn_when_no_tile_can_load(
    browser, live_server, operator_account, tracked_device, settings
):
    from selenium.webdriver.common.by import By

    # Nothing listens on the discard port: every tile request fails.
    settings.ADMIN_MAP_TILE_URL = "http://127.0.0.1:9/{z}/{x}/{y}.png"
    log_in(browser, live_server.url)

    browser.get(f"{live_server.url}/admin/devices/device/{tracked_device.pk}/overview/")
    wait_for(lambda: browser.execute_script("return Boolean(window.quantumFleetDevice)"), "the map")

    assert (
        browser.execute_script("return window.quantumFleetDevice.track.line.getLatLngs().length")
        == TRACK_POINTS
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#device-map svg path")) >= 3
    screenshot(browser, "device-page-without-tiles")
    browser.get_log("browser")
