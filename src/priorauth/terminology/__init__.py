"""Terminology: value sets as data files (drugs, regimens, conditions, labs, provider taxonomies) and lookups.

The files under ``data/`` are read once per process (:func:`load_terminology`); the lookups are pure.
Names are the dependable key; codes (RxNorm, HCPCS, ICD-10-CM, LOINC, NUCC) are extra keys. Products resolve
through one normalizer (:mod:`.normalize`) into the drug vocabulary (:mod:`.drugs`); docs/terminology.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import yaml

from priorauth.terminology import normalize as _nz
from priorauth.terminology.cns import CnsMatch, CnsReader
from priorauth.terminology.drugs import Drug, DrugCodes, DrugVocabulary, Resolution, read_drug_data

__all__ = ["Drug", "Resolution", "DrugCodes", "CnsMatch", "Terminology", "load_terminology", "fold_name",
           "normalize_name", "normalize_code"]

_WORD_SPLIT = re.compile(r"[^a-z0-9']+")
_MEMO_LIMIT = 100_000


def fold_name(text: str) -> str:
    """Lower case, trademark marks removed, spaces folded (the normalizer's first step)."""
    return _nz.fold(text)


def normalize_name(text: str) -> str:
    """A folded name with its FDA four-letter suffix removed (isatuximab-irfc -> isatuximab)."""
    key = _nz.fold(text)
    return _nz.strip_fda_suffix(key) or key


def normalize_code(code: str) -> str:
    """An ICD-10-CM style code upper-cased with its dot and spaces removed (C90.02 -> C9002)."""
    return code.replace(".", "").replace(" ", "").upper()




def _fold(text: str) -> str:
    """Lower case, punctuation and spacing folded to single spaces: how phrase tables are keyed."""
    return " ".join(_WORD_SPLIT.split(text.lower())).strip()


def _read(name: str) -> dict:
    text = resources.files("priorauth.terminology").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


class Terminology:
    """All value sets, indexed for lookup. Build it with :func:`load_terminology`."""

    def __init__(self, drugs: dict, conditions: dict, labs: dict, providers: dict, payers: dict,
                 therapy: dict | None = None):
        # lookups are pure: their answers are memoized (bounded) for repeated names
        self.vocabulary = DrugVocabulary(drugs)
        # the hot lookups go straight to the vocabulary (the methods below document them)
        self.resolve = self.vocabulary.resolve                    # type: ignore[method-assign]
        self.is_anti_myeloma = self.vocabulary.is_anti_myeloma    # type: ignore[method-assign]
        self.drug_classes: dict[str, dict] = self.vocabulary.classes
        self.anti_myeloma_classes = self.vocabulary.anti_myeloma_classes
        self.myeloma_targets = self.vocabulary.myeloma_targets
        self.regimen_names = self.vocabulary.regimen_names
        self.ambiguous_regimen_names = self.vocabulary.ambiguous_regimen_names

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
                self._lob[_fold(str(name))] = lob
        self._stop_reasons = {_fold(phrase): reason for reason, phrases in (therapy or {}).get("stop_reasons", {}).items()
                              for phrase in phrases}
        self.taxonomies: dict[str, dict] = providers["taxonomies"]
        self._heme_onc_words = frozenset(
            _fold(w) for w in providers["specialty_words"]["hematology_oncology"]
        )

    # ---- drugs ------------------------------------------------------------------------------------------
    def resolve(self, text: str, beside: Sequence[str] = ()) -> Resolution:
        """How a product name, code or regimen acronym (one record entry) resolves, or why it does not;
        ``beside``: the names written beside it, which may decide an ambiguous acronym."""
        return self.vocabulary.resolve(text, beside)

    def drug(self, text: str) -> Drug | None:
        """The single drug a name, brand, development code, abbreviation, RxNorm or HCPCS code names; None for
        a regimen, an ambiguous acronym or an unrecognized name."""
        r = self.vocabulary.resolve(text)
        return r.drugs[0] if r.kind == "drug" else None

    def regimen(self, acronym: str) -> tuple[str, ...] | None:
        """The generic names of the regimen an acronym (or a written list of drugs) names; None otherwise."""
        return self.vocabulary.regimen(acronym)

    def is_anti_myeloma(self, drug: Drug) -> bool:
        """An anti-myeloma class, or a CAR-T directed at a myeloma target (BCMA, GPRC5D, ...)."""
        return self.vocabulary.is_anti_myeloma(drug)

    def name_hints(self, text: str) -> frozenset[str]:
        """What a name suggests by its words alone ({"anti_bcma", "car_t"}); meant for unrecognized names."""
        return _nz.name_hints(_nz.fold(text))

    def drug_codes(self, text: str) -> DrugCodes | None:
        """The RxNorm and HCPCS codes of the single drug (or formulation) a name resolves to."""
        return self.vocabulary.codes(self.vocabulary.resolve(text))

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

    def stop_reason(self, text: str) -> str | None:
        """The case format's stop_reason a statusReason written in words names ("Disease progression" ->
        progression); None when it names none."""
        return self._stop_reasons.get(_fold(text))

    def line_of_business(self, text: str | None) -> str | None:
        """The plan's name for a line of business ("HIM" -> "marketplace"); unknown names come back folded;
        None (not given) stays None."""
        if text is None:
            return None
        key = _fold(text)
        return self._lob.get(key, key)

    # ---- labs and providers ------------------------------------------------------------------------
    def lab_by_loinc(self, code: str) -> str | None:
        return self._loinc.get(str(code).strip())

    def is_heme_onc_taxonomy(self, code: str) -> bool | None:
        """True for a hematology or oncology taxonomy, False for another, None when the code is unknown."""
        spec = self.taxonomies.get(str(code).strip().upper())
        return None if spec is None else bool(spec["hematology_oncology"])

    def is_heme_onc_words(self, specialty: str) -> bool:
        words = _fold(specialty)
        return words in self._heme_onc_words or any(
            w in words.split() for w in ("hematology", "haematology", "oncology", "oncologist", "hematologist")
        )


@lru_cache(maxsize=1)
def load_terminology() -> Terminology:
    """The bundled value sets, read once per process."""
    return Terminology(read_drug_data(_read), _read("conditions.yaml"), _read("labs.yaml"), _read("providers.yaml"),
                       _read("payers.yaml"), _read("therapy.yaml"))
