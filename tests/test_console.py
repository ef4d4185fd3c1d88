"""The reviewer console over HTTP (the pages as a browser gets them), on SQLite and PostgreSQL: accounts,
sign-in, sessions, CSRF, lockout and idle timeout; the queue and a case; decisions and their letters."""

from __future__ import annotations

import re
import subprocess
import json
from datetime import date

import pytest
from sqlalchemy import text

from service_helpers import EXAMPLES, dated, example, make_harness, with_identifier
from priorauth.store import Actor
from priorauth.store.console import LoginRefused

PHARMACIST = dict(role="reviewer", npi="1234567893", specialty="Pharmacist", credentials="PharmD",
                  display_name="Dana Reyes")
NURSE = dict(role="reviewer", npi="1245319599", specialty="Registered Nurse", credentials="RN",
             display_name="Sam Ortiz")
PASSWORD = "correct horse battery"
SETUP = Actor("test:setup", "admin")


@pytest.fixture
def h(url):
    h = make_harness(url)
    h.store.add_user("dana", PASSWORD, actor=SETUP, **PHARMACIST)
    h.store.add_user("sam", PASSWORD, actor=SETUP, **NURSE)
    return h


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(client, name="dana", password=PASSWORD):
    page = client.get("/console/login")
    return client.post("/console/login", data={"csrf": csrf_of(page.text), "name": name, "password": password},
                       follow_redirects=False)


def submitted(h, value: str, name: str = "eligible-flc-only.json") -> str:
    bundle = with_identifier(dated(example(name), date(2027, 1, 12)), value)
    r = h.submit("lakeshore", bundle)
    assert r.status_code in (200, 201), r.text
    return h.store.queue()[0].id if len(h.store.queue()) == 1 else next(
        c.id for c in h.store.queue() if c.identifier_value == value)


def test_sign_in_sets_a_strict_http_only_cookie_and_the_queue_needs_it(h):
    c = h.client
    assert c.get("/console/", follow_redirects=False).headers["location"] == "/console/login"
    r = sign_in(c)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("priorauth_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie                 # served over http here; over https it is Secure
    page = c.get("/console/")
    assert page.status_code == 200 and "Review queue" in page.text and "Dana Reyes, PharmD" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # only the cookie's hash is stored
    value = c.cookies.get("priorauth_session")
    with h.store.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT id_hash FROM web_sessions"))]
    assert value not in stored and len(stored) == 1


def test_wrong_passwords_lock_the_account_and_an_unknown_name_reads_the_same(h):
    c = h.client
    unknown, wrong = sign_in(c, "nobody", "whatever-it-is"), sign_in(c, "dana", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert "The name or the password is not right." in unknown.text and "not right" in wrong.text
    for _ in range(3):
        assert sign_in(c, "dana", "not the password").status_code == 401
    locked = sign_in(c, "dana", "not the password")          # the fifth failure in a row
    assert locked.status_code == 401 and "locked" in locked.text
    assert sign_in(c, "dana", PASSWORD).status_code == 401   # locked: even the right password
    h.clock.advance(minutes=16)
    assert sign_in(c, "dana", PASSWORD).status_code == 303
    actions = [a.action for a in h.store.audit_entries()]
    assert "user.lockout" in actions and "user.login.locked" in actions and actions[-1] == "user.login"


def test_the_session_ends_when_idle_and_on_logout(h):
    c = h.client
    sign_in(c)
    h.clock.advance(minutes=10)
    assert c.get("/console/").status_code == 200
    h.clock.advance(minutes=16)                                # idle longer than 15 minutes
    r = c.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login?expired=1"
    sign_in(c)
    page = c.get("/console/")
    assert c.post("/console/logout", data={"csrf": "forged"}).status_code == 403     # CSRF checked
    assert c.get("/console/").status_code == 200
    assert c.post("/console/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    assert c.get("/console/", follow_redirects=False).status_code == 303


def test_the_login_form_needs_its_token(h):
    c = h.client
    c.get("/console/login")
    r = c.post("/console/login", data={"csrf": "x", "name": "dana", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "expired" in r.text


def test_the_queue_sorts_by_due_time_filters_counts_and_claims(h):
    first = submitted(h, "Q-1")
    h.clock.advance(hours=1)
    second = submitted(h, "Q-2")
    sign_in(h.client)
    page = h.client.get("/console/")
    assert page.text.index(f"/console/cases/{first}") < page.text.index(f"/console/cases/{second}")
    assert "2 open cases match" in page.text and "pended for review</a>: <strong>2</strong>" in page.text
    assert f"/console/cases/{first}" not in h.client.get("/console/", params={"q": second[:8]}).text
    r = h.client.post(f"/console/cases/{first}/claim", data={"csrf": csrf_of(page.text), "back": "queue"},
                      follow_redirects=False)
    assert r.status_code == 303
    mine = h.client.get("/console/", params={"mine": 1}).text
    assert f"/console/cases/{first}" in mine and f"/console/cases/{second}" not in mine
    # another reviewer cannot take it
    other = make_client(h)
    sign_in(other, "sam")
    taken = other.post(f"/console/cases/{first}/claim", data={"csrf": csrf_of(other.get("/console/").text)})
    assert taken.status_code == 409 and "assigned to dana" in taken.text
    h.clock.advance(days=30)
    late = h.client.get("/console/", params={"overdue": 1})
    sign_in(h.client)
    late = h.client.get("/console/", params={"overdue": 1}).text
    assert 'class="overdue"' in late and "overdue by" in late


def make_client(h):
    from fastapi.testclient import TestClient

    return TestClient(h.app, raise_server_exceptions=False)


def test_a_case_page_shows_criteria_evidence_sources_and_history(h):
    case_id = submitted(h, "C-1")
    sign_in(h.client)
    page = h.client.get(f"/console/cases/{case_id}").text
    assert "I.A.5" in page and 'class="badge met"' in page
    anchors = set(re.findall(r'href="#(src-[^"]+)"', page))
    assert anchors and all(f'id="{a}"' in page for a in anchors)          # each evidence link has its source
    assert "submission 1 received" in page and "No letter yet" in page


def decide_form(client, case_id: str, **data):
    page = client.get(f"/console/cases/{case_id}").text
    return client.post(f"/console/cases/{case_id}/decision", data={"csrf": csrf_of(page), **data},
                       follow_redirects=False)


def test_denials_need_a_clinician_and_a_cited_criterion_and_leave_letters(h):
    case_id = submitted(h, "D-1")
    nurse = make_client(h)
    sign_in(nurse, "sam")
    r = decide_form(nurse, case_id, action="deny", reason="Not enough lines", cite="I.A.5")
    assert r.status_code == 403 and "Only a clinician" in r.text
    sign_in(h.client)
    r = decide_form(h.client, case_id, action="deny", reason="Not enough lines")
    assert r.status_code == 422 and "cites at least one criterion" in r.text
    assert h.store.history(case_id).decisions == []
    r = decide_form(h.client, case_id, action="deny", reason="The records show two prior lines.", cite="I.A.5")
    assert r.status_code == 303, r.text
    [d] = h.store.history(case_id).decisions
    assert d.action == "deny" and d.reviewer_npi == PHARMACIST["npi"] and d.specialty == "Pharmacist"
    assert "I.A.5" in d.reason
    letters = h.store.letters(case_id)
    assert sorted(lt.audience for lt in letters) == ["member", "provider"]
    assert all(lt.kind == "denial" and lt.pdf.startswith(b"%PDF") for lt in letters)
    entry = json.loads([a for a in h.store.audit_entries(case_id) if a.action == "case.decide"][0].detail)
    assert {lt["audience"] for lt in entry["letters"]} == {"member", "provider"}
    provider = next(lt for lt in letters if lt.audience == "provider")
    member = next(lt for lt in letters if lt.audience == "member")
    assert "Criterion I.A.5" in provider.html and "Dana Reyes, PharmD" in provider.html
    assert "appeal" in member.html and "I.A.5" not in member.html.split("The reviewer's explanation")[0]
    assert "peer-to-peer" in provider.html
    assert h.store.verify_records()[1] == []
    # the PDF reads as the letter says (pdftotext)
    pdf = h.client.get(f"/console/letters/{provider.id}.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    words = subprocess.run(["pdftotext", "-", "-"], input=pdf.content, capture_output=True, check=True).stdout.decode()
    assert "Prior authorization denied" in words and "Dana Reyes" in words
    # a second decision on the decided case is refused, and no second letter exists
    other = make_client(h)
    sign_in(other, "sam")
    r = other.post(f"/console/cases/{case_id}/decision", data={"csrf": csrf_of(other.get("/console/").text),
                                                               "action": "pend", "reason": "more"})
    assert r.status_code == 409 and len(h.store.letters(case_id)) == 2


def test_a_pend_letter_asks_for_what_is_missing_by_the_due_date(h):
    case_id = submitted(h, "P-1")
    sign_in(h.client)
    r = decide_form(h.client, case_id, action="pend", reason="Serum free light chains dated within 30 days")
    assert r.status_code == 303
    provider = next(lt for lt in h.store.letters(case_id) if lt.audience == "provider")
    assert provider.kind == "request-for-information"
    assert "<li>Serum free light chains dated within 30 days</li>" in provider.html and "Please send it by" in provider.html


def test_a_tampered_letter_is_found_by_the_audit(h):
    from test_store import bypass_append_only

    case_id = submitted(h, "T-1")
    sign_in(h.client)
    assert decide_form(h.client, case_id, action="approve", reason="").status_code == 303
    bypass_append_only(h.store, "letters")
    with h.store.engine.begin() as conn:
        conn.execute(text("UPDATE letters SET html = 'changed' WHERE audience = 'member'"))
    problems = h.store.verify_records()[1]
    assert any("letter" in p and "its content is not what was stored" in p for p in problems), problems


def test_user_add_refuses_bad_input_naming_the_field(h):
    with pytest.raises(ValueError, match="^npi:"):
        h.store.add_user("x", PASSWORD, actor=SETUP, **{**PHARMACIST, "npi": "1234567890"})
    with pytest.raises(ValueError, match="^password:"):
        h.store.add_user("x", "short", actor=SETUP, **PHARMACIST)
    with pytest.raises(ValueError, match="^name:"):
        h.store.add_user("dana", PASSWORD, actor=SETUP, **PHARMACIST)
    with pytest.raises(LoginRefused):
        h.store.login("dana", "nope", max_failures=5, lockout=__import__("datetime").timedelta(minutes=1))


def test_letters_are_document_references_beside_the_claim_response(h):
    from priorauth.fhir.validate import validate_resource

    case_id = submitted(h, "F-1")
    sign_in(h.client)
    assert decide_form(h.client, case_id, action="deny", reason="Two prior lines only.", cite="I.A.5").status_code == 303
    r = h.client.get("/fhir/DocumentReference", params={"related": f"ClaimResponse/{case_id}"},
                     headers=h.auth("lakeshore"))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["total"] == 1                              # the provider gets the provider's letter
    [doc] = [e["resource"] for e in bundle["entry"]]
    assert validate_resource(doc) == [] and validate_resource(bundle) == []
    assert doc["type"]["coding"][0]["code"] == "denial" and doc["context"]["related"][0]["reference"] == \
        f"ClaimResponse/{case_id}"
    pdf = __import__("base64").b64decode(doc["content"][0]["attachment"]["data"])
    assert pdf.startswith(b"%PDF")
    assert h.client.get(f"/fhir/{'DocumentReference/' + doc['id']}", headers=h.auth("lakeshore")).status_code == 200
    reviewer = h.client.get("/fhir/DocumentReference", params={"related": f"ClaimResponse/{case_id}"},
                            headers=h.auth("dr-reviewer")).json()
    assert reviewer["total"] == 2
    member_letter = next(e["resource"]["id"] for e in reviewer["entry"]
                         if e["resource"]["category"][0]["text"] == "member")
    assert h.client.get(f"/fhir/DocumentReference/{member_letter}", headers=h.auth("lakeshore")).status_code == 404
    assert h.client.get("/fhir/DocumentReference", params={"related": f"ClaimResponse/{case_id}"},
                        headers=h.auth("gulfcoast")).status_code == 404     # another organization's request


def test_api_docs_are_served_with_no_internet(h):
    page = h.client.get("/docs")
    assert page.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert refs and all(r.startswith("/") for r in refs), refs               # nothing from a CDN
    for ref in refs:
        assert h.client.get(ref).status_code == 200, ref
    redoc = h.client.get("/redoc").text
    assert "fonts.googleapis" not in redoc and 'src="/docs-assets/redoc.standalone.js"' in redoc


def test_the_readme_walkthrough_runs_as_one_block(tmp_path):
    """The service walkthrough, pasted as one block into bash, from a fresh data folder to a verified audit."""
    import os
    import signal
    import socket

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    start = readme.index("( set -euo pipefail")
    block = readme[start:readme.index("\n```", start)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", "-c", block], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    pid = re.search(r"stop: kill (\d+)", done.stdout)
    if pid:
        os.kill(int(pid.group(1)), signal.SIGTERM)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "audit chain verified" in done.stdout and "1 decisions" in done.stdout and "2 letters" in done.stdout


def test_the_readme_links_every_document():
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{doc.name})" in readme, f"README does not link docs/{doc.name}"


def test_a_plan_changes_the_letters_without_code(url, tmp_path):
    """A directory of the plan's files over the bundled templates: its wording and its denial template."""
    import yaml

    from priorauth.letters import _BUNDLED

    wording = yaml.safe_load((_BUNDLED / "letters.yaml").read_text())
    wording["plan"]["name"] = "Lakeshore Community Health Plan"
    wording["appeals"]["default"]["days"] = 65
    (tmp_path / "letters.yaml").write_text(yaml.safe_dump(wording))
    denial = (_BUNDLED / "denial.html").read_text().replace("<h2>Why</h2>", "<h2>Why we decided this</h2>")
    (tmp_path / "denial.html").write_text(denial)
    h = make_harness(url, letter_templates=tmp_path)
    h.store.add_user("dana", PASSWORD, actor=SETUP, **PHARMACIST)
    case_id = submitted(h, "L-1")
    sign_in(h.client)
    assert decide_form(h.client, case_id, action="deny", reason="Two prior lines.", cite="I.A.5").status_code == 303
    member = next(lt for lt in h.store.letters(case_id) if lt.audience == "member")
    assert "Lakeshore Community Health Plan" in member.html and "within 65 days" in member.html
    assert "Why we decided this" in member.html


def _with_documents(bundle: dict, docs: list[tuple[str, bytes, str]]) -> dict:
    import base64
    import copy

    b = copy.deepcopy(bundle)
    for i, (kind, data, title) in enumerate(docs):
        b["entry"].append({"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000d{i:03d}", "resource": {
            "resourceType": "DocumentReference", "id": f"note-{i}", "status": "current",
            "content": [{"attachment": {"contentType": kind, "data": base64.b64encode(data).decode(),
                                        "title": title}}]}})
    return b


def test_attached_documents_are_readable_in_the_case_page(h):
    from weasyprint import HTML

    pdf = HTML(string="<p>Oncology clinic note: progression on KRd, M-spike 1.4 g/dL.</p>").write_pdf()
    scan = HTML(string="<p></p>").write_pdf()
    bundle = _with_documents(with_identifier(dated(example("eligible-flc-only.json"), date(2027, 1, 12)), "DOC-1"), [
        ("text/plain; charset=utf-8", b"Marrow: 40% plasma cells.", "Pathology"),
        ("text/html", b"<h1>Consult</h1><p>No CNS involvement.</p><script>alert(1)</script>", "Consult"),
        ("application/pdf", pdf, "Clinic note"), ("application/pdf", scan, "Scanned letter")])
    assert h.submit("lakeshore", bundle).status_code == 201
    case_id = h.store.queue()[0].id
    sign_in(h.client)
    page = h.client.get(f"/console/cases/{case_id}").text
    assert "Marrow: 40% plasma cells." in page
    assert "No CNS involvement." in page and "alert(1)" not in page
    assert "progression on KRd, M-spike 1.4 g/dL." in page and "the text layer of a PDF of 1 page(s)" in page
    assert "no text layer (a scan): it needs OCR" in page
    def link(title):          # the "open the document as sent" link of the document with that title
        return re.search(re.escape(title) + r'</h3>\s*<p class="small">[^<]*<a href="([^"]+)"', page).group(1)

    opened = h.client.get(link("Clinic note"))
    assert opened.status_code == 200 and opened.content == pdf and opened.headers["content-type"] == "application/pdf"
    html = h.client.get(link("Consult"))
    assert html.headers["content-type"] == "application/octet-stream" and "sandbox" in html.headers[
        "content-security-policy"]                                            # never rendered as a page of the site
    assert h.client.get(f"/console/cases/{case_id}/attachments/9").status_code == 404
