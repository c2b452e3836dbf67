"""The `leakage` flag: the reasoning already states the final answer, which defeats the purpose of reasoning
written *before* the answer. The evidence used, strongest first:

* the reference answer (when given) appears in the reasoning;
* a number from the response that is not in the question appears in the reasoning
  (small integers only next to an answer cue such as "=" / "is" / "total" or with the same unit word);
* a quoted phrase of the response ("wind turbine", 「…」) appears in the reasoning;
* an explicit statement such as "the answer is 8" / "答えは55です";
* the response's answer phrase (what follows "… is" / "…は…です") is stated in the reasoning;
* a reasoning sentence restates the response's first or last sentence (ordered overlap of content words,
  or of character bigrams for Japanese);
* the reasoning and the response share long phrases that the question does not contain.

Everything that appears in the question is discounted: restating the question is not leakage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from reasonry.quality.conclusions import (
    approximate_result_evidence,
    conclusion_evidence,
    final_number_evidence,
    question_answer_evidence,
    rejected_premise_evidence,
)
from reasonry.quality.flags import CheckConfig, Flag
from reasonry.quality.leakage_cues import (
    _EN_COPULA_RE,
    _HEDGES,
    _JA_PREDICATE_RE,
    _POLARITY,
    _STRONG_CUE_RE,
    _Evidence,
    _explicit_evidence,
    _in_question,
    _is_distinctive,
    _key_sentences,
    _number_evidence,
    _numbers,
    _phrase_evidence,
    _quote_evidence,
    _response_numbers,
    _Texts,
    _unit_after,
)
from reasonry.quality.normalisation import (
    _CJK_RUN_RE,
    _HIRAGANA_RE,
    _NUMBER_RE,
    _WORD,
    _bigrams,
    _is_cjk_text,
    _lcs,
    _LcsBudget,
    _norm,
    _normalize,
    _sentences,
    _squash,
    _stem,
    _units,
)


def _answer_phrase(sentence: str, texts: _Texts, config: CheckConfig) -> tuple[str, frozenset[str]] | None:
    """What the response's sentence asserts and the content words of its subject:
    "<subject> is <phrase>" or "<subject>は<phrase>です"."""
    ja = _JA_PREDICATE_RE.search(sentence)
    if ja:
        phrase, subject = ja.group("x"), sentence[: ja.start()]
    else:
        copulas = list(_EN_COPULA_RE.finditer(sentence))
        if not copulas:
            return None
        phrase, subject = sentence[copulas[-1].end() :], sentence[: copulas[-1].start()]
    phrase = re.sub(rf"^(?:(?:{_HEDGES}|the|a|an|約)\s*)+", "", phrase.strip(" .!?。\"'“”「」『』«»"))
    phrase = phrase.strip(" .!?。\"'“”「」『』«»")
    if not phrase or len(phrase.split()) > config.leakage_max_answer_words or not _units(phrase):
        return None
    if _NUMBER_RE.fullmatch(phrase):
        return None  # numbers have their own check
    subject_units = frozenset(u.key for u in _units(subject))
    question_units = {u.key for u in _units(texts.question)}
    if _in_question(texts, phrase) and subject_units - question_units:
        return None  # the answer is the subject ("Paris is the capital"), not the predicate
    return phrase, subject_units


_CLAUSE_BREAK_RE = re.compile(
    r"\s*(?:[,;、]|\b(?:and|but|because|since|while|although|though|whereas|so)\b)\s*"
)


def _claims(text: str) -> list[str]:
    """The response's first and last sentences, and their clauses ("Bob is the liar", "Alice tells ...")."""
    claims: list[str] = []
    for sentence in _key_sentences(text):
        claims.append(sentence)
        clauses = [c for c in _CLAUSE_BREAK_RE.split(sentence) if c]
        claims.extend(clauses if len(clauses) > 1 else [])
    return list(dict.fromkeys(claims))


def _short_answer(texts: _Texts, config: CheckConfig) -> tuple[str, frozenset[str]] | None:
    """A response of a few words ("Negative.", "B) Carbon dioxide", "cat") is the answer phrase itself."""
    text = re.sub(r"^\s*[a-e][).:]\s+", "", texts.response).strip(" .!?。\"'“”「」『』«»\n")
    too_long = (
        len(text) > 20 if _is_cjk_text(text) else len(text.split()) > config.leakage_max_answer_words // 2 + 1
    )
    if not text or too_long or _NUMBER_RE.fullmatch(text) or not _units(text):
        return None
    if _squash(text) in _POLARITY or re.fullmatch(r"[a-z]", text):
        return None  # "No." / "B": too common to spot; only explicit "the answer is no" counts
    return text, frozenset()


def _answer_phrase_evidence(texts: _Texts, config: CheckConfig) -> _Evidence | None:
    candidates = [_answer_phrase(sentence, texts, config) for sentence in _claims(texts.response)]
    for found in [_short_answer(texts, config), *candidates]:
        if found is None:
            continue
        phrase, subject = found
        if _in_question(texts, phrase) or not _is_distinctive(phrase):
            evidence = _phrase_evidence(
                texts, phrase, "the response's answer", need_cue=True, subject=subject
            )
        else:
            evidence = _phrase_evidence(texts, phrase, "the response's answer", need_cue=False)
        if evidence:
            return evidence
    return None


def _sentence_overlap_evidence(texts: _Texts, config: CheckConfig) -> _Evidence | None:
    budget = _LcsBudget()
    question_keys = {u.key for u in _units(texts.question)}
    question_sentences = [
        [u.key for u in _units(texts.question, s, e)] for s, e in _sentences(texts.question)
    ]
    for which, sentence in zip(("first", "last"), _key_sentences(texts.response), strict=False):
        target = [u.key for u in _units(sentence)]
        if len(target) < config.leakage_min_sentence_units:
            continue
        in_question = max((len(_lcs(target, q)) / len(target) for q in question_sentences), default=0.0)
        for s, e in texts.reasoning_sentences:
            units = _units(texts.reasoning, s, e)
            has_cue = bool(_STRONG_CUE_RE.search(texts.reasoning[s:e]))
            threshold = config.leakage_cue_overlap if has_cue else config.leakage_overlap
            # the LCS is at most the shorter side: skip sentences that cannot reach the threshold
            if len(units) < max(threshold * len(target), config.leakage_min_sentence_units):
                continue
            if not budget.spend(len(target), len(units)):
                return None
            matched = [units[j].key for j in _lcs(target, [u.key for u in units])]
            ratio = len(matched) / len(target)
            if ratio < threshold or len(matched) < config.leakage_min_sentence_units:
                continue
            novel = any(k not in question_keys for k in matched)
            if novel or ratio - in_question >= config.leakage_question_margin:
                reason = f"a reasoning sentence restates the response's {which} sentence ({ratio:.0%} of its content)"
                return _Evidence(reason, s, e)
    return None


def _word_runs(texts: _Texts) -> list[list[str]]:
    """Runs of the response's content words whose bigrams all occur in the reasoning and that hold a word
    absent from the question."""
    response = [u.key for u in _units(texts.response) if not _CJK_RUN_RE.fullmatch(u.key)]
    reasoning = _bigrams([u.key for u in _units(texts.reasoning) if not _CJK_RUN_RE.fullmatch(u.key)])
    question_words = {u.key for u in _units(texts.question)}
    runs: list[list[str]] = []
    current: list[str] = []
    for pair in zip(response, response[1:], strict=False):
        if pair in reasoning:
            current = current or [pair[0]]
            current.append(pair[1])
            continue
        runs.append(current)
        current = []
    runs.append(current)
    return [run for run in runs if any(key not in question_words for key in run)]


def _cjk_runs(texts: _Texts) -> list[str]:
    """Greedy longest substrings of the response's CJK text found in the reasoning but not the question."""
    runs: list[str] = []
    for m in _CJK_RUN_RE.finditer(texts.response[:1500]):
        run, i = m.group(), 0
        while i < len(run) - 1:
            j = i + 1
            while j < len(run) and run[i : j + 1] in texts.reasoning:
                j += 1
            piece = run[i:j]
            if len(piece) >= 2 and piece not in texts.question:
                runs.append(piece)
            i = max(j, i + 1)
    return runs


def _content_chars(piece: str) -> int:
    return len(piece) - len(_HIRAGANA_RE.findall(piece))


def _locate_words(texts: _Texts, run: Sequence[str]) -> tuple[int, int]:
    units = [u for u in _units(texts.reasoning) if not _CJK_RUN_RE.fullmatch(u.key)]
    keys = [u.key for u in units]
    for i in range(len(keys) - 1):
        if keys[i : i + 2] == list(run[:2]):
            j = i + 2
            while j < len(keys) and j - i < len(run) and keys[j] == run[j - i]:
                j += 1
            return units[i].start, units[j - 1].end
    return 0, 0


def _shared_phrase_evidence(texts: _Texts, config: CheckConfig) -> _Evidence | None:
    runs = _word_runs(texts)
    long_runs = [
        r
        for r in runs
        if len(r) >= config.leakage_min_phrase_words
        or (len(r) >= 2 and all(k in texts.response_names for k in r))
    ]
    if long_runs or sum(len(r) for r in runs) >= config.leakage_min_total_phrase_words:
        best = max(runs, key=len)
        start, end = _locate_words(texts, best)
        shown = "; ".join(" ".join(r) for r in runs[:4])
        return _Evidence(
            f"reasoning shares the response's phrases absent from the question: {shown}", start, end
        )
    pieces = [p for p in _cjk_runs(texts) if _content_chars(p) >= 2]
    long_pieces = [p for p in pieces if _content_chars(p) >= config.leakage_min_cjk_chars]
    total = sum(_content_chars(p) for p in pieces if _content_chars(p) >= 3)
    if long_pieces or total >= config.leakage_min_total_cjk_chars:
        best = max(pieces, key=_content_chars)
        start = texts.reasoning.find(best)
        shown = "、".join(pieces[:4])
        reason = f"reasoning shares the response's phrases absent from the question: {shown}"
        return _Evidence(reason, start, start + len(best))
    return None


def _reference_evidence(texts: _Texts, reference: str, config: CheckConfig) -> _Evidence | None:
    ref = _norm(reference).strip().strip(" .!?。\"'“”「」『』")
    if not ref:
        return None
    ref_numbers = _numbers(ref)
    leftover = _NUMBER_RE.sub("", ref)
    if ref_numbers and len(_squash(leftover)) <= 4:
        in_question = {v for v, _, _ in _numbers(texts.question)}
        numbers = {v: {_unit_after(ref, e)} for v, _, e in ref_numbers if v not in in_question}
        return _number_evidence(texts, numbers, "the reference answer's", config)
    need_cue = _in_question(texts, ref) or len(_squash(ref)) <= 3
    found = _phrase_evidence(texts, ref, "the reference answer", need_cue=need_cue)
    if found or need_cue:
        return found
    target = [u.key for u in _units(ref)]
    if len(target) < 4:
        return None
    budget = _LcsBudget()
    for s, e in texts.reasoning_sentences:
        units = [u.key for u in _units(texts.reasoning, s, e)]
        if len(units) < 0.8 * len(target):
            continue
        if not budget.spend(len(target), len(units)):
            return None
        if len(_lcs(target, units)) >= 0.8 * len(target):
            return _Evidence("a reasoning sentence contains most of the reference answer", s, e)
    return None


def _answer_units(texts: _Texts, config: CheckConfig) -> set[str]:
    """Content units of what the response answers: its short answer or answer phrases, else its words that
    the question does not contain."""
    found = [_short_answer(texts, config), *(_answer_phrase(s, texts, config) for s in _claims(texts.response))]
    units = {u.key for f in found if f is not None for u in _units(f[0])}
    if units:
        return units
    question = {u.key for u in _units(texts.question)}
    return {u.key for u in _units(texts.response)} - question


def _leakage_evidence(texts: _Texts, reference: str | None, config: CheckConfig) -> _Evidence | None:
    if reference and reference.strip():
        found = _reference_evidence(texts, reference, config)
        if found:
            return found
    has_response = bool(texts.response.strip())
    checks = [
        lambda: (
            _number_evidence(
                texts, _response_numbers(texts.response, texts.question), "the response's", config
            )
            if has_response
            else None
        ),
        lambda: _quote_evidence(texts, config) if has_response else None,
        lambda: _explicit_evidence(texts),
        lambda: _answer_phrase_evidence(texts, config) if has_response else None,
        lambda: _sentence_overlap_evidence(texts, config) if has_response else None,
        lambda: _shared_phrase_evidence(texts, config) if has_response else None,
        lambda: approximate_result_evidence(texts),
        lambda: question_answer_evidence(texts),
        lambda: final_number_evidence(texts),
        lambda: rejected_premise_evidence(texts) if has_response else None,
        lambda: conclusion_evidence(texts, _answer_units(texts, config)),
    ]
    for check in checks:
        found = check()
        if found:
            return found
    return None


def _name_keys(raw: str | None) -> frozenset[str]:
    """Stemmed words of capitalized sequences of two or more words ("Jane Austen", "Fushimi Inari Shrine")."""
    raw = raw or ""
    keys: set[str] = set()
    run: list[re.Match[str]] = []
    for m in [*re.finditer(_WORD, raw), None]:
        adjacent = m is not None and run and raw[run[-1].end() : m.start()] == " "
        if m is not None and m.group()[0].isupper() and (adjacent or not run):
            run.append(m)
            continue
        if len(run) >= 2:
            keys.update(_stem(_norm(w.group())) for w in run)
        run = [m] if m is not None and m.group()[0].isupper() else []
    return frozenset(keys)


def _check_leakage(
    reasoning: str,
    response: str | None,
    question: str,
    reference: str | None,
    config: CheckConfig,
    cut_off: bool = False,
) -> Flag | None:
    norm = _normalize(reasoning)
    texts = _Texts(
        norm.text, _norm(response), _norm(question), tuple(_sentences(norm.text)), _name_keys(response), cut_off
    )
    found = _leakage_evidence(texts, reference, config)
    if found is None:
        return None
    start, end = norm.original(found.start, found.end)
    if end <= start:
        return Flag("leakage", found.reason)
    return Flag("leakage", found.reason, reasoning[start:end], start, end)
