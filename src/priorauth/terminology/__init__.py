"""Terminology: value sets as data files (drugs, regimens, conditions, labs, provider taxonomies) and lookups.

The files under ``data/`` are read once per process (:func:`load_terminology`); the lookups are pure.
Names are the dependable key; codes (RxNorm, HCPCS, ICD-10-CM, LOINC, NUCC) are extra keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from priorauth.terminology.cns import CnsMatch, CnsReader

__all__ = ["Drug", "Resolution", "CnsMatch", "Terminology", "load_terminology", "fold_name", "normalize_name", "normalize_code"]

_MARKS = re.compile(r"[®™©]")
_SPACE = re.compile(r"\s+")
_FDA_SUFFIX = re.compile(r"-[a-z]{4}$")
_FORM_WORDS = {
    "tablet", "tablets", "capsule", "capsules", "injection", "oral", "iv", "sc", "po", "subcutaneous",
    "intravenous", "infusion", "for", "solution", "suspension", "kit", "vial", "powder",
}
_HCPCS = re.compile(r"^[A-Z]\d{4}$")
_RXCUI = re.compile(r"^(?:rxnorm|rxcui)?[:\s#]*(\d{3,8})$", re.IGNORECASE)
_WORD_SPLIT = re.compile(r"[^a-z0-9']+")
_MEMO_LIMIT = 100_000


def fold_name(text: str) -> str:
    """Lower case, trademark marks removed, spaces folded."""
    return _SPACE.sub(" ", _MARKS.sub("", text).replace("_", " ").strip().lower())


def normalize_name(text: str) -> str:
    """A folded name with its FDA four-letter suffix removed (isatuximab-irfc -> isatuximab)."""
    return _FDA_SUFFIX.sub("", fold_name(text))


def normalize_code(code: str) -> str:
    """An ICD-10-CM style code upper-cased with its dot and spaces removed (C90.02 -> C9002)."""
    return code.replace(".", "").replace(" ", "").upper()


@dataclass(frozen=True, slots=True, eq=False)
class Drug:
    """One ingredient (formulations included). Made once per ingredient when the terminology loads, so identity
    is equality (and hashing a drug is cheap)."""

    generic: str
    classes: frozenset[str]
    brands: tuple[str, ...] = ()
    target: str | None = None
    kind: str | None = None

    def has(self, cls: str) -> bool:
        return cls in self.classes


@dataclass(frozen=True, slots=True)
class Resolution:
    """How one name of a record resolves: a drug, a regimen's drugs, an ambiguous acronym, or nothing."""

    text: str
    kind: str                                   # "drug" | "regimen" | "ambiguous" | "unrecognized"
    drugs: tuple[Drug, ...] = ()
    meanings: tuple[tuple[Drug, ...], ...] = ()
    rule: str = ""
    normalized: str = ""
    formulation: str | None = None
    hints: frozenset[str] = frozenset()
    reason: str = ""

    @property
    def recognized(self) -> bool:
        return self.kind in ("drug", "regimen")


def _read(name: str) -> dict:
    text = resources.files("priorauth.terminology").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


class Terminology:
    """All value sets, indexed for lookup. Build it with :func:`load_terminology`."""

    def __init__(self, drugs: dict, conditions: dict, labs: dict, providers: dict, payers: dict):
        # lookups are pure: their answers are memoized (bounded) for repeated names
        self._drug_memo: dict[str, Drug | None] = {}
        self.drug_classes: dict[str, dict] = drugs["classes"]
        self.anti_myeloma_classes = frozenset(k for k, v in self.drug_classes.items() if v["anti_myeloma"])
        self._drugs: dict[str, Drug] = {}
        for entry in drugs["drugs"]:
            unknown = set(entry["classes"]) - set(self.drug_classes)
            if unknown:
                raise ValueError(f"drug {entry['generic']!r}: unknown classes {sorted(unknown)}")
            drug = Drug(
                generic=entry["generic"],
                classes=frozenset(entry["classes"]),
                brands=tuple(entry.get("brands", ())),
                target=entry.get("target"),
                kind=entry.get("kind"),
            )
            keys = [entry["generic"], *entry.get("aliases", ()), *drug.brands]
            if entry.get("suffix"):
                keys.append(f"{entry['generic']}-{entry['suffix']}")
            for key in keys:
                self._index(fold_name(key), drug)
            for code in entry.get("rxcui", ()):
                self._index(f"rxcui:{code}", drug)
            for code in entry.get("hcpcs", ()):
                self._index(f"hcpcs:{code.upper()}", drug)
        self._regimens: dict[str, tuple[str, ...]] = {}
        for acronym, names in drugs["regimens"].items():
            for name in names:
                if self.drug(name) is None:
                    raise ValueError(f"regimen {acronym}: unknown drug {name!r}")
            key = acronym.lower()
            if key in self._regimens:
                raise ValueError(f"regimen acronym {acronym!r} is ambiguous when case is ignored")
            self._regimens[key] = tuple(names)
        self.regimen_names = tuple(drugs["regimens"])

        self.icd10cm_release = conditions["icd10cm_release"]
        self._groups = {k: frozenset(normalize_code(c) for c in v["codes"]) for k, v in conditions["groups"].items()}
        self.group_labels = {k: v["label"] for k, v in conditions["groups"].items()}
        self._cns = CnsReader(conditions["cns"])

        self.lab_tests: dict[str, dict] = labs["tests"]
        self._loinc = {}
        for test, spec in labs["tests"].items():
            for item in spec.get("loinc", ()):
                self._loinc[item["code"]] = test

        self._lob: dict[str, str] = {}
        for lob, names in payers["lines_of_business"].items():
            for name in names:
                self._lob[" ".join(_WORD_SPLIT.split(str(name).lower())).strip()] = lob
        self.taxonomies: dict[str, dict] = providers["taxonomies"]
        self._heme_onc_words = frozenset(
            " ".join(_WORD_SPLIT.split(w.lower())).strip() for w in providers["specialty_words"]["hematology_oncology"]
        )

    # ---- drugs -------------------------------------------------------------------------------------
    def _index(self, key: str, drug: Drug) -> None:
        other = self._drugs.get(key)
        if other is not None and other is not drug:
            raise ValueError(f"drug key {key!r} names both {other.generic!r} and {drug.generic!r}")
        self._drugs[key] = drug

    def drug(self, text: str) -> Drug | None:
        """The drug named by a generic name, brand, alias, RxNorm or HCPCS code; None when unrecognized."""
        try:
            return self._drug_memo[text]
        except KeyError:
            pass
        found = self._drug_lookup(text)
        if len(self._drug_memo) < _MEMO_LIMIT:
            self._drug_memo[text] = found
        return found

    def _drug_lookup(self, text: str) -> Drug | None:
        raw = str(text).strip()
        if not raw:
            return None
        if _HCPCS.match(raw.upper()):
            return self._drugs.get(f"hcpcs:{raw.upper()}")
        m = _RXCUI.match(raw)
        if m:
            return self._drugs.get(f"rxcui:{m.group(1)}")
        # the name as written first (daratumumab-fihj is the subcutaneous product), then without its suffix
        found = self._drugs.get(fold_name(raw))
        if found is not None:
            return found
        key = normalize_name(raw)
        found = self._drugs.get(key)
        if found is not None:
            return found
        # "Revlimid 25 mg capsules", "bortezomib (Velcade) injection": drop strengths, forms, parentheses.
        trimmed = re.sub(r"\(.*?\)", " ", key)
        words = []
        for word in trimmed.split():
            if any(ch.isdigit() for ch in word):
                break
            if word not in _FORM_WORDS:
                words.append(word)
        key2 = _FDA_SUFFIX.sub("", " ".join(words))
        return self._drugs.get(key2) if key2 and key2 != key else None

    def resolve(self, text: str) -> Resolution:
        """A product name, code or regimen acronym of a record entry, resolved."""
        memo = self.__dict__.setdefault("_resolve_memo", {})
        found = memo.get(text)
        if found is None:
            found = memo[text] = self._resolve(text)
        return found

    def _resolve(self, text: str) -> Resolution:
        names = self.regimen(text)
        if names is not None:
            return Resolution(text, "regimen", tuple(self.drug(n) for n in names), rule="regimen acronym")
        d = self.drug(text)
        if d is not None:
            return Resolution(text, "drug", (d,), rule="name")
        return Resolution(text, "unrecognized", hints=self.name_hints(text),
                          reason=f"{text!r} is not a product priorauth recognizes")

    def name_hints(self, text: str) -> frozenset[str]:
        low = str(text).lower()
        hints = set()
        if "bcma" in low:
            hints.add("anti_bcma")
        if re.search(r"(?<![a-z])car(?![a-z])|(?<![a-z])cart-|cel\b|cabtagene\b", low):
            hints.add("car_t")
        return frozenset(hints)

    def regimen(self, acronym: str) -> tuple[str, ...] | None:
        return self._regimens.get(str(acronym).strip().lower())

    def is_anti_myeloma(self, drug: Drug) -> bool:
        return not drug.classes.isdisjoint(self.anti_myeloma_classes)

    # ---- conditions --------------------------------------------------------------------------------
    def in_group(self, code: str, group: str) -> bool:
        return normalize_code(code) in self._groups[group]

    def cns_code(self, code: str) -> CnsMatch | None:
        """The CNS pathology group an ICD-10-CM code falls in (by prefix), None for none or an exclusion."""
        return self._cns.code(code)

    def cns_text(self, text: str) -> tuple[CnsMatch, ...]:
        """Every CNS mention in free text, each with its assertion (present, historical, uncertain, negated,
        hypothetical, family, excluded): :mod:`priorauth.terminology.cns` reads it in context."""
        return self._cns.text(text)

    def negative_workup(self, text: str) -> str | None:
        """The clause documenting a negative neurologic work-up ("MRI brain negative"), if any."""
        return self._cns.negative_workup(text)

    def line_of_business(self, text: str) -> str:
        """The plan's name for a line of business ("HIM" -> "marketplace"); unknown names come back folded."""
        key = " ".join(_WORD_SPLIT.split(text.lower())).strip()
        return self._lob.get(key, key)

    # ---- labs and providers ------------------------------------------------------------------------
    def lab_by_loinc(self, code: str) -> str | None:
        return self._loinc.get(str(code).strip())

    def is_heme_onc_taxonomy(self, code: str) -> bool | None:
        """True for a hematology or oncology taxonomy, False for another, None when the code is unknown."""
        spec = self.taxonomies.get(str(code).strip().upper())
        return None if spec is None else bool(spec["hematology_oncology"])

    def is_heme_onc_words(self, specialty: str) -> bool:
        words = " ".join(_WORD_SPLIT.split(specialty.lower())).strip()
        return words in self._heme_onc_words or any(
            w in words.split() for w in ("hematology", "haematology", "oncology", "oncologist", "hematologist")
        )


@lru_cache(maxsize=1)
def load_terminology() -> Terminology:
    """The bundled value sets, read once per process."""
    return Terminology(_read("drugs.yaml"), _read("conditions.yaml"), _read("labs.yaml"), _read("providers.yaml"),
                       _read("payers.yaml"))
