"""End to end in a real browser (Debian's Chromium, headless, as tests/web/test_web_browser.py): a
run on workers watched from the driving machine. A step on a queue nobody serves shows waiting for
a worker; a worker started on that queue takes it and the page says running, without a reload;
the step's page shows its log from the database (the worker's file is on its own machine) and
follows it as the worker writes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fleetkit import Fleet, driver, query, wait_for, workstream
from selenium.webdriver.remote.webdriver import WebDriver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))  # the web tests' helpers
from test_web_browser import _state, _until, browser  # noqa: F401 - browser is a fixture
from webtools import ui_server

pytestmark = pytest.mark.postgres


def test_a_step_waiting_for_a_worker_is_watched_until_a_worker_takes_it_and_its_log_followed(
    browser: WebDriver,  # noqa: F811 - the fixture
    fleet: Fleet,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    fleet.start("cpu-box")  # serves only the default queue
    drv = tmp_path / "driver"
    drv.mkdir()
    go1, go2 = tmp_path / "go1", tmp_path / "go2"
    task = (f"echo line-1; while [ ! -e {go1} ]; do sleep 0.05; done; echo 'middle <b>bold</b>';"
            f" while [ ! -e {go2} ]; do sleep 0.05; done; echo the-end")  # fmt: skip
    ws = workstream(drv / "ws.json", [
        {"id": "prep", "tasks": ["true"]},
        {"id": "train", "queue": "gpu", "tasks": [task], "depends_on": ["prep"]},
    ])  # fmt: skip
    run = driver(fleet.db, ws, drv)
    try:
        run_id = str(wait_for(lambda: query(fleet.db, "SELECT run_id FROM runs"), "the run")[0][0])
        waiting = "waiting for a worker (queue gpu)"
        with ui_server(drv, fleet.db) as ui:
            page = browser
            page.get(f"{ui.url}/runs/{run_id}")
            page.execute_script("window.notReloaded = true")
            _until(page, lambda d: _state(d, "train") == waiting, "train to show waiting for a worker")
            node = page.find_element(By.CSS_SELECTOR, '#graph [data-step="train"]')
            assert "waiting" in (node.get_attribute("class") or "").split()
            _until(page, lambda d: f"1 {waiting}" in d.find_element(By.ID, "legend").text, "the legend")

            fleet.start("gpu-box", "--queue", "gpu")
            _until(page, lambda d: _state(d, "train") == "running", "train to show running once taken")
            node = page.find_element(By.CSS_SELECTOR, '#graph [data-step="train"]')
            assert "running" in (node.get_attribute("class") or "").split()
            assert page.execute_script("return window.notReloaded === true")

            page.get(f"{ui.url}/runs/{run_id}/steps/train")
            page.execute_script("window.notReloaded = true")
            log = '#attempts pre.log[data-attempt="1"]'
            _until(page, lambda d: "\nline-1" in d.find_element(By.CSS_SELECTOR, log).text, "the log so far")
            meta = page.find_element(By.CSS_SELECTOR, "section.attempt .meta").text
            assert "on gpu-box (worker gpu-box:" in meta, meta
            assert not (drv / ".stepledger" / "runs" / run_id / "train.1.log").exists()
            go1.touch()
            _until(
                page,
                lambda d: "middle <b>bold</b>" in d.find_element(By.CSS_SELECTOR, log).text,
                "a line the worker wrote after the page was made",
            )
            assert page.find_elements(By.CSS_SELECTOR, f"{log} b") == []  # text, not markup
            go2.touch()
            _until(page, lambda d: d.find_element(By.ID, "step-state").text == "passed", "the step to pass")
            _until(page, lambda d: "\nthe-end" in d.find_element(By.CSS_SELECTOR, log).text, "the log's end")
            assert page.execute_script("return window.notReloaded === true")
    finally:
        go1.touch()
        go2.touch()
        out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out
