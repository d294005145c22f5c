"""End to end in a real browser: Debian's Chromium, headless, driven through its chromedriver.

A run with a failing step is watched on its page: its steps turn green without a reload, the
failed step shows its error, a retry with a reason is clicked and the run is seen to pass. A
running run is cancelled from its page. Screenshots of the runs page and the run page are saved in
the test's temporary folder (and copied to $STEPLEDGER_SCREENSHOTS_TO when set: docs/web.md).

Chromium missing: the test fails in CI (CI is set) and is skipped, saying how to install it,
elsewhere. scripts/test installs it when run as root.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from failure_scripts import fails_times, spawn_cli, wait_for
from selenium.webdriver.remote.webdriver import WebDriver
from webtools import passing_workstream, run_ws, ui_server

from stepledger.engine.api import Stepledger

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 60  # the longest any page change may take before the test fails
GATE = 'while [ ! -f go ]; do sleep 0.05; done; echo "{name} done"'


def _need_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        message = (
            f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver (scripts/test does)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    _need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run", "--lang=en-US"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _first_run(api: Stepledger) -> str | None:
    try:
        runs = api.runs()
    except Exception:  # the run has created the file but not its tables yet
        return None
    return str(runs[0]["run_id"]) if runs else None


def _state(driver: WebDriver, step: str) -> str:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.CSS_SELECTOR, f'#steps tr[data-step="{step}"]')
    return str(row.find_element(By.CSS_SELECTOR, '[data-key="state"]').text)


def _until(driver: WebDriver, check: Callable[[WebDriver], object], what: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        # The live page replaces elements (and reloads the timeline's frame) as the run changes: an
        # element found just before its replacement is stale, and is looked up again on the next poll.
        stale = (StaleElementReferenceException,)
        wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=stale)
        wait.until(check)
    except TimeoutException:
        page = driver.execute_script("return document.body.innerText")
        raise AssertionError(f"timed out waiting for {what}; the page says:\n{page[-3000:]}") from None


def _keep(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("STEPLEDGER_SCREENSHOTS_TO")
    if target:
        shutil.copy(path, Path(target) / name)
    return path


def test_a_failing_run_is_watched_live_retried_with_a_reason_and_passes(
    browser: WebDriver, tmp_path: Path, sqlite_url: str
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    ws = {"id": "ws-release-notes", "steps": [
        {"id": "fetch-changes", "tool": "shell", "tasks": [GATE.format(name="fetch-changes")]},
        {"id": "lint-docs", "tool": "shell", "tasks": [GATE.format(name="lint-docs")]},
        {"id": "render-notes", "tool": "shell", "tasks": [fails_times(1, "render")],
         "depends_on": ["fetch-changes"], "circuit_breaker": {"max_attempts": 1}},
        {"id": "publish", "tool": "shell", "tasks": ["echo published"],
         "depends_on": ["render-notes", "lint-docs"]},
    ]}  # fmt: skip
    (tmp_path / "ws.json").write_text(json.dumps(ws))
    earlier = [run_ws(tmp_path, sqlite_url, passing_workstream(name), f"{name}.json")
               for name in ("ws-nightly-build", "ws-docs-site")]  # fmt: skip
    run = spawn_cli("run", "ws.json", cwd=tmp_path, db=sqlite_url)
    try:
        with Stepledger(sqlite_url, tmp_path) as api:
            wait_for(lambda: _first_run(api) not in (None, *earlier), WAIT_S, "the run to start")
            run_id = str(_first_run(api))
        with ui_server(tmp_path, sqlite_url) as ui:
            driver.get(f"{ui.url}/runs/{run_id}")
            driver.execute_script("window.notReloaded = true")
            _until(driver, lambda d: _state(d, "fetch-changes") == "running", "the first steps to run")
            (tmp_path / "go").touch()
            _until(driver, lambda d: _state(d, "fetch-changes") == "passed", "fetch-changes to turn green")
            _until(driver, lambda d: _state(d, "lint-docs") == "passed", "lint-docs to turn green")
            _until(driver, lambda d: _state(d, "render-notes") == "tripped", "render-notes to fail")
            _until(driver, lambda d: d.find_element(By.ID, "run-status").text == "failed", "the run to fail")
            assert driver.execute_script("return window.notReloaded === true")
            row = driver.find_element(By.CSS_SELECTOR, '#steps tr[data-step="render-notes"]')
            assert "ERROR: flaky render failure 1" in row.find_element(By.CSS_SELECTOR, ".error").text
            node = driver.find_element(By.CSS_SELECTOR, '#graph [data-step="render-notes"]')
            assert "tripped" in (node.get_attribute("class") or "")
            assert run.wait(timeout=WAIT_S) == 1

            row.find_element(By.TAG_NAME, "summary").click()
            row.find_element(By.NAME, "reason").send_keys("the template is fixed")
            row.find_element(By.CSS_SELECTOR, "button.retry").click()
            _until(
                driver, lambda d: "will be retried" in d.find_element(By.ID, "note").text, "the retry's note"
            )
            _until(driver, lambda d: d.find_element(By.ID, "run-status").text == "passed", "the run to pass")
            _until(driver, lambda d: _state(d, "publish") == "passed", "publish to turn green")
            events = driver.find_element(By.ID, "events").text
            assert "Retry requested by" in events and "the template is fixed" in events
            _until(driver, lambda d: d.find_element(By.ID, "legend").text == "4 passed", "the legend's count")
            driver.switch_to.frame(driver.find_element(By.ID, "timeline"))
            _until(
                driver, lambda d: "· passed ·" in d.find_element(By.CLASS_NAME, "meta").text, "the timeline"
            )
            driver.switch_to.default_content()
            assert driver.find_element(By.ID, "run-duration").text != "…"
            driver.set_window_size(1280, 1400)
            _keep(driver, tmp_path, "ui-run.png")
            driver.set_window_size(1280, 700)

            driver.get(f"{ui.url}/")
            runs = driver.find_element(By.ID, "runs").text
            assert runs.index(run_id) < runs.index(earlier[1]) < runs.index(earlier[0])
            _keep(driver, tmp_path, "ui-runs.png")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_a_running_run_is_cancelled_from_its_page(
    browser: WebDriver, tmp_path: Path, sqlite_url: str
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    ws = {"id": "ws-long", "steps": [{"id": "forever", "tool": "shell", "tasks": ["sleep 300"]}]}
    (tmp_path / "ws.json").write_text(json.dumps(ws))
    run = spawn_cli("run", "ws.json", cwd=tmp_path, db=sqlite_url)
    try:
        with Stepledger(sqlite_url, tmp_path) as api:
            wait_for(lambda: _first_run(api) is not None, WAIT_S, "the run to start")
            run_id = str(_first_run(api))
        with ui_server(tmp_path, sqlite_url) as ui:
            driver.get(f"{ui.url}/runs/{run_id}")
            _until(driver, lambda d: _state(d, "forever") == "running", "the step to run")
            form = driver.find_element(By.CSS_SELECTOR, "form.run-action")
            form.find_element(By.NAME, "reason").send_keys("started by mistake")
            form.find_element(By.ID, "cancel-run").click()
            _until(
                driver, lambda d: d.find_element(By.ID, "run-status").text == "cancelled", "the run to stop"
            )
            assert "cancel requested by" in driver.find_element(By.ID, "events").text
        assert run.wait(timeout=WAIT_S) != 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_missing_chromium_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium chromium-driver"):
        _need_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _need_chromium()
