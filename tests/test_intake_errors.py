"""Malformed case files, each run through the real CLI: exit code 2, no traceback, and a message on stderr
that names the field path and the problem.

Every malformed file is a small variation of a valid case (the text of shared/scenarios/PUB-01.yaml, kept
here as a string so the shared file may change without changing these tests). The CLI runs are started
together by one module fixture (in a few threads), so the whole module stays fast.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import yaml

from helpers import ELIGIBLE_YAML, folded, refused

# The valid case every malformed file is built from (shared/scenarios/PUB-01.yaml, verbatim).
BASE = ELIGIBLE_YAML


def variant(*edits: tuple[str, str], base: str = BASE) -> str:
    """BASE with each (old, new) replaced; `old` must occur exactly once, so a stale edit fails loudly."""
    text = base
    for old, new in edits:
        assert text.count(old) == 1, f"edit target {old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def without_section(name: str, base: str = BASE) -> str:
    """BASE without the top-level section `name` (its key line and every indented line under it)."""
    out, skipping = [], False
    for line in base.splitlines(keepends=True):
        if line.startswith(f"{name}:"):
            skipping = True
            continue
        if skipping and line.startswith((" ", "-")):
            continue
        skipping = False
        out.append(line)
    text = "".join(out)
    assert f"\n{name}:" not in text and not text.startswith(f"{name}:")
    return text


def _json_text(data_text: str = BASE) -> str:
    return json.dumps(yaml.safe_load(data_text), default=str, indent=2)


JSON_VALID = _json_text()
_URGENCY_LINE = next(i for i, line in enumerate(JSON_VALID.splitlines(), 1) if '"urgency"' in line)
JSON_BROKEN = JSON_VALID.replace('"urgency": "standard",', '"urgency": "standard",,', 1)
assert JSON_BROKEN != JSON_VALID


@dataclass
class Bad:
    """A malformed case file: its name on disk, its content (None: not created), what stderr must say.

    ``expect`` items are plain substrings or compiled patterns, matched against stderr with its whitespace
    folded (the CLI's console wraps long lines)."""

    filename: str
    content: str | bytes | None
    expect: list = field(default_factory=list)


BAD: dict[str, Bad] = {
    "yaml_syntax": Bad("yaml_syntax.yaml", variant(("  kind: initial\n", "  kind: [initial\n")),
                       [re.compile(r"\(file\): not valid YAML at line [67]\b")]),
    "json_syntax": Bad("json_syntax.json", JSON_BROKEN,
                       [f"(file): not valid JSON at line {_URGENCY_LINE} column"]),
    "empty_file": Bad("empty.yaml", "", ["(file): is empty"]),
    "top_level_list": Bad("top_list.yaml", "- " + textwrap.indent(BASE, "  ")[2:],
                          ["(top level): a case file holds a mapping, not list"]),
    "duplicate_key": Bad("dup_key.yaml", BASE + "title: a second title\n",
                         ["title: the key appears twice", f"(line {len(BASE.splitlines()) + 1})"]),
    "missing_request": Bad("no_request.yaml", without_section("request"), ["request: is required"]),
    "missing_received": Bad("no_received.yaml", variant(("  received: 2027-01-11\n", "")),
                            ["request.received: is required"]),
    "impossible_date": Bad("bad_date.yaml", variant(("date: 2027-01-03}", "date: 2027-13-01}")),
                           ["labs[0].date: '2027-13-01' is not a date"]),
    "date_format": Bad("date_format.yaml", variant(("date: 2027-01-03}", "date: 01/03/2027}")),
                       ["labs[0].date: '01/03/2027' is not a date"]),
    "request_kind": Bad("kind.yaml", variant(("kind: initial", "kind: renewal")),
                        ["request.kind: 'renewal' is not one of", "'initial'", "'continuation'"]),
    "request_urgency": Bad("urgency.yaml", variant(("urgency: standard", "urgency: urgent")),
                           ["request.urgency: 'urgent' is not one of", "'standard'", "'expedited'"]),
    "dose_not_number": Bad("dose_value.yaml", variant(("{value: 115,", "{value: lots,")),
                           ["request.dose.value: 'lots' is not a number"]),
    "dose_unit_unknown": Bad("dose_unit.yaml", variant(("unit: '10*6{cells}'", "unit: 'g/dX'")),
                             ["request.dose.unit: 'g/dX' is not a unit"]),
    "dose_unit_dimension": Bad("dose_mg.yaml", variant(("unit: '10*6{cells}'", "unit: mg")),
                               ["request.dose.unit: 'mg' cannot be converted to '{cells}'"]),
    "lab_test_unknown": Bad("lab_test.yaml", variant(("{test: serum_m_protein,", "{test: serum_x_protein,")),
                            [re.compile(r"labs\[0\]\.test: 'serum_x_protein' is not one of: .*serum_m_protein")]),
    "lab_unit_dimension": Bad("lab_unit.yaml", variant(("unit: g/dL, date", "unit: mL, date")),
                              ["labs[0].unit: 'mL' cannot be converted to 'g/dL'"]),
    "lab_value_negative": Bad("lab_negative.yaml", variant(("value: 1.6,", "value: -1.6,")),
                              [re.compile(r"labs\[0\]\.value: [^:]*negative")]),
    "lab_range_inverted": Bad("lab_range.yaml",
                              variant(("date: 2027-01-03}", "date: 2027-01-03, reference_range: [3.0, 1.0]}")),
                              ["labs[0].reference_range: low 3 is above high 1"]),
    "therapy_drugs_and_regimen": Bad("therapy_both.yaml",
                                     variant(("- drugs: [lenalidomide]\n", "- drugs: [lenalidomide]\n  regimen: Rd\n")),
                                     [re.compile(r"therapies\[2\]: [^:]*exactly one of `drugs`, `regimen` or `drug`")]),
    "therapy_neither": Bad("therapy_neither.yaml", variant(("- drugs: [lenalidomide]\n  start", "- start")),
                           [re.compile(r"therapies\[2\]: [^:]*exactly one of `drugs`, `regimen` or `drug`")]),
    "therapy_end_before_start": Bad("therapy_end.yaml", variant(("  end: 2021-07-15\n", "  end: 2020-07-15\n")),
                                    ["therapies[0]", "end 2020-07-15 is before start 2021-03-01"]),
    "assessment_response": Bad("response.yaml", variant(("response: progressive_disease", "response: worse")),
                               ["assessments[0].response: 'worse' is not one of", "'progressive_disease'"]),
    "history_empty_entry": Bad("history.yaml", variant(("{code: I10, text: essential hypertension}", "{onset: 2019-01-01}")),
                               ["history[0]: a history entry needs a `code` or a `text`"]),
    "diagnosis_code": Bad("dx.yaml", variant(("diagnoses: [C90.02]", "diagnoses: [XYZ]")),
                          [re.compile(r"request\.diagnoses(\[0\])?: .*'XYZ' is not an ICD-10-CM code")]),
    "line_of_business_missing": Bad("lob.yaml", variant((" line_of_business: medicaid,", "")),
                                    ["member.line_of_business: is required"]),
    "npi_digits": Bad("npi.yaml", variant(("npi: '1234567893'", "npi: '123456789'")),
                      ["prescriber.npi: '123456789' is not an NPI (10 digits)"]),
    "prior_lines_negative": Bad("prior_lines.yaml", BASE + "attestations: {prior_lines: -1}\n",
                                ["attestations.prior_lines: -1 is below the minimum 0"]),
    "tocilizumab_zero_doses": Bad("toci_doses.yaml", variant(("    doses: 4\n", "    doses: 0\n")),
                                  ["request.tocilizumab.doses: 0 is below the minimum 1"]),
    "file_missing": Bad("does_not_exist.yaml", None, ["(file): cannot be read"]),
    # a few more of the same family
    "tocilizumab_unit": Bad("toci_unit.yaml", variant(("dose: {value: 800, unit: mg}", "dose: {value: 800, unit: mL}")),
                            ["request.tocilizumab.dose.unit: 'mL' cannot be converted to 'mg'"]),
    "lab_unit_missing": Bad("lab_no_unit.yaml", variant(("unit: g/dL, date", "date")),
                            ["labs[0].unit: is required for serum_m_protein"]),
    "lab_loinc_contradicts_test": Bad("lab_loinc.yaml",
                                      variant(("{test: serum_m_protein,", "{test: serum_m_protein, loinc: 36916-5,")),
                                      ["labs[0].loinc: '36916-5' is kappa_flc, but test says serum_m_protein"]),
    "prior_class_unknown": Bad("prior_classes.yaml", BASE + "attestations: {prior_classes: [imid, magic]}\n",
                               ["attestations.prior_classes[1]: 'magic' is not one of", "'anti_cd38'"]),
    "policy_effective_not_date": Bad("context.yaml", variant(("policy_effective: 2026-12-23", "policy_effective: soon")),
                                     ["context.policy_effective: 'soon' is not a date"]),
    "therapy_drugs_not_list": Bad("drugs_text.yaml", variant(("- drugs: [lenalidomide]\n", "- drugs: lenalidomide\n")),
                                  ["therapies[2].drugs: 'lenalidomide' is not a list"]),
    "not_utf8": Bad("latin1.yaml", variant(("title: 'Eligible", "title: '\u00c9ligible")).encode("latin-1"),
                    ["(file): not UTF-8 text"]),
}

# Several problems in one file, all of which must be reported (model validation) ...
MANY = variant(
    ("kind: initial", "kind: renewal"),
    ("npi: '1234567893'", "npi: '12345'"),
    ("date: 2027-01-03}", "date: 2027-13-01}"),
    ("response: progressive_disease", "response: worse"),
) + "attestations: {prior_lines: -1}\n"
MANY_PATHS = ["request.kind", "prescriber.npi", "labs[0].date", "assessments[0].response", "attestations.prior_lines"]
# ... and several found by the unit checks that follow it.
MANY_UNITS = variant(
    ("unit: '10*6{cells}'", "unit: mg"),
    ("unit: g/dL, date", "unit: mL, date"),
    ("state: TX}", "state: TX, weight: {value: 170, unit: cm}}"),
)
MANY_UNITS_PATHS = ["request.dose.unit", "labs[0].unit", "member.weight.unit"]

# Valid files: the base case (YAML and JSON), and one with unknown extra fields.
EXTRA = variant(
    ("  urgency: standard\n", "  urgency: standard\n  favourite_colour: blue\n"),
    ("date: 2027-01-03}", "date: 2027-01-03, fasting: yes}"),
)

GOOD = {"base_yaml": ("base.yaml", BASE), "base_json": ("base.json", JSON_VALID), "extra_fields": ("extra.yaml", EXTRA)}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "priorauth.cli", *args]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Write every file, run the CLI on each (a few at a time), and keep each result by name."""
    d = tmp_path_factory.mktemp("intake")
    cmds: dict[str, list[str]] = {}
    for name, bad in BAD.items():
        path = d / bad.filename
        if isinstance(bad.content, bytes):
            path.write_bytes(bad.content)
        elif bad.content is not None:
            path.write_text(bad.content, encoding="utf-8")
        cmds[name] = _cli("evaluate", str(path))
    for name, text in (("many", MANY), ("many_units", MANY_UNITS)):
        (d / f"{name}.yaml").write_text(text, encoding="utf-8")
        cmds[name] = _cli("evaluate", str(d / f"{name}.yaml"))
    for name, (filename, text) in GOOD.items():
        (d / filename).write_text(text, encoding="utf-8")
        cmds[name] = _cli("evaluate", str(d / filename), "--json")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {name: pool.submit(_run, cmd) for name, cmd in cmds.items()}
        return {name: f.result() for name, f in futures.items()}



def _problem_lines(stderr: str) -> list[str]:
    """The problem lines of an intake report: indented `path: message` (wrapped continuations are not indented)."""
    return [line for line in stderr.splitlines() if re.match(r"^  \S+: ", line)]


def test_there_are_at_least_twenty_kinds():
    assert len(BAD) >= 20
    assert len({b.filename for b in BAD.values()}) == len(BAD)
    assert len({b.content for b in BAD.values() if b.content is not None}) == len([b for b in BAD.values() if b.content is not None])


@pytest.mark.parametrize("name", list(GOOD)[:2])
def test_base_case_is_valid(runs, name):
    """The control: the unmodified case (YAML, and the same data as JSON) is read and evaluated."""
    r = runs[name]
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["case"] == "PUB-01"
    assert out["outcome"] == "meets_criteria"
    assert out["data_problems"] == []


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_file_is_rejected_by_name(runs, name):
    bad, r = BAD[name], runs[name]
    assert r.returncode == 2, f"exit {r.returncode}\nstdout: {r.stdout[:500]}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stdout.strip() == "", "nothing is evaluated when the file cannot be read"
    err = folded(r.stderr)
    assert bad.filename in err, f"the message names the file: {r.stderr}"
    assert "cannot be read (1 problem)" in err, r.stderr
    for item in bad.expect:
        if isinstance(item, re.Pattern):
            assert item.search(err), f"{item.pattern!r} not found in: {err}"
        else:
            assert item in err, f"{item!r} not found in: {err}"


def test_all_problems_of_a_file_are_reported(runs):
    r = runs["many"]
    err = refused(r)
    assert f"cannot be read ({len(MANY_PATHS)} problems)" in err, r.stderr
    problems = _problem_lines(r.stderr)
    assert len(problems) == len(MANY_PATHS), r.stderr
    for path in MANY_PATHS:
        assert sum(p.strip().startswith(path + ":") for p in problems) == 1, f"{path} not reported once: {r.stderr}"
    assert "'renewal'" in err and "'12345'" in err and "'2027-13-01'" in err and "'worse'" in err and "-1" in err


def test_all_unit_problems_of_a_file_are_reported(runs):
    r = runs["many_units"]
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"cannot be read ({len(MANY_UNITS_PATHS)} problems)" in folded(r.stderr), r.stderr
    problems = _problem_lines(r.stderr)
    assert sorted(p.strip().split(":")[0] for p in problems) == sorted(MANY_UNITS_PATHS), r.stderr


def test_unknown_fields_are_accepted_and_reported_as_data_problems(runs):
    r = runs["extra_fields"]
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["outcome"] == "meets_criteria", "an unknown field changes nothing in the evaluation"
    problems = out["data_problems"]
    assert any(p.startswith("request.favourite_colour:") and "unknown field" in p for p in problems), problems
    assert any(p.startswith("labs[0].fasting:") and "unknown field" in p for p in problems), problems


def test_several_files_one_malformed_exit_2_and_the_bad_one_is_named(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(BASE, encoding="utf-8")
    bad.write_text(variant(("kind: initial", "kind: renewal")), encoding="utf-8")
    r = _run(_cli("evaluate", str(good), str(bad), "--json"))
    err = refused(r)
    assert str(bad) in err and "request.kind: 'renewal'" in err
    assert str(good) not in err, "the valid file is not reported as a problem"


# ---- every problem named by its exact path (in-process, no CLI) --------------------------------------------------
from priorauth.intake import IntakeError as _IntakeError  # noqa: E402
from priorauth.intake.casefile import parse_case_text as _parse_case_text  # noqa: E402



def _problems(text: str, fmt: str = "yaml") -> list[str]:
    with pytest.raises(_IntakeError) as info:
        _parse_case_text(text, "t." + fmt, fmt)
    return info.value.problems


@pytest.mark.parametrize("old,new,expected", [
    ("{procedure: autologous_sct, date: 2021-09-02}", "{procedure: liver_transplant, date: 2021-09-02}",
     "therapies[1].procedure: 'liver_transplant' is not one of"),
    ("received: 2027-01-11", "received: 2027-02-30", "request.received: '2027-02-30' is not a date"),
    ("diagnoses: [C90.02]", "diagnoses: [C90.02, XYZ]", "request.diagnoses[1]: 'XYZ' is not an ICD-10-CM code"),
    ("{code: I10, text: essential hypertension}", "{code: 'I-10', text: essential hypertension}",
     "history[0].code: 'I-10' is not an ICD-10-CM code"),
    ("{procedure: autologous_sct, date: 2021-09-02}", "{procedure: autologous_sct, drugs: [melphalan], date: 2021-09-02}",
     "therapies[1]: an entry is a regimen (`drugs` or `regimen`), a drug (`drug`) or a procedure, not both"),
    ("{test: serum_m_protein, value: 1.6,", "{test: serum_m_protein, value: true,", "labs[0].value: True is not a number"),
])
def test_problem_names_its_exact_path(old, new, expected):
    text = BASE.replace(old, new, 1)
    assert text != BASE
    problems = _problems(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_unit_problems_are_reported_with_the_others():
    text = BASE.replace("date: 2027-01-03", "date: 2027-13-03").replace("unit: '10*6{cells}'", "unit: mg")
    problems = _problems(text)
    assert any(p.startswith("labs[0].date: '2027-13-03' is not a date") for p in problems), problems
    assert any(p.startswith("request.dose.unit: 'mg' cannot be converted") for p in problems), problems


def test_nested_duplicate_key_names_its_path_yaml():
    text = BASE.replace("  kind: initial\n", "  kind: initial\n  kind: continuation\n", 1)
    problems = _problems(text)
    assert problems[0].startswith("request.kind: the key appears twice (line "), problems


def test_nested_duplicate_key_names_its_path_json():
    problems = _problems('{"id": "x", "request": {"received": "2027-01-11", "drug": "a", "drug": "b"}}', "json")
    assert problems == ["request.drug: the key appears twice"]


def test_duplicate_key_inside_a_list_item():
    text = BASE.replace("{test: serum_m_protein, value: 1.6,", "{test: serum_m_protein, value: 1.6, value: 2,")
    assert _problems(text)[0].startswith("labs[0].value: the key appears twice")
