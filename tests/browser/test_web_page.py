"""The web page at ``/`` in a real headless Chromium, against a real gunicorn API, real worker
processes, PostgreSQL, Redis and the S3 endpoint: what a person does, done by Selenium.

Every test ends by checking the browser console: no script error, no CSP violation, and no
failed request other than the ones the test provoked on purpose.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from selenium.webdriver import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from shared.settings import Settings
from tests.support.browser import DESKTOP, PHONE, chromium, console_problems, downloaded, screenshot, until
from tests.support.processes import LOGS, signal_tree
from tests.support.servers import gunicorn_api
from tests.support.workers import WorkerPool

LOG_NAME = "test-gunicorn-web"
# What the accessibility test measures in the page: labels, names, contrast, sideways scrolling.
AUDIT = (Path(__file__).parent / "audit.js").read_text()


@pytest.fixture(scope="module")
def web(settings: Settings, seeded: str, bucket: str, redis, keys_for) -> Iterator[dict]:
    """gunicorn with the project's config and two workers on their own queues; a key for the page."""
    s = settings.replace(queue_prefix="web")
    pool = WorkerPool(s)
    pool.start(2)
    try:
        with gunicorn_api(s, LOG_NAME) as (base, _health):
            yield {"base": base, "key": keys_for("web-user"), "pool": pool, "settings": s}
    finally:
        pool.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[tuple[WebDriver, Path]]:
    downloads = tmp_path_factory.mktemp("downloads")
    driver = chromium(downloads)
    try:
        yield driver, downloads
    finally:
        driver.quit()


@pytest.fixture
def page(web, browser, request) -> Iterator[WebDriver]:
    """The page, signed in with the keyboard; the console is checked when the test ends."""
    driver, _ = browser
    driver.set_window_size(*DESKTOP)
    # Forget the last test's key on a page of the same origin that runs no script: cleared on
    # the page itself, the key could vanish between two of the page's requests, and the second
    # would go out without it (a 401 in the console).
    driver.get(web["base"] + "/health/live")
    driver.execute_script("sessionStorage.clear()")
    driver.get(web["base"] + "/")
    key_input = until(
        driver, lambda d: d.find_element(By.ID, "signin-key").is_displayed() and d.find_element(By.ID, "signin-key")
    )
    key_input.send_keys(web["key"], Keys.ENTER)
    until(driver, lambda d: d.find_element(By.ID, "workspace").is_displayed(), what="the signed-in page")
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#columns li"), what="the columns of the first dataset")
    yield driver
    allowed = request.node.get_closest_marker("console_allows")
    problems = console_problems(driver, allowed.args if allowed else ())
    assert not problems, "\n".join(problems)


# ---- helpers: what a person does on the page -------------------------------------------------


def choose(driver: WebDriver, select_id: str, value: str) -> None:
    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


def only_columns(driver: WebDriver, names: list[str]) -> None:
    driver.find_element(By.ID, "columns-none").click()
    for name in names:
        driver.find_element(By.CSS_SELECTOR, f"#columns li[data-column='{name}'] input").click()


def add_filter(driver: WebDriver, column: str, op: str):
    """Add a filter row for ``column`` and ``op``; return the row."""
    driver.find_element(By.ID, "filter-add").click()
    row = driver.find_elements(By.CSS_SELECTOR, "#filters .filter")[-1]
    selects = row.find_elements(By.CSS_SELECTOR, ".field > select")
    Select(selects[0]).select_by_value(column)
    Select(selects[1]).select_by_value(op)
    return driver.find_elements(By.CSS_SELECTOR, "#filters .filter")[-1]


def type_value(row, text: str) -> None:
    field = row.find_element(By.CSS_SELECTOR, ".filter-value input, .filter-value textarea")
    field.clear()
    field.send_keys(text)


def set_value(driver: WebDriver, row, value: str) -> None:
    """Set a date or time input as its picker would (typing into them depends on the locale)."""
    field = row.find_element(By.CSS_SELECTOR, ".filter-value input")
    driver.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}))",
        field,
        value,
    )


def submit(driver: WebDriver) -> None:
    driver.find_element(By.ID, "submit").click()


def current_export_id(driver: WebDriver, previous: str | None = None) -> str:
    def shown(d):
        value = d.find_element(By.ID, "current").get_attribute("data-export-id")
        return value if value and value != previous else None

    return until(driver, shown, what="the export's panel")


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def api_export(web, export_id: str) -> dict:
    import urllib.request

    request = urllib.request.Request(
        f"{web['base']}/exports/{export_id}", headers={"Authorization": f"Bearer {web['key']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def api_exports(web) -> list[dict]:
    import urllib.request

    request = urllib.request.Request(
        f"{web['base']}/exports?limit=100", headers={"Authorization": f"Bearer {web['key']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)["exports"]


def history_status(driver: WebDriver, export_id: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f"#history-rows tr[data-id='{export_id}'] [data-cell=status]").text


# ---- the tests ----------------------------------------------------------------------------


def test_filtered_export_progress_download_cancel_history_and_resume(page, web, browser, seeded):
    """The issue's walk-through: a filtered export of more than 100,000 rows is watched to 100 %
    and downloaded with the right rows; another is resumed after a reload and cancelled from the
    page; the history shows both with their statuses."""
    driver, downloads = browser
    choose(driver, "dataset", "products")
    only_columns(driver, ["id", "tenant_id", "price", "quantity"])
    up = driver.find_element(By.CSS_SELECTOR, "#columns button[aria-label='Move quantity up']")
    for _ in range(7):  # from eighth place to the front, by the keyboard
        up.send_keys(Keys.ENTER)
    assert driver.switch_to.active_element == up  # focus stays on the moved column's button
    type_value(add_filter(driver, "id", "lte"), "200000")
    type_value(add_filter(driver, "quantity", "gte"), "10")
    choose(driver, "delivery", "async")
    driver.find_element(By.ID, "filename").send_keys("web-filtered")
    submit(driver)
    first = current_export_id(driver)

    until(driver, lambda d: text(d, "current-percent") == "100 %", timeout=180, what="the progress bar at 100 %")
    assert driver.find_element(By.ID, "current-progress").get_attribute("value") == "100"
    assert "Completed" in text(driver, "current-status")
    with psycopg.connect(seeded) as conn:
        expected = conn.execute(
            "SELECT quantity::text, id::text, coalesce(price::text, ''), coalesce(tenant_id::text, '')"
            " FROM products WHERE id <= 200000 AND quantity >= 10 ORDER BY products.id"
        ).fetchall()
    assert len(expected) >= 100_000
    rows_text = text(driver, "current-rows")
    assert rows_text == f"{len(expected):,} of {len(expected):,}"
    assert "of" in text(driver, "current-parts") and text(driver, "current-elapsed") != "—"
    assert text(driver, "current-expiry").startswith("Link valid until")
    screenshot(driver, "desktop-completed")

    driver.find_element(By.ID, "current-download").click()
    data = downloaded(downloads, "web-filtered.csv").read_bytes()
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[0] == ["quantity", "id", "price", "tenant_id"]  # the order chosen on the page
    assert [tuple(r) for r in rows[1:]] == [tuple(e) for e in expected]

    # a second export, the whole table: held still (its workers stopped) while the page reloads
    only_columns(driver, ["id", "name", "description"])
    for remove in driver.find_elements(By.CSS_SELECTOR, "#filters .filter button"):
        remove.click()
    driver.find_element(By.ID, "filename").clear()
    driver.find_element(By.ID, "filename").send_keys("web-cancelled")
    submit(driver)
    second = current_export_id(driver, previous=first)
    until(driver, lambda d: api_export(web, second)["progress"]["rows_done"] > 0, timeout=120, what="rows done")
    for proc in web["pool"].procs:
        signal_tree(proc.pid, signal.SIGSTOP)
    try:
        progress = api_export(web, second)["progress"]
        # Rows run while a plan is streamed: its total may not be known yet (its planner held too).
        total = "" if progress["total_rows"] is None else f" of {progress['total_rows']:,}"
        assert total in ("", " of 1,000,000")
        driver.refresh()
        assert current_export_id(driver) == second  # resumed: the panel watches it again
        want = f"{progress['rows_done']:,}{total}"
        until(driver, lambda d: text(d, "current-rows") == want, what="the resumed progress")
        assert "Running" in text(driver, "current-status")
        assert driver.find_element(By.ID, "current-cancel").is_displayed()
        driver.find_element(By.ID, "current-cancel").click()
        until(driver, lambda d: "Cancelled" in text(d, "current-status"), what="the cancelled status")
    finally:
        for proc in web["pool"].procs:
            signal_tree(proc.pid, signal.SIGCONT)
    assert api_export(web, second)["status"] == "cancelled"
    assert not driver.find_element(By.ID, "current-cancel").is_displayed()

    until(driver, lambda d: history_status(d, first) == "Completed", what="the first in the history")
    until(driver, lambda d: history_status(d, second) == "Cancelled", what="the second in the history")
    ids = [tr.get_attribute("data-id") for tr in driver.find_elements(By.CSS_SELECTOR, "#history-rows tr")]
    assert ids.index(second) < ids.index(first)  # newest first
    screenshot(driver, "desktop-history")


@pytest.mark.console_allows(400)
def test_a_bad_filter_shows_the_message_next_to_its_field(page, web):
    """The API's 400 appears beside the filter it names, with every digit the person typed."""
    driver = page
    choose(driver, "dataset", "products")
    add_filter(driver, "quantity", "gte")
    row = add_filter(driver, "id", "lte")
    type_value(row, "99999999999999999999")  # past bigint, and past what a JavaScript number holds
    before = len(api_exports(web))
    submit(driver)
    note = until(driver, lambda d: row.find_element(By.CSS_SELECTOR, ".field-error"), what="the field's message")
    assert "filters.id.lte" in note.text and "99999999999999999999 is out of range for bigint" in note.text
    field = row.find_element(By.CSS_SELECTOR, ".filter-value input")
    assert field.get_attribute("aria-invalid") == "true"
    assert note.get_attribute("id") in field.get_attribute("aria-describedby").split()
    assert driver.switch_to.active_element == field  # the person is taken to it
    assert text(driver, "form-error") == ""
    assert len(api_exports(web)) == before
    type_value(row, "5")  # typing clears the message
    assert not row.find_elements(By.CSS_SELECTOR, ".field-error")


def test_inputs_fit_each_type_and_reach_the_api_as_typed(page, web):
    """An enum's multi-select, a boolean, a bigint past 2^53, a zoned time in the browser's zone
    (Europe/Paris), a date and a list of values: the stored request holds exactly those filters."""
    driver = page
    choose(driver, "dataset", "tenant_orders")
    assert "Scoped: you see only the rows your key's tenant allows." in text(driver, "dataset-about")
    choose(driver, "dataset", "orders")
    assert "Scoped" not in text(driver, "dataset-about")
    only_columns(driver, ["id", "status"])
    status = add_filter(driver, "status", "in")
    for label in ("paid", '=HYPERLINK("x")'):
        box = status.find_element(By.XPATH, f".//label[text()='{label}']/preceding-sibling::input")
        box.click()
    Select(add_filter(driver, "paid", "eq").find_element(By.CSS_SELECTOR, ".filter-value select")).select_by_value(
        "true"
    )
    type_value(add_filter(driver, "big", "gte"), "9007199254740993")
    set_value(driver, add_filter(driver, "paid_at", "gte"), "2024-01-31T13:05:30")
    set_value(driver, add_filter(driver, "placed_on", "lt"), "2030-12-31")
    type_value(add_filter(driver, "country", "in"), "FR\nDE\n\nUS")
    choose(driver, "format", "jsonl")
    choose(driver, "compression", "gzip")
    choose(driver, "delivery", "async")
    submit(driver)
    export_id = current_export_id(driver)
    spec = api_export(web, export_id)["request"]
    assert spec["filters"] == {
        "status": {"in": ["paid", '=HYPERLINK("x")']},
        "paid": {"eq": True},
        "big": {"gte": 9007199254740993},
        "paid_at": {"gte": spec["filters"]["paid_at"]["gte"]},
        "placed_on": {"lt": "2030-12-31"},
        "country": {"in": ["FR", "DE", "US"]},
    }
    assert spec["filters"]["paid_at"]["gte"].startswith("2024-01-31T12:05:30")  # 13:05:30 in Paris is 12:05:30 UTC
    assert spec["columns"] == ["id", "status"] and spec["format"] == "jsonl" and spec["compression"] == "gzip"
    assert spec["filename"] == "orders.jsonl.gz"
    until(driver, lambda d: "Completed" in text(d, "current-status"), timeout=120, what="the jsonl export")


def test_inline_export_downloads_at_once_and_a_double_click_makes_one_export(page, web, browser, seeded):
    """A small export is saved by the browser straight from the answer; a double click on
    Export sends one request with one Idempotency-Key."""
    driver, downloads = browser
    choose(driver, "dataset", "products")
    only_columns(driver, ["id", "name"])
    type_value(add_filter(driver, "id", "lte"), "500")
    choose(driver, "format", "csv")
    choose(driver, "compression", "gzip")
    inert = driver.find_element(By.CSS_SELECTOR, "#options input[data-option='neutralize_formulas']")
    assert inert.is_selected()  # on by default, as in the API
    inert.click()  # off: the names arrive exactly as stored, formula-like ones included
    driver.find_element(By.ID, "filename").send_keys("web-inline")
    submit(driver)
    data = gzip.decompress(downloaded(downloads, "web-inline.csv.gz").read_bytes())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    with psycopg.connect(seeded) as conn:
        expected = conn.execute("SELECT id::text, name FROM products WHERE id <= 500 ORDER BY products.id").fetchall()
    assert rows[0] == ["id", "name"] and [tuple(r) for r in rows[1:]] == [tuple(e) for e in expected]
    until(driver, lambda d: "500 rows" in text(d, "current-message"), what="the inline summary")

    before = {e["id"] for e in api_exports(web)}
    choose(driver, "delivery", "async")
    driver.find_element(By.ID, "filename").clear()
    driver.find_element(By.ID, "filename").send_keys("web-double")
    ActionChains(driver).double_click(driver.find_element(By.ID, "submit")).perform()
    export_id = current_export_id(driver)
    until(driver, lambda d: "Completed" in text(d, "current-status"), timeout=120, what="the export")
    created = [e for e in api_exports(web) if e["id"] not in before]
    assert [e["id"] for e in created] == [export_id]
    with psycopg.connect(web["settings"].state_database_url) as conn:
        key = conn.execute("SELECT idempotency_key FROM exports WHERE id = %s", (export_id,)).fetchone()[0]
    assert key and len(key) == 32


def test_the_history_pages_back_through_older_exports(page, web):
    """Ten a page, newest first; "Show older exports" brings the next page, then no more button."""
    import urllib.request

    for n in range(12):
        body = json.dumps(
            {
                "dataset": "products",
                "columns": ["id"],
                "filters": {"id": {"lte": n + 1}},
                "delivery": "async",
                "filename": f"web-page-{n:02}",
            }
        ).encode()
        request = urllib.request.Request(
            f"{web['base']}/exports",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {web['key']}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202
    assert len(api_exports(web)) > 12
    driver = page
    driver.refresh()

    def rows(d):
        return d.find_elements(By.CSS_SELECTOR, "#history-rows tr")

    until(driver, lambda d: len(rows(d)) == 10, what="the first page of the history")
    assert "web-page-11.csv" in rows(driver)[0].text  # newest first
    more = driver.find_element(By.ID, "history-more")
    while more.is_displayed():
        shown = len(rows(driver))
        more.click()
        until(driver, lambda d, shown=shown: len(rows(d)) > shown, what="an older page")
    assert [r.get_attribute("data-id") for r in rows(driver)] == [e["id"] for e in api_exports(web)]


def test_accessible_at_desktop_and_phone_widths(page, web):
    """Labels, names, keyboard focus, contrast, and a phone-width layout without sideways scrolling."""
    driver = page
    add_filter(driver, "id", "in")
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        driver.set_window_size(*size)
        result = driver.execute_script(AUDIT)
        assert result["unlabeled"] == [] and result["unnamed"] == [], result
        assert result["low"] == [], f"text below 4.5:1 contrast at {name} width: {result['low']}"
        assert result["overflow"] <= 0, f"the page scrolls sideways at {name} width"
        assert result["lang"] == "en"
        screenshot(driver, f"{name}-form")
    # keyboard: Tab reaches the form's controls, and the focused one is outlined
    driver.find_element(By.ID, "dataset").click()
    ActionChains(driver).send_keys(Keys.TAB).perform()
    focused = driver.switch_to.active_element
    assert focused.tag_name in ("button", "input", "select")
    assert driver.execute_script("return getComputedStyle(arguments[0]).outlineStyle", focused) == "solid"


def test_sign_out_forgets_the_key_and_the_key_stays_out_of_logs(page, web):
    """The key lives in sessionStorage only and leaves with sign-out; signing in again on the
    same page gives a working form (once, not twice); the API's access log never holds the key."""
    driver = page
    assert driver.execute_script("return sessionStorage.getItem('spillway.apiKey')") == web["key"]
    assert web["key"] not in driver.current_url
    driver.find_element(By.ID, "sign-out").click()
    until(driver, lambda d: d.find_element(By.ID, "signin").is_displayed(), what="the sign-in form")
    assert driver.execute_script("return sessionStorage.getItem('spillway.apiKey')") is None
    assert not driver.find_element(By.ID, "workspace").is_displayed()

    driver.find_element(By.ID, "signin-key").send_keys(web["key"], Keys.ENTER)
    until(driver, lambda d: d.find_element(By.ID, "workspace").is_displayed(), what="signed in again")
    assert driver.find_elements(By.CSS_SELECTOR, "#filters .filter") == []  # a fresh form
    driver.find_element(By.ID, "filter-add").click()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#filters .filter")) == 1

    driver.find_element(By.ID, "sign-out").click()
    driver.refresh()
    until(driver, lambda d: d.find_element(By.ID, "signin").is_displayed(), what="the sign-in form after reload")
    log = (LOGS / f"{LOG_NAME}.log").read_text(errors="replace")
    assert "GET /exports/" in log  # the access log is on and saw the page's polls
    assert web["key"] not in log


@pytest.mark.console_allows(401)
def test_a_refused_key_is_told_and_not_kept(page, web):
    driver = page
    driver.find_element(By.ID, "sign-out").click()
    driver.find_element(By.ID, "signin-key").send_keys("sw_not-a-key", Keys.ENTER)
    until(driver, lambda d: "refused" in text(d, "signin-error"), what="the refusal")
    assert driver.execute_script("return sessionStorage.getItem('spillway.apiKey')") is None
    assert not driver.find_element(By.ID, "workspace").is_displayed()
