"""The dashboard in a real headless browser: two real daemons (`edge run`) publish to
mosquitto, Debian's chromium shows their tiles live, and one is killed.

Both daemons run the session's signed digits bundle, installed as `edge install` does it
(it carries reference statistics), on looping folders of held-out digits: kitchen-pi
sees them as the model was calibrated on, garage-pi inverted (a shift), so its drift
goes high while kitchen-pi's stays low; the sequence of frames is fixed, and so are the
PSI scores. The screenshots go to build/test-artifacts/: dashboard-drift.png with both
online (docs/images/dashboard.png is a cropped, shrunk copy), dashboard.png after the
kill. Skipped only when Debian's chromium or its driver is missing (apt-get install
chromium chromium-driver); Selenium is given both paths, so Selenium Manager never runs
or downloads anything.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.dashboard.server import Dashboard
from edge.dashboard.settings import make_settings
from tests.broker import Broker
from tests.processes import stop_process
from tests.waiting import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
DEVICES = {"garage-pi": "inverted", "kitchen-pi": "normal"}  # device -> digit images
FPS = 60  # frames a second from each looping folder
# Scores from the first 200 frames on (3.3 s), every 50: a window of the 300 normal digits
# scores at most 0.14 on any statistic, the inverted ones above 7 (input_mean[0]).
DRIFT = {"window": 200, "min_samples": 200, "check_every": 50, "threshold": 0.25}
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--window-size=1280,900",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs Debian's chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): "
        "apt-get install chromium chromium-driver",
    ),
]


def start_daemon(
    name: str, bundle: Path, images: Path, port: int, folder: Path
) -> subprocess.Popen[bytes]:
    folder.mkdir()
    config = folder / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device_id": name,
                "bundle": str(bundle),  # the installed bundle's folder
                "install_root": str(folder / "state"),  # each daemon its own
                "source": {
                    "type": "images",
                    "path": str(images),
                    "loop": True,
                    "realtime_fps": FPS,
                },
                "runtime": {"threads": 1},
                "sinks": [],
                "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port},
                "telemetry_interval_s": 0.5,
                "spool": {"path": str(folder / "spool.sqlite")},
                "drift": DRIFT,
            }
        )
    )
    with (folder / "daemon.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "edge.cli.main", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def dashboard(broker: Broker) -> Iterator[Dashboard]:
    """Subscribed before the daemons start, so it sees their drift events (not retained)."""
    settings = make_settings(broker_host="127.0.0.1", broker_port=broker.port, listen_port=0)
    with Dashboard(settings) as running:
        yield running


@pytest.fixture
def daemons(
    installed_digits: Path,
    digit_images: dict[str, Path],
    dashboard: Dashboard,
    broker: Broker,
    tmp_path: Path,
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    wait_until(lambda: dashboard.fleet.snapshot()["broker"]["connected"], timeout=10)
    bundle = (installed_digits / "current").resolve()  # the installed bundle's folder
    running = {
        name: start_daemon(name, bundle, digit_images[kind], broker.port, tmp_path / name)
        for name, kind in DEVICES.items()
    }
    try:
        yield running
    finally:
        for process in running.values():
            stop_process(process)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def tiles(driver: Any) -> dict[str, dict[str, str]]:
    """What each tile shows, read from the page: state, the numbers, the drift marks."""
    read = """
        const out = {};
        for (const tile of document.querySelectorAll('.tile[data-device]')) {
          const field = (name) => tile.querySelector(`[data-f="${name}"]`);
          const f = (name) => field(name).textContent;
          const shown = (name) => {  // its text when it is visible, else ""
            const element = field(name);
            return element.closest('[hidden]') === null ? element.textContent : "";
          };
          out[tile.dataset.device] = {
            state: tile.dataset.state, badge: f('state'), fps: f('fps'),
            processed: f('processed'), mark: f('mark'), model: f('model'),
            points: String(tile.querySelectorAll('.spark-line').length),  // fps and p95
            psi: f('drift'), psi_warn: String(field('drift').classList.contains('warn')),
            drift_badge: shown('drift-badge'), health: shown('health-badge'),
            reasons: shown('reasons'), drift_events: shown('drift-events'),
          };
        }
        return out;
    """
    found: dict[str, dict[str, str]] = driver.execute_script(read)
    return found


def wait_for(driver: Any, check: Any, timeout: float, what: str, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check(tiles(driver))
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}:\n{p.read_text(errors='replace')[-1500:]}" for p in logs)
            raise AssertionError(
                f"{what}: not seen within {timeout} s; tiles {tiles(driver)}\n{tails}"
            )
        time.sleep(0.1)


def count(text: str) -> int:
    return int(text.replace(",", ""))


def test_two_daemons_live_in_the_browser_and_one_killed(
    dashboard: Dashboard,
    daemons: dict[str, subprocess.Popen[bytes]],
    browser: Any,
    tmp_path: Path,
) -> None:
    logs = [tmp_path / name / "daemon.log" for name in DEVICES]
    threshold = DRIFT["threshold"]
    browser.get(dashboard.url)
    browser.execute_script("window.loadedOnce = true")  # gone if the page reloads
    online = wait_for(
        browser,
        lambda t: (
            all(t.get(n, {}).get("state") == "online" and t[n]["processed"] != "—" for n in DEVICES)
            and t
        ),
        timeout=25,
        what="both tiles online with numbers",
        logs=logs,
    )
    assert online["kitchen-pi"]["model"].startswith("digits v1 · on xnnpack")
    before = {n: count(online[n]["processed"]) for n in DEVICES}
    wait_for(
        browser,
        lambda t: all(count(t[n]["processed"]) > before[n] + 10 for n in DEVICES),
        timeout=10,
        what="processed counts going up on both tiles",
        logs=logs,
    )

    # drift: garage-pi's inverted digits score high and are marked, kitchen-pi's stay low
    drifting = wait_for(
        browser,
        lambda t: (
            all(t[n]["psi"] != "—" for n in DEVICES)
            and float(t["garage-pi"]["psi"]) > threshold
            and t["garage-pi"]["drift_badge"]
            and t["garage-pi"]["reasons"]
            and t
        ),
        timeout=20,
        what="drift scores on both tiles, garage-pi's high and marked",
        logs=logs,
    )
    garage, kitchen = drifting["garage-pi"], drifting["kitchen-pi"]
    assert garage["psi_warn"] == "true", garage  # the PSI in the warning colour
    assert garage["drift_badge"].startswith("drift: input_mean[0]"), garage  # the highest
    assert garage["health"] == "degraded"
    assert f"drift above drift.threshold {threshold:g}: input_mean[0] PSI" in garage["reasons"]
    assert "high" in garage["drift_events"], garage  # the latest drift events, listed
    assert f"threshold {threshold:.2f}" in garage["drift_events"], garage
    assert float(kitchen["psi"]) < threshold, kitchen
    assert kitchen["psi_warn"] == "false" and kitchen["drift_badge"] == "", kitchen
    assert kitchen["health"] == kitchen["reasons"] == kitchen["drift_events"] == "", kitchen

    wait_for(  # a few seconds of chart
        browser,
        lambda t: (
            all(t[n]["points"] == "2" for n in DEVICES)
            and len(dashboard.fleet.snapshot()["devices"]["kitchen-pi"]["history"]) >= 16
        ),
        timeout=15,
        what="both charts drawn",
        logs=logs,
    )
    time.sleep(1.0)  # let the last update land before the picture
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard-drift.png"))
    shown = tiles(browser)
    print(
        f"PSI shown: garage-pi {shown['garage-pi']['psi']}, kitchen-pi {shown['kitchen-pi']['psi']}"
    )

    daemons["garage-pi"].send_signal(signal.SIGKILL)
    killed = wait_for(
        browser,
        lambda t: t["garage-pi"]["state"] == "offline" and t,
        timeout=10,
        what="garage-pi offline after SIGKILL",
        logs=logs,
    )
    assert killed["garage-pi"]["badge"] == "offline"
    assert killed["garage-pi"]["mark"].startswith("Offline since")
    assert killed["garage-pi"]["drift_badge"], "the last known drift stays on the tile"
    assert killed["kitchen-pi"]["state"] == "online"
    alive = count(killed["kitchen-pi"]["processed"])
    wait_for(
        browser,
        lambda t: count(t["kitchen-pi"]["processed"]) > alive,
        timeout=5,
        what="kitchen-pi still counting",
        logs=logs,
    )
    summary = browser.find_element("id", "summary").text
    assert summary == "2 devices · 1 online · 1 offline"
    assert browser.execute_script("return window.loadedOnce === true"), "the page reloaded"
    kitchen_now = dashboard.fleet.snapshot()["devices"]["kitchen-pi"]
    assert kitchen_now["drift"] == {"events": [], "high": {}}, "kitchen-pi never drifted"
    scores = kitchen_now["telemetry"]["drift"]
    assert max(scores.values()) < threshold, scores

    time.sleep(1.0)  # let the last update land before the picture
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    errors = [
        entry
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]
    assert errors == [], errors


def test_behind_a_token_the_page_keeps_up_by_deltas_and_drops_evicted_tiles(
    broker: Broker, browser: Any, tmp_path: Path
) -> None:
    """No daemons here: two paho publishers, a dashboard with a token and room for two
    devices. The page signs in with ?token=, its merged deltas equal /api/state, and the
    tile of a device evicted for a third one goes."""
    from tests.dashboard import payloads
    from tests.dashboard.support import Device
    from tests.dashboard.test_server import start_dashboard

    token = "5f4e3d2c1b0a99887766554433221100"
    (tmp_path / "token").write_text(token)
    dashboard = start_dashboard(broker.port, token_file=tmp_path / "token", max_devices=2)
    devices = [Device(broker.port, name) for name in ("cam-a", "cam-b", "cam-c")]
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        browser.get(dashboard.url)
        assert "needs its token" in browser.find_element("tag name", "body").text
        browser.get(f"{dashboard.url}?token={token}")
        assert browser.current_url == dashboard.url  # redirected, the token gone from the bar
        wait_until(lambda: browser.execute_script("return page.fleet !== null"), timeout=10)
        for device in devices[:2]:
            device.publish("status", "online")
            for seq in range(1, 6):
                device.publish("telemetry", payloads.telemetry(seq, time.time(), fps=20.0 + seq))

        def same_as_the_server() -> bool:
            server = _state(dashboard.url, bearer)["devices"]
            shown = browser.execute_script("return Object.fromEntries(page.devices)")
            return bool(server) and shown == server

        wait_until(
            lambda: (
                same_as_the_server()
                and (_state(dashboard.url, bearer)["devices"].get("cam-b") or {}).get("telemetry")
                and _state(dashboard.url, bearer)["devices"]["cam-b"]["telemetry"]["seq"] == 5
            ),
            timeout=10,
        )
        shown = browser.execute_script("return page.devices.get('cam-a').history.length")
        assert shown == 5  # five points, each sent once as history_add
        devices[0].publish("status", "offline")
        devices[2].publish("status", "online")  # the table is full: cam-a, offline, goes
        wait_until(
            lambda: (
                browser.execute_script(
                    "return [...document.querySelectorAll('.tile[data-device]')]"
                    ".map((t) => t.dataset.device).join(',')"
                )
                == "cam-b,cam-c"
            ),
            timeout=10,
        )
        assert "1 devices evicted" in browser.find_element("id", "foot").text
        wait_until(same_as_the_server, timeout=10)
    finally:
        for device in devices:
            device.close()
        dashboard.stop()


def _state(url: str, headers: dict[str, str]) -> dict[str, Any]:
    import json
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url + "api/state", headers=headers)) as r:
        found: dict[str, Any] = json.loads(r.read())
        return found
