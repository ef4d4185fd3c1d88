"""The reviewer console in a real browser: headless Chromium (Debian's package) driven by Playwright, against
the service running on a local port, on SQLite and PostgreSQL. Each page passes axe-core (no serious or
critical violation) at 1280 and 800 px wide. Screenshots of the queue, a case and a letter are written to
tests/artifacts/ (not committed).

Without Chromium or axe-core (a machine that did not run .ci/run) these tests are skipped, saying why; CI sets
PRIORAUTH_REQUIRE_BROWSER=1 and they fail instead."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from conftest import ROOT
from service_helpers import CONFIG, Clock, dated, example, with_identifier
from priorauth.service import ServiceSettings, create_app
from priorauth.store import Actor

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / "tests" / ".axe" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "tests" / "artifacts"
PASSWORD = "correct horse battery"
SETUP = Actor("test:setup", "admin")
USERS = {"dana": dict(role="reviewer", npi="1234567893", specialty="Pharmacist", credentials="PharmD",
                      display_name="Dana Reyes"),
         "lee": dict(role="medical-director", npi="1245319599", specialty="Hematology & Oncology",
                     credentials="MD", display_name="Lee Park"),
         "sam": dict(role="reviewer", npi="1003000126", specialty="Registered Nurse", credentials="RN",
                     display_name="Sam Ortiz")}

_missing = [what for what, ok in (("Debian's chromium (apt-get install chromium)", Path(CHROMIUM).exists()),
                                  ("axe-core (npm install --prefix tests/.axe axe-core)", AXE.exists()))
            if not ok]
try:
    from playwright.sync_api import sync_playwright
except ImportError:                                  # pragma: no cover - the dev extra installs it
    _missing.append("playwright (pip install -e '.[dev]')")
if _missing and os.environ.get("PRIORAUTH_REQUIRE_BROWSER") != "1":
    pytestmark = pytest.mark.skip(reason="browser tests need " + " and ".join(_missing) + "; .ci/run installs them")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(url):
    """The service on a local port (uvicorn in a thread), with three console users and three requests."""
    import uvicorn

    assert not _missing, "missing: " + ", ".join(_missing)
    clock = Clock()
    settings = ServiceSettings(database_url=url, signing_key=b"test-signing-key-" * 3, config=CONFIG, now=clock,
                               deliver_notifications=False, token_rate_per_client="100000/minute",
                               token_rate_per_address="100000/minute")
    app = create_app(settings)
    store = app.state.store
    for name, identity in USERS.items():
        store.add_user(name, PASSWORD, actor=SETUP, **identity)
    svc = app.state.service
    from priorauth.service.auth import Principal

    provider = Principal("lakeshore", "provider", "org-lakeshore")
    for value, name in (("BR-1", "eligible-flc-only.json"), ("BR-2", "eligible-flc-only.json"),
                        ("BR-3", "internist-consult-expedited.json")):
        bundle = with_identifier(dated(example(name), date(2027, 1, 12)), value)
        import json

        svc.submit(bundle, json.dumps(bundle), provider)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _context(browser, width: int = 1280):
    # bypass_csp: axe-core is injected as a script, which the pages' Content-Security-Policy would refuse
    return browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True, accept_downloads=True)


def sign_in(page, base: str, name: str):
    page.goto(f"{base}/console/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/console/")


def axe(page, what: str) -> None:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{what}: {bad}"


def no_horizontal_scroll(page, what: str) -> None:
    wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert wide <= 1, f"{what}: the page is {wide} px wider than the window"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_case(page, base: str, request_id: str):
    page.goto(f"{base}/console/")
    page.get_by_label("Case, member id or provider").fill("")
    page.get_by_role("link", name=request_id).first.click()
    page.wait_for_url(f"{base}/console/cases/*")


@pytest.mark.parametrize("width", [1280, 800])
def test_the_pages_pass_axe_and_fit_the_window(served, browser, width):
    base, store = served
    page = _context(browser, width).new_page()
    page.goto(f"{base}/console/login")
    axe(page, f"login at {width}px")
    sign_in(page, base, "dana")
    axe(page, f"queue at {width}px")
    no_horizontal_scroll(page, f"queue at {width}px")
    shot(page, f"queue-{width}")
    page.locator("table.queue a").first.click()
    page.wait_for_url(f"{base}/console/cases/*")
    axe(page, f"case at {width}px")
    no_horizontal_scroll(page, f"case at {width}px")
    shot(page, f"case-{width}")


def test_a_reviewers_day_sign_in_to_letter_and_out(served, browser):
    base, store = served
    page = _context(browser).new_page()
    sign_in(page, base, "dana")
    assert "3 open cases match" in page.content()
    # find a case by its member id
    first = store.queue()[0]
    page.get_by_label("Case, member id or provider").fill(first.member_id)
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name=first.request_id).first.click()
    page.wait_for_url(f"{base}/console/cases/{first.id}")
    # an evidence link leads to its source in the request, highlighted
    link = page.locator("a.source").first
    target = link.get_attribute("href")[1:]
    link.click()
    assert page.evaluate("document.querySelector(':target').id") == target
    highlight = page.evaluate("getComputedStyle(document.querySelector(':target')).backgroundColor")
    assert highlight == "rgb(255, 243, 191)"
    # deny without citing a criterion: refused
    page.get_by_label("Deny").check()
    page.get_by_label("Reason (the letter's words", exact=False).fill("The records do not support it.")
    page.get_by_role("button", name="Record the decision").click()
    assert "cites at least one criterion" in page.get_by_role("alert").inner_text()
    assert store.history(first.id).decisions == []
    # pend, with the request for information
    page.get_by_label("Pend for information").check()
    page.get_by_label("Reason (the letter's words", exact=False).fill("Bone marrow biopsy report, 2027")
    page.get_by_role("button", name="Record the decision").click()
    page.wait_for_url(f"{base}/console/cases/{first.id}?decided=*")
    assert "pending information" in page.content()
    # then decide: approve; the letter is downloaded and read
    page.get_by_label("Approve", exact=True).check()
    page.get_by_label("Reason (the letter's words", exact=False).fill("")
    page.get_by_role("button", name="Record the decision").click()
    page.wait_for_url(f"{base}/console/cases/{first.id}?decided=*")
    with page.expect_download() as download:
        page.get_by_role("link", name="PDF").last.click()
    pdf = Path(download.value.path()).read_bytes()
    words = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    assert "Authorization number" in words and "Dana Reyes" in words
    letters = store.letters(first.id)
    assert [(lt.kind, lt.audience) for lt in letters] == [("request-for-information", "provider"),
                                                          ("request-for-information", "member"),
                                                          ("approval", "provider"), ("approval", "member")]
    letter_page = page.context.new_page()
    letter_page.goto(f"{base}/console/letters/{letters[2].id}.html")
    shot(letter_page, "letter-approval-provider")
    # sign out: the queue is behind the sign-in again
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/console/login")
    page.goto(f"{base}/console/")
    assert page.url.startswith(f"{base}/console/login")


def test_a_non_clinician_cannot_deny(served, browser):
    base, store = served
    page = _context(browser).new_page()
    sign_in(page, base, "sam")
    open_case(page, base, store.queue()[0].request_id)
    assert page.get_by_label("Deny").is_disabled()
    # forced past the page: the service refuses it
    page.evaluate("document.getElementById('action-deny').disabled = false")
    page.get_by_label("Deny").check()
    page.locator("input[name=cite]").first.check()
    page.get_by_role("button", name="Record the decision").click()
    assert "Only a clinician" in page.get_by_role("alert").inner_text()
    assert store.history(store.queue()[0].id).decisions == []


def test_two_reviewers_deciding_one_case_at_once_give_one_decision(served, browser):
    base, store = served
    case = store.queue()[0]
    pages = []
    for name, action in (("dana", "Approve"), ("lee", "Deny")):
        page = _context(browser).new_page()
        sign_in(page, base, name)
        page.goto(f"{base}/console/cases/{case.id}")
        page.get_by_label(action, exact=True).check()
        page.locator("input[name=cite]").first.check()
        page.get_by_label("Reason (the letter's words", exact=False).fill("Reviewed.")
        pages.append(page)
    # both forms sent before either answer is read
    with pages[0].expect_navigation(), pages[1].expect_navigation():
        for page in pages:
            page.get_by_role("button", name="Record the decision").click(no_wait_after=True)
    decisions = store.history(case.id).decisions
    assert len(decisions) == 1
    letters = store.letters(case.id)
    assert len(letters) == 2 and {lt.decision_id for lt in letters} == {decisions[0].id}
    texts = [p.content() for p in pages]
    assert sum("Another reviewer's decision on this case was recorded first" in t for t in texts) == 1


def test_the_api_docs_render_with_every_outside_request_refused(served, browser):
    base, _store = served
    page = _context(browser).new_page()
    outside = []

    def only_local(route):
        if route.request.url.startswith(base):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    page.route("**/*", only_local)
    page.goto(f"{base}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "priorauth" in page.locator(".swagger-ui .info .title").inner_text()
    assert outside == []
