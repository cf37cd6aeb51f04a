"""Pure normalisation of scraping and LaTeX leftovers in titles and abstracts.

Each rule is narrow on purpose: it fixes a leftover seen in scraped abstracts and leaves real
content alone (`2048x2048`, `sim2real`, `$x$` and ordinary braces in code stay as they are).
"""

from __future__ import annotations

import re
import unicodedata

# Unicode escapes that lost their backslash while scraping: "samplesx2013less" -> "samples–less".
# Only punctuation code points, and never after a digit (so "2048x2048" survives).
_LOST_UNICODE = re.compile(r"(?<![0-9A-Fa-f])\\?x(201[0-9a-f]|2026|00a0)", re.IGNORECASE)
# "sim20times" / "\sim 20" -> "~20 times"; "sim2real" is not touched (a word follows the number).
_SIM_NUMBER = re.compile(r"(?<![A-Za-z])\\?sim\s?(\d+(?:\.\d+)?)(times\b|x\b|(?=[\s%),.;:]|$))")
_LINE_BREAK = re.compile(r"\\\\+")  # LaTeX's \\ (a line break), or a run of backslashes
_ESCAPED_CHAR = re.compile(r"\\([%&_#$])")
_FORMAT_COMMAND = re.compile(
    r"(?<![A-Za-z])\\?(?:textbf|textit|texttt|textsc|textrm|emph|mathbf|mathrm|mathit|mathcal|underline|text|url|href)"
    r"\{([^{}]*)\}"
)
_SCRIPT_BRACES = re.compile(r"([\^_])\{([^{}]{1,12})\}")
_BARE_BRACES = re.compile(r"\{([^{}\\]*)\}")
_UNKNOWN_MACRO = re.compile(r"\\([A-Za-z]+)\b")
_STRAY_BRACE = re.compile(r"(?<=\w)\}(?=[\s.,;:)]|$)")
_SPACES = re.compile(r"[ \t\u00a0]{2,}")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def storable(text: str) -> str:
    """The text with lone surrogates (a JSON "\\ud800", a stray byte read as a file name) made U+FFFD.

    Such a string cannot be encoded as UTF-8, so the index, the tokenizers and the terminal all fail on it.
    """
    return _LONE_SURROGATE.sub("\ufffd", text)


def lone_surrogate(text: str) -> tuple[int, str] | None:
    """(position, description) of the first character that is not encodable text, or None."""
    match = _LONE_SURROGATE.search(text)
    if match is None:
        return None
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # how Python carries an undecodable byte from argv or a file name
        return match.start(), f"the byte 0x{code - 0xDC00:02x}, which is not UTF-8"
    return match.start(), f"a lone surrogate U+{code:04X}"


def clean_text(raw: str) -> str:
    """Normalise one title or abstract; idempotent (clean_text(clean_text(x)) == clean_text(x)): one pass can
    make a new match ("x2014x2014", "\\\\\\A"), so passes repeat until the text stops changing."""
    text = _clean_once(raw)
    for _ in range(8):
        again = _clean_once(text)
        if again == text:
            break
        text = again
    return text


def _clean_once(raw: str) -> str:
    text = unicodedata.normalize("NFC", raw)
    text = text.replace("\r", " ").replace("\n", " ")
    text = _LOST_UNICODE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = _LINE_BREAK.sub(" ", text)
    text = _ESCAPED_CHAR.sub(r"\1", text)
    text = _SIM_NUMBER.sub(_sim_replacement, text)
    for _ in range(3):  # nested commands such as \textbf{\emph{x}}
        text = _FORMAT_COMMAND.sub(r"\1", text)
    text = _SCRIPT_BRACES.sub(r"\1\2", text)
    text = _BARE_BRACES.sub(lambda m: (" " if _follows_word(m) else "") + m.group(1), text)
    text = _UNKNOWN_MACRO.sub(r"\1", text)
    text = _STRAY_BRACE.sub("", text)
    text = text.replace("\u00a0", " ")
    text = _SPACES.sub(" ", text)
    return text.strip()


def _follows_word(match: re.Match[str]) -> bool:
    start = match.start()
    return start > 0 and match.string[start - 1].isalnum()


def _sim_replacement(match: re.Match[str]) -> str:
    number, suffix = match.group(1), match.group(2)
    if suffix == "times":
        return f"~{number} times"
    return f"~{number}{suffix}"


def title_key(title: str) -> str:
    """Key under which two spellings of one title are the same paper (case, punctuation, spacing)."""
    folded = unicodedata.normalize("NFKD", clean_text(title)).casefold()
    return " ".join(re.findall(r"\w+", folded))
