"""What a check reports (`Flag`) and the thresholds every check reads (`CheckConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

FLAG_NAMES = ("leakage", "language", "truncated", "repetition", "length", "empty")


@dataclass
class Flag:
    """One quality problem found in a result.

    `span` is the matched text, an exact substring of the reasoning when `start`/`end` are set
    (`reasoning[start:end] == span`); `start`/`end` are None when the span lies elsewhere (e.g. the
    response) or there is nothing to point at.
    """

    name: str
    reason: str
    span: str | None = None
    start: int | None = None
    end: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flag:
        return cls(
            name=str(data["name"]),
            reason=str(data.get("reason", "")),
            span=data.get("span"),
            start=data.get("start"),
            end=data.get("end"),
        )


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of every check. The defaults suit English and Japanese reasoning of a few sentences."""

    # language: the language the reasoning must be in, a code (en) or a name (English), kept as its ISO 639-1
    # code; None skips the check.
    expected_language: str | None = None
    # flag only when the detected language has at least this (normalized) probability
    min_language_confidence: float = 0.8
    # texts shorter than this (stripped, in characters) are not language-checked
    min_chars: int = 20
    # repetition: an n-gram of `repetition_ngram` words (`repetition_cjk_ngram` characters for
    # Japanese/Chinese) occurring more than `repetition_max_repeats` times within `repetition_window`
    # tokens, or a block repeated back to back more than `repetition_max_repeats` times
    repetition_ngram: int = 4
    repetition_cjk_ngram: int = 10
    repetition_max_repeats: int = 3
    repetition_window: int = 150
    repetition_max_period: int = 20
    # a line of at least `repetition_min_line_chars` characters occurring `repetition_line_repeats` times
    repetition_line_repeats: int = 3
    repetition_min_line_chars: int = 10
    # length: robust z-score (median / MAD) beyond which a reasoning length is an outlier
    length_z: float = 3.0
    length_min_items: int = 8
    # leakage: integers below this need an answer cue or a shared unit word to count
    leakage_small_number: int = 10
    # quoted phrases shorter than this (characters) are ignored
    leakage_min_quote_chars: int = 2
    # ordered overlap of a response sentence's content words with one reasoning sentence
    leakage_overlap: float = 0.6
    leakage_cue_overlap: float = 0.5  # ... when the reasoning sentence has an answer cue ("so", "therefore")
    leakage_min_sentence_units: int = 2  # response sentences with fewer content units are not compared
    leakage_question_margin: float = 0.34  # overlap must beat the question's own overlap by this much
    # shared phrases absent from the question: one run of `leakage_min_phrase_words` content words (or a
    # capitalized name of two), or `leakage_min_total_phrase_words` words over runs of at least two
    leakage_min_phrase_words: int = 3
    leakage_min_total_phrase_words: int = 5
    # the same for Japanese, counted in kanji/katakana characters
    leakage_min_cjk_chars: int = 4
    leakage_min_total_cjk_chars: int = 8
    # longest answer phrase (words) taken from "X is <phrase>" in the response
    leakage_max_answer_words: int = 6

    def __post_init__(self) -> None:
        if self.expected_language:
            from reasonry.quality.language import language_code

            object.__setattr__(self, "expected_language", language_code(self.expected_language))
