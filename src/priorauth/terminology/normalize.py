"""The one normalizer every product lookup goes through.

Each step is a single pass over the text (translate, split, join, one scan for parentheses), and no pattern
here can backtrack, so the work grows linearly with the length of the text: a name of a megabyte resolves or
fails in well under a second (bench/bench_matching.py measures it).

Steps, in the order the lookup applies them (docs/terminology.md):
1. :func:`fold`: trademark marks removed, Unicode compatibility forms folded (NFKC), dashes made hyphens,
   brackets and underscores made spaces, case folded, spacing collapsed;
2. :func:`compact`: the folded key without hyphens, slashes, spaces and other punctuation ("Dara-VRd",
   "dara/VRd", "D VRd" and "PF 06863135" meet their entries);
3. :func:`strip_fda_suffix`: the FDA four-letter suffix of a biologic ("isatuximab-irfc");
4. :func:`split_parentheses`: the name before and the words inside parentheses ("VRd (bortezomib, ...)");
5. :func:`strip_words`: route, salt, form, strength and schedule words ("bortezomib SQ", "Revlimid 25 mg
   capsules", "dexamethasone sodium phosphate IV"), remembering the route;
6. :func:`split_list`: names joined by "+", ",", ";", "/", "and", "with" ("len + dex").
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["fold", "compact", "strip_fda_suffix", "split_parentheses", "strip_words", "split_list", "is_noise",
           "descriptor_words", "split_descriptors",
           "name_hints", "shorten", "ROUTES"]

_MARKS = dict.fromkeys(map(ord, "®™©℠"), None)
_FOLD = str.maketrans({**dict.fromkeys("‐‑‒–—―−", "-"), "_": " ", "[": " ", "]": " ", "{": " ", "}": " "})
_NON_WORD = re.compile(r"[\W_]+")
# CAR (or CARs, CART, CART19) as a word of its own, or a word ending in -cel (-leucel) or -cabtagene; each
# alternative is a fixed word or a run of digits before a fixed boundary, so the scan cannot backtrack far
_CAR_T = re.compile(r"(?<![0-9a-z])car(?:s|t[0-9]*)?(?![0-9a-z])|cel(?![0-9a-z])|cabtagene(?![0-9a-z])")
_PARENS = re.compile(r"[()]")

#: route words and the route they name
ROUTES = {
    **dict.fromkeys(("sc", "sq", "subq", "sub-q", "subcut", "subcutaneous", "subcutaneously"), "subcutaneous"),
    **dict.fromkeys(("iv", "ivp", "ivpb", "intravenous", "intravenously"), "intravenous"),
    **dict.fromkeys(("po", "oral", "orally"), "oral"),
    **dict.fromkeys(("im", "intramuscular"), "intramuscular"),
    **dict.fromkeys(("inh", "inhaled", "inhalation", "neb", "nebulized"), "inhaled"),
    **dict.fromkeys(("topical", "transdermal", "ophthalmic", "otic", "nasal", "intranasal", "sl", "sublingual",
                     "intrathecal"), "other"),
}
_SALTS = frozenset((
    "hydrochloride", "hcl", "dihydrochloride", "monohydrochloride", "citrate", "mesylate", "dimesylate", "maleate",
    "tartrate", "bitartrate", "succinate", "besylate", "fumarate", "sulfate", "phosphate", "sodium", "disodium",
    "potassium", "calcium", "magnesium", "acetate", "bromide", "hydrobromide", "monohydrate", "dihydrate",
    "trihydrate", "hyclate", "mononitrate", "lactate", "tosylate", "malate", "free", "base",
))
_FORMS = frozenset((
    "tablet", "tablets", "tab", "tabs", "capsule", "capsules", "cap", "caps", "injection", "injectable", "inj",
    "infusion", "solution", "suspension", "powder", "lyophilized", "for", "vial", "vials", "kit", "syringe",
    "prefilled", "pen", "autoinjector", "patch", "cream", "ointment", "gel", "elixir", "syrup", "liquid",
    "concentrate", "emulsion", "er", "xr", "sr", "dr", "ec", "xl", "la", "ir", "odt", "chewable", "release",
    "extended", "delayed", "extended-release", "delayed-release", "film-coated", "coated", "single-dose",
    "multi-dose", "dose", "doses", "dosing", "push", "bolus", "drip", "ampule", "product", "generic", "brand",
    "biosimilar", "therapy", "treatment", "regimen", "cycle", "cycles", "daily", "weekly", "biweekly", "monthly",
    "bid", "tid", "qid", "qd", "qhs", "prn", "qw", "q2w", "q3w", "q4w", "once", "twice", "per", "day", "days",
    "by", "mouth", "low-dose", "high-dose", "via", "of", "the",
))
_UNITS = frozenset((
    "mg", "mcg", "µg", "ug", "g", "gm", "gram", "grams", "kg", "ml", "l", "units", "unit", "u", "iu", "meq",
    "mmol", "m2", "%", "cells", "cell", "million", "billion", "x", "mg/m2", "mg/kg", "mcg/kg", "mg/ml",
))
#: words in parentheses that say nothing about the product ("Velcade (R)", "Kd (weekly)", "dara (SC)")
PAREN_NOISE = frozenset(("r", "tm", "c", "trial", "study", "investigational", "modified", "held", "hold",
                         "induction", "consolidation", "maintenance", "salvage", "bridging", "continuous",
                         "reduced", "dose-reduced", "attenuated", "lite", "standard", "weekly", "monthly",
                         "biweekly", "ongoing", "stopped", "completed", "discontinued", "restarted", "resumed",
                         # what it was given for: "(ASCT conditioning)", "(HSV/VZV prophylaxis)", "(premed)"
                         "conditioning", "prophylaxis", "prophylactic", "prevention", "asct", "sct", "transplant",
                         "hsv", "vzv", "cmv", "hbv", "pjp", "pcp", "supportive", "premedication", "premed",
                         "antiviral", "antiemetic", "infection", "bone", "health"))
#: schedule and count words of a prescription line ("every 12 weeks", "q28d", "one infusion") and the filler
#: around a description ("BCMA-directed", "anti CD38", "autologous CAR-T")
_SCHEDULE = frozenset(("every", "week", "weeks", "wk", "wks", "month", "months", "mo", "hour", "hours", "hr", "hrs",
                       "single", "one", "x1", "1x", "directed", "targeted", "anti", "autologous"))
_Q_EVERY = re.compile(r"q\d+(?:w|wk|wks|d|h|hr|hrs|m|mo|mos)?")
_LIST_WORDS = frozenset(("and", "with", "plus", "&", "+"))
_LIST_CHARS = str.maketrans({"+": " + ", ",": " , ", ";": " , ", "/": " , ", "&": " & "})
_SHORT = 80


def fold(text: str) -> str:
    """Marks removed, NFKC, dashes as hyphens, brackets and underscores as spaces, case folded, spacing collapsed."""
    s = unicodedata.normalize("NFKC", str(text).translate(_MARKS))   # marks first: NFKC would spell ™ as "TM"
    return " ".join(s.translate(_FOLD).casefold().split())


def compact(key: str) -> str:
    """The folded key without punctuation or spaces: "d-vrd", "d vrd" and "dvrd" are one key."""
    return _NON_WORD.sub("", key)


def strip_fda_suffix(key: str) -> str | None:
    """The key without its FDA four-letter suffix ("isatuximab-irfc" -> "isatuximab"), None when it has none."""
    if len(key) > 6 and key[-5] == "-" and key[-4:].isascii() and key[-4:].isalpha() and key[-6] != " ":
        return key[:-5]
    return None


def split_parentheses(key: str) -> tuple[str, list[str]] | None:
    """(the text outside parentheses, the text of each top-level pair), None when the key has no pair.
    An unclosed "(" or a stray ")" reads as a space."""
    if "(" not in key:
        return None
    outside: list[str] = []
    groups: list[str] = []
    depth, last, opened = 0, 0, 0
    for m in _PARENS.finditer(key):
        i = m.start()
        if key[i] == "(":
            if depth == 0:
                outside.append(key[last:i])
                opened = i + 1
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                groups.append(key[opened:i].replace("(", " ").replace(")", " "))
                last = i + 1
        # a stray ")" outside any pair is dropped with the text around it kept
    if depth:
        outside.append(" " + key[opened:])
    else:
        outside.append(key[last:])
    if not groups:
        return None
    head = " ".join(" ".join(outside).replace(")", " ").replace("(", " ").split())
    return head, [" ".join(g.split()) for g in groups]


def _is_strength(token: str) -> bool:
    """'25', '25mg', '1.5', 'mg/m2', '10^6', '115x10^6', 'mg'."""
    t = token.strip(".,;:")
    if not t or t in _UNITS:
        return True
    if "/" in t:   # "mg/m2", "1,800 mg/30,000 units" split as "mg/30,000"
        return all(part and _is_strength(part) for part in t.split("/"))
    if not t[0].isdigit():
        return False
    i = 1
    while i < len(t) and (t[i].isdigit() or t[i] in ".,^%-x"):
        i += 1
    return i == len(t) or t[i:] in _UNITS


def strip_words(key: str) -> tuple[str, str | None, bool]:
    """(the key without route, salt, form, strength and schedule words; the route named, if any; whether any
    word was removed). Words after the first strength ("25 mg capsules") go too."""
    kept: list[str] = []
    route = None
    removed = False
    for word in key.split(" "):
        if word in ROUTES:
            route = route or ROUTES[word]
            removed = True
        elif word in _SALTS or word in _FORMS or _is_strength(word) or _is_schedule(word) or not compact(word):
            removed = True
        else:
            kept.append(word)
    return " ".join(kept), route, removed


def is_noise(text: str) -> tuple[bool, str | None]:
    """Whether the words (of a parenthesis) say nothing about the product; the route they name, if any."""
    route = None
    for word in text.split(" "):
        w = word.strip(".,;:")
        if w in ROUTES:
            route = route or ROUTES[w]
        elif not (w in PAREN_NOISE or w in _FORMS or w in _SALTS or _is_strength(w) or _is_cycle(w)
                  or _is_schedule(w)):
            return False, None
    return True, route


def _is_schedule(word: str) -> bool:
    return word in _SCHEDULE or (word[:1] == "q" and _Q_EVERY.fullmatch(word) is not None)


def descriptor_words(word: str) -> tuple[str, ...]:
    """The spellings of a describing word: as folded, and for a target its -directed, -targeted and anti- forms."""
    w = fold(word)
    return (w, f"{w}-directed", f"{w}-targeted", f"anti-{w}")


def split_descriptors(key: str, descriptors: dict[str, tuple]) -> tuple[str, tuple[tuple, ...]]:
    """(the key without the words ``descriptors`` knows, the descriptions those words give, in order, once each)."""
    kept: list[str] = []
    found: list[tuple] = []
    for word in key.split(" "):
        d = descriptors.get(word.strip(".,;:"))
        if d is None:
            kept.append(word)
        elif d not in found:
            found.append(d)
    return " ".join(kept), tuple(found)


def _is_cycle(word: str) -> bool:
    """'c1d1', 'c3', 'd1-21': cycle and day marks."""
    return len(word) >= 2 and word[0] in "cd" and word[1].isdigit() and all(ch.isdigit() or ch in "cd-," for ch in word)


def split_list(key: str) -> list[str]:
    """The names of a list ("len + dex", "bortezomib, lenalidomide and dexamethasone", "Kd with dara")."""
    parts: list[str] = []
    cur: list[str] = []
    for word in key.translate(_LIST_CHARS).split():
        if word in _LIST_WORDS or word == ",":
            if cur:
                parts.append(" ".join(cur))
                cur = []
        else:
            cur.append(word)
    if cur:
        parts.append(" ".join(cur))
    return parts


def name_hints(folded: str) -> frozenset[str]:
    """What an unrecognized name suggests by itself: BCMA in it suggests a BCMA-directed therapy
    (``anti_bcma``); CAR as a word of its own or before T (CAR-T, CAR T, CART-), or a word ending in -cel,
    -leucel or -cabtagene, suggests a CAR-T (``car_t``)."""
    hints = set()
    if "bcma" in folded:
        hints.add("anti_bcma")
    if _CAR_T.search(folded):
        hints.add("car_t")
    return frozenset(hints)


def shorten(text: str) -> str:
    """A name for a sentence: at most 80 characters."""
    return text if len(text) <= _SHORT else text[:_SHORT - 1] + "…"
