"""Language of a reasoning (offline, langid plus a kana/kanji rule) and the `language` flag."""

from __future__ import annotations

import re
import threading
from typing import Any

from reasonry.errors import ConfigError
from reasonry.quality.flags import CheckConfig, Flag
from reasonry.quality.normalisation import _CJK_RUN_RE, _HAN_RE, _KANA_RE

LANGUAGES = {
    "ja": "Japanese", "en": "English", "zh": "Chinese", "zh-cn": "Simplified Chinese",
    "zh-tw": "Traditional Chinese", "ko": "Korean", "fr": "French", "de": "German", "es": "Spanish",
    "it": "Italian", "pt": "Portuguese", "ru": "Russian", "vi": "Vietnamese", "th": "Thai", "id": "Indonesian",
    "ar": "Arabic", "hi": "Hindi", "nl": "Dutch", "pl": "Polish", "tr": "Turkish", "uk": "Ukrainian",
}


def language_code(value: str, flag: str = "--language") -> str:
    """The ISO 639-1 code the checks compare with, from a code (en, ja, pt-BR) or an English name (Japanese)."""
    text = value.strip().lower()
    by_name = {name.lower(): code.split("-")[0] for code, name in LANGUAGES.items()}
    code = by_name.get(text, text.replace("_", "-").split("-")[0])
    if code not in _identifier().nb_classes:
        raise ConfigError(f"{flag} {value!r}: not a language the check knows; give a code such as en, ja, zh, fr "
                          "or a name such as English, Japanese")
    return code


_langid_lock = threading.Lock()
_langid_identifier: Any = None


def _identifier() -> Any:
    global _langid_identifier
    with _langid_lock:
        if _langid_identifier is None:
            from langid.langid import LanguageIdentifier, model

            _langid_identifier = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        return _langid_identifier


_CODE_OR_URL_RE = re.compile(r"```.*?```|`[^`\n]*`|\bhttps?://\S+", re.DOTALL)


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of `text`, offline.

    langid (its model ships inside the package) with normalized probabilities, except that text where
    kana/kanji dominate (at least 30% of the letters) is Japanese when it has kana, and Chinese or Japanese
    (whichever langid ranks higher) when it is kanji only; below that share the CJK characters are left out.
    Returns ("", 0.0) for text without letters.
    """
    text = _CODE_OR_URL_RE.sub(" ", text or "")
    kana = len(_KANA_RE.findall(text))
    han = len(_HAN_RE.findall(text))
    cjk = kana + han
    latin = sum(1 for ch in text if ch.isalpha()) - cjk
    if cjk + latin == 0:
        return "", 0.0
    share = cjk / (cjk + latin)
    if cjk and share >= 0.3:
        if kana >= 0.05 * cjk:
            return "ja", round(min(1.0, 0.5 + share), 4)
        ranked = dict(_identifier().rank(text))
        lang = "ja" if ranked.get("ja", 0.0) > ranked.get("zh", 0.0) else "zh"
        return lang, round(min(1.0, 0.5 + share), 4)
    # a few quoted Japanese words must not outweigh the sentence around them
    lang, prob = _identifier().classify(_CJK_RUN_RE.sub(" ", text) if cjk else text)
    return str(lang), float(prob)


def _check_language(reasoning: str, config: CheckConfig) -> Flag | None:
    expected = config.expected_language
    if not expected or len(reasoning.strip()) < config.min_chars:
        return None
    lang, prob = detect_language(reasoning)
    if not lang or lang == expected or prob < config.min_language_confidence:
        return None
    return Flag("language", f"reasoning looks like '{lang}' (p={prob:.2f}), expected '{expected}'")
