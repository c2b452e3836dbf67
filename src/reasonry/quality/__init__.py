"""Quality checks for generated reasoning: answer leakage, wrong language, truncation, repetition, length.

normalisation (text basics) → language, truncation, repetition, leakage_cues → leakage → checks (one result, one
stored record, length outliers) → summary (per-model rates, rule/judge agreement); judge asks a model instead.
"""

from reasonry.quality.checks import check_one, length_outliers
from reasonry.quality.flags import FLAG_NAMES, CheckConfig, Flag
from reasonry.quality.language import detect_language
from reasonry.quality.summary import summarize

__all__ = [
    "FLAG_NAMES",
    "CheckConfig",
    "Flag",
    "check_one",
    "detect_language",
    "length_outliers",
    "summarize",
]
