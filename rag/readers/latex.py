"""Pure decoding of the LaTeX that reference managers write into BibTeX fields.

`{\\"o}`, `\\"{o}`, `\\'e`, `\\c{c}`, `\\v{s}`, `\\ss`, `\\o`, `--`, `~` (a tie: a space),
`\\textasciitilde{}` (a real "~") become the characters they stand for. In math, Greek letters and
common symbols become theirs (`$\\alpha$` -> "α", `$\\beta \\le 0.5$` -> "β ≤ 0.5"; math left with
other commands keeps its dollars). Braces that protect capitals (`{BERT}`) and the rest are left to
`rag.textclean.clean_text`, the same normaliser the built-in corpus goes through.
"""

from __future__ import annotations

import re
import unicodedata

# Accent commands and the combining mark each adds to the letter after it.
_ACCENTS = {
    '"': "\u0308",
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "u": "\u0306",
    "v": "\u030c",
    "H": "\u030b",
    "c": "\u0327",
    "k": "\u0328",
    "r": "\u030a",
    "d": "\u0323",
    "b": "\u0331",
}
_LETTERS = {
    "ss": "ß",
    "o": "ø",
    "O": "Ø",
    "aa": "å",
    "AA": "Å",
    "ae": "æ",
    "AE": "Æ",
    "oe": "œ",
    "OE": "Œ",
    "l": "ł",
    "L": "Ł",
    "i": "ı",
    "j": "ȷ",
    "dh": "ð",
    "th": "þ",
    "textendash": "–",
    "textemdash": "—",
    "textquoteright": "’",
    "textquoteleft": "‘",
    "textregistered": "®",
    "texttrademark": "™",
    "textasciitilde": "~",
    "ldots": "…",
    "dots": "…",
}
_GREEK = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu",
    "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
]  # fmt: skip
_MATH_SYMBOLS = dict(zip(_GREEK, "αβγδεζηθικλμνξπρστυφχψω", strict=True))
_MATH_SYMBOLS |= {
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ", "Upsilon": "Υ",
    "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω", "varepsilon": "ε", "vartheta": "ϑ", "varphi": "φ", "varrho": "ϱ",
    "varsigma": "ς", "ell": "ℓ", "times": "×", "cdot": "·", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥",
    "neq": "≠", "ne": "≠", "approx": "≈", "sim": "∼", "pm": "±", "infty": "∞", "to": "→", "rightarrow": "→",
    "leftarrow": "←", "in": "∈", "sum": "∑", "prod": "∏", "partial": "∂", "nabla": "∇", "ll": "≪", "gg": "≫",
    "propto": "∝", "circ": "∘", "%": "%",
}  # fmt: skip
_MATH = re.compile(r"(?<!\\)\$([^$]{1,300}?)(?<!\\)\$")
_SYMBOL_NAMES = "|".join(sorted(map(re.escape, _MATH_SYMBOLS), key=len, reverse=True))
_MATH_SYMBOL = re.compile(r"\\(" + _SYMBOL_NAMES + r")(?![A-Za-z])")
_BASE = r"(\\[ij](?![A-Za-z])|[A-Za-z])"
# \"o  \"{o}  \'{\i}  \c c  \c{c}: the command, then the letter (braced or not)
_CORE = (
    r"\\(?:([\"'`^~=.])\s*|([uvHckrdb])(?:\s+|(?=\{)))"
    r"(?:\{\s*" + _BASE + r"\s*\}|" + _BASE + r")"
)
_WRAPPED_ACCENT = re.compile(r"\{" + _CORE + r"\}")  # {\"o}, {\c c}
_ACCENT = re.compile(_CORE)
_NAMES = "|".join(sorted(_LETTERS, key=len, reverse=True))
_WRAPPED_LETTER = re.compile(r"\{\\(" + _NAMES + r")\s*\}")  # {\ss}, {\o}
_LETTER = re.compile(r"\\(" + _NAMES + r")(?![A-Za-z])(?:\{\})?(\s(?=[a-z]))?")  # \ss e -> ße


def decode_latex(text: str) -> str:
    """Turn BibTeX/LaTeX character commands into Unicode; other markup is left for clean_text."""
    text = re.sub(r"(?<![\\$])~", " ", text)  # a tie is a non-breaking space (`\\~{n}` is an accent)
    if "\\" in text:
        text = _MATH.sub(_math, text)
        text = _WRAPPED_ACCENT.sub(_accent, text)
        text = _ACCENT.sub(_accent, text)
        text = _WRAPPED_LETTER.sub(lambda m: _LETTERS[m.group(1)], text)
        text = _LETTER.sub(_letter, text)
        text = _FONT_SWITCH.sub("", text)
        text = text.replace("\\&", "&")
    text = text.replace("---", "—").replace("--", "–")
    return unicodedata.normalize("NFC", text)


def _math(match: re.Match[str]) -> str:
    """`$\\alpha$` -> "α"; math that keeps other commands (`$\\mathcal{L}$`) keeps its dollars."""
    inner = match.group(1)
    converted = _MATH_SYMBOL.sub(lambda m: _MATH_SYMBOLS[m.group(1)], inner)
    if converted != inner and "\\" not in converted and "{" not in converted:
        return converted
    return f"${converted}$"


# Font switches that act on the rest of their group: `{\\em word}` is just "word".
_FONT_SWITCH = re.compile(r"\\(?:em|it|bf|sc|rm|sl|tt|sf|itshape|bfseries|scshape|upshape|normalfont)(?![A-Za-z])\s*")
_COMMAND_BEFORE = re.compile(r"\\[A-Za-z]+\s*$")


def strip_braces(text: str) -> str:
    """Drop BibTeX's grouping and case-protecting braces (`{BERT}`, `Multi{M}odal`, `{der {P}rincipia}`).

    Braces that hold a command's argument (`\\textbf{x}`, `\\url{...}`) stay for clean_text.
    """
    if "{" not in text and "}" not in text:
        return text
    out: list[str] = []
    keep: list[bool] = []
    for i, char in enumerate(text):
        if char == "{":
            keep.append(bool(_COMMAND_BEFORE.search(text[max(0, i - 40) : i])))
            if keep[-1]:
                out.append(char)
        elif char == "}":
            if keep and keep.pop():
                out.append(char)
        else:
            out.append(char)
    return "".join(out)


def _accent(match: re.Match[str]) -> str:
    mark = _ACCENTS[match.group(1) or match.group(2)]
    base = match.group(3) or match.group(4)
    base = {"\\i": "i", "\\j": "j"}.get(base, base)
    return unicodedata.normalize("NFC", base + mark)


def _letter(match: re.Match[str]) -> str:
    """`\\ss e` is one word (LaTeX eats the space after a short control word); `\\ldots and` is two."""
    name, space = match.group(1), match.group(2) or ""
    return _LETTERS[name] + (space if len(name) > 2 else "")
