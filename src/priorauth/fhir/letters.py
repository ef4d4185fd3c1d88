"""Notice letters as FHIR R4 DocumentReferences, beside the request's ClaimResponse: the PDF and the HTML as
attachments (with their SHA-1 hashes, as FHIR's Attachment.hash asks), the decision's date, the letter's
kind and audience, and ``context.related`` naming the ClaimResponse."""

from __future__ import annotations

import base64
import hashlib
from typing import Iterable

from priorauth.store.models import LetterRow, as_utc

__all__ = ["letter_resource", "letter_bundle", "LETTER_TYPE_SYSTEM"]

LETTER_TYPE_SYSTEM = "urn:priorauth:letter-type"
_TITLES = {"approval": "Approval notice", "request-for-information": "Request for information",
           "denial": "Denial notice"}


def _attachment(content_type: str, data: bytes, title: str) -> dict:
    return {"contentType": content_type, "language": "en-US", "data": base64.b64encode(data).decode("ascii"),
            "size": len(data), "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),
            "title": title}


def letter_resource(row: LetterRow) -> dict:
    title = f"{_TITLES.get(row.kind, row.kind)} for the {row.audience}"
    return {
        "resourceType": "DocumentReference",
        "id": f"letter-{row.id}",
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": LETTER_TYPE_SYSTEM, "code": row.kind,
                             "display": _TITLES.get(row.kind, row.kind)}], "text": title},
        "category": [{"coding": [{"system": LETTER_TYPE_SYSTEM, "code": row.audience}], "text": row.audience}],
        "date": as_utc(row.created_at).isoformat().replace("+00:00", "Z"),
        "description": title,
        "content": [{"attachment": _attachment("application/pdf", row.pdf, title + " (PDF)")},
                    {"attachment": _attachment("text/html", row.html.encode("utf-8"), title + " (HTML)")}],
        "context": {"related": [{"reference": f"ClaimResponse/{row.case_id}"}]},
    }


def letter_bundle(rows: Iterable[LetterRow], base_url: str | None = None) -> dict:
    entries = []
    for row in rows:
        resource = letter_resource(row)
        entry = {"resource": resource, "search": {"mode": "match"}}
        if base_url:                      # fullUrl is absolute: without the public address, none is given
            entry = {"fullUrl": f"{base_url}/fhir/DocumentReference/{resource['id']}", **entry}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
