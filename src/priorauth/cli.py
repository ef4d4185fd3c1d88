"""The ``priorauth`` command: evaluate case files, show and check policies."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from priorauth import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="priorauth: payer-side prior authorization. It recommends; clinicians decide.")
policy_app = typer.Typer(no_args_is_help=True, help="Show or check a clinical policy file.")
app.add_typer(policy_app, name="policy")
client_app = typer.Typer(no_args_is_help=True, help="Register and list the service's OAuth2 clients.")
app.add_typer(client_app, name="client")
user_app = typer.Typer(no_args_is_help=True, help="The people who sign in to the reviewer console.")
app.add_typer(user_app, name="user")
audit_app = typer.Typer(no_args_is_help=True, help="The service's audit trail.")
app.add_typer(audit_app, name="audit")
terminology_app = typer.Typer(no_args_is_help=True, help="Look product names up in the drug vocabulary.")
app.add_typer(terminology_app, name="terminology")

_DB_HELP = "The store: a SQLAlchemy URL (postgresql+psycopg://...); default: SQLite in the data folder."
_DATA_HELP = "The data folder (default: $PRIORAUTH_DATA_DIR or ~/.local/share/priorauth)."

EXIT_INPUT = 2


def _err(msg: str) -> None:
    # plain text, one problem a line, never wrapped: scripts read these lines
    sys.stderr.write(msg.rstrip("\n") + "\n")


def _load_policy(path: Optional[Path]):
    from priorauth.policies import PolicyError, default_policy, load_policy

    try:
        return load_policy(path) if path else default_policy()
    except PolicyError as err:
        _err(f"{err.origin}: the policy has {len(err.problems)} problem(s)\n" + "\n".join(f"  {p}" for p in err.problems))
        raise typer.Exit(EXIT_INPUT) from None


def _report_intake_error(err) -> None:
    """The problems, one a line; for a FHIR bundle also the OperationOutcome."""
    _err(err.report())
    outcome = getattr(err, "operation_outcome", None)
    if outcome is not None:
        import json

        _err(json.dumps(outcome(), indent=2))


def _pas_response(path: Path, case, determination) -> dict:
    """The PAS response Bundle for a request file: pended (A4) for the committee, with the recommendation."""
    import json
    from datetime import datetime, timezone

    from priorauth.fhir.claim_response import response_bundle

    request = None
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        request = data if isinstance(data, dict) and data.get("resourceType") == "Bundle" else None
    created = datetime.now(timezone.utc).replace(microsecond=0)
    if request is not None:
        return response_bundle(determination, request=request, created=created)
    return response_bundle(determination, case=case, created=created)


def _load_config(path: Optional[Path]):
    from priorauth.config import PayerConfig, load_config
    from priorauth.intake import IntakeError

    try:
        return load_config(path) if path else PayerConfig()
    except IntakeError as err:
        _err(err.report())
        raise typer.Exit(EXIT_INPUT) from None


def _parse_date(value: Optional[str], name: str) -> Optional[date]:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        _err(f"{name}: {value!r} is not a date (YYYY-MM-DD)")
        raise typer.Exit(EXIT_INPUT) from None


CASE_SUFFIXES = (".yaml", ".yml", ".json")


def _expand(paths: List[Path]) -> List[Path]:
    """Files as given; a folder stands for its case files (YAML and JSON), in name order."""
    out: List[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in CASE_SUFFIXES and q.is_file()))
        else:
            out.append(p)
    return out


@app.command()
def evaluate(
    files: List[Path] = typer.Argument(..., help="Case files (YAML or JSON), or folders of them."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON contract instead of the report."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Evaluation date (default: the date received)."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="A policy file (default: the bundled CP.PHAR.769)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Payer configuration (YAML)."),
    strict: bool = typer.Option(False, "--strict", help="Validate PAS bundles against the FHIR models first."),
    pas_response: bool = typer.Option(False, "--pas-response",
                                      help="Print the PAS response Bundle (ClaimResponse, pended for review)."),
) -> None:
    """Evaluate prior authorization requests (case files or PAS request bundles) against the policy."""
    from priorauth.determination import determine
    from priorauth.intake import IntakeError
    from priorauth.intake.requests import load_request
    from priorauth.output import dumps, render_report, to_json

    when = _parse_date(as_of, "--as-of")
    pol = _load_policy(policy)
    cfg = _load_config(config)
    results, failed = [], False
    console = Console()
    paths = _expand(files)
    for f in paths:
        try:      # routing may refuse a request the intake read (the product in scope, no line of business)
            case = load_request(f, cfg, strict=strict)
            d = determine(case, pol, cfg, as_of=when)
        except IntakeError as err:
            _report_intake_error(err)
            failed = True
            continue
        if when is None and case.source is not None and case.source.path == "Bundle":
            # the service evaluates as of its own receipt; a file has only the date its sender wrote
            _err(f"{f}: evaluated as of {d.as_of}, the date the bundle gives "
                 f"({case.request.source.at('received').path}); --as-of YYYY-MM-DD sets the plan's date of receipt")
        if pas_response:
            results.append(_pas_response(f, case, d))
        elif json_out:
            results.append(to_json(d))
        else:
            render_report(d, console)
            eff = d.node("scope.effective_date")
            if eff is not None and eff.status == "not_met" and eff.evidence and eff.evidence[0].value is None:
                console.print("[bold]To evaluate this request[/], give the policy's effective date (the FDA approval "
                              "date): put [bold]policy_effective: YYYY-MM-DD[/] in a payer configuration file and run "
                              f"[bold]priorauth evaluate {escape(str(f))} --config payer.yaml[/], or add "
                              "[bold]context: {policy_effective: YYYY-MM-DD}[/] to the case file.\n")
    if (json_out or pas_response) and results:
        sys.stdout.write(dumps(results if len(paths) > 1 else results[0]))
    if failed:
        raise typer.Exit(EXIT_INPUT)


@app.command()
def convert(
    file: Path = typer.Argument(..., help="A case file."),
    to: str = typer.Option("pas-bundle", "--to", help="Target format: pas-bundle."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here instead of standard output."),
) -> None:
    """Convert a case file to a PAS request Bundle (FHIR R4 JSON)."""
    import json

    from priorauth.intake import IntakeError
    from priorauth.intake.casefile import load_case_file

    if to != "pas-bundle":
        _err(f"--to: {to!r} is not a format priorauth writes (pas-bundle)")
        raise typer.Exit(EXIT_INPUT)
    try:
        case = load_case_file(file)
    except IntakeError as err:
        _report_intake_error(err)
        raise typer.Exit(EXIT_INPUT) from None
    from priorauth.fhir.pas_build import bundle_from_case

    text = json.dumps(bundle_from_case(case), indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


@app.command()
def questionnaire(
    file: Optional[Path] = typer.Argument(None, help="A request to pre-fill the answers from (optional)."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="A policy file (default: the bundled CP.PHAR.769)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Payer configuration (YAML)."),
) -> None:
    """Print the DTR $questionnaire-package output (Parameters with the Questionnaire, pre-filled when a request is given)."""
    import json

    from priorauth.intake import IntakeError
    from priorauth.intake.requests import load_request

    pol = _load_policy(policy)
    case = None
    if file is not None:
        try:
            case = load_request(file, _load_config(config))
        except IntakeError as err:
            _report_intake_error(err)
            raise typer.Exit(EXIT_INPUT) from None
    from priorauth.fhir.dtr import questionnaire_package

    sys.stdout.write(json.dumps(questionnaire_package(pol, case), indent=2, ensure_ascii=False) + "\n")


@policy_app.command("show")
def policy_show(path: Optional[Path] = typer.Argument(None, help="A policy file (default: the bundled one).")) -> None:
    """Print the criteria tree."""
    from priorauth.output import render_policy_tree

    render_policy_tree(_load_policy(path), Console())


@policy_app.command("check")
def policy_check(path: Path = typer.Argument(..., help="The policy file to check.")) -> None:
    """Validate a policy file; every problem is listed by its path."""
    from priorauth.policies import check_policy_file

    problems = check_policy_file(path)
    if problems:
        _err(f"{path}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))
        raise typer.Exit(EXIT_INPUT)
    Console().print(f"{path}: OK")


@terminology_app.command("lookup")
def terminology_lookup(
    names: List[str] = typer.Argument(..., help="Product names, codes or regimen acronyms, as a record writes them."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (an array, one object a name)."),
) -> None:
    """How each name resolves (ingredients, classes, target, kind, the rule used) or why it does not.
    Exit code 0 when every name resolves to a drug or a regimen, 1 when any does not."""
    import json

    from priorauth.terminology import load_terminology
    from priorauth.terminology.lookup import resolution_data, resolution_lines

    term = load_terminology()
    found = [term.resolve(name) for name in names]
    if json_out:
        sys.stdout.write(json.dumps([resolution_data(term, r) for r in found], indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("\n".join("\n".join(resolution_lines(term, r)) for r in found) + "\n")
    if not all(r.recognized for r in found):
        raise typer.Exit(1)


@policy_app.command("schema")
def policy_schema() -> None:
    """Print the JSON Schema of a policy file."""
    import json

    from priorauth.policies import PolicyDocument

    sys.stdout.write(json.dumps(PolicyDocument.model_json_schema(), indent=2) + "\n")


def _service_env(database_url: Optional[str], data_dir: Optional[Path], config: Optional[Path],
                 policy: Optional[Path], base_url: Optional[str] = None) -> dict:
    import os

    env = {}
    for key, value in (("DATABASE_URL", database_url), ("DATA_DIR", data_dir), ("CONFIG", config),
                       ("POLICY", policy), ("BASE_URL", base_url)):
        if value is not None:
            env[f"PRIORAUTH_{key}"] = str(Path(value).resolve()) if isinstance(value, Path) else value
    os.environ.update(env)
    return env


def _settings(database_url: Optional[str], data_dir: Optional[Path], config: Optional[Path], policy: Optional[Path],
              base_url: Optional[str] = None, *, problem: str):
    """The service's settings from these options and the ``PRIORAUTH_*`` environment; a bad one exits, named."""
    from priorauth.service.settings import settings_from_env

    _service_env(database_url, data_dir, config, policy, base_url)
    try:
        return settings_from_env()
    except Exception as exc:  # noqa: BLE001 - settings problems are reported by name
        _err(f"{problem}: {exc}")
        raise typer.Exit(EXIT_INPUT) from None


def _open_store(database_url: Optional[str], data_dir: Optional[Path]):
    from priorauth.service.settings import data_dir as resolve_dir
    from priorauth.store import Store, default_url

    import os

    url = database_url or os.environ.get("PRIORAUTH_DATABASE_URL") or default_url(resolve_dir(data_dir))
    try:
        store = Store(url)
        store.migrate()
    except Exception as exc:  # noqa: BLE001 - any failure to open the database is reported, not raised
        _err(f"the store at {_safe_url(url)} cannot be opened: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        raise typer.Exit(1) from None
    return store


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "(the given URL)"


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help=_DB_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
    config: Optional[Path] = typer.Option(None, "--config", help="Payer configuration (YAML)."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="A policy file (default: the bundled CP.PHAR.769)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes (share one database; each new connection goes to the least busy)."),
    seed: bool = typer.Option(False, "--seed/--no-seed", help="Submit the bundled example requests into an empty "
                                                               "store as demo data (organization 'examples', kept "
                                                               "out of the CMS-0057-F report)."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="The service's public address (such as https://pa.plan.example), for absolute "
                                 "references in subscription notifications."),
) -> None:
    """Run the authorization service (FastAPI on uvicorn); OpenAPI docs at /docs."""
    import uvicorn

    from priorauth.service.core import AuthorizationService
    from priorauth.service.settings import examples_dir

    settings = _settings(database_url, data_dir, config, policy, base_url, problem="cannot start")
    store = _open_store(settings.database_url, None)
    examples = examples_dir()
    if seed and examples is not None:
        svc = AuthorizationService(settings, store, _load_policy(policy))
        n = svc.seed(examples)
        if n:
            typer.echo(f"seeded {n} example requests from {examples}")
    if not store.clients():
        typer.echo("no clients yet: register them with `priorauth client add` (see the README)")
    store.close()
    typer.echo(f"priorauth {__version__} on http://{host}:{port} (store: {_safe_url(settings.database_url)}); "
               f"API docs at /docs")
    from priorauth.service import workers as supervisor

    if workers > 1 and supervisor.supported():
        supervisor.serve_workers(host, port, workers)
    else:     # one worker, or where descriptors cannot be passed: uvicorn's own workers on a shared socket
        uvicorn.run(supervisor.APP, factory=True, host=host, port=port, workers=workers, log_level="info",
                    access_log=False)


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="The user name they sign in with (lower-case letters, digits, . _ -)."),
    role: str = typer.Option(..., "--role", help="reviewer or medical-director."),
    npi: str = typer.Option(..., "--npi", help="Their NPI: decisions are recorded under it."),
    specialty: str = typer.Option(..., "--specialty", help="Their specialty, NUCC code or words (a denial needs a "
                                                           "clinician: physician, pharmacist, NP, PA)."),
    credentials: str = typer.Option(..., "--credentials", help="As letters print them: PharmD, MD, RN."),
    display_name: Optional[str] = typer.Option(None, "--display-name", help="Their name as pages and letters show it."),
    password_file: Optional[Path] = typer.Option(None, "--password-file",
                                                 help="Read the password from this file (default: "
                                                      "$PRIORAUTH_USER_PASSWORD, else asked for)."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help=_DB_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
) -> None:
    """Register a person who reviews in the console (their password is stored as an argon2 hash)."""
    import os

    from priorauth.store import Actor

    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            _err(f"--password-file {password_file}: cannot be read ({type(exc).__name__})")
            raise typer.Exit(EXIT_INPUT) from None
    else:
        password = os.environ.get("PRIORAUTH_USER_PASSWORD") or typer.prompt(
            "Password", hide_input=True, confirmation_prompt=True)
    store = _open_store(database_url, data_dir)
    try:
        store.add_user(name, password, role=role, npi=npi, specialty=specialty, credentials=credentials,
                       display_name=display_name, actor=Actor("cli:user-add", "admin"))
    except ValueError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_INPUT) from None
    finally:
        store.close()
    typer.echo(f"user {name} registered ({role}, NPI {npi}); they sign in at /console/login")


@client_app.command("add")
def client_add(
    client_id: str = typer.Argument(..., help="The client's id."),
    role: str = typer.Option(..., "--role", help="provider, reviewer or admin."),
    organization: Optional[str] = typer.Option(None, "--organization", help="A provider's organization."),
    npi: Optional[str] = typer.Option(None, "--npi", help="A reviewer's NPI (required for a reviewer)."),
    specialty: Optional[str] = typer.Option(None, "--specialty",
                                            help="A reviewer's specialty: NUCC code or words (required for a reviewer)."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help=_DB_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
) -> None:
    """Register a client; prints its secret once (only a hash is stored). A reviewer's decisions are recorded
    under the NPI and specialty it is registered with."""
    from priorauth.store import Actor

    store = _open_store(database_url, data_dir)
    try:
        secret = store.add_client(client_id, role, organization, Actor("cli:client-add", "admin"), npi=npi,
                                  specialty=specialty)
    except ValueError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_INPUT) from None
    finally:
        store.close()
    typer.echo(secret)


@client_app.command("list")
def client_list(
    database_url: Optional[str] = typer.Option(None, "--database-url", help=_DB_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
) -> None:
    """List the registered clients (id, role, organization)."""
    store = _open_store(database_url, data_dir)
    for c in store.clients():
        typer.echo(f"{c.client_id}\t{c.role}\t{c.organization or '-'}{chr(9) + 'disabled' if c.disabled else ''}")
    store.close()


@audit_app.command("anchor")
def audit_anchor(
    database_url: Optional[str] = typer.Option(None, "--database-url", help=_DB_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
) -> None:
    """Print the audit chain's head (seq, hash, time) as JSON, to keep outside this database: `audit verify
    --anchor FILE` later proves the chain still holds it (a truncated tail is found)."""
    import json

    store = _open_store(database_url, data_dir)
    try:
        typer.echo(json.dumps(store.anchor()))
    finally:
        store.close()


@audit_app.command("verify")
def audit_verify(
    anchor: List[Path] = typer.Option([], "--anchor", help="An anchor `audit anchor` printed (JSON file); repeatable."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help=_DB_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
) -> None:
    """Walk the hash-chained audit log, and check every stored submission, determination and decision against
    the hash its audit entry recorded, and each --anchor against the chain; exit 1 at the first entry that does
    not verify, when a record does not match or when an anchored entry is gone or changed."""
    import json

    anchors = []
    for path in anchor:
        try:
            anchors.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as exc:
            _err(f"--anchor {path}: cannot be read as JSON ({type(exc).__name__})")
            raise typer.Exit(EXIT_INPUT) from None
    store = _open_store(database_url, data_dir)
    try:
        ok, checked, bad = store.verify_audit()
        counts, problems = store.verify_records() if ok else ({}, [])
        for path, data in anchors:
            wrong = store.check_anchor(data if isinstance(data, dict) else {})
            if wrong:
                problems.append(f"anchor {path}: {wrong}")
    finally:
        store.close()
    if not ok:
        _err(f"audit chain broken at entry {bad} ({checked} entries verified before it)")
        raise typer.Exit(1)
    if problems:
        for problem in problems:
            _err(problem)
        _err(f"audit chain verified ({checked} entries), but stored records do not match what was recorded")
        raise typer.Exit(1)
    typer.echo(f"audit chain verified: {checked} entries; {counts['cases']} cases (status and outcome against "
               f"their events), {counts['submissions']} submissions, {counts['determinations']} determinations, "
               f"{counts['decisions']} decisions, {counts['events']} events and {counts['letters']} letters match "
               f"their audit entries: none changed, none recorded and "
               f"missing, none moved to another case, none stored without an entry"
               + (f"; {len(anchors)} anchor(s) held" if anchors else ""))


@app.command()
def inquire(
    file: Path = typer.Argument(..., help="A PAS Inquiry Request Bundle (JSON)."),
    organization: Optional[str] = typer.Option(
        None, "--organization", help="The requesting organization whose requests are searched, as registered with "
                                     "`priorauth client add` (default: every organization's, the plan's own view)."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help=_DB_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
    config: Optional[Path] = typer.Option(None, "--config", help="Payer configuration (YAML), as the service runs."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="A policy file (default: the bundled CP.PHAR.769)."),
) -> None:
    """Answer a PAS inquiry from the store, as Claim/$inquire does: print the current PAS response Bundle of the
    request the inquiry names (by Bundle or Claim identifier); exit 1 when the store holds no such request."""
    import json

    from priorauth.intake import IntakeError
    from priorauth.intake.casefile import _parse
    from priorauth.service.auth import Principal
    from priorauth.service.core import AuthorizationService
    from priorauth.service.errors import ApiError

    origin = str(file)
    try:
        bundle = _parse(file.read_bytes().decode("utf-8-sig"), origin, "json")
    except IntakeError as err:
        _report_intake_error(err)
        raise typer.Exit(EXIT_INPUT) from None
    except (OSError, UnicodeDecodeError) as exc:
        _err(f"{origin}: cannot be read: {getattr(exc, 'strerror', None) or exc}")
        raise typer.Exit(EXIT_INPUT) from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        _err(f"{origin}: Bundle.resourceType: a PAS inquiry is a Bundle")
        raise typer.Exit(EXIT_INPUT)
    settings = _settings(database_url, data_dir, config, policy, problem="cannot read the store's settings")
    store = _open_store(settings.database_url, None)
    try:
        svc = AuthorizationService(settings, store, _load_policy(policy))
        who = Principal("cli:inquire", "provider" if organization else "admin", organization)
        response = svc.inquire(bundle, who)
    except ApiError as err:
        for issue in err.outcome.get("issue", ()):
            where = ", ".join(issue.get("expression", ())) or "Bundle"
            _err(f"{origin}: {where}: {issue.get('diagnostics')}")
        raise typer.Exit(1 if err.status == 404 else EXIT_INPUT) from None
    finally:
        store.close()
    sys.stdout.write(json.dumps(response, indent=2) + "\n")


@app.command()
def report(
    from_: str = typer.Option(..., "--from", help="First decision date (YYYY-MM-DD, UTC), inclusive."),
    to: str = typer.Option(..., "--to", help="Last decision date (YYYY-MM-DD, UTC), inclusive."),
    fmt: str = typer.Option("json", "--format", help="json or csv (one row per urgency)."),
    database_url: Optional[str] = typer.Option(None, "--database-url", help=_DB_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=_DATA_HELP),
) -> None:
    """Print the CMS-0057-F prior authorization metrics for the decisions dated --from to --to (docs/reporting.md)."""
    import json
    from datetime import datetime, timezone

    from priorauth.reporting import ReportRangeError, report_window
    from priorauth.store import Actor

    start, end = _parse_date(from_, "--from"), _parse_date(to, "--to")
    if fmt not in ("json", "csv"):
        _err(f"--format: {fmt!r} is not json or csv")
        raise typer.Exit(EXIT_INPUT)
    try:
        report_window(start, end)
    except ReportRangeError as err:
        _err(f"--to: {end.isoformat()} is before --from {start.isoformat()} (both dates are included)"
             if err.field == "end" else f"--from: {err.message}")
        raise typer.Exit(EXIT_INPUT) from None
    from priorauth.service.reports import build_report

    store = _open_store(database_url, data_dir)
    try:
        rep = build_report(store, start, end, datetime.now(timezone.utc), Actor("cli:report", "admin"), fmt)
    finally:
        store.close()
    sys.stdout.write(rep.to_csv() if fmt == "csv" else json.dumps(rep.as_dict(), indent=2) + "\n")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"priorauth {__version__}")


def main() -> None:  # console script entry point
    app()


if __name__ == "__main__":
    main()
