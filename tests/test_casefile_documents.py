"""Case-file ``documents[]``: a document given as ``text``, or as a ``file`` (.txt or .pdf) beside the case file,
is read into its text with a note saying how; a bad entry is refused naming its field, never guessed at."""

from __future__ import annotations

import pytest
import yaml

from helpers import ELIGIBLE_YAML
from priorauth.intake.casefile import load_case_file
from priorauth.intake.errors import IntakeError

NOTE = "ONCOLOGIC HISTORY:\n1. VRd x 4 cycles 03/2021 - 07/2021\nNo prior BCMA-directed therapy.\n"


def _case(tmp_path, documents) -> object:
    data = yaml.safe_load(ELIGIBLE_YAML)
    data["documents"] = documents
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_text_and_txt_file_documents_are_read(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "clinic.txt").write_text(NOTE)
    case = load_case_file(_case(tmp_path, [
        {"date": "2027-01-05", "kind": "progress_note", "title": "Clinic", "text": NOTE},
        {"date": "2027-01-06", "kind": "lab_report", "file": "notes/clinic.txt"},
    ]))
    given, read = case.documents
    assert given.kind == "progress_note" and given.text == NOTE and given.text_note is None
    assert read.text == NOTE and read.text_note == "plain text" and read.content_type == "text/plain"
    assert read.size == len(NOTE.encode())
    assert not any("documents" in n for n in case.notes)   # kind, text and file are known fields


def test_pdf_file_document_is_read_by_its_text_layer(tmp_path):
    weasyprint = pytest.importorskip("weasyprint")
    html = "<pre>" + NOTE + "</pre>"
    weasyprint.HTML(string=html).write_pdf(tmp_path / "note.pdf")
    case = load_case_file(_case(tmp_path, [{"date": "2027-01-05", "kind": "consult_note", "file": "note.pdf"}]))
    doc = case.documents[0]
    assert doc.content_type == "application/pdf" and "PDF" in doc.text_note
    assert "No prior BCMA-directed therapy." in doc.text and "VRd x 4 cycles" in doc.text


@pytest.mark.parametrize("entry, expected", [
    ({"file": "missing.txt"}, "documents[0].file: cannot be read"),
    ({"file": "note.docx"}, "documents[0].file: a document file is .txt or .pdf, not .docx"),
    ({"file": "/etc/hostname"}, "documents[0].file: must be a path relative to the case file"),
    ({"text": NOTE, "file": "note.txt"}, "documents[0]"),
    ({"kind": "chart", "text": NOTE}, "documents[0].kind"),
])
def test_bad_document_entries_are_refused_by_field(tmp_path, entry, expected):
    (tmp_path / "note.txt").write_text(NOTE)
    with pytest.raises(IntakeError) as err:
        load_case_file(_case(tmp_path, [entry]))
    assert any(expected in p for p in err.value.problems), err.value.problems
