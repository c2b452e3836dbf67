"""Text encodings of question files: UTF-8 when it is, else a guess that is announced."""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from reasonry.errors import InputError, warn_input

_SNIFF_BYTES = 64 * 1024
_READ_BLOCK = 1024 * 1024
_KANA = re.compile(r"[\u3040-\u30ff]")
_KANJI = re.compile(r"[\u4e00-\u9fff]")
_SHIFT_JIS = {"cp932", "shift_jis", "shift_jisx0213", "shift_jis_2004"}
_WESTERN_LETTERS = frozenset(
    [chr(code) for code in range(0xC0, 0x100) if code not in (0xD7, 0xF7)] + list("ŒœŠšŽžŸƒªº")
)
_WESTERN_SYMBOLS = frozenset("€‚„…†‡ˆ‰‹›‘’“”•–—˜™¡¢£¥§©«®°±´µ¶·»¿")
_MAX_ACCENTED_SHARE = 0.3  # Cyrillic or Greek read as cp1252 is nearly all accented letters
_OTHER_EXAMPLE = {"cp1252": "cp1250"}
_ENCODING_NOTES = {"cp932": " (Japanese Shift-JIS)", "cp1252": " (Western European, Windows)"}


def check_encoding_name(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(
            f"--encoding {encoding}: unknown encoding; use e.g. utf-8, utf-8-sig or cp932"
        ) from None


def detect_encoding(path: Path, label: str) -> str:
    """utf-8-sig when the whole file is valid UTF-8, else a guess from a sample, announced with a warning.

    Japanese text is cp932; text that reads as Western European in cp1252 is cp1252 (a statistical
    detector often says cp1250 for a short French or German file: "crème" would read "crčme").
    """
    bad_at = _first_utf8_error(path)
    if bad_at is None:
        return "utf-8-sig"
    name = _guess_encoding(_sample(path, bad_at), label)
    other = _OTHER_EXAMPLE.get(name, "cp1252")
    warn_input(f"{label}: not UTF-8; read as {name}{_ENCODING_NOTES.get(name, '')} (a guess); "
               f"if some letters look wrong, pass the right --encoding, e.g. --encoding {other}")
    return name


def _guess_encoding(sample: bytes, label: str) -> str:
    cp932_text = _as_cp932(sample)
    if cp932_text is not None and _KANA.search(cp932_text):
        return "cp932"
    from charset_normalizer import from_bytes

    matches = from_bytes(sample)
    candidates = {codecs.lookup(match.encoding).name for match in matches}
    if cp932_text is not None and _KANJI.search(cp932_text) and candidates & _SHIFT_JIS:
        return "cp932"
    if _reads_as_western(sample):
        return "cp1252"
    best = matches.best()
    if best is None:
        raise InputError(
            f"{label}: cannot tell the text encoding (it is not UTF-8); pass --encoding, e.g. --encoding cp932"
        )
    name = codecs.lookup(best.encoding).name
    return "cp932" if name in _SHIFT_JIS else name


def _reads_as_western(sample: bytes) -> bool:
    """True when the bytes decode as cp1252 into Latin text with a few accented letters and usual symbols."""
    try:
        text = codecs.getincrementaldecoder("cp1252")("strict").decode(sample)
    except UnicodeDecodeError:
        return False
    ascii_letters = accented = 0
    for char in text:
        if char.isascii():
            ascii_letters += char.isalpha()
        elif char in _WESTERN_LETTERS:
            accented += 1
        elif char not in _WESTERN_SYMBOLS and not unicodedata.category(char).startswith("Z"):
            return False
    return accented > 0 and accented <= _MAX_ACCENTED_SHARE * (ascii_letters + accented)


def _first_utf8_error(path: Path) -> int | None:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with path.open("rb") as file:
        while block := file.read(_READ_BLOCK):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                return offset + error.start
            offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return offset
    return None


def _sample(path: Path, bad_at: int) -> bytes:
    """The file's head, plus the bytes around the first non-UTF-8 byte when that lies further on."""
    with path.open("rb") as file:
        head = file.read(_SNIFF_BYTES)
        if bad_at < _SNIFF_BYTES:
            return head
        file.seek(max(bad_at - _SNIFF_BYTES // 2, 0))
        return head + b"\n" + file.read(_SNIFF_BYTES)


def _as_cp932(sample: bytes) -> str | None:
    try:
        return codecs.getincrementaldecoder("cp932")("strict").decode(sample)
    except UnicodeDecodeError:
        return None


def decode_error(label: str, encoding: str, error: UnicodeDecodeError) -> InputError:
    return InputError(
        f"{label}: cannot read the file as {encoding} ({error.reason}); "
        "pass the right --encoding, e.g. --encoding cp932 or --encoding utf-8"
    )


def text_lines(path: Path, label: str, encoding: str) -> Iterator[str]:
    try:
        file = path.open(encoding=encoding)
    except OSError as error:
        raise unreadable(label, error) from None
    with file:
        try:
            yield from file
        except UnicodeDecodeError as error:
            raise decode_error(label, encoding, error) from None


def unreadable(label: str, error: OSError) -> InputError:
    return InputError(f"{label}: cannot read the file ({error.strerror or one_line(error)})")


def one_line(text: object) -> str:
    return " ".join(str(text).split())
