"""Fuzzing the authorization service in-process (the ASGI app): SQLite for the bulk, PostgreSQL for a smoke run.

- schemathesis drives every operation of ``/openapi.json`` (positive and negative data) with a provider, a
  reviewer and an admin token, with no token and with garbage tokens, and on the routes that take a case id also
  with the id of a real case (and a provider of another organization, who must never see it);
- hypothesis mutates the example PAS request Bundles (entries dropped, duplicated, swapped, retyped; values of the
  wrong type, broken references, huge and unicode strings, deep nesting, random JSON) and posts them to
  ``Claim/$submit`` and ``Claim/$inquire``; and throws raw bytes, wrong media types, oversized bodies and bad
  tokens at the service.

The rules every answer is held to: never a 5xx; every 4xx is a FHIR OperationOutcome (issues with a code and
diagnostics) in ``application/fhir+json`` -- except the OAuth token endpoint, whose 400/401 are RFC 6749 error
JSON; a 401 carries ``WWW-Authenticate``; no secured operation answers 2xx without a valid token or to a role it
does not admit; a 2xx to ``$submit`` only for a Bundle the intake really accepts (and then the answer is a PAS
response Bundle with the ClaimResponse of the stored case), and a Bundle the intake accepts, with a fresh
identifier, is accepted.

Inputs are deterministic (hypothesis ``derandomize``) and bounded; ``PRIORAUTH_FUZZ_EXAMPLES`` scales the
schemathesis examples per operation (default 25), ``PRIORAUTH_FUZZ_BUNDLES`` the mutated bundles per endpoint
(default 300), and ``PRIORAUTH_FUZZ_RANDOM=1`` draws new inputs on every run (a longer hunt). How many inputs
each test tried is printed (also without ``-s``) and written to
``<pytest basetemp>/priorauth-fuzz-counts.json``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import get_client as asgi_client
from schemathesis.python.asgi import shutdown_lifespans

from priorauth.fhir.pas_intake import BundleError
from service_helpers import EXAMPLES, FHIR, make_harness

SCHEMATHESIS_EXAMPLES = int(os.environ.get("PRIORAUTH_FUZZ_EXAMPLES", "25"))
BUNDLE_EXAMPLES = int(os.environ.get("PRIORAUTH_FUZZ_BUNDLES", "300"))

EXAMPLE_BUNDLES = {p.name: json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))}
NAMES = sorted(EXAMPLE_BUNDLES)

COUNTS: collections.Counter = collections.Counter()

OAUTH_ERRORS = {"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
                "invalid_scope", "temporarily_unavailable"}
ROLE_ROUTES = {  # path prefix -> roles that may use it (an admin administers: it neither submits nor decides)
    "/review/cases/{case_id}/appeal": {"provider", "reviewer"},
    "/review/cases/{case_id}/decision": {"reviewer"},
    "/review/cases/{case_id}/extension": {"reviewer"},
    "/review/": {"reviewer", "admin"},
    "/admin/": {"admin"},
    "/fhir/ClaimResponse/": {"provider", "reviewer"},
    "/fhir/": {"provider"},
    "/cds-services/priorauth-order-sign": {"provider"},
}
PUBLIC = {"/health", "/oauth/token", "/cds-services", "/openapi.json", "/docs", "/redoc"}


def _fuzz(n: int, **kw) -> settings:
    # PRIORAUTH_FUZZ_RANDOM=1 explores new inputs on every run (for a longer hunt; CI stays deterministic)
    return settings(max_examples=n, derandomize=os.environ.get("PRIORAUTH_FUZZ_RANDOM") != "1", database=None,
                    deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
                    **kw)


def _report(request, name: str, n: int, **extra) -> None:
    COUNTS[name] += n
    line = f"[priorauth fuzz] {name}: {n} inputs" + "".join(f", {k}: {v}" for k, v in extra.items())
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\n" + line, flush=True)
    path = request.getfixturevalue("tmp_path_factory").getbasetemp() / "priorauth-fuzz-counts.json"
    path.write_text(json.dumps(dict(COUNTS), indent=2, sort_keys=True) + "\n")


# ---- the rules every answer is held to ------------------------------------------------------------------------
def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def response_problems(method: str, path: str, status: int, headers, body: bytes) -> list[str]:
    """What is wrong with one answer (``path`` is the route template or the request path)."""
    out = []
    headers = {k.lower(): (v[0] if isinstance(v, list) and v else v) for k, v in dict(headers).items()}
    if status >= 500:
        out.append(f"{status}: a server error")
    if not 400 <= status < 500:
        return out
    data = _json(body)
    ctype = (headers.get("content-type") or "").split(";")[0].strip()
    if path == "/oauth/token" and method.upper() == "POST" and status in (400, 401, 429):
        if not (isinstance(data, dict) and data.get("error") in OAUTH_ERRORS
                and isinstance(data.get("error_description"), str)):
            out.append(f"{status} from the token endpoint is not RFC 6749 error JSON: {body[:300]!r}")
        return out
    if not (isinstance(data, dict) and data.get("resourceType") == "OperationOutcome"):
        out.append(f"{status} is not an OperationOutcome: {body[:300]!r}")
        return out
    if ctype != "application/fhir+json":
        out.append(f"{status} OperationOutcome served as {ctype!r}")
    issues = data.get("issue")
    if not (isinstance(issues, list) and issues):
        out.append(f"{status} OperationOutcome without issues: {body[:300]!r}")
    else:
        for i in issues:
            if not (isinstance(i, dict) and i.get("severity") in ("fatal", "error", "warning", "information")
                    and isinstance(i.get("code"), str) and isinstance(i.get("diagnostics"), str)
                    and i["diagnostics"]):
                out.append(f"{status} OperationOutcome issue without severity/code/diagnostics: {i!r:.300}")
            elif "expression" in i and not (isinstance(i["expression"], list)
                                            and all(isinstance(e, str) and e for e in i["expression"])):
                out.append(f"{status} OperationOutcome issue with a bad expression: {i!r:.300}")
    if status == 401 and "www-authenticate" not in headers:
        out.append("401 without WWW-Authenticate")
    return out


def outcome_problems(r) -> list[str]:
    """``response_problems`` of an httpx (TestClient) response."""
    return response_problems(r.request.method, r.request.url.path, r.status_code, r.headers, r.content)


def fhir_error_bodies(ctx, response, case):
    """schemathesis check: every 4xx is an OperationOutcome (RFC 6749 error JSON from the token endpoint)."""
    problems = response_problems(case.method, case.operation.path, response.status_code, response.headers,
                                 response.content)
    problems = [p for p in problems if "server error" not in p]       # not_a_server_error reports those
    if problems:
        raise AssertionError("; ".join(problems))


def _parses(body: Any) -> bool:
    if body is None:
        return True
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def roles_for(path: str) -> set[str] | None:
    """The roles a route admits; None for a public route."""
    if path in PUBLIC:
        return None
    for prefix, roles in ROLE_ROUTES.items():
        if path == prefix or path.startswith(prefix):
            return roles
    return {"provider", "reviewer"}


class Failures:
    """Distinct failures (by where and what), each with one reproducing input; asserted empty at the end. A
    failing request body is also written whole to ``<pytest basetemp>/priorauth-fuzz-failures/``."""

    dump_dir = None

    def __init__(self):
        self.seen: dict[tuple, str] = {}

    def add(self, where: str, problem: str, reproduce: str, body: bytes | None = None) -> None:
        key = (where, problem.split(":")[0][:80] if not problem.startswith("500: ") else problem[:120])
        if key in self.seen:
            return
        saved = ""
        if body is not None and Failures.dump_dir is not None:
            Failures.dump_dir.mkdir(exist_ok=True)
            path = Failures.dump_dir / f"{len(list(Failures.dump_dir.iterdir())) + 1:03d}.body"
            path.write_bytes(body)
            saved = f"\n    body saved in {path}"
        self.seen[key] = f"{where}: {problem[:600]}\n    input: {reproduce[:900]}{saved}"

    def response(self, r, where: str, reproduce: str, expect=None, body: bytes | None = None) -> None:
        """A response's problems as failures: a 4xx that is not an OperationOutcome (or a 500), and a status
        outside ``expect`` when given."""
        for p in outcome_problems(r):
            self.add(where, p, reproduce, body)
        if expect is not None and r.status_code not in expect:
            self.add(where, f"{r.status_code}, expected {sorted(expect)}: {r.text[:200]}", reproduce)

    def check(self) -> None:
        assert not self.seen, f"{len(self.seen)} distinct failures:\n" + "\n".join(self.seen.values())


# ---- the service under test -----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _failure_dir(tmp_path_factory):
    where = os.environ.get("PRIORAUTH_FUZZ_FAILURES")
    Failures.dump_dir = Path(where) if where else tmp_path_factory.getbasetemp() / "priorauth-fuzz-failures"


@pytest.fixture
def h(url):
    harness = make_harness(url)
    yield harness
    harness.store.close()


def _sqlite_only():
    return pytest.mark.parametrize("url", ["sqlite"], indirect=True)


def _postgresql_only():
    return pytest.mark.parametrize("url", ["postgresql"], indirect=True)


def _seed_case(h, who: str = "lakeshore", name: str = "eligible-flc-only.json") -> str:
    r = h.submit(who, EXAMPLE_BUNDLES[name])
    assert r.status_code in (200, 201), r.text
    return r.headers["location"].rsplit("/", 1)[1]


# ---- tokens that must not pass --------------------------------------------------------------------------------
def bad_tokens(h) -> dict[str, str]:
    """Authorization header values the service must answer 401 (label -> value)."""
    st_ = h.app.state.settings
    now = int(h.clock().timestamp())
    good = {"iss": st_.issuer, "aud": st_.audience, "sub": "lakeshore", "role": "provider", "org": "org-lakeshore",
            "iat": now, "exp": now + 600, "jti": "x"}
    key = st_.signing_key

    def signed(claims, k=key, alg="HS256", **kw):
        return "Bearer " + jwt.encode(claims, k, algorithm=alg, **kw)

    valid = h.tokens["lakeshore"]
    head, payload, sig = valid.split(".")
    forged = dict(good, role="admin")
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    out = {
        "wrong signing key": signed(good, b"another-key-entirely-" * 3),
        "expired": signed(dict(good, iat=now - 7200, exp=now - 3600)),
        "issued in the future": signed(dict(good, iat=now + 3600, exp=now + 7200)),
        "wrong audience": signed(dict(good, aud="someone-else")),
        "wrong issuer": signed(dict(good, iss="someone-else")),
        "alg none": "Bearer " + jwt.encode(good, None, algorithm="none"),
        "HS512": signed(good, alg="HS512"),
        "no exp": signed({k: v for k, v in good.items() if k != "exp"}),
        "no sub": signed({k: v for k, v in good.items() if k != "sub"}),
        "exp a string": signed(dict(good, exp="tomorrow")),
        "exp a boolean": signed(dict(good, exp=True)),
        "role unknown": signed(dict(good, role="superuser")),
        "role missing": signed({k: v for k, v in good.items() if k != "role"}),
        "provider without organization": signed(dict(good, org=None)),
        "sub a number": signed(dict(good, sub=7)),
        "signature flipped": "Bearer " + f"{head}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",
        "payload swapped (role admin)": f"Bearer {head}.{forged_payload}.{sig}",
        "truncated": "Bearer " + valid[:-10],
        "two parts": f"Bearer {head}.{payload}",
        "Basic scheme": "Basic " + base64.b64encode(b"lakeshore:secret").decode(),
        "token scheme only": "Bearer",
        "empty bearer": "Bearer    ",
        "no scheme": valid,
        "garbage": "Bearer not-a-jwt-at-all",
        "dots": "Bearer ...",
        "base64 junk": "Bearer " + base64.b64encode(b"\x00\xff" * 40).decode(),
        "huge": "Bearer " + "a" * 16000,
    }
    return out


garbage_auth = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=200).map(lambda t: f"Bearer {t}"),
    st.builds(lambda a, b, c: f"Bearer {a}.{b}.{c}", *(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                                "0123456789-_=", max_size=60) for _ in range(3))),
)


# ==== 1a. schemathesis over the OpenAPI schema =================================================================
def _run_schemathesis(h, *, examples: int, variants: tuple[str, ...], modes=(GenerationMode.POSITIVE,
                                                                               GenerationMode.NEGATIVE),
                      real_case: str | None = None) -> tuple[int, collections.Counter, Failures]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", h.app)
    tried = 0
    statuses: collections.Counter = collections.Counter()
    failures = Failures()
    tokens = {"provider": h.tokens["lakeshore"], "reviewer": h.tokens["dr-reviewer"], "admin": h.tokens["ops-admin"],
              "other-provider": h.tokens["gulfcoast"]}
    client = asgi_client(h.app)
    operations = []
    for result in schema.get_all_operations():
        try:
            operations.append(result.ok())
        except Exception as exc:  # noqa: BLE001 - a schema the tool cannot read is a failure
            failures.add("openapi.json", f"an operation schemathesis cannot read: {exc}", "")
    assert len(operations) >= 15, [o.label for o in operations]

    for op in operations:
        case_param = next((p for p in ("case_id", "id") if f"{{{p}}}" in op.path), None)
        allowed = roles_for(op.path)
        for mode in modes:
            for variant in variants:
                if (real_case is not None and case_param is None) or (
                        variant == "garbage" and mode == GenerationMode.NEGATIVE):
                    continue
                kw = {}
                if real_case is not None:
                    kw["path_parameters"] = {case_param: real_case}
                strategy = op.as_strategy(generation_mode=mode, **kw)
                n = examples if variant in ("provider", "reviewer", "admin") else max(examples // 2, 5)
                if mode == GenerationMode.NEGATIVE:
                    n = max(n * 2 // 3, 5)

                @_fuzz(n)
                @given(case=strategy, junk=garbage_auth)
                def run(case, junk):
                    nonlocal tried
                    tried += 1
                    if case.headers:
                        for k in [k for k in case.headers if k.lower() == "authorization"]:
                            del case.headers[k]
                    headers = {}
                    if variant in tokens:
                        headers["Authorization"] = f"Bearer {tokens[variant]}"
                    elif variant == "garbage":
                        headers["Authorization"] = junk
                    try:
                        response = case.call(headers=headers, session=client)
                    except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError):
                        tried -= 1                  # the client would not send it (a header value with a newline)
                        return
                    except Exception as exc:  # noqa: BLE001 - the app raised through the transport
                        failures.add(f"{op.label} [{variant}, {mode.value}]", f"the call raised {exc!r}",
                                     case.as_curl_command(headers=headers))
                        return
                    statuses[(op.label, response.status_code)] += 1
                    problems = []
                    try:
                        case.validate_response(response, checks=[not_a_server_error, fhir_error_bodies],
                                               headers=headers)
                    except Exception as exc:  # noqa: BLE001 - schemathesis FailureGroup or AssertionError
                        problems.append(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
                    ok = 200 <= response.status_code < 300
                    role = "provider" if variant == "other-provider" else variant
                    if ok and allowed is not None:
                        if variant in ("none", "garbage"):
                            problems.append(f"{response.status_code} without a valid token")
                        elif role not in allowed:
                            problems.append(f"{response.status_code} to the {role} role")
                        elif variant == "other-provider" and real_case is not None:
                            problems.append(f"{response.status_code}: another organization's case was served")
                    if variant in ("none", "garbage") and allowed is not None and response.status_code not in (
                            401, 404, 405, 413) and not (response.status_code in (400, 422)
                                                         and not _parses(response.request.body)):
                        # (FastAPI decodes a JSON body before the token dependency runs: a body that is not JSON
                        # is answered 400 before the missing token is noticed)
                        problems.append(f"{response.status_code} (not 401) without a valid token")
                    for p in problems:
                        failures.add(f"{op.label} [{variant}, {mode.value}]", p, case.as_curl_command(headers=headers))

                try:
                    run()
                except Unsatisfiable:
                    pass                            # nothing to negate (an operation without parameters)
    client.close()
    shutdown_lifespans()                        # the app's lifespan, which the ASGI client started
    return tried, statuses, failures


@_sqlite_only()
def test_schemathesis_every_operation_every_role(h, request):
    real = _seed_case(h)
    tried, statuses, failures = _run_schemathesis(
        h, examples=SCHEMATHESIS_EXAMPLES, variants=("provider", "reviewer", "admin", "none", "garbage"))
    more, statuses2, failures2 = _run_schemathesis(
        h, examples=SCHEMATHESIS_EXAMPLES, variants=("provider", "reviewer", "admin", "other-provider"),
        modes=(GenerationMode.POSITIVE,), real_case=real)
    statuses.update(statuses2)
    failures.seen.update({k: v for k, v in failures2.seen.items() if k not in failures.seen})
    total = tried + more
    codes = collections.Counter()
    for (_label, code), n in statuses.items():
        codes[code] += n
    _report(request, "schemathesis", total, operations=len({label for label, _ in statuses}),
            statuses=dict(sorted(codes.items())))
    failures.check()
    assert total >= 1500
    # the fuzzing reached past the doors: successful answers and validation errors, not only 401/403
    assert {200, 201, 400, 401, 403, 404, 422} <= set(codes)
    assert h.store.verify_audit()[0]


@_postgresql_only()
def test_schemathesis_smoke_on_postgresql(h, request):
    _seed_case(h)
    tried, statuses, failures = _run_schemathesis(h, examples=6, variants=("provider", "reviewer", "admin", "none"))
    _report(request, "schemathesis (postgresql)", tried)
    failures.check()
    assert tried >= 300
    assert h.store.verify_audit()[0]


# ==== 1b. hypothesis: mutated PAS request Bundles ==============================================================
def _paths(root: Any, limit: int = 60) -> list[tuple]:
    """The paths of every element under ``root`` (to ``limit`` levels), in document order."""
    out: list[tuple] = []
    stack = [((), root)]
    while stack:
        prefix, node = stack.pop()
        if len(prefix) >= limit:
            continue
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) \
            if isinstance(node, list) else []
        for k, v in reversed(items):
            stack.append((prefix + (k,), v))
        if prefix:
            out.append(prefix)
    return out


def _nesting(root: Any) -> int:
    """How deep containers nest under ``root`` (0: a flat object)."""
    deepest, stack = 0, [(root, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for v in (node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()):
            if isinstance(v, (dict, list)):
                stack.append((v, depth + 1))
    return deepest


def _has_nul(root: Any) -> bool:
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            if any("\x00" in k for k in node):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


def _set(root: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _delete(root: Any, path: tuple) -> None:
    parent = _get(root, path[:-1])
    del parent[path[-1]]


DEEP_MARK = "\u2063deep:{}:{}\u2063"       # stands for a structure too deep for json.dumps, spliced in as text
MAX_DEPTH = 100                              # the service refuses resources nested deeper


def _deep(depth: int, kind: str) -> Any:
    if depth > MAX_DEPTH:
        return DEEP_MARK.format(depth, kind)
    v: Any = 1
    for i in range(depth):
        v = [v] if kind == "list" or (kind == "mixed" and i % 2) else {"extension": v}
    return v


def _deep_text(depth: int, kind: str) -> str:
    opens = "".join("[" if kind == "list" or (kind == "mixed" and i % 2) else '{"extension":'
                    for i in reversed(range(depth)))
    closes = "".join("]" if kind == "list" or (kind == "mixed" and i % 2) else "}" for i in range(depth))
    return opens + "1" + closes


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
random_json = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=12), kids, max_size=4), max_leaves=25)
NASTY = ["", " ", "\t", "\u0000", "a\u0000b", "\u202e\u202d", "\ufeff", "\uffff", "💊" * 50, "Ω≈ç√∫˜µ≤≥÷",
         "null", "true", "0", "-1", "1e999", "NaN", "2027-02-30", "2027-13-01", "0000-00-00", "9999-12-31T99:99:99Z",
         "urn:uuid:", "urn:uuid:00000000-0000-0000-0000-000000000000", "Patient/", "Patient/../Claim", "#", "#x",
         "' OR 1=1 --", "%s%n%x", "{{7*7}}", "<script>alert(1)</script>", "\r\n\r\n", "../../../etc/passwd",
         "x" * 65, "x" * 257, "x" * 513, "y" * 5000]
nasty_string = st.one_of(st.sampled_from(NASTY), st.text(max_size=60),
                         st.text(st.characters(codec="utf-8"), min_size=1, max_size=30))
bad_reference = st.one_of(
    st.sampled_from(["", "urn:uuid:11111111-2222-3333-4444-555555555555", "Patient/does-not-exist",
                     "Observation/x", "Claim/x", "#missing", "http://elsewhere.example.org/fhir/Patient/1",
                     "Patient", "/", "urn:uuid:", "Coverage/" + "z" * 300]),
    st.builds(lambda t, i: f"{t}/{i}", st.sampled_from(["Patient", "Coverage", "Practitioner", "Organization",
                                                          "MedicationRequest", "Observation", "Claim"]),
              st.text("abcdef0123456789-", max_size=12)),
    random_json)
RESOURCE_TYPES = ["Claim", "Patient", "Coverage", "Organization", "Practitioner", "PractitionerRole",
                  "MedicationRequest", "Observation", "Condition", "Procedure", "DocumentReference", "Bundle",
                  "ClaimResponse", "OperationOutcome", "QuestionnaireResponse", "Binary", "claim", "", "Unknown"]


def _wrong_type(value: Any) -> st.SearchStrategy:
    if isinstance(value, str):
        return st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                         st.just([value]), st.just({"value": value}))
    if isinstance(value, bool):
        return st.one_of(st.sampled_from(["true", "false", 0, 1, None]), st.just([value]))
    if isinstance(value, (int, float)):
        return st.one_of(st.just(str(value)), st.booleans(), st.none(), st.just([value]),
                         st.sampled_from([-1, 0, 10 ** 20, -(10 ** 20), 1e308, 5e-324, 0.1 + 0.2]))
    if isinstance(value, list):
        return st.one_of(st.just(value[0] if value else {}), st.just({str(i): v for i, v in enumerate(value)}),
                         st.just("[]"), st.none(), st.just([]), st.just([None]))
    if isinstance(value, dict):
        return st.one_of(st.just([value]), st.just(json.dumps(value)[:50]), st.none(), st.just({}),
                         st.just(list(value)))
    return random_json


@st.composite
def mutated_bundles(draw) -> tuple[Any, list[str]]:
    """An example PAS request Bundle with 0-4 mutations, and what was done to it."""
    name = draw(st.sampled_from(NAMES))
    b: Any = copy.deepcopy(EXAMPLE_BUNDLES[name])
    log = [name]
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["delete", "delete", "replace", "wrong_type", "wrong_type", "nasty_string",
                                     "nasty_string", "duplicate", "break_reference", "break_reference", "retype",
                                     "swap_entries", "identifier", "deep", "huge", "unicode_leaf", "resource_type",
                                     "random_json", "drop_entries", "extra_keys"]))
        if not isinstance(b, dict):
            break
        paths = _paths(b)
        if not paths:
            break
        entries = b.get("entry") if isinstance(b.get("entry"), list) else None
        if draw(st.booleans()):                 # half the time, within the Claim (what the response is built from)
            paths = [p for p in paths if p[:2] == ("entry", 0) and len(p) > 2] or paths
        if kind == "delete":
            p = draw(st.sampled_from(paths))
            _delete(b, p)
        elif kind == "replace":
            p = draw(st.sampled_from(paths))
            _set(b, p, draw(random_json))
        elif kind == "wrong_type":
            p = draw(st.sampled_from(paths))
            _set(b, p, draw(_wrong_type(_get(b, p))))
        elif kind in ("nasty_string", "unicode_leaf"):
            leaves = [p for p in paths if isinstance(_get(b, p), str)] or paths
            p = draw(st.sampled_from(leaves))
            _set(b, p, draw(nasty_string if kind == "nasty_string"
                            else st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)))
        elif kind == "duplicate":
            lists = [p for p in paths if isinstance(_get(b, p), list) and _get(b, p)]
            if isinstance(b.get("entry"), list) and b["entry"]:
                lists.append(("entry",))
            seq = _get(b, draw(st.sampled_from(lists))) if lists else None
            if seq:
                i = draw(st.integers(0, len(seq) - 1))
                seq.insert(draw(st.integers(0, len(seq))), copy.deepcopy(seq[i]))
        elif kind == "break_reference":
            refs = [p for p in paths if p[-1] in ("reference", "fullUrl")]
            if refs:
                p = draw(st.sampled_from(refs))
                _set(b, p, draw(bad_reference))
        elif kind == "retype" and entries:
            k = draw(st.integers(0, len(entries) - 1))
            res = entries[k].get("resource") if isinstance(entries[k], dict) else None
            if isinstance(res, dict):
                res["resourceType"] = draw(st.one_of(st.sampled_from(RESOURCE_TYPES), json_leaf))
        elif kind == "swap_entries" and entries and len(entries) > 1:
            i, j = draw(st.integers(0, len(entries) - 1)), draw(st.integers(0, len(entries) - 1))
            entries[i], entries[j] = entries[j], entries[i]
        elif kind == "drop_entries" and entries:
            keep = draw(st.sets(st.integers(0, len(entries) - 1), max_size=len(entries)))
            b["entry"] = [e for i, e in enumerate(entries) if i in keep]
        elif kind == "identifier":
            b["identifier"] = draw(st.one_of(
                st.none(), st.just({}), st.just([b.get("identifier")]), nasty_string, st.integers(),
                st.fixed_dictionaries({"value": nasty_string}), st.fixed_dictionaries({"system": nasty_string}),
                st.fixed_dictionaries({"system": nasty_string, "value": nasty_string}),
                st.fixed_dictionaries({"system": json_leaf, "value": json_leaf})))
            if draw(st.booleans()):
                del b["identifier"]
        elif kind == "deep":
            p = draw(st.sampled_from(paths))
            depth = draw(st.sampled_from([8, 60, 90, 99, 101, 250, 260, 400, 900, 1030, 3000]))
            _set(b, p, _deep(depth, draw(st.sampled_from(["list", "dict", "mixed"]))))
            log.append(f"deep {depth}")
            break
        elif kind == "huge":
            p = draw(st.sampled_from(paths))
            size = draw(st.sampled_from([257, 513, 4097, 70_000, 400_000]))
            _set(b, p, draw(st.sampled_from(["x", "é", "💊", "\\"])) * size)
        elif kind == "resource_type":
            b["resourceType"] = draw(st.one_of(st.sampled_from(RESOURCE_TYPES), json_leaf))
        elif kind == "random_json":
            b = draw(st.one_of(random_json, st.dictionaries(st.sampled_from(["resourceType", "type", "entry",
                                                                             "identifier", "id"]), random_json)))
        elif kind == "extra_keys":
            p = draw(st.sampled_from([p for p in paths if isinstance(_get(b, p), dict)] or [()]))
            target = _get(b, p)
            if isinstance(target, dict):
                target[draw(st.one_of(st.sampled_from(["resourceType", "id", "extension", "_value", "", " ",
                                                       "\u0000", "modifierExtension", "contained"]),
                                      st.text(max_size=10)))] = draw(random_json)
        else:
            continue
        log.append(kind)
    return b, log


_MARK = re.compile(r'"(?:\\u2063|\u2063)deep:(\d+):(\w+)(?:\\u2063|\u2063)"')


def _encode(bundle: Any, ascii_only: bool) -> bytes:
    text = json.dumps(bundle, ensure_ascii=ascii_only)
    text = _MARK.sub(lambda m: _deep_text(int(m[1]), m[2]), text)
    return text.encode("utf-8", "surrogatepass")     # a lone surrogate gives bytes that are not UTF-8


def _too_deep(bundle: Any) -> bool:
    """Nested deeper than the service reads (a spliced deep structure, or a built one)."""
    return _MARK.search(json.dumps(bundle)) is not None or _nesting(bundle) > MAX_DEPTH


_SEQ = itertools.count(1)


def _identifier(bundle: Any) -> tuple[str, str] | None:
    ident = bundle.get("identifier") if isinstance(bundle, dict) else None
    if isinstance(ident, dict) and isinstance(ident.get("system"), str) and ident["system"].strip() \
            and isinstance(ident.get("value"), str) and ident["value"].strip():
        return ident["system"], ident["value"]
    return None


def _has_related(bundle: Any) -> bool:
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    claim = entries[0].get("resource") if isinstance(entries, list) and entries and isinstance(entries[0], dict) \
        else None
    return isinstance(claim, dict) and claim.get("resourceType") == "Claim" and isinstance(claim.get("related"), list)


def _intake(h, bundle: Any) -> tuple[str, str]:
    """What the intake (and engine) makes of a bundle: ("ok"|"refused"|"crash", detail)."""
    try:
        h.app.state.service.evaluate(bundle, h.clock())
    except BundleError as err:
        return "refused", str(err)[:200]
    except RecursionError:
        return "refused", "too deep"
    except Exception as exc:  # noqa: BLE001 - the service would answer this with a 500
        return "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
    return "ok", ""


def _check_pas_response(r, failures: Failures, where: str, reproduce: str) -> None:
    try:
        body = r.json()
        crs = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "ClaimResponse"]
        assert body["resourceType"] == "Bundle" and len(crs) == 1, "not a PAS response Bundle with one ClaimResponse"
        if "location" in r.headers:
            assert crs[0]["id"] == r.headers["location"].rsplit("/", 1)[1], "ClaimResponse.id is not the case"
    except Exception as exc:  # noqa: BLE001
        failures.add(where, f"{r.status_code} answer: {exc}", reproduce)


class BundleFuzz:
    """Posts mutated bundles to $submit (with fresh identifiers) and $inquire; judges every answer."""

    def __init__(self, h, who: str = "lakeshore"):
        self.h, self.who = h, who
        self.failures = Failures()
        self.tried = collections.Counter()
        self.statuses = collections.Counter()
        self.stored: set[tuple[str, str]] = set()

    def post(self, endpoint: str, body: bytes):
        return self.h.client.post(f"/fhir/Claim/${endpoint}", content=body,
                                  headers={**self.h.auth(self.who), **FHIR})

    def submit(self, bundle: Any, log: list[str], ascii_only: bool) -> None:
        if isinstance(bundle, dict) and isinstance(bundle.get("identifier"), dict) \
                and bundle["identifier"].get("value") == EXAMPLE_BUNDLES[log[0]]["identifier"]["value"]:
            bundle["identifier"]["value"] = f"fuzz-{next(_SEQ)}"       # a fresh request unless the mutation chose
        body = _encode(bundle, ascii_only)
        r = self.post("submit", body)
        self.tried["submit"] += 1
        self.statuses[("submit", r.status_code)] += 1
        where, reproduce = "POST /fhir/Claim/$submit", f"{log} {body[:700]!r}"
        problems = outcome_problems(r)
        if r.status_code >= 500:
            problems = [f"500: {self.crash(bundle, body)}"]
        for p in problems:
            self.failures.add(where, p, reproduce, body)
        if r.status_code >= 500:
            return
        ident = _identifier(bundle)
        try:
            parsed = orjson.loads(body)    # what the service reads (orjson: an integer past 64 bits is a float)
        except orjson.JSONDecodeError:
            parsed = None
        if parsed is None:
            verdict, detail = "refused", "not UTF-8 JSON that orjson reads"
        elif _has_nul(bundle) or _too_deep(bundle):
            verdict, detail = "refused", "a NUL character or nesting too deep"      # refused before the intake
        else:
            verdict, detail = _intake(self.h, parsed)
        if verdict == "crash":
            self.failures.add(where, f"the intake/engine raises {detail}", reproduce, body)
        if 200 <= r.status_code < 300:
            if verdict != "ok" or ident is None:
                self.failures.add(where, f"{r.status_code} for a bundle the intake refuses ({detail})", reproduce,
                                  body)
            _check_pas_response(r, self.failures, where, reproduce)
            if ident is not None:
                self.stored.add(ident)
        elif verdict == "ok" and ident is not None and ident not in self.stored and not _has_related(bundle) \
                and len(body) <= self.h.app.state.settings.max_body_bytes:
            self.failures.add(where, f"{r.status_code} for a bundle the intake accepts: {r.text[:300]}", reproduce,
                              body)

    def crash(self, bundle: Any, body: bytes) -> str:
        """The exception behind a 500 on $submit (the submission replayed into the service in-process, under
        an identifier of its own): its type and where it was raised, which tells one bug from another."""
        import traceback

        from priorauth.service.auth import Principal

        b = copy.deepcopy(bundle)
        if isinstance(b, dict) and isinstance(b.get("identifier"), dict):
            b["identifier"]["value"] = f"crash-{next(_SEQ)}"
        try:
            self.h.app.state.service.submit(b, body.decode("utf-8", "replace"),
                                            Principal(self.who, "provider", "org-lakeshore"))
        except Exception as exc:  # noqa: BLE001
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}: {str(exc)[:200]}"
        return "(not reproduced in-process)"

    def inquire(self, bundle: Any, log: list[str], ascii_only: bool) -> None:
        body = _encode(bundle, ascii_only)
        r = self.post("inquire", body)
        self.tried["inquire"] += 1
        self.statuses[("inquire", r.status_code)] += 1
        where, reproduce = "POST /fhir/Claim/$inquire", f"{log} {body[:700]!r}"
        for p in outcome_problems(r):
            self.failures.add(where, p, reproduce, body)
        if 200 <= r.status_code < 300:
            _check_pas_response(r, self.failures, where, reproduce)


def _fuzz_bundles(h, n: int) -> BundleFuzz:
    for name in NAMES:                                    # the originals exist, so inquiries can find them
        assert h.submit("lakeshore", EXAMPLE_BUNDLES[name]).status_code in (200, 201)
    fz = BundleFuzz(h)

    @_fuzz(n)
    @given(mutated_bundles(), st.booleans())
    def submit(mb, ascii_only):
        fz.submit(mb[0], mb[1], ascii_only)

    @_fuzz(max(n // 2, 20))
    @given(mutated_bundles(), st.booleans())
    def inquire(mb, ascii_only):
        fz.inquire(mb[0], mb[1], ascii_only)

    submit()
    inquire()
    return fz


@_sqlite_only()
def test_mutated_bundles_submit_and_inquire(h, request):
    fz = _fuzz_bundles(h, BUNDLE_EXAMPLES)
    codes = collections.Counter()
    for (ep, code), n in fz.statuses.items():
        codes[f"{ep} {code}"] += n
    _report(request, "hypothesis bundles", sum(fz.tried.values()), **{k: v for k, v in sorted(codes.items())})
    fz.failures.check()
    # the mutations were neither all fatal nor all harmless
    assert fz.statuses[("submit", 201)] >= 10 and fz.statuses[("submit", 400)] >= 50
    assert fz.statuses[("inquire", 200)] >= 5 and fz.statuses[("inquire", 400)] >= 5
    assert h.store.verify_audit()[0]


@_postgresql_only()
def test_mutated_bundles_smoke_on_postgresql(h, request):
    fz = _fuzz_bundles(h, 60)
    _report(request, "hypothesis bundles (postgresql)", sum(fz.tried.values()))
    fz.failures.check()
    assert h.store.verify_audit()[0]


@pytest.mark.parametrize("url", ["sqlite", "postgresql"], indirect=True)
def test_every_string_made_long_or_odd(h, request):
    """Each string value of an example set to a long (past every column's width), control-character or
    unicode string in turn: refused with an outcome naming it, or stored -- on PostgreSQL too."""
    fz = BundleFuzz(h)
    base = EXAMPLE_BUNDLES["eligible-flc-only.json"]
    seen_shapes = set()
    leaves = []
    for name in NAMES:
        for p in _paths(EXAMPLE_BUNDLES[name]):
            shape = tuple("#" if isinstance(x, int) else x for x in p)
            if isinstance(_get(EXAMPLE_BUNDLES[name], p), str) and shape not in seen_shapes:
                seen_shapes.add(shape)
                leaves.append((name, p))
    values = ["L" * 300, "S" * 70, "a\u0000b", "é\u202e💊"]
    for i, (name, p) in enumerate(leaves):
        value = values[i % len(values)] if h.store.dialect == "sqlite" else values[i % 2 if i % 3 else 2]
        b = copy.deepcopy(EXAMPLE_BUNDLES[name])
        _set(b, p, value)
        fz.submit(b, [name, f"{'.'.join(map(str, p))}={value[:8]!r}x{len(value)}"], False)
    b = copy.deepcopy(base)
    b["identifier"]["system"] = "http://" + "s" * 600
    fz.submit(b, ["eligible-flc-only.json", "identifier.system x607"], True)
    _report(request, f"long strings ({h.store.dialect})", sum(fz.tried.values()))
    fz.failures.check()
    assert h.store.verify_audit()[0]


# ---- raw bodies, media types, sizes ---------------------------------------------------------------------------
VALID_TEXT = (EXAMPLES / "needs-info-attested.json").read_bytes()


@_sqlite_only()
def test_raw_bodies_media_types_and_encodings(h, request):
    failures = Failures()
    tried = 0
    statuses = collections.Counter()

    def post(endpoint: str, body: bytes, ctype: str | None, expect: set[int] | None = None):
        nonlocal tried
        tried += 1
        headers = dict(h.auth("lakeshore"))
        if ctype is not None:
            headers["Content-Type"] = ctype
        r = h.client.post(f"/fhir/Claim/${endpoint}", content=body, headers=headers)
        statuses[r.status_code] += 1
        failures.response(r, f"POST {endpoint} ({ctype})", repr(body[:300]), expect, body)
        return r

    @_fuzz(150)
    @given(st.one_of(st.binary(max_size=400),
                     st.integers(0, len(VALID_TEXT) - 1).map(lambda k: VALID_TEXT[:k]),
                     st.tuples(st.integers(0, len(VALID_TEXT) - 1), st.binary(min_size=1, max_size=4)).map(
                         lambda kb: VALID_TEXT[:kb[0]] + kb[1] + VALID_TEXT[kb[0] + len(kb[1]):]),
                     st.sampled_from([b"{", b"[]", b"null", b"0", b'"Bundle"', b"{}", b'{"resourceType": null}',
                                      b'{"resourceType": "Bundle"}', b'{"resourceType": "Bundle", "entry": {}}',
                                      b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"\x00" * 10, b"[" * 5000,
                                      b'{"a":' * 3000 + b"1" + b"}" * 3000, b"NaN", b'{"resourceType": "Bundle"}' * 2,
                                      b"1" * 5000, b'{"resourceType": "Bundle", "x": 1e999999}',
                                      b'{"resourceType": "Bundle", "x": -Infinity}', b"\t\n \r"])),
           st.sampled_from(["submit", "inquire"]))
    def fuzz_raw(body, endpoint):
        post(endpoint, body, "application/fhir+json", expect=None)

    fuzz_raw()
    fresh = itertools.count(1)

    def valid(value: str | None = None) -> bytes:      # the example with an identifier of its own
        value = value or f"raw-{next(fresh)}"
        assert b'"PHO-PA-88412"' in VALID_TEXT
        return VALID_TEXT.decode().replace('"PHO-PA-88412"', json.dumps(value, ensure_ascii=False)).encode()

    # encodings: Latin-1 and UTF-16 are refused, UTF-8 with a BOM is read
    post("submit", valid("raw-latin-é").decode().encode("latin-1"), "application/fhir+json", {400})
    post("submit", valid().decode().encode("utf-16"), "application/fhir+json", {400})
    post("submit", valid().decode().encode("utf-32"), "application/fhir+json", {400})
    post("submit", b"\xef\xbb\xbf" + valid(), "application/fhir+json", {200, 201})
    post("submit", valid("raw-utf8-é💊"), "application/fhir+json", {200, 201})
    post("submit", b"", "application/fhir+json", {400})
    # media types: only FHIR JSON and JSON are read
    for ctype in (None, "", "text/plain", "application/xml", "application/fhir+xml", "multipart/form-data",
                  "application/x-www-form-urlencoded", "application/octet-stream", "text/json", "json",
                  "application/fhir+json-patch", "*/*"):
        for endpoint in ("submit", "inquire"):
            post(endpoint, valid(), ctype, {415})
    for ctype in ("application/json", "application/fhir+json; charset=utf-8", "APPLICATION/FHIR+JSON",
                  "application/json+fhir", "application/fhir+json;fhirVersion=4.0"):
        post("submit", valid(), ctype, {200, 201})
    _report(request, "raw bodies", tried, statuses=dict(sorted(statuses.items())))
    failures.check()


def _asgi_post(app, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, dict, bytes]:
    """One request straight to the ASGI app (for Content-Length values a client would not send)."""
    sent: list[dict] = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


@_sqlite_only()
def test_oversized_bodies_are_413(url, request):
    h = make_harness(url, max_body_bytes=4096)
    try:
        tried, failures = 0, Failures()
        token = h.auth("lakeshore")["Authorization"].encode()

        def judge(label, status, headers, body, expect):
            nonlocal tried
            tried += 1
            for p in response_problems("POST", "/fhir/Claim/$submit", status, headers, body):
                failures.add(label, p, "")
            if status not in expect:
                failures.add(label, f"{status}, expected {sorted(expect)}: {body[:200]!r}", "")

        big = VALID_TEXT + b" " * 10
        assert len(big) > 4096
        for endpoint in ("/fhir/Claim/$submit", "/fhir/Claim/$inquire", "/oauth/token",
                         "/cds-services/priorauth-order-sign", "/review/cases/x/decision", "/fhir/Subscription"):
            ctype = FHIR if endpoint.startswith("/fhir") else {"Content-Type": "application/json"}
            r = h.client.post(endpoint, content=big, headers={**h.auth("lakeshore"), **ctype})
            judge(f"{endpoint} with Content-Length {len(big)}", r.status_code, r.headers, r.content, {413})
            r = h.client.post(endpoint, content=iter([big[:3000], big[3000:]]),
                              headers={**h.auth("lakeshore"), **ctype})
            judge(f"{endpoint} chunked", r.status_code, r.headers, r.content, {413})
        base = [(b"authorization", token), (b"content-type", b"application/fhir+json"), (b"host", b"testserver")]
        for label, cl, chunks, expect in [
                ("a Content-Length that is not a number", b"lots", [b"{}"], {400}),
                ("a negative Content-Length", b"-5", [b"{}"], {400}),
                ("a Content-Length under the body (body too big)", b"10", [big[:2500], big[2500:]], {413, 400}),
                ("a Content-Length over the limit, small body", b"999999999999", [b"{}"], {413}),
                ("exactly the limit", b"4096", [b"{" + b" " * 4094 + b"}"], {400})]:
            status, headers, body = _asgi_post(h.app, "/fhir/Claim/$submit", base + [(b"content-length", cl)], chunks)
            judge(label, status, headers, body, expect)
        # at or under the limit a body is read
        small = json.dumps(EXAMPLE_BUNDLES["continuation-second-infusion.json"], separators=(",", ":")).encode()
        if len(small) <= 4096:
            r = h.client.post("/fhir/Claim/$submit", content=small, headers={**h.auth("lakeshore"), **FHIR})
            judge("a bundle under the limit", r.status_code, r.headers, r.content, {200, 201})
        _report(request, "body limits", tried)
        failures.check()
    finally:
        h.store.close()


# ---- tokens and roles -----------------------------------------------------------------------------------------
SECURED = [("POST", "/fhir/Claim/$submit"), ("POST", "/fhir/Claim/$inquire"), ("GET", "/fhir/ClaimResponse/x"),
           ("POST", "/fhir/Questionnaire/$questionnaire-package"), ("POST", "/cds-services/priorauth-order-sign"),
           ("GET", "/review/queue"), ("GET", "/review/cases/x"), ("POST", "/review/cases/x/decision"),
           ("POST", "/review/cases/x/extension"), ("POST", "/review/cases/x/appeal"),
           ("GET", "/review/report?start=2027-01-01&end=2027-01-31"), ("POST", "/admin/clients"),
           ("GET", "/admin/audit/verify"), ("POST", "/fhir/Subscription"), ("GET", "/fhir/Subscription/x")]
REVIEWER_ONLY = [("GET", "/review/queue"), ("GET", "/review/cases/x"), ("POST", "/review/cases/x/decision"),
                 ("POST", "/review/cases/x/extension"), ("GET", "/review/report?start=2027-01-01&end=2027-01-31")]
ADMIN_ONLY = [("POST", "/admin/clients"), ("GET", "/admin/audit/verify")]
PROVIDER_ONLY = [("POST", "/fhir/Claim/$submit"), ("POST", "/fhir/Claim/$inquire"),
                 ("POST", "/fhir/Questionnaire/$questionnaire-package"), ("POST", "/cds-services/priorauth-order-sign")]


@_sqlite_only()
def test_bad_tokens_are_401_and_wrong_roles_403(h, request):
    failures = Failures()
    tried = 0
    case_id = _seed_case(h)
    body = json.dumps(EXAMPLE_BUNDLES["needs-info-attested.json"])

    def call(method, path, auth, expect, label):
        nonlocal tried
        tried += 1
        headers = {"Content-Type": "application/json" if "cds" in path or "/review" in path or "/admin" in path
                   else "application/fhir+json"}
        if auth is not None:
            headers["Authorization"] = auth
        path = path.replace("/x", f"/{case_id}")
        r = h.client.request(method, path, content=body if method == "POST" else None, headers=headers)
        failures.response(r, f"{method} {path} [{label}]", (auth or "(none)")[:200], expect)
        return r

    for method, path in SECURED:
        call(method, path, None, {401}, "no token")
        for label, value in bad_tokens(h).items():
            call(method, path, value, {401}, label)
    for method, path in REVIEWER_ONLY + ADMIN_ONLY:
        call(method, path, h.auth("lakeshore")["Authorization"], {403}, "provider")
    for method, path in ADMIN_ONLY:
        call(method, path, h.auth("dr-reviewer")["Authorization"], {403}, "reviewer")
    for method, path in PROVIDER_ONLY:
        call(method, path, h.auth("dr-reviewer")["Authorization"], {403}, "reviewer")
    # separation of duties: an admin neither submits nor decides (it reads the queue and administers)
    for method, path in PROVIDER_ONLY + [("POST", "/review/cases/x/decision"), ("POST", "/review/cases/x/extension"),
                                         ("POST", "/review/cases/x/appeal"), ("POST", "/fhir/Subscription")]:
        call(method, path, h.auth("ops-admin")["Authorization"], {403}, "admin")
    # a token stays good until it expires (by the service's clock), then is refused
    call("GET", "/review/queue", h.auth("dr-reviewer")["Authorization"], {200}, "reviewer")
    h.clock.advance(days=11)
    call("GET", "/review/queue", h.auth("dr-reviewer")["Authorization"], {401}, "reviewer, expired")
    h.clock.advance(days=-11)

    @_fuzz(200)
    @given(garbage_auth, st.sampled_from(SECURED))
    def fuzz(auth, route):
        call(route[0], route[1], auth, {401}, "garbage")

    fuzz()
    _report(request, "tokens and roles", tried)
    failures.check()


@_sqlite_only()
def test_token_endpoint_answers_rfc6749_errors(h, request):
    failures = Failures()
    tried = 0
    secret = h.secrets["lakeshore"]

    def token(body: bytes, ctype: str | None, auth: str | None, expect: set[int]):
        nonlocal tried
        tried += 1
        headers = {}
        if ctype is not None:
            headers["Content-Type"] = ctype
        if auth is not None:
            headers["Authorization"] = auth
        r = h.client.post("/oauth/token", content=body, headers=headers)
        failures.response(r, "POST /oauth/token", f"{ctype} {auth} {body[:200]!r}", expect)
        if r.status_code == 200:
            assert r.json()["token_type"] == "Bearer" and r.headers["cache-control"] == "no-store"
        return r

    form = "application/x-www-form-urlencoded"
    good = f"grant_type=client_credentials&client_id=lakeshore&client_secret={secret}".encode()
    token(good, form, None, {200})
    basic = "Basic " + base64.b64encode(f"lakeshore:{secret}".encode()).decode()
    token(b"grant_type=client_credentials", form, basic, {200})
    for body, ctype, auth in [
            (good, "application/json", None),
            (json.dumps({"grant_type": "client_credentials"}).encode(), "application/json", None),
            (good, None, None), (b"", form, None), (b"grant_type=password&username=a&password=b", form, None),
            (b"grant_type=client_credentials&grant_type=client_credentials", form, None),
            (b"grant_type=client_credentials&client_id=lakeshore&client_secret=wrong", form, None),
            (b"grant_type=client_credentials&client_id=nobody&client_secret=x", form, None),
            (b"grant_type=client_credentials", form, None), (b"grant_type=client_credentials", form, "Basic !!!"),
            (b"grant_type=client_credentials", form, "Basic " + base64.b64encode(b"no-colon").decode()),
            (b"grant_type=client_credentials", form, "Basic " + base64.b64encode(b"\xff\xfe:x").decode()),
            (b"grant_type=client_credentials", form, "Bearer " + h.tokens["lakeshore"]),
            (b"grant_type=client_credentials&client_id=other", form, basic),
            (b"\xff\xfe\x00", form, None), (b"%%%&&&===", form, None), (b"a=" + b"b" * 100000, form, None),
            (b"&".join(b"k%d=v" % i for i in range(100)), form, None)]:
        token(body, ctype, auth, {400, 401, 413})

    @_fuzz(150)
    @given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                     st.dictionaries(st.sampled_from(["grant_type", "client_id", "client_secret", "scope", "x"]),
                                     st.text(max_size=30)).map(
                         lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode("utf-8", "surrogatepass"))),
           st.one_of(st.none(), st.just(form), st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                                       max_size=40)),
           st.one_of(st.none(), garbage_auth))
    def fuzz(body, ctype, auth):
        token(body, ctype, auth, {200, 400, 401, 413} if b"lakeshore" in body else {400, 401, 413})

    fuzz()
    _report(request, "token endpoint", tried)
    failures.check()


@_sqlite_only()
def test_unknown_routes_and_methods_are_outcomes(h, request):
    failures = Failures()
    calls = [("GET", "/nope"), ("GET", "/fhir/Claim"), ("GET", "/fhir/Claim/$submit"), ("PUT", "/fhir/Claim/$submit"),
             ("DELETE", "/review/queue"), ("PATCH", "/oauth/token"), ("GET", "/oauth/token"),
             ("GET", "/fhir/ClaimResponse/" + "a" * 65), ("GET", "/fhir/ClaimResponse/%00"),
             ("GET", "/review/cases/..%2F..%2Fetc"), ("GET", "/review/queue?limit=0"),
             ("GET", "/review/queue?limit=abc"), ("GET", "/review/queue?due_before=2027-01-01T00:00:00"),
             ("GET", "/review/queue?status=nonsense"), ("GET", "/review/report?start=2027-02-30&end=2027-03-01"),
             ("GET", "/review/report?start=2027-03-01&end=2027-01-01"), ("GET", "/review/report"),
             ("GET", "/review/queue?due_before=" + "9" * 50), ("GET", "/fhir/Subscription/%ff")]
    for method, path in calls:
        r = h.client.request(method, path, headers=h.auth("ops-admin"))
        for p in outcome_problems(r):
            failures.add(f"{method} {path}", p, "")
        if not 400 <= r.status_code < 500:
            failures.add(f"{method} {path}", f"{r.status_code}, expected a 4xx", "")
    _report(request, "routes and methods", len(calls))
    failures.check()


# ---- extreme dates ---------------------------------------------------------------------------------------------
EXTREME_INSTANTS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z",
                    "9999-12-31T23:59:59.999999Z", "0001-01-01", "9999-12-31", "10000-01-01T00:00:00Z",
                    "2027-02-29T00:00:00Z", "2027-01-12T24:00:00Z", "2027-01-12T09:00:00+24:00"]
EXTREME_DAYS = ["0001-01-01", "9999-12-31", "0000-12-31", "10000-01-01", "2027-02-29"]


@pytest.mark.parametrize("url", ["sqlite", "postgresql"], indirect=True)
def test_extreme_dates_are_answered_with_a_4xx_naming_the_field_or_read(h, request):
    """Years 1 and 9999 with offsets that carry them out of range, days that do not exist, in every date the
    service takes: the request Bundle's dates, queue filters, report ranges and Subscription.end. No 500."""
    import importlib

    subs = importlib.import_module("test_service_subscriptions")
    failures = Failures()
    tried = 0
    fz = BundleFuzz(h)
    base = EXAMPLE_BUNDLES["eligible-flc-only.json"]
    dated = [p for p in _paths(base) if isinstance(_get(base, p), str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", _get(base, p))]
    for i, p in enumerate(dated):
        value = EXTREME_INSTANTS[i % len(EXTREME_INSTANTS)]
        b = copy.deepcopy(base)
        _set(b, p, value)
        fz.submit(b, ["eligible-flc-only.json", f"{'.'.join(map(str, p))}={value}"], True)
    tried += sum(fz.tried.values())
    calls = [f"/review/queue?due_before={v.replace('+', '%2B')}" for v in EXTREME_INSTANTS]
    calls += [f"/review/report?start={a}&end={b}" for a in EXTREME_DAYS for b in EXTREME_DAYS]
    for path in calls:
        r = h.client.get(path, headers=h.auth("dr-reviewer"))
        tried += 1
        for problem in response_problems("GET", path.split("?")[0], r.status_code, r.headers, r.content):
            failures.add(f"GET {path}", problem, "")
    for v in EXTREME_INSTANTS:
        body = json.dumps(subs.subscription("https://subscriber.example/hook", end=v))
        r = h.client.post("/fhir/Subscription", content=body, headers={**h.auth("lakeshore"), **FHIR})
        tried += 1
        for problem in response_problems("POST", "/fhir/Subscription", r.status_code, r.headers, r.content):
            failures.add(f"POST /fhir/Subscription end={v}", problem, "")
        if 400 <= r.status_code < 500 and "Subscription.end" not in r.text:
            failures.add(f"POST /fhir/Subscription end={v}", f"{r.status_code} does not name Subscription.end", r.text)
    _report(request, f"extreme dates ({h.store.dialect})", tried)
    fz.failures.check()
    failures.check()


@pytest.mark.parametrize("url", ["sqlite", "postgresql"], indirect=True)
def test_deep_and_long_texts_are_read_or_refused_never_a_500(h, request):
    """Texts the way a hostile or careless sender writes them: a problem list of 200 KB of negated and uncertain
    CNS mentions, one run-on sentence of 100 KB, a text of 5,000 nested parentheses, and the same in a
    Condition's code.text, a note and an Observation's note: each request is answered, none with a 500."""
    fz = BundleFuzz(h)
    base = EXAMPLE_BUNDLES["eligible-flc-only.json"]
    texts = {
        "negated 200 KB": " ".join(f"No seizures, no stroke and no TIA (visit {i}); possible TIA {i}?"
                                   for i in range(3500)),
        "run-on 100 KB": " ".join("no seizures and the patient with remote stroke on day" for _ in range(1900)),
        "nested": "(" * 5000 + "seizure" + ")" * 5000,
    }
    conditions = [p for p in _paths(base) if p[-1] == "text" and "Condition" in json.dumps(_get(base, p[:3]))[:200]]
    targets = conditions[:2] or [p for p in _paths(base) if p[-1] == "text"][:2]
    for label, value in texts.items():
        for p in targets:
            b = copy.deepcopy(base)
            _set(b, p, value)
            fz.submit(b, ["eligible-flc-only.json", f"{'.'.join(map(str, p))}={label}"], True)
    _report(request, f"deep and long texts ({h.store.dialect})", sum(fz.tried.values()))
    fz.failures.check()


# ---- what the fuzzing found, kept as regressions --------------------------------------------------------------
def _claim_edit(name: str, edit) -> dict:
    b = copy.deepcopy(EXAMPLE_BUNDLES[name])
    edit(b, b["entry"][0]["resource"])
    return b


def _coverage(b: dict) -> dict:
    return next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Coverage")


FOUND = {
    # each was a 500; the last five after the case had been stored (its response could then never be built)
    "NUL in Bundle.identifier (PostgreSQL)": (
        lambda b, c: b["identifier"].update(value="a\u0000b"), "Bundle.identifier.value"),
    "Bundle.identifier.value of 300 characters (PostgreSQL)": (
        lambda b, c: b["identifier"].update(value="v" * 300), "Bundle.identifier.value"),
    "Bundle.identifier.system of 600 characters (PostgreSQL)": (
        lambda b, c: b["identifier"].update(system="http://" + "s" * 600), "Bundle.identifier.system"),
    "Coverage.subscriberId of 300 characters (PostgreSQL)": (
        lambda b, c: _coverage(b).update(subscriberId="M" * 300), "subscriberId"),
    "nesting deeper than orjson writes (254 levels)": (
        lambda b, c: c.update(extension=[{"url": "http://example.org/x", "extension": _deep(99, "list")}]),
        "Bundle.entry[0].resource.extension"),
    "Claim.insurer missing": (lambda b, c: c.pop("insurer"), "Bundle.entry[0].resource.insurer"),
    "Claim.provider.reference not a string": (
        lambda b, c: c["provider"].update(reference={"x": 1}), "Bundle.entry[0].resource.provider.reference"),
    "Claim.item.sequence missing": (lambda b, c: c["item"][0].pop("sequence"),
                                    "Bundle.entry[0].resource.item[0].sequence"),
    "Claim.item sequences repeated": (lambda b, c: c["item"].append(copy.deepcopy(c["item"][0])),
                                      "Bundle.entry[0].resource.item[1].sequence"),
    "Claim.item.extension a number": (lambda b, c: c["item"][0].update(extension=5), "Bundle.entry[0].resource"),
}


@pytest.mark.parametrize("url", ["sqlite", "postgresql"], indirect=True)
def test_what_fuzzing_found_is_refused_with_an_outcome(h):
    problems = []
    for i, (label, (edit, expression)) in enumerate(FOUND.items()):
        b = _claim_edit("needs-info-attested.json", edit)
        if b["identifier"]["value"] == EXAMPLE_BUNDLES["needs-info-attested.json"]["identifier"]["value"]:
            b["identifier"]["value"] = f"found-{i}"
        r = h.submit("lakeshore", b)
        text = r.text[:400]
        if r.status_code != 400 or outcome_problems(r) or expression not in json.dumps(r.json()):
            problems.append(f"{label}: {r.status_code} {text}")
    for body, label in [(b"1" * 5000, "a number of 5000 digits"), (b'{"a": ' + b"7" * 4500 + b"}", "in an object")]:
        r = h.client.post("/fhir/Claim/$submit", content=body, headers={**h.auth("lakeshore"), **FHIR})
        if r.status_code != 400 or outcome_problems(r):
            problems.append(f"{label}: {r.status_code} {r.text[:200]}")
    # a token request whose client_id holds NUL (PostgreSQL could not look it up)
    r = h.client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "a\u0000",
                                            "client_secret": "x"})
    if r.status_code != 400 or r.json().get("error") != "invalid_request":
        problems.append(f"NUL in client_id: {r.status_code} {r.text[:200]}")
    # a reviewer's decision whose reason holds NUL (PostgreSQL refused the row)
    case_id = _seed_case(h)
    r = h.decide("dr-reviewer", case_id, "pend", reason="needs\u0000more")
    if r.status_code >= 500 or outcome_problems(r):
        problems.append(f"NUL in a decision reason: {r.status_code} {r.text[:200]}")
    # a JSON body that does not parse, on a route with a JSON model: 400 naming no element (was 422 naming
    # the character position as if it were one)
    r = h.client.post(f"/review/cases/{case_id}/appeal", content=b"{", headers={
        **h.auth("dr-reviewer"), "Content-Type": "application/json"})
    if r.status_code != 400 or "expression" in r.json()["issue"][0]:
        problems.append(f"a JSON syntax error: {r.status_code} {r.text[:200]}")
    assert not problems, "\n".join(problems)
    assert len(h.store.queue(limit=100)) == 1            # only the seeded case was stored
    assert h.store.verify_audit()[0]


@_sqlite_only()
def test_a_zero_unit_is_refused_not_a_500(h):
    b = copy.deepcopy(EXAMPLE_BUNDLES["eligible-flc-only.json"])
    obs = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Observation"
               and "valueQuantity" in e["resource"])
    obs["valueQuantity"]["unit"] = "0"
    obs["valueQuantity"].pop("code", None)
    r = h.submit("lakeshore", b)
    assert r.status_code == 400 and not outcome_problems(r), r.text[:300]


@_sqlite_only()
def test_a_relative_reference_two_servers_share_is_answered(h):
    b = copy.deepcopy(EXAMPLE_BUNDLES["continuation-second-infusion.json"])
    patient = next(e for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
    twin = copy.deepcopy(patient)
    twin["fullUrl"] = f"http://other.example.org/fhir/Patient/{patient['resource']['id']}"
    b["entry"].append(twin)
    r = h.submit("lakeshore", b)
    assert r.status_code == 201 and not outcome_problems(r), r.text[:300]
