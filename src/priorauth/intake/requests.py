"""Any request file: a case file (YAML or JSON) or a PAS request Bundle (JSON), told apart by its content."""

from __future__ import annotations

from pathlib import Path

from priorauth.case import Case
from priorauth.config import PayerConfig
from priorauth.intake.casefile import MAX_FILE_BYTES, _parse, case_from_data
from priorauth.intake.errors import IntakeError

__all__ = ["load_request"]


def load_request(path: str | Path, config: PayerConfig | None = None, *, strict: bool = False) -> Case:
    """Read a request file. A JSON object whose resourceType is Bundle is read as a PAS request Bundle."""
    p = Path(path)
    origin = str(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise IntakeError(origin, [f"(file): larger than the {MAX_FILE_BYTES} bytes a request file may be"])
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise IntakeError(origin, [f"(file): cannot be read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise IntakeError(origin, [f"(file): not UTF-8 text (byte {exc.start})"]) from None
    fmt = "json" if p.suffix.lower() == ".json" else "yaml"
    data = _parse(text, origin, fmt)
    if isinstance(data, dict) and "resourceType" in data:
        from priorauth.fhir.pas_intake import case_from_bundle, inquiry_profile

        where = inquiry_profile(data)
        if where is not None:      # it asks about a request already sent: the store holds the answer
            raise IntakeError(origin, [f"{where}: this is a PAS Inquiry Request Bundle (it asks about a request "
                                       "already sent, not a new one): answer it from the store with `priorauth "
                                       "inquire FILE`, or send it to the service's Claim/$inquire"])
        eligibility = (config or PayerConfig()).member_eligibility
        return case_from_bundle(data, origin, eligibility=eligibility, strict=strict)
    return case_from_data(data, origin, default_id=p.stem)
