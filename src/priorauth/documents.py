"""The text of a document attached to a request: plain text as it is, HTML without its markup, PDF by its text
layer (pypdf). Bounded: at most ``MAX_PAGES`` pages and ``MAX_CHARS`` characters are read, and saying so.

A PDF with no text layer (a scan) gives no text and says it needs OCR; a document that cannot be read says why.
Nothing here guesses: the reviewer opens the document itself whenever its text is not given."""

from __future__ import annotations

import io
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = ["DocumentText", "attachment_text", "MAX_PAGES", "MAX_CHARS"]

MAX_PAGES = 60
MAX_CHARS = 400_000


@dataclass(frozen=True)
class DocumentText:
    text: str | None          # None: no text could be read (the note says why)
    note: str                 # how the text was read, or why there is none


class _Text(HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "table", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _bounded(text: str, note: str) -> DocumentText:
    if len(text) > MAX_CHARS:
        return DocumentText(text[:MAX_CHARS], f"{note}; the first {MAX_CHARS:,} characters of {len(text):,}")
    return DocumentText(text, note)


def attachment_text(content_type: str | None, data: bytes) -> DocumentText:
    """The text of an attachment of ``content_type`` (its parameters, such as charset, honoured for text)."""
    kind, _, params = (content_type or "").partition(";")
    kind = kind.strip().lower()
    charset = "utf-8"
    for p in params.split(";"):
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset" and v.strip():
            charset = v.strip().strip('"')
    if kind in ("text/plain", "text/html"):
        try:
            text = data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            text = data.decode("utf-8", "replace")
        if kind == "text/plain":
            return _bounded(text, "plain text")
        parser = _Text()
        parser.feed(text)
        parser.close()
        lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
        return _bounded("\n".join(line for line in lines if line), "HTML, its markup removed")
    if kind == "application/pdf":
        return _pdf_text(data)
    return DocumentText(None, f"a {kind or 'document of no stated type'}: its text is not read; open the document")


def _pdf_text(data: bytes) -> DocumentText:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = reader.pages
        n = len(pages)
        texts = []
        for page in pages[:MAX_PAGES]:
            texts.append(page.extract_text() or "")
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        return DocumentText(None, f"a PDF that cannot be read ({type(exc).__name__}); open the document")
    text = "\n\n".join(t.strip("\n") for t in texts)
    if not text.strip():
        return DocumentText(None, f"a PDF of {n} page(s) with no text layer (a scan): it needs OCR; open the "
                                  "document")
    note = f"the text layer of a PDF of {n} page(s)" + (f" (the first {MAX_PAGES} read)" if n > MAX_PAGES else "")
    return _bounded(text, note)
