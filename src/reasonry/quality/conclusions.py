"""Leakage without a shared surface form: the reasoning *concludes*. Its last sentence draws a conclusion
("so it will be Thursday", "therefore a penguin has feathers", "したがって、一番年上はミカです"), it gives an
approximate result ("approximately 12.49"), or it restates the response's rejection of a premise ("snakes never
grow legs"). A conclusion counts when there is nothing to compare it with (a reasoning-only result), when the
question asks yes or no (any conclusion answers it), or when it holds the response's answer words.
Plans in the first person ("so I divide 150 by 3"), sentences copied from the question, and the fragment a
generation cut off at the token limit ends in never count.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from reasonry.quality.leakage_cues import _Evidence, _number_cue_before, _numbers, _Texts
from reasonry.quality.normalisation import _CJK_RUN_RE, _is_cjk_text, _squash, _units

_EN_MARKER_RE = re.compile(
    r"\b(?:so|therefore|thus|hence|consequently|which means|that means|this means|it follows that|which makes|"
    r"making|in conclusion)\b[,:]?\s*"
)
_EN_PLAN_RE = re.compile(
    r"^(?:(?:first|then|next|now|finally)\s+)?(?:i|we|let|let's|i'll|we'll|i'd|i'm|you|my|our|that i|i can|to)\b|"
    r"\b(?:i|we)\s+(?:need|will|should|have to|must|can|could|want|am going|plan)\b|\bneed to\b|\bwhether\b"
)
_EN_STATEMENT_RE = re.compile(
    r"\b(?:is|are|was|were|be|been|must|has|have|had|does|do|did|cannot|can't|will|would|equals?|gives?|"
    r"leaves?|makes?|costs?|owns?|follows?|lands?|holds?|belongs?|comes?|remains?|exists?|isn't|aren't|"
    r"doesn't|don't|weighs?)\b"
)
_JA_MARKER_RE = re.compile(r"したがって|従って|よって|つまり|すなわち|なので|ので|から、|結果|以上から|ということは")
_JA_CONCLUSION_END_RE = re.compile(
    r"(?:です|でした|になります|となります|と言えます|といえます|と分かります|とわかります|ではありません|"
    r"ではないです|ではない|である|だ|ありません|しません|存在しません|に違いありません|はずです)[。.!！]*$"
)
_JA_STRONG_END_RE = re.compile(r"(?:と言えます|といえます|と分かります|とわかります|ではありません|ではない|に違いありません)[。.!！]*$")
_EN_YES_NO_Q_RE = re.compile(
    r"(?:^|[.!?]\s+)(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|must)\b[^.!?]*\?\s*$"
)
_JA_WH_RE = re.compile(r"何|誰|どこ|いつ|どれ|どちら|いくつ|いくら|どの|どう|なぜ|どんな")
_JA_YES_NO_Q_RE = re.compile(r"(?:ですか|ますか|でしょうか|のか)[?？]?\s*$")
_POLAR_START_RE = re.compile(r"^\W*(?:yes|no|はい|いいえ)\b")
_APPROX_RE = re.compile(r"(?:\b(?:approximately|approx\.?|about|roughly|around|nearly)|≈|約)\s*$")
_EN_NEGATION_RE = re.compile(
    r"\b(?:not|never|no|none|cannot|can't|doesn't|don't|isn't|aren't|won't|didn't|impossible|nothing|neither)\b"
)
_JA_NEGATION_RE = re.compile(r"ない|ません|ありえ|あり得")
_CLAUSE_RE = re.compile(r"[,;:、，]|\b(?:and|but|because|since|so|therefore)\b")


def is_yes_no(question: str, response: str) -> bool:
    """The question asks yes or no (or the response answers that way)."""
    last = question.strip().splitlines()[-1] if question.strip() else ""
    if _POLAR_START_RE.search(response):
        return True
    if _is_cjk_text(last):
        return bool(_JA_YES_NO_Q_RE.search(last)) and not _JA_WH_RE.search(last)
    return bool(_EN_YES_NO_Q_RE.search(last))


def _final_sentence(texts: _Texts) -> tuple[int, int] | None:
    """The last sentence with content; none when generation was cut off (what it ends in is a fragment)."""
    if texts.cut_off:
        return None
    sentences = [(s, e) for s, e in texts.reasoning_sentences if _units(texts.reasoning, s, e)]
    return sentences[-1] if sentences else None


def _en_conclusion(texts: _Texts, start: int, end: int) -> int | None:
    """Start of the conclusion drawn by the sentence (after its last marker), if it states one."""
    markers = list(_EN_MARKER_RE.finditer(texts.reasoning, start, end))
    if not markers:
        return None
    clause = texts.reasoning[markers[-1].end() : end].strip()
    makes = markers[-1].group().strip(" ,:") in ("which makes", "making")  # "which makes X the closest"
    if not clause or _EN_PLAN_RE.search(clause) or not (makes or _EN_STATEMENT_RE.search(clause)):
        return None
    return markers[-1].start()


def _ja_conclusion(texts: _Texts, start: int, end: int, yes_no: bool) -> int | None:
    sentence = texts.reasoning[start:end]
    if not _JA_CONCLUSION_END_RE.search(sentence):
        return None
    markers = list(_JA_MARKER_RE.finditer(sentence))
    marker = markers[-1] if markers else None
    if marker is None and not (yes_no and _JA_STRONG_END_RE.search(sentence)):
        return None
    return start + (marker.start() if marker else 0)


def _copied_from_question(texts: _Texts, start: int, end: int) -> bool:
    squashed = _squash(texts.reasoning[start:end])
    return bool(squashed) and squashed in _squash(texts.question)


def conclusion_evidence(texts: _Texts, answer_units: Collection[str]) -> _Evidence | None:
    """The reasoning's last sentence concludes: nothing to compare it with, a yes/no question, or it holds
    one of `answer_units` (content units of the response's answer)."""
    final = _final_sentence(texts)
    if final is None:
        return None
    start, end = final
    has_response = bool(texts.response.strip())
    yes_no = is_yes_no(texts.question, texts.response)
    cjk = _is_cjk_text(texts.reasoning[start:end])
    at = _ja_conclusion(texts, start, end, yes_no) if cjk else _en_conclusion(texts, start, end)
    if at is None or _copied_from_question(texts, at, end):
        return None
    said = {u.key for u in _units(texts.reasoning, at, end)}
    if has_response and not yes_no and not said & set(answer_units):
        return None
    why = "the question asks yes or no" if yes_no and has_response else (
        "it holds the response's answer" if has_response else "there is no response to hold it back for")
    return _Evidence(f"the reasoning ends in a conclusion ({why})", at, end)


def approximate_result_evidence(texts: _Texts) -> _Evidence | None:
    """A decimal result given as approximate ("as approximately 12.49"), not taken from the question."""
    in_question = {v for v, _, _ in _numbers(texts.question)}
    for value, start, end in _numbers(texts.reasoning):
        if value in in_question or value == value.to_integral_value():
            continue
        if _APPROX_RE.search(texts.reasoning[max(0, start - 20) : start]):
            return _Evidence(f"reasoning gives an approximate result {texts.reasoning[start:end]}", start, end)
    return None


def final_number_evidence(texts: _Texts) -> _Evidence | None:
    """Without a response: the last sentence's last number, stated with an answer cue and absent from the
    question ("…which gives 15 stickers in total")."""
    final = _final_sentence(texts)
    if final is None or texts.response.strip():
        return None
    in_question = {v for v, _, _ in _numbers(texts.question)}
    found = [n for n in _numbers(texts.reasoning) if final[0] <= n[1] < final[1]]
    if not found:
        return None
    value, start, end = found[-1]
    if value in in_question or not _number_cue_before(texts.reasoning, start):
        return None
    return _Evidence(f"the reasoning ends by stating the number {texts.reasoning[start:end]}", start, end)


def _clauses(text: str, offset: int = 0) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for m in _CLAUSE_RE.finditer(text):
        spans.append((offset + pos, offset + m.start()))
        pos = m.end()
    spans.append((offset + pos, offset + len(text)))
    return [(s, e) for s, e in spans if e > s]


def _negated(text: str) -> bool:
    return bool(_JA_NEGATION_RE.search(text) if _is_cjk_text(text) else _EN_NEGATION_RE.search(text))


def _keys(text: str) -> set[str]:
    return {u.key for u in _units(text) if not _CJK_RUN_RE.fullmatch(u.key) or len(u.key) > 1}


def rejected_premise_evidence(texts: _Texts) -> _Evidence | None:
    """The response denies something ("snakes do not have legs") and a reasoning clause denies the same thing."""
    denials = [_keys(texts.response[s:e]) for s, e in _clauses(texts.response) if _negated(texts.response[s:e])]
    denials = [keys for keys in denials if len(keys) >= 2]
    if not denials:
        return None
    for s, e in texts.reasoning_sentences:
        for cs, ce in _clauses(texts.reasoning[s:e], s):
            clause = texts.reasoning[cs:ce]
            plan = not _is_cjk_text(clause) and _EN_PLAN_RE.search(clause.strip())
            if not _negated(clause) or plan or _copied_from_question(texts, cs, ce):
                continue
            keys = _keys(clause)
            for denial in denials:
                shared = keys & denial
                if len(shared) >= 2 and len(shared) >= 0.5 * len(denial):
                    return _Evidence("the reasoning states the response's denial (a rejected premise)", s, e)
    return None


_EN_WH_Q_RE = re.compile(r"^(?:who|what|which)\s+(?:is|are|was|were)\s+(?:the\s+)?(?P<f>[^?]{3,60}?)\s*\?\s*$")
_JA_WH_Q_RE = re.compile(r"(?P<f>[^。？?、]{2,30}?)(?:のは|は)(?:誰|何|どこ|どれ|いくつ|いくら|何色|何曜日)(?:ですか|でしょうか)")
_EN_FILLER = r"(?:\s+[\w'-]+)?"  # "the slowest *runner* is Joe"
_EN_COPULA = r"\s+(?:is|are|was|were|must be|would be|has to be)\s+"
_HYPOTHESIS_RE = re.compile(r"\b(?:if|whether|suppose|assume|assuming|or)\b|か(?:を|どうか)")
_EN_VAGUE = re.compile(r"^(?:the one|one|who|what|which|whoever|whichever|not|unknown|unclear|either|a person|someone)\b")


def question_answer_evidence(texts: _Texts) -> _Evidence | None:
    """A reasoning sentence answers the question's own wording: "Who is the shortest?" → "the shortest person
    is Alice" / "Alice is the shortest"; 「一番背が低いのは誰ですか」 → 「一番背が低いのは次郎です」."""
    last = texts.question.strip().splitlines()[-1] if texts.question.strip() else ""
    sentence_end = r"[^.\n!?。]"
    patterns: list[re.Pattern[str]] = []
    en = _EN_WH_Q_RE.search(last.split(". ")[-1].strip())
    if en and " or " not in en.group("f"):
        focus = r"\s+".join(re.escape(w) for w in en.group("f").split())
        patterns += [re.compile(rf"\b(?:the\s+)?{focus}{_EN_FILLER}{_EN_COPULA}(?P<x>{sentence_end}{{1,40}})"),
                     re.compile(rf"(?P<x>\b[\w'-]+(?:\s+[\w'-]+)?){_EN_COPULA}(?:the\s+)?{focus}\b")]
    ja = _JA_WH_Q_RE.search(last)
    if ja:
        focus = re.escape(ja.group("f")[-12:])
        patterns.append(re.compile(rf"{focus}(?:のは|は)(?P<x>[^、。？?]{{1,15}}?)(?:です|だ|になります|となります)"))
    for pattern in patterns:
        for m in pattern.finditer(texts.reasoning):
            x = m.group("x").strip()
            before = texts.reasoning[max(0, m.start() - 30) : m.start()]
            if not x or _EN_VAGUE.match(x) or _JA_WH_RE.match(x) or _HYPOTHESIS_RE.search(before + m.group()):
                continue
            if _copied_from_question(texts, m.start(), m.end()):
                continue
            return _Evidence(f"the reasoning answers the question in its own words: '{m.group().strip()}'",
                             m.start(), m.end())
    return None
