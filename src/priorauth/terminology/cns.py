"""CNS pathology in codes and in text, read in context (I.A.6 and III.B).

Codes match the groups of ``conditions.yaml`` by ICD-10-CM prefix. Text is read in two steps:

1. One linear scan finds every synonym of a group or an exclusion (whole words, plural endings). Text without
   one is done with; nothing else runs.
2. Only the clauses holding a mention go through medspaCy's ConText on spaCy's blank English pipeline, with
   medspaCy's default rules adjusted by ``cns_context.yaml``: consecutive ones together, up to
   ``bounds.segment_chars``, each its own sentence. A clause longer than that is read in windows that keep
   ``bounds.window_chars`` on each side of its mentions. Every piece the pipeline sees is bounded (ConText's
   work is quadratic in a piece's targets and modifiers), so the work grows linearly with the text.

Every mention comes back with its assertion (present, historical, uncertain, negated, hypothetical, family,
or excluded), the cue that decided it and the clause it was read in, so that disregarded mentions can be
shown with why. The pipeline is built once per reader, lazily, and used under a lock (the service runs many
threads); it is rebuilt when spaCy's string store has grown past ``bounds.vocab_strings``, so that memory stays
bounded in a long-running process. Answers are memoized for short texts only, in bounded memos.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import islice
from typing import Any, Callable, Iterator

import yaml

__all__ = ["ASSERTIONS", "FINDING_ASSERTIONS", "CnsMatch", "CnsReader", "load_context_rules"]

ASSERTIONS = ("present", "historical", "uncertain", "negated", "hypothetical", "family", "excluded", "unread")
#: "unread": a mention past the bound of mentions read in one text; the reviewer must read it (never absent)
FINDING_ASSERTIONS = frozenset({"present", "historical"})
_WORKUP_LABEL = "NEURO_WORKUP"
# a clause ends at a semicolon, a line break, or sentence punctuation followed by a space
_BOUNDARY = re.compile(r"[;\n\r]+\s*|(?<=[.!?])\s+")
_SPACE = re.compile(r"\s")
_WORD_SLACK = 50        # how far a window's edge moves to reach a space


@dataclass(frozen=True, slots=True)
class CnsMatch:
    """A CNS group named by a code or by words, with the assertion the context gives it."""

    group: str          # the conditions.yaml group key (an exclusion's key when excluded)
    label: str
    matched: str        # the code or the words that matched, as written
    assertion: str = "present"   # one of ASSERTIONS
    quote: str = ""     # the sentence or clause the mention was read in (bounded length)
    cue: str = ""       # the words that set the assertion ("prophylaxis"); empty when present
    why: str = ""       # the assertion in a reviewer's words ("preventive")

    @property
    def finding(self) -> bool:
        """Present or historical: the policy counts prior history too."""
        return self.assertion in FINDING_ASSERTIONS


@dataclass(frozen=True, slots=True)
class _Group:
    key: str
    label: str
    prefixes: tuple[str, ...]


def _normalize_code(code: str) -> str:
    """As ``terminology.normalize_code`` (C90.02 -> C9002); that package imports this module, not the reverse."""
    return code.replace(".", "").replace(" ", "").upper()


def _phrase_regex(phrase: str) -> str:
    """A phrase as a regular expression: any spacing between words, "work-up" in its usual spellings."""
    parts = []
    for word in str(phrase).lower().split():
        parts.append(re.escape(word).replace("work\\-up", r"(?:work[\s-]?up|w/u)"))
    return r"[^\S\r\n]+".join(parts)     # any spacing within a line: a mention never spans two clauses


class _Scanner:
    """One regular expression over a list of phrases: whole words, longest phrase first, linear in the text."""

    def __init__(self, phrases: dict[str, str], plurals: bool):
        self._keys = {" ".join(p.lower().split()): k for p, k in phrases.items()}
        alts = sorted(self._keys, key=len, reverse=True)
        tail = r"(?:e?s)?" if plurals else ""
        body = r"(?<![a-z0-9])(?P<w>" + "|".join(_phrase_regex(p) for p in alts) + r")" + tail + r"(?![a-z0-9])"
        self._lower = re.compile(body)
        self._any_case = re.compile(body, re.IGNORECASE)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        return list(self.scan(text))

    def scan(self, text: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, key) of each phrase in the text, in text order, found as they are asked for."""
        low = text.lower()
        # lower() keeps offsets for nearly all text; where it does not, match the text as it is
        matches = self._lower.finditer(low) if len(low) == len(text) else self._any_case.finditer(text)
        keys = self._keys
        for m in matches:
            w = m.group("w")
            key = keys.get(w)          # most matches are spelled as the phrase is: one lookup
            if key is None:
                key = keys.get(" ".join(w.lower().split()))
            yield (*m.span(), key)


@dataclass(frozen=True, slots=True)
class _Bounds:
    segment_chars: int
    window_chars: int
    quote_chars: int
    memo_text_chars: int
    memo_entries: int
    memo_bytes: int
    vocab_strings: int
    mentions_read: int


def _segments(text: str, mentions: list[tuple[int, int, str]]):
    """(index, start, end, mentions) of each clause that holds a mention, in text order."""
    ends, starts = [], []
    last = mentions[-1][0] if mentions else -1
    for m in _BOUNDARY.finditer(text):
        ends.append(m.start())
        starts.append(m.end())
        if m.start() > last:           # the clause of the last mention ends here: the rest is not needed
            break
    by_segment: dict[int, list] = {}
    for m in mentions:
        by_segment.setdefault(bisect_right(starts, m[0]), []).append(m)     # the i-th clause follows boundary i
    for i, ms in by_segment.items():
        yield i, starts[i - 1] if i else 0, ends[i] if i < len(ends) else len(text), ms


def _windows(text: str, seg_start: int, seg_end: int, ms: list, b: _Bounds):
    """A long clause cut into windows around its mentions, each keeping ``window_chars`` on both sides."""
    j = 0
    while j < len(ms):
        first = ms[j]
        a = max(seg_start, first[0] - b.window_chars)
        k = j
        while k + 1 < len(ms) and ms[k + 1][1] + b.window_chars - a <= b.segment_chars:
            k += 1
        z = min(seg_end, ms[k][1] + b.window_chars)
        # widen to whole words (a word longer than _WORD_SLACK is cut)
        if a > seg_start and not text[a - 1].isspace():
            back = text.rfind(" ", max(seg_start, a - _WORD_SLACK), a)
            a = back + 1 if back >= 0 else a
        if z < seg_end and not text[z].isspace():
            sp = _SPACE.search(text, z, min(seg_end, z + _WORD_SLACK))
            z = sp.start() if sp else z
        yield a, z, (), ms[j:k + 1]
        j = k + 1


def _pieces(text: str, mentions: list[tuple[int, int, str]], b: _Bounds):
    """The bounded pieces the pipeline reads: (start, end, clause starts inside, mentions inside).

    Consecutive clauses that hold mentions are read as one piece of at most ``segment_chars``, each clause a
    sentence of its own (the pipeline's cost is mostly per piece); a clause longer than that is read in
    windows around its mentions, each mention keeping at least ``window_chars`` of its clause on each side, no
    window longer than ``segment_chars`` plus its last mention and a word at each edge."""
    group = None        # [start, end, clause starts, mentions, index of its last clause]
    for i, seg_start, seg_end, ms in _segments(text, mentions):
        if group and (group[4] != i - 1 or seg_end - group[0] > b.segment_chars):
            yield tuple(group[:4])
            group = None
        if seg_end - seg_start > b.segment_chars:
            yield from _windows(text, seg_start, seg_end, ms, b)
        elif group:
            group[1], group[2], group[3], group[4] = seg_end, group[2] + (seg_start,), group[3] + ms, i
        else:
            group = [seg_start, seg_end, (), list(ms), i]
    if group:
        yield tuple(group[:4])


def _bounded_quote(text: str, start: int, end: int, limit: int) -> str:
    """The text, or a window of at most ``limit`` characters around [start, end) marked with ellipses."""
    text = text.rstrip().rstrip(";,")     # a clause, without the mark that ended it (a sentence keeps its period)
    text_len = len(text)
    if text_len <= limit:
        return text.strip()
    half = max(0, (limit - (end - start)) // 2)
    a, z = max(0, start - half), min(text_len, end + half)
    return ("..." if a > 0 else "") + text[a:z].strip() + ("..." if z < text_len else "")


def _substitute(value, names: dict[str, str]):
    """Pattern data with ``$name`` strings replaced (the date token)."""
    if isinstance(value, str) and value.startswith("$") and value[1:] in names:
        return names[value[1:]]
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    return value


_MAX_PHRASES = 400      # a rule whose pattern spells more word sequences than this stays a token pattern


def _word_sequences(pattern: list) -> list[list[str]] | None:
    """The word sequences a token pattern matches, when it is made of plain words and word lists (each maybe
    optional); None when it has anything else (a repeat, a regular expression) or spells too many."""
    seqs: list[list[str]] = [[]]
    for tok in pattern:
        op = tok.get("OP")
        attrs = {k: v for k, v in tok.items() if k != "OP"}
        if op not in (None, "?") or len(attrs) != 1 or next(iter(attrs)) not in ("LOWER", "ORTH"):
            return None
        value = next(iter(attrs.values()))
        if isinstance(value, str):
            words = [value]
        elif isinstance(value, dict) and set(value) == {"IN"}:
            words = [str(w) for w in value["IN"]]
        else:
            return None
        seqs = [q + [w] for q in seqs for w in words] + (seqs if op == "?" else [])
        if len(seqs) > _MAX_PHRASES:
            return None
    return [q for q in seqs if q]


def _expand_first(pattern: list) -> list[list]:
    """Token patterns matching what ``pattern`` matches, none starting with a word list (unless it repeats)."""
    if not pattern:
        return []
    tok = pattern[0]
    op = tok.get("OP")
    attrs = {k: v for k, v in tok.items() if k != "OP"}
    if op in ("+", "*") or len(attrs) != 1:
        return [pattern]
    ((attr, value),) = attrs.items()
    out = _expand_first(pattern[1:]) if op == "?" else []
    if isinstance(value, dict) and set(value) == {"IN"}:
        out += [[{attr: word}] + pattern[1:] for word in value["IN"]]
    else:
        out.append([attrs] + pattern[1:])
    return out


def _fast_rules(ConTextRule, tokenizer, rules: list) -> list:
    """The same rules, written so that spaCy finds their matches cheaply.

    spaCy's Matcher tries every token pattern at every token, and a word list ({LOWER: {IN: [...]}}) costs a
    Python call each time: that was nearly all of the pipeline's time. A pattern of plain words and word lists
    becomes one phrase rule per word sequence it spells (the PhraseMatcher looks a token up once), when the
    tokenizer splits the phrase into exactly those words; any other pattern is split into patterns that start
    with a plain word. Category, direction, scope and callbacks are kept: the same modifiers, found faster."""
    out = []

    def copy(r, literal, pattern):
        out.append(ConTextRule(literal=literal, category=r.category, pattern=pattern, direction=r.direction,
                               on_modifies=r.on_modifies, allowed_types=r.allowed_types,
                               excluded_types=r.excluded_types, max_scope=r.max_scope, max_targets=r.max_targets,
                               terminated_by=set(r.terminated_by), metadata=r.metadata))

    for r in rules:
        if not isinstance(r.pattern, list):
            out.append(r)
            continue
        seqs = _word_sequences(r.pattern)
        if seqs is None:
            for pattern in _expand_first(r.pattern):
                copy(r, r.literal, pattern)
            continue
        for words in seqs:
            phrase = " ".join(w.lower() for w in words)
            if [t.lower_ for t in tokenizer(phrase)] == [w.lower() for w in words]:
                copy(r, phrase, None)
            else:
                copy(r, r.literal, [{"LOWER": w.lower()} for w in words])
    return out


def _footprint(text: str, value: Any) -> int:
    """About how many bytes a memo entry holds: its text (the key and the copies read from it), every string its
    value carries (quotes, cues, reasons), and the objects around them."""
    def chars(v: Any) -> int:
        if isinstance(v, str):
            return len(v)
        if isinstance(v, CnsMatch):
            return len(v.matched) + len(v.quote) + len(v.cue) + len(v.why)
        return sum(chars(x) for x in v) if isinstance(v, tuple) else 0
    return 2 * len(text) + 300 + chars(value)


class _Memo:
    """A least-recently-used memo bounded in entries and in bytes (an estimate given with each entry: the text its
    key holds and the quotes and cues of its value); callers hold the lock that guards it."""

    def __init__(self, size: int, max_bytes: int):
        self._size, self._max_bytes = size, max_bytes
        self._data: OrderedDict = OrderedDict()      # key -> (value, size)
        self.bytes = 0

    def get(self, key):
        item = self._data.get(key)
        if item is None:
            return None
        self._data.move_to_end(key)
        return item[0]

    def put(self, key, value, size: int) -> None:
        if size > self._max_bytes or key in self._data:
            return
        self._data[key] = (value, size)
        self.bytes += size
        while len(self._data) > self._size or self.bytes > self._max_bytes:
            _, (_, dropped) = self._data.popitem(last=False)
            self.bytes -= dropped


class _Pipeline:
    """spaCy's blank English pipeline with a sentencizer and two ConText components (mentions, work-ups).

    Built on first use; every use holds the lock (spaCy's vocabulary and matchers are shared state)."""

    def __init__(self, spec: dict, bounds: _Bounds):
        self._spec = spec
        self._bounds = bounds
        self._lock = threading.Lock()
        self._nlp = None
        self._memo = _Memo(bounds.memo_entries, bounds.memo_bytes)
        self._date = re.compile(spec["date_token"])

    def _rule(self, ConTextRule, data: dict):
        names = {"date": self._spec["date_token"]}
        return ConTextRule(
            literal=data["literal"],
            category=data["category"],
            pattern=_substitute(data.get("pattern"), names),
            direction=data.get("direction", "BIDIRECTIONAL"),
            allowed_types=data.get("allowed_types"),
            max_scope=data.get("max_scope"),
            terminated_by=data.get("terminated_by"),
            metadata={"why": data["why"]} if data.get("why") else None,
        )

    def _build(self) -> None:
        import spacy
        from medspacy.context import ConText, ConTextRule

        spec = self._spec
        nlp = spacy.blank("en")
        sentencizer = nlp.add_pipe("sentencizer", config={"punct_chars": [".", "!", ";"]})
        cns = ConText(nlp, name="cns_context", rules=None, span_attrs=None, input_span_type="group",
                      span_group_name="cns", terminating_types=spec["terminated_by"])
        drop = set(spec["medspacy_defaults"]["drop"])
        defaults = ConTextRule.from_json(cns.DEFAULT_RULES_FILEPATH)
        missing = drop - {r.literal for r in defaults}
        if missing:
            raise ValueError(f"cns_context.yaml drops medspaCy default rules that do not exist: {sorted(missing)}")
        rules = _fast_rules(ConTextRule, nlp.tokenizer, [r for r in defaults if r.literal not in drop]
                            + [self._rule(ConTextRule, r) for r in spec["rules"]])
        escape = set(spec["dated_escape_categories"])
        for r in rules:
            if r.category in escape and r.direction in ("FORWARD", "BIDIRECTIONAL"):
                r.on_modifies = self._dated_escape
        cns.add(rules)
        workup = ConText(nlp, name="workup_context", rules=None, span_attrs=None, input_span_type="group",
                         span_group_name="workup")
        workup.add(_fast_rules(ConTextRule, nlp.tokenizer,
                               [self._rule(ConTextRule, r) for r in spec["negative_workup"]["rules"]]))
        self._nlp, self._sentencizer, self._contexts = nlp, sentencizer, {"cns": cns, "workup": workup}

    def _dated_escape(self, target, modifier, between) -> bool:
        """False when a cue before a comma would reach a mention dated right after it ("No seizures, stroke in
        2019"): the dated mention states an event."""
        if modifier.end > target.start or not any(t.text == "," for t in between):
            return True
        doc = target.doc
        for tok in doc[target.end:min(len(doc), target.end + 2)]:
            if self._date.match(tok.text):
                return False
            if tok.lower_ not in ("in", "on", "("):
                break
        return True

    def read(self, kind: str, piece: str, clause_starts: tuple[int, ...], spans: tuple[tuple[int, int, str], ...],
             resolve: Callable) -> tuple:
        """Run the ``kind`` ConText over one bounded piece and resolve each span; memoized by piece.

        Each offset in ``clause_starts`` begins a sentence (a line break, which the sentencizer does not see)."""
        key = (kind, piece, clause_starts, spans)
        with self._lock:
            found = self._memo.get(key)
            if found is not None:
                return found
            if self._nlp is None:
                self._build()
            doc = self._sentencizer(self._nlp.make_doc(piece))
            if clause_starts:
                starts = iter(clause_starts)
                start = next(starts)
                for tok in doc:
                    if tok.idx >= start:
                        tok.is_sent_start = True
                        start = next(starts, None)
                        if start is None:
                            break
            targets = [doc.char_span(s, e, label=label, alignment_mode="expand") for s, e, label in spans]
            doc.spans[kind] = targets
            self._contexts[kind](doc)
            found = tuple(resolve(doc, t) for t in targets)
            self._memo.put(key, found, _footprint(piece, found) + 64 * (len(spans) + len(clause_starts)))
            if len(self._nlp.vocab.strings) > self._bounds.vocab_strings:
                self._nlp = None        # rebuilt on next use: spaCy's string store only grows
            return found


@lru_cache(maxsize=1)
def load_context_rules() -> dict:
    """The bundled context rules (``data/cns_context.yaml``), read once per process."""
    text = resources.files("priorauth.terminology").joinpath("data", "cns_context.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


class CnsReader:
    """CNS findings in ICD-10-CM codes and in free text; built from ``conditions.yaml``'s ``cns`` section."""

    def __init__(self, cns: dict, rules: dict | None = None):
        spec = load_context_rules() if rules is None else rules
        self._groups = [_Group(k, v["label"], tuple(_normalize_code(p) for p in v["prefixes"]))
                        for k, v in cns["groups"].items()]
        self._exclusions = [_Group(k, v["label"], tuple(_normalize_code(p) for p in v["prefixes"]))
                            for k, v in cns["exclusions"].items()]
        self._labels = {g.key: g.label for g in (*self._groups, *self._exclusions)}
        self._excluded = frozenset(g.key for g in self._exclusions)
        phrases: dict[str, str] = {}
        for section in ("groups", "exclusions"):
            for key, v in cns[section].items():
                for phrase in v["synonyms"]:
                    other = phrases.setdefault(" ".join(str(phrase).lower().split()), key)
                    if other != key:
                        raise ValueError(f"CNS synonym {phrase!r} is in both {other!r} and {key!r}")
        self._mentions = _Scanner(phrases, plurals=True)
        self._workups = _Scanner({p: _WORKUP_LABEL for p in spec["negative_workup"]["tests"]}, plurals=False)
        self._assertions = []
        for entry in spec["assertions"]:
            if entry["assertion"] not in ASSERTIONS:
                raise ValueError(f"cns_context.yaml: unknown assertion {entry['assertion']!r}")
            self._assertions.append(entry)
        self._cancels = {k: tuple(v) for k, v in spec.get("cancels", {}).items()}
        b = spec["bounds"]
        self._bounds = _Bounds(int(b["segment_chars"]), int(b["window_chars"]), int(b["quote_chars"]),
                               int(b["memo_text_chars"]), int(b["memo_entries"]), int(b["memo_bytes"]),
                               int(b["vocab_strings"]), int(b["mentions_read"]))
        self._pipeline = _Pipeline(spec, self._bounds)
        # texts up to memo_text_chars, memoized whole: bounded in entries and in bytes, as the pieces are
        self._texts = _Memo(self._bounds.memo_entries, self._bounds.memo_bytes)
        self._texts_lock = threading.Lock()
        self._code_memo = lru_cache(maxsize=self._bounds.memo_entries)(self._code)

    # ---- codes -----------------------------------------------------------------------------------------------
    def code(self, code: str) -> CnsMatch | None:
        """The CNS pathology group an ICD-10-CM code falls in (by prefix), None for none or an exclusion."""
        return self._code_memo(code)

    def _code(self, code: str) -> CnsMatch | None:
        c = _normalize_code(code)
        for g in self._exclusions:
            if c.startswith(g.prefixes):
                return None
        for g in self._groups:
            if c.startswith(g.prefixes):
                return CnsMatch(g.key, g.label, code, quote=code)
        return None

    # ---- text ------------------------------------------------------------------------------------------------
    def text(self, text: str) -> tuple[CnsMatch, ...]:
        """Every CNS mention in the text, in order, each with its assertion."""
        if not text:
            return ()
        if len(text) > self._bounds.memo_text_chars:
            return self._read_text(text)
        return self._memoized(("text", text), self._read_text, text)

    def _memoized(self, key: tuple, read: Callable, text: str):
        with self._texts_lock:
            found = self._texts.get(key)
        if found is None:
            found = read(text)
            with self._texts_lock:
                self._texts.put(key, found, _footprint(text, found))
        return found

    def _read_text(self, text: str) -> tuple[CnsMatch, ...]:
        limit = self._bounds.mentions_read
        found = self._mentions.scan(text)
        mentions = list(islice(found, limit))
        if not mentions:
            return ()
        # past the bound, the scan goes on only to the first mention the policy does not exclude (bounded work)
        unread = next((m for m in found if m[2] not in self._excluded), None)
        out: list[CnsMatch] = []
        for a, z, starts, ms in _pieces(text, mentions, self._bounds):
            spans = tuple((s - a, e - a, key.upper()) for s, e, key in ms)
            read = self._pipeline.read("cns", text[a:z], tuple(x - a for x in starts), spans, self._resolve_mention)
            for (s, e, key), (group, assertion, cue, why, quote) in zip(ms, read):
                out.append(CnsMatch(group, self._labels[group], text[s:e], assertion, quote, cue, why))
        if unread:     # bounded work: the rest is not read, and is left to the reviewer, never taken as absent
            s, e, group = unread
            quote = text[max(0, s - 60):e + 60].strip()
            out.append(CnsMatch(group, self._labels[group], text[s:e], "unread", quote[:self._bounds.quote_chars],
                                "", f"the text names CNS conditions more than {limit} times and priorauth reads "
                                    f"the first {limit}; the rest is left to the reviewer"))
        return tuple(out)

    def _resolve_mention(self, doc, span) -> tuple[str, str, str, str, str]:
        """(group, assertion, cue, why, quote) for one mention from the modifiers ConText linked to it."""
        group = span.label_.lower()
        quote = self._quote(span)
        if group in self._excluded:
            return group, "excluded", span.text, f"{self._labels[group]}, excluded by the policy", quote
        cats: dict[str, object] = {}
        for mod in span._.modifiers:
            cats.setdefault(mod.category, mod)
        for cat, cancelled in self._cancels.items():
            if cat in cats:
                for c in cancelled:
                    cats.pop(c, None)
        for entry in self._assertions:
            mod = cats.get(entry["category"])
            if mod is None:
                continue
            start, end = mod.modifier_span
            why = (mod.rule.metadata or {}).get("why") or entry["why"]
            return entry.get("group", group), entry["assertion"], doc[start:end].text, why, quote
        return group, "present", "", "", quote

    def _quote(self, span) -> str:
        sent = span.sent
        return _bounded_quote(sent.text, span.start_char - sent.start_char, span.end_char - sent.start_char,
                              self._bounds.quote_chars)

    # ---- negative work-up ------------------------------------------------------------------------------------
    def negative_workup(self, text: str) -> str | None:
        """The clause documenting a negative neurologic work-up ("MRI brain negative"), None when there is none."""
        if not text:
            return None
        if len(text) > self._bounds.memo_text_chars:
            return self._read_workup(text)
        found = self._memoized(("workup", text), lambda t: self._read_workup(t) or "", text)
        return found or None

    def _read_workup(self, text: str) -> str | None:
        found = self._workups.find(text)
        if not found:
            return None
        for a, z, starts, ms in _pieces(text, found, self._bounds):
            spans = tuple((s - a, e - a, key) for s, e, key in ms)
            for quote in self._pipeline.read("workup", text[a:z], tuple(x - a for x in starts), spans,
                                             self._resolve_workup):
                if quote:
                    return quote
        return None

    def _resolve_workup(self, doc, span) -> str:
        """The quote when a normal result is linked to the work-up and nothing says it is pending or not done."""
        cats = {m.category for m in span._.modifiers}
        if "NORMAL_RESULT" in cats and not cats & {"PENDING", "NOT_DONE"}:
            return self._quote(span)
        return ""
