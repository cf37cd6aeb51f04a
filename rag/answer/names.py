"""What a paper calls its contribution: "DyVTE", "RLAIF-V", "Arcana", "Factually Augmented RLHF".

A researcher asking "is there work that ..." wants the name first; a small model often echoes the
question instead of naming anything, so the system finds the name itself, from the title's lead
("RLAIF-V: Aligning MLLMs ...") or from the abstract's own words ("termed dynamic visual-token exit
(DyVTE)", "we propose Arcana, a ...", "called Factually Augmented RLHF"). Pure functions of a title
and an abstract; `common` says which words are everyday vocabulary of the corpus (MLLMs, CLIP, LLMs)
and so name no single paper's contribution.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# A token that reads as a coined name: an inner capital or a digit (DyVTE, mOSCAR, GPT-4o, Met^2Net,
# LLaVA-MoD, 4M-21), or all capitals of 3+ letters (MANTIS, LEOPARD).
_NAME_TOKEN = re.compile(
    r"(?=[\w\-^+.]*[A-Za-z])(?:[A-Za-z0-9]*[a-z0-9][A-Z][\w\-^+]*|[A-Z][\w\-^+]*\d[\w\-^+]*|\d[\w\-^+]*[A-Za-z]"
    r"[\w\-^+]*|[A-Z]{3,}[\w\-^+]*|[A-Z]{2,}[\-^][\w\-^+]+|[A-Z][a-z]+-[A-Z][\w\-^+]*|[A-Z][\w^+]*-\d[\w\-^+]*)"
)
_MAX_LONG_WORDS = 8
_INTRO_VERB = re.compile(
    r"\b(?:we|this (?:paper|work|study)|the paper|our work)\s+(?:first\s+|further\s+|then\s+|also\s+|here\s+)?"
    r"(?:propose|present|introduce|develop|design|build|construct|release|curate|establish|create|devise|offer)s?\b",
    re.I,
)
_CALLED = re.compile(r"\b(?:termed|called|named|dubbed|coined|namely|abbreviated as|referred to as)\s+(?:as\s+)?", re.I)
_ACRONYM_DEFINITION = re.compile(r"(?P<long>(?:[\w\-^']+\s+){0,7}[\w\-^']+)\s*\((?P<short>[^()]{2,25})\)")
_LEADING_FILLER = {"a", "an", "the", "our", "new", "novel", "simple", "effective", "efficient", "yet", "and"}
_STOP_NAME = {
    "to", "that", "which", "for", "with", "by", "in", "on", "as", "and", "or", "of", "from", "is", "are", "where",
    "whose", "via", "using", "through", "consisting", "including", "built", "designed", "trained",
}  # fmt: skip
_MARKUP = re.compile(r"\*\*|__|`")
_QUANTITY = re.compile(r"\d+(\.\d+)?[kKmMbBxX%]?")  # 200k, 1.2B, 7B: sizes, not names


@dataclass(frozen=True)
class PaperName:
    """`short` is what people call it (DyVTE); `long` spells it out (dynamic visual-token exit) when known."""

    short: str
    long: str | None = None

    def __str__(self) -> str:
        return self.short if not self.long else f"{self.short} ({self.long})"


def is_name_token(token: str) -> bool:
    return bool(_NAME_TOKEN.fullmatch(token))


def _never_common(_: str) -> bool:
    return False


def _clean(token: str) -> str:
    return token.strip(",.;:()[]\"'“”‘’")


def _title_lead(title: str) -> PaperName | None:
    """'RLAIF-V: Aligning ...' -> RLAIF-V; 'Multimodal Inconsistency Reasoning (MMIR): ...' -> MMIR."""
    if ":" not in title:
        return None
    lead = title.split(":", 1)[0].strip()
    acronym = re.fullmatch(r"(.+?)\s*\(([^()]{2,20})\)", lead)
    if acronym:
        return PaperName(acronym.group(2).strip(), acronym.group(1).strip())
    words = lead.split()
    coined = any(is_name_token(_clean(w)) for w in words)
    capitalised = all(w[0].isupper() for w in words)  # "Align Anything", not "Cross the Gap"
    if len(words) == 1 or (len(words) <= 3 and (coined or (capitalised and len(words) == 2))):
        return PaperName(lead)
    return None


def spelled_out(long: str, short: str) -> str | None:
    """The tail of `long` whose initials spell `short` ('... termed dynamic visual-token exit' + 'DyVTE')."""
    letters = "".join(c.lower() for c in short if c.isalpha())
    if len(letters) < 2:
        return None
    words = long.split()
    for start in range(max(0, len(words) - _MAX_LONG_WORDS), len(words)):
        tail = words[start:]
        if tail[0].lower() in _LEADING_FILLER or tail[0].lower() in _STOP_NAME:
            continue
        initials = "".join(p[0].lower() for w in tail for p in w.split("-") if p and p[0].isalpha())
        if initials and initials[0] == letters[0] and _covers(initials, letters):
            return " ".join(tail)
    return None


def _covers(initials: str, letters: str) -> bool:
    """The initials appear in order among the acronym's letters and account for most of them."""
    it = iter(letters)
    return all(ch in it for ch in initials) and len(initials) >= max(2, round(len(letters) * 0.5))


def _name_after(text: str, common: Callable[[str], bool]) -> PaperName | None:
    """The name that follows 'called' / 'termed': 'Factually Augmented RLHF that ...', 'dynamic visual-token exit
    (DyVTE)', 'Arcana, a ...'."""
    text = _MARKUP.sub("", text)
    definition = re.match(r"[\"“']?([^,.;:()\"”']{2,80}?)[\"”']?\s*\(([^()]{2,25})\)", text)
    if definition and is_name_token(definition.group(2).split()[0]) and not common(definition.group(2)):
        long = definition.group(1).strip()
        return PaperName(definition.group(2).strip(), long if len(long.split()) <= _MAX_LONG_WORDS else None)
    short_first = re.match(r"[\"“']?([^\s,.;:()]{2,30})[\"”']?\s*\(([^()]{5,120})\)", text)
    if short_first and is_name_token(short_first.group(1)) and not common(short_first.group(1)):
        long = short_first.group(2).strip()
        return PaperName(short_first.group(1), long if 2 <= len(long.split()) <= _MAX_LONG_WORDS else None)
    words: list[str] = []
    for raw in text.split()[:6]:
        word = _clean(raw)
        if not word or word.lower() in _STOP_NAME or raw.startswith("("):
            break
        if not words and word.lower() in _LEADING_FILLER:
            continue
        if not (word[0].isupper() or is_name_token(word) or word[0].isdigit()):
            break
        words.append(word)
        if raw.rstrip().endswith((",", ".", ";", ":", ")")):
            break
    name = " ".join(words)
    if name and not common(name):
        return PaperName(name)
    return None


def _abstract_name(abstract: str, common: Callable[[str], bool]) -> PaperName | None:
    text = _MARKUP.sub("", abstract)
    sentences = re.split(r"(?<=[.!?])\s+", text)
    for sentence in sentences:  # 1. "termed X (ABBR)", "called Arcana"
        for match in _CALLED.finditer(sentence):
            found = _name_after(sentence[match.end() :], common)
            if found:
                return found
    for sentence in sentences:  # 2. the sentence that introduces the work: "we propose X", "we present NAME (...)"
        intro = _INTRO_VERB.search(sentence)
        if not intro:
            continue
        rest = sentence[intro.end() :]
        near = len(" ".join(rest.split()[: _MAX_LONG_WORDS + 2])) + 1  # the name follows the verb closely
        for match in _ACRONYM_DEFINITION.finditer(rest[:200]):
            if match.start("short") > near + 2:
                break
            short = match.group("short").strip()
            if is_name_token(short.split()[0]) and len(short.split()) <= 2 and not common(short):
                return PaperName(short, spelled_out(match.group("long"), short))
        found = _name_after(rest.strip(), common)
        if found:
            return found
        for raw in rest.split()[:14]:
            token = _clean(raw)
            if is_name_token(token) and not _QUANTITY.fullmatch(token) and not common(token):
                return PaperName(token)
    return None


def paper_name(title: str, abstract: str, common: Callable[[str], bool] = _never_common) -> PaperName | None:
    """The name a paper gives its method, model, dataset or benchmark; None when it gives none."""
    lead = _title_lead(title)
    if lead is not None:
        if lead.long is None:
            spelled = re.search(rf"([\w\-]+(?:\s+[\w\-]+){{0,7}})\s*\({re.escape(lead.short)}\)", abstract)
            return PaperName(lead.short, spelled_out(spelled.group(1), lead.short) if spelled else None)
        return lead
    return _abstract_name(abstract, common)


def mentions_name(question: str, name: PaperName | None) -> bool:
    """Whether a question names this paper ("How many GPU hours did it take to train Ola?"): its short name
    as a whole word, in any case (people type 'rlaif-v'). Names under three characters never count."""
    if name is None or len(name.short) < 3:
        return False
    return re.search(rf"(?<![\w-]){re.escape(name.short)}(?![\w-])", question, re.IGNORECASE) is not None
