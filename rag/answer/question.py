"""What a question asks for, read from its wording: the shape its answer should take.

"Is there work that ..." wants a name; "which papers ..." / "compare ..." want a list; "how many ..."
wants a figure. The shapes are read from the words people type (pure functions, no model), so
every answer mode, even the extractive one, can lead with what was asked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from rag.lexical import FRAME_WORDS, KeywordIndex, stem_word, stopwords


class Shape(StrEnum):
    EXISTS = "exists"  # is there / has anyone / any work on ...: lead with "Yes — NAME"
    WHICH = "which"  # which method / what's the name of / who made: lead with the name
    LIST = "list"  # which papers / what works / compare: one line per paper
    NUMBER = "number"  # how many / how much / what accuracy: the figure, with its context
    DESCRIBE = "describe"  # how does / what does / why: a short explanation


_NUMBER = re.compile(
    r"\b(how (many|much|far|big|large|small|fast|long|often|accurate)|by how much|what (is|was|'s) the (number|size|"
    r"count)|what(?:'s| is| was)? (?:the |its |their )?(?:\w+[\s-]){0,3}(accuracy|score|auc|f1|map|bleu|error|rate|"
    r"percentage|share|ratio|gain|improvement|speed-?up|reduction|drop|margin|number|count|size|latency)\b|"
    r"\bhow \w+ (?:is|are) the gap|\bwhat percent)",
    re.I,
)
_LIST = re.compile(
    r"\b(which|what|list|name|any|are there|find|show me|other)\b[^?]{0,40}\b(papers|works|methods|approaches|"
    r"studies|models|benchmarks|datasets|techniques|systems|frameworks|surveys|reviews)\b|^\s*(compare|list)\b|"
    r"\bcompare\b|\b(differ|difference|differences|versus|vs\.?)\b[^?]{0,60}\band\b|\bpapers (on|about|that)\b|"
    r"\bwho (reports|uses|evaluates|studies)\b|\bwhat work\b|"
    r"\bany (?:\w+ ){0,2}(?:work|research|literature) (?:on|about|in)\b",
    re.I,
)
_EXISTS = re.compile(
    r"^\s*(is there|are there|is anyone|has anyone|have people|has any|any\b|anything|anyone|do (you|we) have|"
    r"does any|did anyone|can (a|an|one|you|i)\b|could (a|an)\b)|\bis there (a|an|any)\b",
    re.I,
)
_WHICH = re.compile(
    r"\b(which|what(?:'s| is| was)? the name of|what is the method|who (made|built|proposed|introduced|released)|"
    r"i remember|i recall|looking for|what (paper|method|model|benchmark|dataset|framework))\b",
    re.I,
)


def question_shape(question: str) -> Shape:
    """The answer shape a question's wording asks for (LIST beats NUMBER beats EXISTS beats WHICH)."""
    text = " ".join(question.split())
    if _LIST.search(text):
        return Shape.LIST
    if _NUMBER.search(text):
        return Shape.NUMBER
    if _EXISTS.search(text):
        return Shape.EXISTS
    if _WHICH.search(text):
        return Shape.WHICH
    return Shape.DESCRIBE


_QUANTITY = re.compile(
    r"\bhow (?:many|much)\s+((?:[\w-]+\s+){0,3}?[\w-]+?)(?=\s+(?:does|do|did|is|are|was|were|has|have|had|can|"
    r"could|will|would|in|of|on|for|from|at|by|with|it|they|their|its|the|there)\b|\s*[?,.]|$)"
    r"|\bnumber of\s+((?:[\w-]+\s+){0,2}[\w-]+)"
    r"|\bwhat(?:'s| is| was)?\s+(?:the |its |their )?((?:[\w-]+\s+){0,3}?(?:accuracy|score|auc|f1|map|bleu|error|rate|"
    r"percentage|share|ratio|gain|improvement|speed-?up|reduction|drop|margin|size|latency))\b",
    re.I,
)


def asked_quantity(question: str) -> str:
    """What a number question counts or measures: 'how many tunable params does LiST ...' -> 'tunable params',
    'what top-1 accuracy on ...' -> 'top-1 accuracy'; '' when it names nothing."""
    match = _QUANTITY.search(" ".join(question.split()))
    if not match:
        return ""
    return next((group for group in match.groups() if group), "").strip()


_WORD = re.compile(r"(?u)\b\w\w+\b")


@dataclass(frozen=True)
class Term:
    """One content word of the question: as typed, its stem, and how rare it is in the collection."""

    word: str
    stem: str
    position: int  # index among the question's words, to rebuild phrases
    df: int  # papers holding the stem (0: the collection never uses it)
    weight: float  # idf / the largest possible idf, 0..1
    negated: bool = False  # asked *not* to be there ("without running SFT"): a paper lacking it lacks nothing


@dataclass(frozen=True)
class QuestionTerms:
    terms: list[Term]
    words: list[str]  # the question's words, as typed (for phrases)
    papers: int  # collection size the weights were computed on
    hyphenated: frozenset[int] = frozenset()  # positions of words joined to the one before ("non-invasive")


# Generic grammar, no topic words. A negation puts the next few content words out of what is asked for, up to
# a clause break ("without running SFT", "rather than satellite imagery"; not "not just images", which still
# asks for images). A speaker's own verb ("I think ...", "someone told me ...") frames the question.
_TOKEN = re.compile(r"(?u)\b\w\w+\b|\b[iI]\b|[,;:.?!()\[\]]|\s[-\u2013\u2014]+\s")
_NEGATION = frozenset({"without", "not", "no", "nor", "never", "excluding", "except", "instead", "rather"})
_NOT_NEGATING = frozenset({"just", "only", "merely", "simply", "solely", "necessarily", "least", "more", "less",
                           "longer", "matter", "doubt", "one"})  # fmt: skip
_CLAUSE = frozenset({"but", "and", "or", "so", "which", "that", "where", "while", "whereas", "yet", "because"})
_NEGATED_WORDS = 3  # content words a negation reaches
_SPEAKERS = frozenset({"i", "someone", "somebody", "colleague", "friend", "advisor", "supervisor"})
_AUXILIARY = frozenset({"am", "was", "have", "had", "do", "did", "once", "also", "vaguely", "still", "really", "ve",
                        "ll", "re"})  # fmt: skip
_CLAUSE_START = frozenset({"and", "but", "so", "because", "as", "if", "when", "since", "though", "although"})


def _grammar(text: str, stop: frozenset[str]) -> tuple[set[int], set[int]]:
    """(positions of speaker words, positions of negated words) among `_WORD.findall(text)`."""
    speaker: set[int] = set()
    negated: set[int] = set()
    position = -1
    reach = 0  # content words the open negation still covers
    after_speaker = False
    clause_start = True  # "I" opens a clause ("I think ..."); elsewhere it is a numeral ("type I interferon")
    for match in _TOKEN.finditer(text):
        token = match.group().strip().lower()
        is_word = len(token) > 1 and token[0].isalnum()
        if not is_word and token != "i":
            reach, after_speaker, clause_start = 0, False, True  # punctuation closes a clause
            continue
        if token == "i":
            after_speaker = clause_start
            continue
        position += 1
        clause_start = token in _CLAUSE_START
        if token in _SPEAKERS:
            speaker.add(position)
            after_speaker = True
            continue
        if after_speaker and token in _AUXILIARY:
            continue
        if after_speaker:
            speaker.add(position)  # the speaker's verb: think, heard, claimed, remember
            after_speaker = False
            continue
        if token in _CLAUSE:
            reach = 0
            continue
        negation = token in _NEGATION or text[match.end() : match.end() + 2] in ("'t", "\u2019t")
        if negation:
            reach = _NEGATED_WORDS
            continue
        if reach == _NEGATED_WORDS and token in ("than", "of"):
            continue  # "rather than", "instead of"
        if reach and token in _NOT_NEGATING:
            reach = 0
            continue
        if reach and token not in stop:
            negated.add(position)
            reach -= 1
    return speaker, negated


def question_terms(text: str, keywords: KeywordIndex) -> QuestionTerms:
    """The question's content terms, weighted by the collection's document frequencies; a speaker's framing
    ("I think", "someone told me") is no term, and a term in a negation's reach is marked `negated`."""
    found = list(_WORD.finditer(text))
    words = [m.group() for m in found]
    hyphenated = frozenset(
        i for i in range(1, len(found)) if text[found[i - 1].end() : found[i].start()] in ("-", "\u2010", "\u2011")
    )
    stop = stopwords("english") | FRAME_WORDS
    speaker, negated = _grammar(text, stop)
    n = max(1, len(keywords))
    top = _idf(0, n)
    terms: list[Term] = []
    seen: set[str] = set()
    for position, word in enumerate(words):
        lowered = word.lower()
        if lowered in stop or lowered in _NEGATION or position in speaker or lowered.isdigit() and len(lowered) < 2:
            continue
        stem = stem_word(lowered)
        if stem in seen:
            continue
        seen.add(stem)
        df = keywords.stem_frequency(stem)
        terms.append(Term(word, stem, position, df, _idf(df, n) / top, position in negated))
    return QuestionTerms(terms, words, n, hyphenated)


def _idf(df: int, n: int) -> float:
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class Reading:
    """A question read once, before any paper is: what every later step of the answer needs of it."""

    question: str  # as asked
    standalone: str  # a follow-up joined with what it follows; else the question
    shape: Shape
    quantity: str  # what a number question counts ('' otherwise)
    follow_up: bool
    refers_back: bool  # "its model", "that paper": about the papers the conversation is on
    terms: QuestionTerms  # content terms weighted by the collection's statistics


def read_question(
    question: str, standalone: str, keywords: KeywordIndex, *, follow_up: bool, refers_back: bool
) -> Reading:
    shape = question_shape(question)
    quantity = asked_quantity(question) if shape is Shape.NUMBER else ""
    terms = question_terms(standalone, keywords)
    return Reading(question, standalone, shape, quantity, follow_up, follow_up and refers_back, terms)
