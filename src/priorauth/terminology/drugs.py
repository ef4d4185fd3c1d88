"""Drugs and regimens: the vocabulary read from the data files, and how a name written in a record resolves.

One :class:`Drug` per ingredient: the formulations of an ingredient (daratumumab IV and daratumumab and
hyaluronidase-fihj SC, bortezomib IV and SC, doxorubicin and liposomal doxorubicin) resolve to the same object,
with the formulation recorded in the :class:`Resolution`. Every lookup goes through the normalizer
(:mod:`priorauth.terminology.normalize`); docs/terminology.md describes the steps, ambiguity and name hints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from priorauth.terminology import normalize as nz

__all__ = ["Drug", "Resolution", "DrugCodes", "DrugVocabulary", "read_drug_data", "STATUSES"]

STATUSES = ("verified", "secondary", "unverified")
_MEMO_LIMIT = 20_000          # entries, and
_MEMO_BYTES = 8_000_000       # an estimate of their bytes (key, reason and hints): the memo stops growing at either
_MEMO_KEY_LIMIT = 256          # longer texts are resolved every time, never kept
_ENTRY_FIELDS = frozenset((
    "generic", "classes", "kind", "target", "brands", "suffix", "aliases", "abbreviations", "dev_codes", "rxcui",
    "hcpcs", "code_status", "formulations", "source", "ref", "status", "note",
))
_FORMULATION_FIELDS = frozenset(("name", "route", "brands", "aliases", "rxcui", "hcpcs", "code_status"))


@dataclass(frozen=True, slots=True, eq=False)
class Drug:
    """One ingredient, whatever its formulation. Made once per ingredient when the vocabulary loads, so identity
    is equality (and a drug hashes cheaply as a dict key)."""
    generic: str
    classes: frozenset[str]
    brands: tuple[str, ...] = ()
    target: str | None = None
    kind: str | None = None
    source: str | None = None
    status: str | None = None

    def has(self, cls: str) -> bool:
        return cls in self.classes


@dataclass(frozen=True, slots=True)
class Resolution:
    """How one record entry (a product name, a code or a regimen acronym) resolved, and by which rule."""
    text: str                                   # as written
    kind: str                                   # "drug" | "regimen" | "ambiguous" | "unrecognized"
    drugs: tuple[Drug, ...]                     # the drug; a regimen's drugs in order; ambiguous: the shared ones
    meanings: tuple[tuple[Drug, ...], ...] = ()  # ambiguous: each meaning's drugs
    rule: str = ""                              # how it matched, in words
    normalized: str = ""                        # the normalized key that was looked up
    formulation: str | None = None              # the formulation a name, brand or route word named
    hints: frozenset[str] = frozenset()         # unrecognized only: classes the name itself suggests
    reason: str = ""                            # why it is unrecognized or ambiguous; a note when the
                                                # parentheses disagree with the name before them
    route: str | None = None                    # the route a route word named ("subcutaneous")
    regimen: str | None = None                  # the regimen acronym as the data lists it ("D-VRd")

    @property
    def recognized(self) -> bool:
        return self.kind in ("drug", "regimen")


@dataclass(frozen=True, slots=True)
class DrugCodes:
    """The codes of a drug or of one of its formulations (unverified codes left out)."""
    display: str
    rxnorm: tuple[str, ...] = ()
    hcpcs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Target:
    kind: str                                   # drug | regimen | ambiguous
    rule: str
    drug: Drug | None = None
    formulation: str | None = None
    route: str | None = None
    regimen: str | None = None
    drugs: tuple[Drug, ...] = ()
    meanings: tuple[tuple[Drug, ...], ...] = ()

    def describes(self) -> str:
        if self.kind == "drug":
            return self.drug.generic + (f" ({self.formulation})" if self.formulation else "")
        return f"regimen {self.regimen}"


def _listed(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def read_drug_data(read: Callable[[str], dict]) -> dict:
    """The drug vocabulary from its data files, groups and defaults expanded: {classes, myeloma_targets,
    sources, drugs: [entry, ...], regimens: {acronym: spec}}."""
    main, supportive, common = read("drugs.yaml"), read("supportive_drugs.yaml"), read("common_drugs.yaml")
    regimens, sources = read("regimens.yaml"), read("drug_sources.yaml")
    entries = [dict(e) for e in main["drugs"]]
    for group in supportive["groups"]:
        defaults = {k: v for k, v in group.items() if k not in ("name", "drugs")}
        entries.extend({**defaults, **e} for e in group["drugs"])
    common_defaults = common["defaults"]
    for group in common["groups"]:
        for generic, spec in group["drugs"].items():
            spec = {"brands": spec} if isinstance(spec, list) else dict(spec or {})
            entries.append({**common_defaults, "kind": group["kind"], "generic": generic, **spec})
    reg_defaults = regimens.get("defaults", {})
    return {
        "classes": main["classes"],
        "myeloma_targets": main["myeloma_targets"],
        "sources": sources,
        "drugs": entries,
        "regimens": {k: {**reg_defaults, **v} for k, v in regimens["regimens"].items()},
    }


def _size(raw: str, found: "Resolution") -> int:
    """About how many bytes a memo entry holds: its text twice (the key and the resolution's copy), the strings
    the resolution explains itself with, and the objects around them."""
    words = sum(len(x) for x in (found.reason or "", *(found.hints or ()), *(found.normalized or ())) if isinstance(x, str))
    return 2 * len(raw) + words + 400


class DrugVocabulary:
    """Drugs and regimen acronyms indexed by every key a record may use. Build it from :func:`read_drug_data`."""

    def __init__(self, data: dict):
        self.classes: dict[str, dict] = data["classes"]
        self.anti_myeloma_classes = frozenset(k for k, v in self.classes.items() if v["anti_myeloma"])
        self.myeloma_targets = frozenset(data["myeloma_targets"])
        self.sources: dict[str, dict] = data["sources"]
        self._exact: dict[str, _Target] = {}
        self._compact: dict[str, _Target] = {}
        self._rxcui: dict[str, _Target] = {}
        self._hcpcs: dict[str, _Target] = {}
        self._generic: dict[str, Drug] = {}
        self._codes: dict[tuple[str, str | None], DrugCodes] = {}
        self._route_formulation: dict[tuple[str, str], str] = {}
        self._memo: dict[str, Resolution] = {}
        self._memo_bytes = 0
        self._anti: dict[Drug, bool] = {}          # is_anti_myeloma per drug (a fixed set: bounded)
        self.entries: list[dict] = data["drugs"]
        for entry in self.entries:
            self._add_drug(entry)
        self.regimens: dict[str, dict] = data["regimens"]
        self._regimen_names: dict[str, tuple[str, ...]] = {}
        names, ambiguous = [], []
        for acronym, spec in self.regimens.items():
            self._add_regimen(acronym, spec)
            (ambiguous if "meanings" in spec else names).append(acronym)
        self.regimen_names = tuple(names)
        self.ambiguous_regimen_names = tuple(ambiguous)
        self.drugs: tuple[Drug, ...] = tuple(self._generic.values())
        # words that describe a product: a class's own words, and every single-word target a drug has
        self._descriptors: dict[str, tuple[str, str, str]] = {}
        for cls, spec in self.classes.items():
            words = _listed(spec.get("words"))
            for w in words:
                self._descriptors[nz.fold(w)] = ("class", cls, words[0])
        for target in sorted({d.target for d in self.drugs if d.target and " " not in d.target}):
            for w in nz.descriptor_words(target):
                self._descriptors.setdefault(w, ("target", target, target))

    # ---- building --------------------------------------------------------------------------------------------
    def _source(self, entry: dict, what: str) -> str:
        ids = _listed(entry.get("source"))
        if not ids:
            raise ValueError(f"{what}: no source")
        unknown = [i for i in ids if i not in self.sources]
        if unknown:
            raise ValueError(f"{what}: unknown source ids {unknown}")
        status = entry.get("status")
        if status not in STATUSES:
            raise ValueError(f"{what}: status {status!r} is not one of {', '.join(STATUSES)}")
        where = ", ".join(self.sources[i]["short"] for i in ids)
        return f"{entry['ref']} [{where}]" if entry.get("ref") else where

    def _add_drug(self, entry: dict) -> None:
        generic = entry.get("generic")
        if not generic:
            raise ValueError(f"drug entry without a generic name: {entry!r}")
        extra = set(entry) - _ENTRY_FIELDS
        if extra:
            raise ValueError(f"drug {generic!r}: unknown fields {sorted(extra)}")
        classes = frozenset(_listed(entry.get("classes")))
        unknown = classes - set(self.classes)
        if not classes or unknown:
            raise ValueError(f"drug {generic!r}: unknown or missing classes {sorted(unknown)}")
        formulations = entry.get("formulations") or []
        brands = list(dict.fromkeys([*_listed(entry.get("brands")),
                                     *(b for f in formulations for b in _listed(f.get("brands")))]))
        drug = Drug(generic=generic, classes=classes, brands=tuple(brands), target=entry.get("target"),
                    kind=entry.get("kind"), source=self._source(entry, f"drug {generic!r}"), status=entry["status"])
        if drug.has("car_t") and drug.target in self.myeloma_targets and classes.isdisjoint(self.anti_myeloma_classes):
            raise ValueError(f"drug {generic!r}: a CAR-T directed at {drug.target} treats myeloma and needs an "
                             "anti-myeloma class")
        key = nz.fold(generic)
        if key in self._generic:
            raise ValueError(f"drug {generic!r} is listed twice")
        self._generic[key] = drug
        self._key(generic, _Target("drug", "generic name", drug))
        if entry.get("suffix"):
            self._key(f"{generic}-{entry['suffix']}", _Target("drug", "generic name with its FDA suffix", drug))
        for name in _listed(entry.get("brands")):
            self._key(name, _Target("drug", "brand name", drug))
        for name in _listed(entry.get("aliases")):
            self._key(name, _Target("drug", "other name", drug))
        for name in _listed(entry.get("abbreviations")):
            self._key(name, _Target("drug", "clinic abbreviation", drug))
        for name in _listed(entry.get("dev_codes")):
            self._key(name, _Target("drug", "development code", drug))
        self._codes_of(entry, drug, None)
        for f in formulations:
            extra = set(f) - _FORMULATION_FIELDS
            if extra or not f.get("name"):
                raise ValueError(f"drug {generic!r}: formulation {f!r} needs a name and knows no {sorted(extra)}")
            name, route = f["name"], f.get("route")
            self._key(name, _Target("drug", "formulation name", drug, name, route))
            for alias in _listed(f.get("aliases")):
                self._key(alias, _Target("drug", "formulation name", drug, name, route))
            for brand in _listed(f.get("brands")):
                self._key(brand, _Target("drug", "brand name", drug, name, route))
            if route:
                if (generic, route) in self._route_formulation:
                    raise ValueError(f"drug {generic!r}: two formulations for the route {route!r}")
                self._route_formulation[(generic, route)] = name
            self._codes_of(f, drug, name)

    def _codes_of(self, spec: dict, drug: Drug, formulation: str | None) -> None:
        status = spec.get("code_status")
        rxcui, hcpcs = [str(c) for c in _listed(spec.get("rxcui"))], [str(c).upper() for c in _listed(spec.get("hcpcs"))]
        if (rxcui or hcpcs) and status not in STATUSES:
            raise ValueError(f"drug {drug.generic!r}: codes without a code_status")
        if status == "unverified":   # names are the dependable key: an unverified code is never matched
            return
        for code in rxcui:
            self._put(self._rxcui, code, _Target("drug", "RxNorm code", drug, formulation))
        for code in hcpcs:
            self._put(self._hcpcs, code, _Target("drug", "HCPCS code", drug, formulation))
        if rxcui or hcpcs:
            self._codes[(drug.generic, formulation)] = DrugCodes(formulation or drug.generic, tuple(rxcui), tuple(hcpcs))

    def _add_regimen(self, acronym: str, spec: dict) -> None:
        what = f"regimen {acronym!r}"
        self._source(spec, what)
        if "meanings" in spec:
            meanings = tuple(tuple(self._regimen_drug(what, n) for n in m["drugs"]) for m in spec["meanings"])
            if len(meanings) < 2:
                raise ValueError(f"{what}: an ambiguous acronym needs two meanings or more")
            shared = tuple(d for d in meanings[0] if all(d in m for m in meanings[1:]))
            target = _Target("ambiguous", "regimen acronym", regimen=acronym, drugs=shared, meanings=meanings)
        else:
            drugs = tuple(self._regimen_drug(what, n) for n in spec["drugs"])
            target = _Target("regimen", "regimen acronym", regimen=acronym, drugs=drugs)
            self._regimen_names[acronym] = tuple(spec["drugs"])
        for name in [acronym, *_listed(spec.get("spellings"))]:
            self._key(name, target)

    def _regimen_drug(self, what: str, name: str) -> Drug:
        drug = self._generic.get(nz.fold(name))
        if drug is None:
            raise ValueError(f"{what}: {name!r} is not the generic name of a drug of the vocabulary")
        return drug

    def _key(self, name: str, target: _Target) -> None:
        key = nz.fold(name)
        if not key:
            raise ValueError(f"an empty name for {target.describes()}")
        self._put(self._exact, key, target)
        self._put(self._compact, nz.compact(key), target)

    @staticmethod
    def _put(index: dict[str, _Target], key: str, target: _Target) -> None:
        other = index.get(key)
        if other is None or other == target:
            index[key] = target
            return
        if other.kind == target.kind == "drug" and other.drug is target.drug:
            # the same ingredient: the more specific entry (the one naming a formulation) wins
            if other.formulation is None or target.formulation is None or other.formulation == target.formulation:
                if other.formulation is None and target.formulation is not None:
                    index[key] = target
                return
        if other.kind != "drug" and other.kind == target.kind and other.regimen == target.regimen:
            return
        raise ValueError(f"the key {key!r} names both {other.describes()} and {target.describes()}")

    # ---- lookups ---------------------------------------------------------------------------------------------
    def resolve(self, text: str, beside: Sequence[str] = ()) -> Resolution:
        """How a record entry resolves; ``beside``: names written beside it (the same entry's other drugs),
        which may decide an ambiguous acronym."""
        raw = "" if text is None else str(text)
        found = self._memo.get(raw) if len(raw) <= _MEMO_KEY_LIMIT else None
        if found is None:
            found = self._resolve(raw)
            if len(raw) <= _MEMO_KEY_LIMIT and len(self._memo) < _MEMO_LIMIT and self._memo_bytes < _MEMO_BYTES:
                self._memo[raw] = found
                self._memo_bytes += _size(raw, found)
        if found.kind == "ambiguous" and beside:
            return self._decide(found, [d for name in beside for d in self.resolve(name).drugs],
                                "ambiguous acronym decided by the drugs written beside it")
        return found

    def codes(self, resolution: Resolution) -> DrugCodes | None:
        """The codes of a resolved single drug: its formulation's when a formulation was named, else the
        ingredient's."""
        if resolution.kind != "drug":
            return None
        generic = resolution.drugs[0].generic
        return self._codes.get((generic, resolution.formulation)) or self._codes.get((generic, None))

    def regimen(self, acronym: str) -> tuple[str, ...] | None:
        r = self.resolve(acronym)
        if r.kind != "regimen":
            return None
        if r.regimen is not None and r.rule == "regimen acronym":
            return self._regimen_names[r.regimen]
        return tuple(d.generic for d in r.drugs)

    def is_anti_myeloma(self, drug: Drug) -> bool:
        found = self._anti.get(drug)
        if found is None:
            found = self._anti[drug] = not drug.classes.isdisjoint(self.anti_myeloma_classes) or (
                drug.has("car_t") and drug.target in self.myeloma_targets)
        return found

    # ---- resolution ------------------------------------------------------------------------------------------
    def _resolve(self, raw: str) -> Resolution:
        key = nz.fold(raw)
        if not key:
            return Resolution(raw, "unrecognized", (), reason="The name is empty.")
        coded = self._code(raw, key)
        if coded is not None:
            return coded
        parts = nz.split_parentheses(key)
        if parts is not None:
            return self._with_parentheses(raw, key, *parts)
        return self._plain(raw, key, lists=True) or self._unrecognized(raw, key)

    def _code(self, raw: str, key: str) -> Resolution | None:
        if len(key) == 5 and key[0].isalpha() and key[1:].isdigit():
            t = self._hcpcs.get(key.upper())
            if t is None:
                return Resolution(raw, "unrecognized", (), normalized=key.upper(),
                                  reason=f"{key.upper()!r} has the form of an HCPCS code, and priorauth knows no "
                                         "product by that code.")
            return self._from(raw, key.upper(), t)
        digits = key
        for prefix in ("rxcui", "rxnorm"):
            if key.startswith(prefix):
                digits = key[len(prefix):].lstrip(" :#")
                break
        if digits.isdigit() and 3 <= len(digits) <= 8:
            t = self._rxcui.get(digits)
            if t is None:
                return Resolution(raw, "unrecognized", (), normalized=digits,
                                  reason=f"{digits!r} has the form of an RxNorm code (RXCUI), and priorauth knows no "
                                         "product by that code.")
            return self._from(raw, digits, t)
        return None

    def _lookup(self, key: str) -> tuple[_Target, str, str] | None:
        """(target, the key that matched, a note on how) for a key as written, without punctuation and spaces,
        or without its FDA suffix."""
        t = self._exact.get(key)
        if t is not None:
            return t, key, ""
        c = nz.compact(key)
        t = self._compact.get(c)
        if t is not None:
            return t, c, "hyphens, slashes and spaces ignored"
        stem = nz.strip_fda_suffix(key)
        if stem is not None:
            t = self._exact.get(stem) or self._compact.get(nz.compact(stem))
            if t is not None and t.kind == "drug":
                return t, stem, "FDA suffix removed"
        return None

    def _from(self, raw: str, key: str, t: _Target, extra: str = "", route: str | None = None) -> Resolution:
        rule = t.rule + (", " + extra if extra else "")
        if t.kind == "drug":
            formulation = t.formulation
            route = t.route or route
            if formulation is None and route is not None:
                formulation = self._route_formulation.get((t.drug.generic, route))
            return Resolution(raw, "drug", (t.drug,), rule=rule, normalized=key, formulation=formulation, route=route)
        if t.kind == "regimen":
            return Resolution(raw, "regimen", t.drugs, rule=rule, normalized=key, regimen=t.regimen)
        return Resolution(raw, "ambiguous", t.drugs, t.meanings, rule=rule, normalized=key, regimen=t.regimen,
                          reason=self._ambiguous_reason(raw, t.meanings))

    def _plain(self, raw: str, key: str, lists: bool) -> Resolution | None:
        """A name without parentheses: as written, then without route and strength words, then as a list."""
        hit = self._lookup(key)
        if hit is not None:
            return self._from(raw, hit[1], hit[0], hit[2])
        stripped, route, removed = nz.strip_words(key)
        if removed and stripped:
            hit = self._lookup(stripped)
            if hit is not None:
                t, k, note = hit
                return self._from(raw, k, t, ", ".join(filter(None, (note, "route/strength words removed"))), route)
        described = self._described(raw, key)
        if described is not None:
            return described
        if lists:
            names = nz.split_list(key)
            if len(names) > 1:
                return self._list(raw, key, names)
        return None

    def _described(self, raw: str, key: str) -> Resolution | None:
        """A drug named with words describing its kind or target ("anito-cel CAR-T", "BCMA CAR-T cel"): the drug
        when every description agrees with it; unrecognized, saying why, when one does not."""
        rest, found = nz.split_descriptors(key, self._descriptors)
        if not found or not rest:
            return None
        rest = nz.strip_words(rest)[0] or rest
        hit = self._lookup(rest)
        if hit is None or hit[0].kind != "drug":
            return None
        return self._agree(raw, self._from(raw, hit[1], hit[0]), found)

    def _agree(self, raw: str, res: Resolution, found: tuple) -> Resolution:
        """``res`` (one drug) when the descriptions ``found`` all describe it; unrecognized otherwise."""
        drug = res.drugs[0]
        wrong = [label for kind, value, label in found
                 if not (drug.has(value) if kind == "class" else drug.target == value)]
        if wrong:
            return self._unrecognized(raw, nz.fold(raw), f"{drug.generic} is named beside {', '.join(wrong)}, "
                                      "which does not describe it")
        return _replace(res, rule=res.rule + f", descriptive words ({', '.join(f[2] for f in found)}) agree")

    def _list(self, raw: str, key: str, names: list[str]) -> Resolution | None:
        parts = [self._plain(name, name, lists=False) for name in names]
        if any(p is None for p in parts):
            return None
        drugs = _unique(d for p in parts if p.kind != "ambiguous" for d in p.drugs)
        ambiguous = [p for p in parts if p.kind == "ambiguous"]
        if not ambiguous:
            return Resolution(raw, "regimen", drugs, rule="drugs named together", normalized=key)
        if len(ambiguous) == 1:
            decided = self._decide(ambiguous[0], drugs, "ambiguous acronym decided by the drugs written beside it")
            if decided.kind != "ambiguous":
                return Resolution(raw, "regimen", _unique([*decided.drugs, *drugs]), rule=decided.rule, normalized=key,
                                  reason=decided.reason)
        return Resolution(raw, "ambiguous", drugs, rule="drugs named together", normalized=key,
                          reason=f"{nz.shorten(raw)!r} names an acronym with more than one meaning; "
                                 + "; ".join(p.reason for p in ambiguous))

    def _with_parentheses(self, raw: str, key: str, head: str, groups: list[str]) -> Resolution:
        """"VRd (bortezomib, lenalidomide, dexamethasone)", "bortezomib (Velcade) injection", "dara (SC)"."""
        inside: list[Drug] = []
        unknown: list[str] = []
        route = None
        descriptions: tuple = ()
        for group in groups:
            noise, r = nz.is_noise(group)
            if noise:
                route = route or r
                continue
            rest, found = nz.split_descriptors(group, self._descriptors)
            if found and (not rest or nz.is_noise(rest)[0]):    # "(BCMA CAR-T)": a description, checked below
                descriptions += found
                continue
            for name in nz.split_list(group):
                noise, r = nz.is_noise(name)
                if noise:
                    route = route or r
                    continue
                part = self._plain(name, name, lists=False)
                if part is None or part.kind == "ambiguous":
                    unknown.append(name)
                else:
                    inside.extend(part.drugs)
        inside = list(_unique(inside))
        if not head:
            if unknown or not inside:
                return self._unrecognized(raw, key)
            kind = "drug" if len(inside) == 1 else "regimen"
            return Resolution(raw, kind, tuple(inside), rule="drugs in parentheses", normalized=key, route=route)
        outer = self._plain(raw, head, lists=True)
        if descriptions and outer is not None and not unknown:
            if outer.kind != "drug":
                return self._unrecognized(raw, key, "the words in parentheses describe one product, and the name "
                                                    "before them is not one drug")
            outer = self._agree(raw, outer, descriptions)
            if outer.kind != "drug":
                return outer
        if outer is None or unknown:
            named = ", ".join(repr(u) for u in unknown)
            why = (f"the name before the parentheses ({head!r}) is not recognized" if outer is None else
                   f"{named} in parentheses is not recognized")
            return self._unrecognized(raw, key, why)
        if not inside:
            if route and outer.kind == "drug" and outer.route is None:
                formulation = outer.formulation or self._route_formulation.get((outer.drugs[0].generic, route))
                return _replace(outer, route=route, formulation=formulation, rule=outer.rule + ", route in parentheses")
            return _replace(outer, rule=outer.rule + ", words in parentheses add nothing")
        if outer.kind == "ambiguous":
            decided = self._decide(outer, inside, "ambiguous acronym decided by the drugs in parentheses")
            if decided.kind != "ambiguous" or set(inside) - set(d for m in outer.meanings for d in m) == set():
                return decided
            return self._parenthesized(raw, key, inside, outer)
        written = set(outer.drugs)
        if set(inside) == written:
            rule = "acronym with its drugs in parentheses" if outer.kind == "regimen" else outer.rule + ", the name in parentheses agrees"
            return _replace(outer, rule=rule, normalized=key)
        if outer.kind == "regimen" and set(inside) < written:
            return _replace(outer, rule="acronym with some of its drugs in parentheses", normalized=key)
        return self._parenthesized(raw, key, inside, outer)

    def _parenthesized(self, raw: str, key: str, inside: list[Drug], outer: Resolution) -> Resolution:
        """The parentheses name other drugs than the name before them: the drugs in parentheses are used."""
        said = ", ".join(d.generic for d in inside)
        before = ", ".join(d.generic for d in outer.drugs) if outer.kind != "ambiguous" else " or ".join(
            ", ".join(d.generic for d in m) for m in outer.meanings)
        note = (f"{nz.shorten(raw)!r}: the parentheses name {said}, which does not agree with "
                f"{outer.normalized!r} ({before}); the drugs in parentheses are used.")
        kind = "drug" if len(inside) == 1 else "regimen"
        return Resolution(raw, kind, tuple(inside), rule="drugs in parentheses (they disagree with the name before them)",
                          normalized=key, reason=note)

    def _decide(self, amb: Resolution, drugs: Iterable[Drug], rule: str) -> Resolution:
        """An ambiguous acronym with the drugs written beside it: the one meaning they point to, else unchanged."""
        written = set(drugs)
        shared = set(amb.drugs)
        distinguishing = written - shared
        if not distinguishing:
            return amb
        fits = [m for m in amb.meanings if distinguishing <= set(m)]
        if len(fits) != 1:
            return amb
        return Resolution(amb.text, "regimen", fits[0], rule=rule, normalized=amb.normalized, regimen=amb.regimen)

    def _ambiguous_reason(self, raw: str, meanings: tuple[tuple[Drug, ...], ...]) -> str:
        options = " or ".join("(" + ", ".join(d.generic for d in m) + ")" for m in meanings)
        return (f"{nz.shorten(raw)!r} is a regimen acronym with more than one usual meaning: {options}; the drugs "
                "written beside it decide which.")

    def _unrecognized(self, raw: str, key: str, why: str = "") -> Resolution:
        stripped, _, removed = nz.strip_words(key)
        tried = stripped if removed and stripped else key
        hints = nz.name_hints(key)
        reason = (f"{nz.shorten(raw)!r} is not a product priorauth recognizes: no generic name, brand, development "
                  f"code, RxNorm or HCPCS code, clinic abbreviation or regimen acronym matches {nz.shorten(tried)!r}")
        if why:
            reason += f" ({why})"
        if hints:
            reason += "; the name suggests " + " and ".join(_HINT_WORDS[h] for h in sorted(hints))
        return Resolution(raw, "unrecognized", (), normalized=tried, hints=hints, reason=reason + ".")


_HINT_WORDS = {"anti_bcma": "a BCMA-directed therapy", "car_t": "a CAR-T"}


def _unique(drugs: Iterable[Drug]) -> tuple[Drug, ...]:
    return tuple(dict.fromkeys(drugs))


def _replace(r: Resolution, **changes) -> Resolution:
    fields = {f: getattr(r, f) for f in Resolution.__slots__}
    fields.update(changes)
    return Resolution(**fields)

