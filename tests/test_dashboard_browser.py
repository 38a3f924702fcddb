"""The dashboard in a real headless Chromium (Debian's ``chromium`` driven by Playwright).

``durable-core dashboard`` serves a store that a worker in this process keeps running; the
tests load the list, filter it, open an instance, check the timeline's bars, open one, press
terminate on a running instance and watch the status change by itself, check that payloads
holding markup render as text, and that a 10,000-event history renders. A screenshot of each
page goes to ``build/test-artifacts/dashboard/``.

Skipped (with the reason) when Chromium or Playwright is missing, unless
``DURABLE_CORE_REQUIRE_BROWSER=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import corrupt_store
import durable_core as dc
import ops_flows
from http_support import ROOT, free_port, spawn, stop, wait_for_http

pytestmark = pytest.mark.timeout(300)
CHROMIUM = os.environ.get("DURABLE_CORE_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("DURABLE_CORE_REQUIRE_BROWSER", "") not in ("", "0")
SHOTS = ROOT / "build" / "test-artifacts" / "dashboard"
KEY = "browser-key"
BIG_STEPS = 2500  # four events per step: a history of 10,000+ events


def _why_no_browser() -> str | None:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install playwright)"
    return None


_missing = _why_no_browser()
if _missing and REQUIRE:
    raise RuntimeError(f"DURABLE_CORE_REQUIRE_BROWSER=1 but {_missing}")
if _missing:
    pytest.skip(_missing, allow_module_level=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """A populated store, a worker on it, and the dashboard served by the CLI."""
    tmp = tmp_path_factory.mktemp("browser")
    db = tmp / "ui.db"
    url = f"sqlite:///{db}"
    ids = ops_flows.populate(url)
    rt = dc.Runtime(url, registry=ops_flows.registry)
    rt.start()
    c = rt.client
    c.schedule_new_orchestration("showcase", input={"who": "corrupt"}, instance_id="corrupt-1")
    st = c.wait_for_orchestration_start("corrupt-1", timeout=30)
    while (st.custom_status or {}).get("stage") != "waiting for approval":
        st = c.wait_for_orchestration_change("corrupt-1", since=st, timeout=10)
    c.raise_orchestration_event("corrupt-1", "approve", data=True)
    c.wait_for_orchestration_completion("corrupt-1", timeout=60)
    corrupt_store.truncate_history(db, "corrupt-1")
    corrupt_store.set_raw_output(db, "corrupt-1")
    c.schedule_new_orchestration("many", input=BIG_STEPS, instance_id="big-1")
    port = free_port()
    proc = spawn(["-m", "durable_core", "dashboard", "--store", url, "--port", str(port),
                  "--api-key", KEY])
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(base + "api/config", proc)
        c.wait_for_orchestration_completion("big-1", timeout=240)
        yield {"url": url, "db": db, "ids": ids, "client": c, "base": base, "proc": proc}
    finally:
        banner = stop(proc)
        rt.stop(1.0)
    assert f"dashboard on {base}" in banner


@pytest.fixture(scope="module")
def browser(env: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="dc-chromium-")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1360, "height": 900},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any, env: dict[str, Any]) -> Iterator[Any]:
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("dialog", lambda d: d.accept())
    pg.goto(env["base"] + f"#key={KEY}")
    pg.wait_for_selector("#rows tr[data-id]")
    yield pg
    pg.close()
    assert errors == [], errors  # no script errors on any page
    

def shot(pg: Any, name: str) -> None:
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def row_ids(pg: Any) -> list[str]:
    return pg.eval_on_selector_all("#rows tr[data-id]", "rs => rs.map(r => r.dataset.id)")


def test_list_loads_filters_and_counts(page: Any, env: dict[str, Any]) -> None:
    ids = row_ids(page)
    assert {"showcase-1", "failing-1", "waiter-1", "xss-1", "corrupt-1", "big-1"} <= set(ids)
    failed = page.text_content(".count[data-status=Failed] b")
    assert failed == "1"
    shot(page, "list")
    page.click(".count[data-status=Failed]")
    page.wait_for_function("() => document.querySelectorAll('#rows tr[data-id]').length === 1")
    assert row_ids(page) == ["failing-1"]
    page.click(".count[data-status=Failed]")  # toggles it off again
    page.wait_for_function("() => document.querySelectorAll('#rows tr[data-id]').length > 1")
    page.fill("input[name=prefix]", "xss")
    page.click("#apply")
    page.wait_for_function("() => document.querySelectorAll('#rows tr[data-id]').length === 1")
    assert row_ids(page) == ["xss-1"]
    shot(page, "list-filtered")
    page.click("#reset")
    page.fill("input[name=name]", "waiter")
    page.select_option("select[name=pageSize]", "10")
    page.click("#apply")
    page.wait_for_function("() => document.querySelectorAll('#rows tr[data-id]').length === 2")
    assert sorted(row_ids(page)) == ["waiter-1", "xss-1"]
    page.fill("input[name=from]", "2999-01-01T00:00:00")
    page.click("#apply")
    page.wait_for_selector("#rows td.muted")
    assert row_ids(page) == []


def test_instance_page_timeline_and_bar_details(page: Any, env: dict[str, Any]) -> None:
    page.click("#rows a:text('showcase-1')")
    page.wait_for_selector(".bar[data-kind=activity]")
    assert page.text_content("h1 .badge") == "Completed"
    bars = page.query_selector_all(".bar[data-kind=activity]")
    by_name: dict[str, list[Any]] = {}
    for b in bars:
        by_name.setdefault(b.get_attribute("data-name"), []).append(b)
    assert len(by_name["shout"]) == 3 and len(by_name["flaky"]) == 3
    # the three parallel activities overlap in time; the retries come one after another
    boxes = [b.bounding_box() for b in by_name["shout"]]
    assert max(bx["x"] for bx in boxes) < min(bx["x"] + bx["width"] for bx in boxes)
    outcomes = [b.get_attribute("data-outcome") for b in by_name["flaky"]]
    attempts = [b.get_attribute("data-attempt") for b in by_name["flaky"]]
    assert outcomes == ["failed", "failed", "completed"] and attempts == ["1", "2", "3"]
    for kind in ("timer", "event", "suborchestration", "orchestration"):
        assert page.query_selector(f".bar[data-kind={kind}]"), kind
    page.click(".bar[data-kind=activity][data-attempt='3']")
    page.wait_for_selector("#detail-title")
    assert "attempt 3" in page.text_content("#detail-title")
    detail = page.text_content("#detail")
    assert '"showcase-1"' in detail and '"ok after 3"' in detail  # its input and its output
    assert page.query_selector(f"#children a:text('{env['ids']['child']}')")
    shot(page, "instance")
    page.click(".bar[data-kind=suborchestration]")
    page.wait_for_selector("#detail a")
    page.click(f"#children a:text('{env['ids']['child']}')")
    page.wait_for_selector("#parent")
    assert page.text_content("#iid") == env["ids"]["child"]
    page.click("#parent")
    page.wait_for_function("() => document.getElementById('iid') && document.getElementById('iid').textContent === 'showcase-1'")
    assert page.text_content("#events h2").startswith("Events (")


def test_failure_shows_its_stack_trace(page: Any) -> None:
    page.click("#rows a:text('failing-1')")
    page.wait_for_selector("#failure")
    text = page.text_content("#failure")
    assert "TaskFailedError" in text and "the activity exploded" in text
    assert "Traceback" in page.text_content("#stack")
    assert page.query_selector(".bar[data-kind=activity][data-outcome=failed]")
    shot(page, "failed")


def test_terminate_a_running_instance(page: Any, env: dict[str, Any]) -> None:
    c = env["client"]
    iid = c.schedule_new_orchestration("waiter", input={"n": 9}, instance_id="to-terminate")
    st = c.wait_for_orchestration_start(iid, timeout=30)
    while st.custom_status is None:
        st = c.wait_for_orchestration_change(iid, since=st, timeout=10)
    page.goto(env["base"] + "#/i/to-terminate")
    page.wait_for_selector("#actions button[data-action=terminate]")
    assert page.text_content("h1 .badge") == "Running"
    shot(page, "running")
    page.click("#actions button[data-action=terminate]")  # the confirm() dialog is accepted
    # no reload: the page's long-poll sees the change
    page.wait_for_function("() => document.querySelector('h1 .badge').textContent === 'Terminated'",
                           timeout=30_000)
    assert c.get_orchestration_state(iid).runtime_status == dc.OrchestrationStatus.TERMINATED
    assert page.query_selector("#actions button[data-action=purge]")
    assert not page.query_selector("#actions button[data-action=terminate]")
    shot(page, "terminated")


def test_list_updates_by_itself(page: Any, env: dict[str, Any]) -> None:
    c = env["client"]
    iid = c.schedule_new_orchestration("waiter", instance_id="live-1")
    st = c.wait_for_orchestration_start(iid, timeout=30)
    while st.custom_status is None:
        st = c.wait_for_orchestration_change(iid, since=st, timeout=10)
    page.wait_for_selector("#rows tr[data-id=live-1][data-status=Running]", timeout=30_000)
    c.raise_orchestration_event(iid, "go", data="went")
    page.wait_for_selector("#rows tr[data-id=live-1][data-status=Completed]", timeout=30_000)


def test_payloads_with_markup_render_as_text(page: Any, env: dict[str, Any]) -> None:
    page.goto(env["base"] + "#/i/xss-1")
    page.wait_for_selector("#custom-status pre")
    assert "<script>window.__pwned = 1</script>" in page.text_content("#custom-status pre")
    assert "<img src=x" in page.text_content("#input pre")
    page.goto(env["base"] + "#/i/showcase-1")
    page.wait_for_selector("#output pre")
    assert "<script>" in page.text_content("#output pre")
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('main script, main img').length") == 0
    page.goto(env["base"] + "#/")
    page.wait_for_selector("#rows tr[data-id=xss-1]")
    assert "<script>" in page.text_content("#rows tr[data-id=xss-1] td.summary")
    assert page.evaluate("window.__pwned") is None
    page.goto(env["base"] + "#/i/xss-1")
    page.wait_for_selector("#custom-status pre")
    shot(page, "markup-as-text")


def test_corrupt_instance_shows_notes(page: Any, env: dict[str, Any]) -> None:
    page.goto(env["base"] + "#/i/corrupt-1")
    page.wait_for_selector("#history-error")
    assert "cannot be decoded" in page.text_content("#history-error")
    assert "cannot be decoded" in page.text_content("#output .undecodable")
    assert page.text_content("#input pre").strip().startswith("{")  # what can be read is shown
    shot(page, "corrupt")


def test_ten_thousand_events_render(page: Any, env: dict[str, Any]) -> None:
    t0 = time.monotonic()
    page.goto(env["base"] + "#/i/big-1")
    page.wait_for_selector(".bar[data-kind=activity]", timeout=60_000)
    took = time.monotonic() - t0
    total = int(page.text_content("#events h2").split("(")[1].rstrip(")"))
    assert total >= 10_000
    assert page.text_content("#events-page") == f"page 1 of {-(-total // 100)}"
    rows = page.evaluate("document.querySelectorAll('.tl-row').length")
    assert 0 < rows < 200  # virtualized: only the rows in view exist
    page.evaluate("document.querySelector('.tl-scroll').scrollTop = 1e9")
    page.wait_for_selector(f".tl-row[data-row='{BIG_STEPS}']")  # the last span, at the bottom
    page.click("#events-next")
    page.wait_for_function("() => document.getElementById('events-page').textContent.startsWith('page 2 ')")
    assert took < 30, took
    shot(page, "big-history")
