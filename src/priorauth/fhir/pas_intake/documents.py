"""DocumentReferences: the attached documents kept with the case for the reviewer."""

from __future__ import annotations

from typing import Any

from priorauth.fhir.pas_intake.fhirjson import _LEFT_OUT, _SKIP_STATUS, _list
from priorauth.fhir.pas_intake.bundle import BundleReader


_DOCUMENT = {"title": "content[0].attachment.title", "content_type": "content[0].attachment.contentType",
             "url": "content[0].attachment.url", "size": "content[0].attachment.size", "date": "date"}


class DocumentReader(BundleReader):
    """Reads DocumentReferences."""

    # -- documents and the rest
    def _documents(self, data: dict) -> None:
        docs: list[dict] = []
        srcs: list[str] = []
        for k in self.by_type.get("DocumentReference", ()):
            try:
                ref = self.res[k]
                label, base = self.labels[k], self.base(k)
                if self._status(k) is _LEFT_OUT:
                    continue
                if ref.get("status") in _SKIP_STATUS["DocumentReference"]:
                    self.note(label, f"status {ref.get('status')}; left out")
                    continue
                when = None
                if ref.get("date") is not None:
                    when = self._date(ref["date"], f"{base}.date", "the document date", required=False, label=label)
                kind = ref.get("type", {}).get("text") if isinstance(ref.get("type"), dict) else None
                contents = [(j, c) for j, c in enumerate(_list(ref.get("content")))
                            if isinstance(c, dict) and isinstance(c.get("attachment"), dict)]
                if not contents:
                    self.note(label, "no content attachment; left out")
                    continue
                for j, c in contents:
                    att = c["attachment"]
                    doc: dict[str, Any] = {"id": ref.get("id") if isinstance(ref.get("id"), str) else None}
                    title = att.get("title") or kind or ref.get("description")
                    if title is not None:
                        doc["title"] = title
                    for key, field in (("contentType", "content_type"), ("url", "url"), ("size", "size")):
                        if att.get(key) is not None:
                            doc[field] = att[key]
                    if when is not None:
                        doc["date"] = when
                    docs.append(doc)
                    self.items.setdefault("documents", []).append(
                        (k, _DOCUMENT if j == 0 else {f: v.replace("content[0]", f"content[{j}]") for f, v in _DOCUMENT.items()}))
                    srcs.append(label)
            except (TypeError, AttributeError, ValueError) as exc:
                self._shape_problem(k, exc)
        if docs:
            data["documents"] = docs
            self.sources["documents"] = srcs
