"""Turn the bytes of a text document into ``str``, whatever encoding it came in.

The order matters: a byte-order mark is proof, strict UTF-8 is nearly proof
(legacy 8-bit text almost never happens to be valid UTF-8), a charset the
document declares comes next, and only then do we guess statistically.
"""

from __future__ import annotations

import codecs
import re

from docpipe.errors import DocumentError
from docpipe.models import Stage

# Longest first: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# C0 controls that never occur in text, plus DEL. Tab, newlines, form feed and
# ESC (ANSI colours in logs) are left out: text files do contain them.
_BINARY_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_NOT_CONTROL_BYTES = bytes(b for b in range(256) if b not in _BINARY_CONTROL_BYTES)
_CONTROL_CHARS_RE = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")

MAX_CONTROL_RATIO = 0.05
"""More control characters than this (as a share of the sample) means binary data."""

MAX_NUL_RATIO = 0.01
"""More NUL bytes than this (as a share of the sample) means binary data. A few
NULs in prose are corruption (a padded log, a bad export), not a binary file;
normalisation removes them."""

# Labels that browsers (WHATWG) decode as windows-1252: servers say latin-1 and mean it.
_LATIN1_LABELS = {
    "latin-1",
    "latin1",
    "iso-8859-1",
    "iso8859-1",
    "iso_8859-1",
    "l1",
    "us-ascii",
    "ascii",
}

# Single-byte code pages are nearly indistinguishable on short texts, and the
# detector's "chaos" score is noisy there. Two priors fix most of its misses:
# code pages nobody uses any more (old DOS and Mac ones) must be clearly better
# to win, and windows-1252, by far the most common legacy encoding, wins ties.
_RARE_ENCODING_PENALTY = 0.1
_CP1252_CHAOS_MARGIN = 0.05
_COMMON_ENCODING_RE = re.compile(
    r"^(?:utf_\d+\w*|ascii|cp125\d|iso8859_\d+|koi8_[ru]|cp874|tis_620|shift_jis|cp932|"
    r"euc_jp|iso2022_jp|gb2312|gbk|gb18030|big5|big5hkscs|cp949|euc_kr|mac_roman)$"
)


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    """The encoding a byte-order mark announces and the mark's length, if any."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    return None


def guess_utf16_without_bom(sample: bytes) -> str | None:
    """Recognise BOM-less UTF-16 by its zero bytes: mostly-Latin UTF-16 has a
    NUL in every other byte, which no 8-bit text and no UTF-8 ever does."""
    if len(sample) < 8:
        return None
    sample = sample[: len(sample) - len(sample) % 2]
    even, odd = sample[0::2], sample[1::2]
    even_nuls, odd_nuls = even.count(0) / len(even), odd.count(0) / len(odd)
    if odd_nuls > 0.4 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.4 and odd_nuls < 0.05:
        return "utf-16-be"
    return None


def looks_binary(sample: bytes) -> bool:
    """True when ``sample`` (the start of a file, no BOM) cannot be text: more
    than a few NUL bytes, or many other control bytes."""
    if not sample:
        return False
    if sample.count(0) / len(sample) > MAX_NUL_RATIO:
        return True
    controls = len(sample.translate(None, delete=_NOT_CONTROL_BYTES))
    return controls / len(sample) > MAX_CONTROL_RATIO


def normalize_charset(label: str) -> str | None:
    """Python's codec name for a declared charset label, or None if unknown."""
    label = label.strip().strip("\"'").lower()
    if not label:
        return None
    if label in _LATIN1_LABELS:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_text(data: bytes, charset: str = "") -> str:
    """Decode a text document.

    ``charset`` is what the document or its server declared (HTTP header, HTML
    ``<meta charset>``); it is trusted only after a BOM and strict UTF-8, since
    declarations are often wrong and a wrong one silently produces mojibake.

    Raises :class:`DocumentError` (stage ``extract``) when no encoding gives
    plausible text.
    """
    if not data:
        return ""

    bom = bom_encoding(data)
    if bom is not None:
        encoding, skip = bom
        try:
            return _checked(data[skip:].decode(encoding), encoding)
        except UnicodeDecodeError as exc:
            raise DocumentError(
                Stage.EXTRACT,
                f"could not decode text: it starts with a {encoding} byte-order mark "
                f"but is not valid {encoding} (byte {exc.start + skip})",
            ) from None

    utf16 = guess_utf16_without_bom(data[:4096])
    candidates = [utf16] if utf16 else []
    candidates.append("utf-8")
    declared = normalize_charset(charset)
    if declared:
        candidates.append(declared)
        if declared == "cp1252":
            # cp1252 leaves five bytes undefined; ISO-8859-1 decodes everything.
            candidates.append("latin-1")
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return _checked(text, encoding)

    mixed = _mixed_utf8(data)
    if mixed is not None:
        return _checked(mixed, "utf-8 mixed with windows-1252")
    return _checked(*_guess(data))


_UTF8_MULTIBYTE_RE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_HIGH_BYTE_RE = re.compile(rb"[\x80-\xff]")
_CP1252_FALLBACK = "docpipe-cp1252-fallback"


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a byte that is not UTF-8 is read as windows-1252
    (latin-1 for the five bytes windows-1252 leaves undefined)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    chars = []
    for byte in bad:
        try:
            chars.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:
            chars.append(chr(byte))
    return "".join(chars), exc.end


codecs.register_error(_CP1252_FALLBACK, _cp1252_fallback)


def _mixed_utf8(data: bytes) -> str | None:
    """Text that is mostly UTF-8 with stretches of windows-1252 (two programs
    appended to one file, a pasted quote), or None if it is not that.

    Decoding all of it as either encoding garbles the other part; decoding the
    UTF-8 sequences as UTF-8 and each stray byte as windows-1252 reads both.
    Legacy 8-bit text almost never holds valid UTF-8 sequences by accident, so
    several of them, at least a quarter as many as the stray high bytes, are
    the signal; otherwise the statistical guess decides, as before.
    """
    sequences = _UTF8_MULTIBYTE_RE.findall(data)
    if len(sequences) < 2:
        return None
    stray = len(_HIGH_BYTE_RE.findall(data)) - sum(len(s) for s in sequences)
    if len(sequences) * 4 < stray:
        return None
    return data.decode("utf-8", errors=_CP1252_FALLBACK)


def _guess(data: bytes) -> tuple[str, str]:
    """Statistical guess with charset_normalizer; returns (text, encoding)."""
    # Imported here: sniffing (which shares this module) must work in images
    # without the text-processing extra.
    import charset_normalizer

    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        raise DocumentError(
            Stage.EXTRACT,
            "could not decode text: it is not UTF-8 and no other character encoding fits "
            "(the file may be binary)",
        )

    def score(match: charset_normalizer.CharsetMatch) -> float:
        common = any(_COMMON_ENCODING_RE.match(name) for name in match.could_be_from_charset)
        return match.chaos + (0.0 if common else _RARE_ENCODING_PENALTY)

    best = min(matches, key=score)
    for match in matches:
        if (
            "cp1252" in match.could_be_from_charset
            and score(match) <= score(best) + _CP1252_CHAOS_MARGIN
        ):
            try:
                return data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                break
    return str(best), best.encoding


def _checked(text: str, encoding: str) -> str:
    """Reject decoded text that is still full of control characters: a codec
    that maps every byte (latin-1) will "decode" any binary file."""
    sample = text[:65536]
    if sample and len(_CONTROL_CHARS_RE.findall(sample)) / len(sample) > MAX_CONTROL_RATIO:
        raise DocumentError(
            Stage.EXTRACT,
            f"could not decode text: decoded as {encoding} it is full of control "
            "characters, so the file looks binary",
        )
    return text
