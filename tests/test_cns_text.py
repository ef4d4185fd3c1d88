"""CNS mentions in free text read in context (medspaCy ConText with the rules of cns_context.yaml): every
context kind of I.A.6 with real phrasings, exclusions, scope across sentences and clauses, negative work-ups,
long texts (bounded pieces), the memos and the pipeline under threads."""

from __future__ import annotations

import copy
import threading

import pytest

from priorauth.terminology import _read, load_terminology
from priorauth.terminology.cns import CnsMatch, CnsReader, _Bounds, _pieces, load_context_rules


@pytest.fixture(scope="module")
def t():
    return load_terminology()


def read(t, text):
    return [(m.group, m.assertion) for m in t.cns_text(text)]


def only(t, text) -> CnsMatch:
    (m,) = t.cns_text(text)
    return m


# ---- the context kinds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, group", [
    ("no history of seizures", "epilepsy_seizure"),
    ("denies stroke", "stroke"),
    ("seizures: none", "epilepsy_seizure"),
    ("Seizures - none", "epilepsy_seizure"),
    ("Stroke: no", "stroke"),
    ("negative for CNS involvement", "cns_myeloma"),
    ("denies any prior history of stroke", "stroke"),
    ("no h/o seizures", "epilepsy_seizure"),
    ("no known seizure disorder", "epilepsy_seizure"),
    ("Never had a stroke", "stroke"),
    ("without evidence of leptomeningeal disease", "cns_myeloma"),
    ("PMH: no seizures", "epilepsy_seizure"),
    ("seizure disorder ruled out", "epilepsy_seizure"),
    ("CNS involvement excluded", "cns_myeloma"),
    ("Leptomeningeal disease: none", "cns_myeloma"),
    ("rule out CNS involvement: negative", "cns_myeloma"),
])
def test_negated(t, text, group):
    m = only(t, text)
    assert (m.group, m.assertion, m.finding, m.why) == (group, "negated", False, "negated")


@pytest.mark.parametrize("text", ["no stroke, no seizure", "no stroke, TIA, or seizures", "no prior stroke or TIA",
                                  "no seizures and no stroke"])
def test_a_negation_covers_the_list_it_heads(t, text):
    assert {a for _, a in read(t, text)} == {"negated"}


@pytest.mark.parametrize("text, why", [
    ("levetiracetam for seizure prophylaxis", "preventive"),
    ("levetiracetam to prevent seizures", "preventive"),
    ("seizure precautions", "preventive"),
    ("apixaban for stroke prevention", "preventive"),
    ("stroke prophylaxis with apixaban", "preventive"),
    ("prophylaxis against seizures during busulfan", "preventive"),
    ("if confusion or seizures develop, hold the dose", "hypothetical or conditional"),
    ("risk of stroke", "a risk, not an event"),
    ("at risk for falls and seizures", "a risk, not an event"),
    ("CHA2DS2-VASc 4, high stroke risk", "a risk, not an event"),
    ("monitor for ICANS/seizures", "to watch for, not an event"),
    ("monitor closely for seizures", "to watch for, not an event"),
    ("educated on signs and symptoms of stroke", "education about it, not an event"),
    ("lorazepam prn seizures", "as needed, not an event"),
    ("bupropion lowers the seizure threshold", "a threshold, not an event"),
    ("should seizures occur, give lorazepam", "conditional"),
])
def test_hypothetical_preventive_conditional(t, text, why):
    ms = t.cns_text(text)
    assert ms and all(m.assertion == "hypothetical" and not m.finding and m.why == why for m in ms), ms


@pytest.mark.parametrize("text", ["levetiracetam 500 mg twice daily", "apixaban 5 mg BID", "Keppra", "warfarin"])
def test_a_drug_alone_is_no_mention(t, text):
    assert t.cns_text(text) == ()


def test_a_drug_for_the_condition_is_the_condition(t):
    assert read(t, "on Keppra for seizures") == [("epilepsy_seizure", "present")]


@pytest.mark.parametrize("text", [
    "mother had dementia",
    "family history of stroke",
    "FH: epilepsy",
    "dementia in her mother",
    "Dad with Parkinson's",
    "Brother epilepsy",
    "grandmother with Alzheimer's",
    "no family history of stroke",
])
def test_about_someone_else(t, text):
    m = only(t, text)
    assert (m.assertion, m.finding, m.why) == ("family", False, "about someone else")


@pytest.mark.parametrize("text, cue", [
    ("possible TIA", "possible"),
    ("possible TIA 2024, work-up pending", "possible"),
    ("questionable seizure", "questionable"),
    ("rule out stroke", "rule out"),
    ("r/o CNS involvement", "r/o"),
    ("concerning for leptomeningeal disease", "concerning for"),
    ("cannot exclude CNS involvement", "cannot exclude"),
    ("stroke cannot be excluded", "cannot be excluded"),
    ("stroke not ruled out", "not ruled out"),
    ("TIA vs migraine", "vs"),
    ("seizures?", "?"),
    ("?CNS involvement", "?"),
    ("suspected CNS relapse", "suspected"),
    ("evaluate for stroke", "evaluate for"),
    ("MRI to exclude CNS involvement", "to exclude"),
    ("seizure work-up pending", "work-up pending"),
    ("stroke-like episode", "-like"),
    ("history of possible seizure", "possible"),
    ("possible seizures since 2019", "possible"),
])
def test_uncertain(t, text, cue):
    m = only(t, text)
    assert (m.assertion, m.finding, m.cue) == ("uncertain", False, cue)


@pytest.mark.parametrize("text", [
    "stroke in 2018", "remote seizure", "h/o CVA", "remote stroke 2015", "s/p CVA 2015", "status post stroke",
    "stroke 3 years ago", "seizures resolved", "history of TIA 2019", "hx: stroke (2018)", "last seizure 03/2019",
    "seizures as a child",
])
def test_historical_is_a_finding(t, text):
    m = only(t, text)
    assert (m.assertion, m.finding) == ("historical", True)


@pytest.mark.parametrize("text", ["no seizures since 2019", "seizure-free since 2015", "seizure free on levetiracetam"])
def test_free_of_it_since_is_a_prior_history(t, text):
    m = only(t, text)
    assert (m.group, m.assertion, m.finding) == ("epilepsy_seizure", "historical", True)
    assert "prior history" in m.why


@pytest.mark.parametrize("text, group", [
    ("epilepsy", "epilepsy_seizure"),
    ("seizures: yes", "epilepsy_seizure"),
    ("Parkinson's disease", "parkinsons"),
    ("multiple sclerosis", "other_serious_cns_disease"),
    ("leptomeningeal myeloma", "cns_myeloma"),
    ("two strokes", "stroke"),
    ("recurrent TIAs", "stroke"),
    ("presented with new seizure", "epilepsy_seizure"),
    ("progressive cognitive decline, dementia", "dementia"),
    ("seizure during febrile neutropenia", "epilepsy_seizure"),
    ("ICANS grade 2 after teclistamab", "other_serious_cns_disease"),
])
def test_present_is_a_finding(t, text, group):
    m = only(t, text)
    assert (m.group, m.assertion, m.finding, m.cue) == (group, "present", True, "")


# ---- scope: sentences and clauses do not leak context --------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("No seizures. Stroke in 2019.", [("epilepsy_seizure", "negated"), ("stroke", "historical")]),
    ("No seizures.Stroke in 2019.", [("epilepsy_seizure", "negated"), ("stroke", "historical")]),
    ("No seizures\nStroke", [("epilepsy_seizure", "negated"), ("stroke", "present")]),
    ("No seizures; TIA 2019", [("epilepsy_seizure", "negated"), ("stroke", "historical")]),
    ("No seizures, stroke in 2019", [("epilepsy_seizure", "negated"), ("stroke", "historical")]),
    ("Hypertension, no seizures, CVA 2016", [("epilepsy_seizure", "negated"), ("stroke", "historical")]),
    ("no seizures, history of stroke", [("epilepsy_seizure", "negated"), ("stroke", "historical")]),
    ("no residual deficits after stroke in 2019", [("stroke", "historical")]),
    ("patient without deficits following CVA", [("stroke", "present")]),
    ("denies headache and has epilepsy", [("epilepsy_seizure", "present")]),
    ("family history of stroke, personal history of TIA", [("stroke", "family"), ("stroke", "historical")]),
    ("Mother had dementia, patient had a stroke in 2019", [("dementia", "family"), ("stroke", "historical")]),
    ("Stroke: no, seizures: yes", [("stroke", "negated"), ("epilepsy_seizure", "present")]),
    ("levetiracetam for seizure prophylaxis. Remote stroke 2015.", [("epilepsy_seizure", "hypothetical"),
                                                                    ("stroke", "historical")]),
    ("Possible TIA 2024. Seizures 2019.", [("stroke", "uncertain"), ("epilepsy_seizure", "historical")]),
])
def test_context_stays_in_its_sentence_or_clause(t, text, expected):
    assert read(t, text) == expected


def test_no_evidence_of_a_dated_event_stays_negated(t):
    # the date belongs to the imaging, and no comma separates the negation from the mention
    assert read(t, "no evidence of stroke on MRI 2019") == [("stroke", "negated")]


# ---- exclusions ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, group", [
    ("febrile seizure as a child", "febrile_convulsions"),
    ("history of febrile seizures", "febrile_convulsions"),
    ("seizure, febrile, age 2", "febrile_convulsions"),
    ("concussion 2010", "concussion"),
    ("mild TBI 2015", "concussion"),
    ("transient global amnesia 2018", "transient_global_amnesia"),
])
def test_exclusions_win(t, text, group):
    m = only(t, text)
    assert (m.group, m.assertion, m.finding) == (group, "excluded", False)
    assert m.why.endswith("excluded by the policy")


def test_an_exclusion_beside_a_finding_leaves_the_finding(t):
    assert read(t, "concussion 2010; stroke 2019") == [("concussion", "excluded"), ("stroke", "historical")]


@pytest.mark.parametrize("text", ["Patricia, tiara", "essential hypertension", "type 2 diabetes mellitus", ""])
def test_no_mention(t, text):
    assert t.cns_text(text) == ()


def test_whole_words_only(t):
    assert read(t, "Patricia; TIA") == [("stroke", "present")]


# ---- what a match carries -------------------------------------------------------------------------------------
def test_a_match_carries_the_words_as_written_the_cue_and_the_clause(t):
    first, second = t.cns_text("History of TIA 2019; no seizures")
    assert (first.group, first.matched, first.assertion, first.cue) == ("stroke", "TIA", "historical", "History")
    assert "transient ischemic attack" in first.label
    assert first.quote == "History of TIA 2019"
    assert (second.matched, second.assertion, second.cue, second.quote) == ("seizures", "negated", "no", "no seizures")


def test_codes_are_present_findings_quoting_the_code(t):
    m = t.cns_code("G40.909")
    assert (m.group, m.assertion, m.finding, m.quote) == ("epilepsy_seizure", "present", True, "G40.909")


def test_every_assertion_the_rules_give_is_known():
    from priorauth.terminology.cns import ASSERTIONS
    assert {e["assertion"] for e in load_context_rules()["assertions"]} <= set(ASSERTIONS)


# ---- negative work-up -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "MRI brain negative",
    "CT head without acute findings",
    "neurology evaluation unremarkable",
    "brain MRI (2024-01-10): unremarkable",
    "Head CT: no acute intracranial abnormality",
    "MRI brain negative for CNS involvement",
    "EEG normal",
    "TIA work-up negative",
    "negative MRI brain 2024",
])
def test_negative_workup(t, text):
    assert t.negative_workup(text) == text


@pytest.mark.parametrize("text", [
    "MRI brain ordered", "no MRI brain done", "MRI brain pending", "MRI brain: old lacunar infarct",
    "CT head to be done", "chest CT negative", "neurology consult requested", "", "possible TIA",
])
def test_no_negative_workup(t, text):
    assert t.negative_workup(text) is None


def test_negative_workup_quotes_its_clause(t):
    assert t.negative_workup("Possible TIA 2024. MRI brain 2024-03-02 negative. Hypertension.") == \
        "MRI brain 2024-03-02 negative."


# ---- long texts: bounded pieces, linear work ------------------------------------------------------------------
_FILLER = ("Hypertension, well controlled on lisinopril. Type 2 diabetes mellitus on metformin. CKD stage 3a. "
           "Hyperlipidemia on atorvastatin. Osteoarthritis of both knees. ")


def test_a_500_kb_text_reads_every_mention_in_its_context(t):
    parts, expected = [], []
    mentions = [("No history of seizures.", ("epilepsy_seizure", "negated")),
                ("Levetiracetam for seizure prophylaxis.", ("epilepsy_seizure", "hypothetical")),
                ("Family history of dementia.", ("dementia", "family")),
                ("Possible TIA 2024, work-up pending.", ("stroke", "uncertain")),
                ("Remote stroke 2015.", ("stroke", "historical"))]
    i = 0
    while sum(map(len, parts)) < 500_000:
        parts.append(_FILLER * 40)
        sentence, result = mentions[i % len(mentions)]
        parts.append(sentence + " ")
        expected.append(result)
        i += 1
    text = "".join(parts)
    assert len(text) >= 500_000
    assert read(t, text) == expected


def test_a_500_kb_run_on_sentence_is_read_in_bounded_windows(t):
    words = ["word"] * 100_000
    words[10] = "no seizures"              # far from everything else
    words[50_000] = "denies stroke"         # its cue right before it
    words[90_000] = "TIA"                   # 40,000 words after the negation: out of its reach
    text = " ".join(words)
    assert len(text) >= 500_000
    assert read(t, text) == [("epilepsy_seizure", "negated"), ("stroke", "negated"), ("stroke", "present")]
    assert all(len(m.quote) <= load_context_rules()["bounds"]["quote_chars"] + 6 for m in t.cns_text(text))


def test_mentions_past_the_bound_are_unread_not_absent(t):
    limit = load_context_rules()["bounds"]["mentions_read"]
    text = "".join(f"No stroke on visit {i}. " for i in range(limit)) + "Seizure on visit 9999. "
    got = t.cns_text(text)
    assert len(got) == limit + 1 and got[-1].assertion == "unread" and got[-1].group == "epilepsy_seizure"
    assert f"names CNS conditions more than {limit} times and priorauth reads the first {limit}" in got[-1].why
    assert not got[-1].finding


def test_pieces_are_bounded_and_keep_their_window():
    b = _Bounds(segment_chars=100, window_chars=30, quote_chars=50, memo_text_chars=10, memo_entries=8,
                memo_bytes=10_000, vocab_strings=1000, mentions_read=10)
    text = " ".join(["x"] * 1000)
    mentions = [(s, s + 1, "k") for s in range(0, len(text), 2)][::37]
    pieces = list(_pieces(text, mentions, b))
    assert sorted(m for _, _, _, ms in pieces for m in ms) == mentions       # every mention read once
    for a, z, _, ms in pieces:
        assert z - a <= b.segment_chars + 1 + 2 * 50
        assert text[a - 1:a] in ("", " ") and text[z:z + 1] in ("", " ")          # whole words
        for s, e, _ in ms:
            assert a <= s and e <= z
            assert s - a >= min(s, b.window_chars) and z - e >= min(len(text) - e, b.window_chars)


def test_consecutive_clauses_are_read_together_each_a_sentence_of_its_own():
    text = "No seizures. Stroke 2019; TIA\nepilepsy. Hypertension. Diabetes. No stroke"
    spans = [(3, 11, "a"), (13, 19, "b"), (26, 29, "c"), (30, 38, "d"), (69, 75, "e")]
    b = _Bounds(600, 200, 200, 2000, 8, 10_000, 1000, 400)
    assert [(text[a:z], starts) for a, z, starts, _ in _pieces(text, spans, b)] == [
        ("No seizures. Stroke 2019; TIA\nepilepsy.", (13, 26, 30)),   # the clauses without mentions split them
        ("No stroke", ())]
    small = _Bounds(20, 5, 200, 2000, 8, 10_000, 1000, 400)
    assert [text[a:z] for a, z, _, _ in _pieces(text, spans[:4], small)] == ["No seizures.", "Stroke 2019; TIA",
                                                                          "epilepsy."]


def test_a_line_break_ends_the_scope_inside_a_piece(t):
    assert read(t, "Denies seizures\nstroke 2019\nmother: dementia\nTIA") == [
        ("epilepsy_seizure", "negated"), ("stroke", "historical"), ("dementia", "family"), ("stroke", "present")]


def test_a_huge_text_is_not_memoized_whole():
    reader = CnsReader(_read("conditions.yaml")["cns"])
    text = _FILLER * 100 + "remote stroke 2015."
    assert [m.assertion for m in reader.text(text)] == ["historical"]
    assert reader._texts.bytes == 0
    reader.text("remote stroke 2015")
    assert 0 < reader._texts.bytes < 2000 and reader._texts.get(("text", "remote stroke 2015")) is not None


def test_the_pipeline_is_rebuilt_when_its_vocabulary_grows():
    probe = CnsReader(_read("conditions.yaml")["cns"])
    probe.text("denies stroke")
    limit = len(probe._pipeline._nlp.vocab.strings) + 300     # what the rules themselves need, and some room
    rules = copy.deepcopy(load_context_rules())
    rules["bounds"]["vocab_strings"] = limit
    reader = CnsReader(_read("conditions.yaml")["cns"], rules)
    pipeline = reader._pipeline
    reader.text("denies stroke")
    built = pipeline._nlp
    assert built is not None
    sizes = []
    for i in range(300):
        assert [m.assertion for m in reader.text(f"no seizures word{i}x word{i}y word{i}z")] == ["negated"]
        if pipeline._nlp is not None:
            sizes.append(len(pipeline._nlp.vocab.strings))
    assert pipeline._nlp is not built and max(sizes) <= limit


def test_the_pipeline_answers_alike_from_many_threads():
    reader = CnsReader(_read("conditions.yaml")["cns"])
    texts = [f"{p} {i}" for i in range(40) for p in ("no seizures", "remote stroke 2015", "possible TIA",
                                                     "mother had dementia", "seizure prophylaxis")]
    expected = {x: [(m.group, m.assertion) for m in CnsReader(_read("conditions.yaml")["cns"]).text(x)] for x in texts}
    got: dict[str, list] = {}
    errors: list[BaseException] = []

    def work(chunk):
        try:
            for x in chunk:
                got[x] = [(m.group, m.assertion) for m in reader.text(x)]
        except BaseException as exc:        # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(texts[i::8],)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and got == expected


def test_a_rule_file_that_drops_an_unknown_default_is_refused():
    rules = copy.deepcopy(load_context_rules())
    rules["medspacy_defaults"]["drop"].append("no such rule")
    with pytest.raises(ValueError, match="no such rule"):
        CnsReader(_read("conditions.yaml")["cns"], rules).text("stroke")


def test_rules_rewritten_for_speed_find_the_same_modifiers():
    import spacy
    from medspacy.context import ConText, ConTextRule

    from priorauth.terminology.cns import _fast_rules

    nlp = spacy.blank("en")
    original = ConTextRule.from_json(ConText(nlp, rules=None).DEFAULT_RULES_FILEPATH)
    fast = _fast_rules(ConTextRule, nlp.tokenizer, ConTextRule.from_json(ConText(nlp, rules=None).DEFAULT_RULES_FILEPATH))
    assert len(fast) > len(original)
    texts = ["no history of seizures", "Mother's sister had a stroke", "could not rule out TIA", "may be ruled out",
             "denies stroke", "Pt was not seen for seizures", "no new abnormal findings of stroke", "risks of stroke",
             "possible TIA, probably seizure", "without any evidence of CNS disease", "aunts' dementia",
             "seizures: none", "not associated with stroke", "is to be ruled out for stroke", "adequate to rule her out"]

    def found(rules):
        ctx = ConText(nlp, rules=None, span_attrs=None)
        ctx.add(rules)
        out = []
        for text in texts:
            doc = nlp.make_doc(text)
            for tok in doc:
                tok.is_sent_start = tok.i == 0
            doc.ents = []
            ctx(doc)
            out.append(sorted((m.modifier_span, m.category, m.direction) for m in doc._.context_graph.modifiers))
        return out

    assert found(fast) == found(original)


def test_the_piece_memo_is_bounded_in_bytes_as_well_as_in_entries():
    from priorauth.terminology.cns import _Memo

    memo = _Memo(size=100, max_bytes=1000)
    for i in range(50):
        memo.put(("cns", f"piece {i}"), ("value",), 300)
    assert memo.bytes <= 1000 and memo.get(("cns", "piece 49")) == ("value",) and memo.get(("cns", "piece 0")) is None
    memo.put(("cns", "huge"), ("value",), 5000)            # larger than the whole budget: never kept
    assert memo.get(("cns", "huge")) is None and memo.bytes <= 1000
