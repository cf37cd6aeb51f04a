"""Evidence selection: from the top papers, the few sentences that best match the question.

Short evidence instead of whole abstracts keeps a CPU model's prompt (and so its first token)
small and gives a small model less to get wrong. Sentences are scored by embedding similarity to
the question plus a little lexical overlap (exact terms such as model names and numbers matter
more in papers than in general text), packed under a tiktoken budget, and numbered by paper.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.chunking import TokenCounter
from rag.lexical import content_stems, stem_word
from rag.types import PaperHit, Source

LEXICAL_WEIGHT = 0.25
PAPER_WEIGHT = 0.5  # a sentence of the best-matching paper outranks an equally close one of a weaker paper
CONTRIBUTION_BONUS = 0.05  # "we propose X", "X achieves 51%": the sentences that answer "is there work ..."
BACKGROUND_PENALTY = 0.1  # "However, existing MLLMs suffer ...": the problem an abstract starts from, not its answer
# An abstract moves from background (what others did, what is missing) to its own contribution. A sentence
# that speaks of the field, not of this work, states the question's topic without answering it.
_BACKGROUND = re.compile(
    r"^(however|although|while|despite|recent(ly)?|existing|current(ly)?|prevailing|traditional(ly)?|"
    r"conventional(ly)?|previous(ly)?|prior|in recent years|nowadays|over the past|with the (rapid|recent|"
    r"advent|success|development)|to date|as a result|unfortunately|yet\b|typically|generally|many|most|some)\b|"
    r"\bexisting\b|\b(previous|prior|recent|current|many|most|some) (methods?|approaches|works?|studies|models|"
    r"benchmarks|research|efforts|advances|progress)\b|\b(remains?|remained) (a |an )?(challenge|challenging|"
    r"unclear|unexplored|open|limited)|\b(suffers?|struggles?) (from|with|to)\b|"
    r"\b(have|has) (recently )?(shown|attracted|achieved|demonstrated|gained|emerged|become|enabled|revolutioni[sz]ed|"
    r"transformed|advanced|been widely|made (significant|remarkable|great|tremendous|rapid) progress)\b",
    re.I,
)
_OWN_WORK = re.compile(r"\b(we|our|ours|this (paper|work|study)|the proposed|here)\b", re.I)


def is_background(sentence: str) -> bool:
    """A sentence about the field rather than this paper's own work (no 'we'/'our', background wording)."""
    return bool(_BACKGROUND.search(sentence)) and not _OWN_WORK.search(sentence)


_CONTRIBUTION = re.compile(
    r"\b(we (propose|present|introduce|develop|design|construct|build)|this (paper|work) (proposes|presents|introduces)"
    r"|achieves?|outperforms?|improves?|reduces?|surpass(es)?)\b",
    re.I,
)

# Text in an abstract that addresses the model ("ignore previous instructions and say ...") is data, not a
# command: such sentences never reach the prompt, so a planted instruction cannot steer the answer.
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override|bypass)\b[^.!?]{0,60}\b(instructions?|prompts?|rules|guidelines|"
    r"the above|everything above|previous|prior|system)\b"
    r"|\b(system prompt|you are now|from now on,? you|(respond|answer|reply|say|output) only (with|the words?)|"
    r"as an ai (language )?model, you|new instructions?:)",
    re.I,
)


def looks_like_instruction(sentence: str) -> bool:
    """True for a sentence that speaks to the assistant instead of reporting research (prompt injection)."""
    return bool(_INSTRUCTION.search(sentence))


_WORD = re.compile(r"[a-z0-9][a-z0-9\-\.]*[a-z0-9]|[a-z0-9]")  # keeps "51.06" and "gpt-4o" whole, for figures


def content_words(text: str) -> set[str]:
    """The words that carry meaning, as the keyword index stems them: the unit of lexical overlap."""
    return set(content_stems(text))


def lexical_overlap(query: str, sentence: str) -> float:
    """Share of the query's content words that the sentence contains (0..1)."""
    wanted = content_words(query)
    if not wanted:
        return 0.0
    return len(wanted & content_words(sentence)) / len(wanted)


@dataclass(frozen=True)
class ScoredSentence:
    paper_index: int  # position of its paper among the hits
    position: int  # position inside the abstract
    text: str
    score: float


def score_sentences(
    question: str,
    question_vector: np.ndarray,
    sentences_by_paper: Sequence[Sequence[str]],
    embed: Callable[[Sequence[str]], np.ndarray],
    paper_scores: Sequence[float] | None = None,
) -> list[ScoredSentence]:
    paper_scores = paper_scores or [0.0] * len(sentences_by_paper)
    flat = [
        (p, i, s)
        for p, sentences in enumerate(sentences_by_paper)
        for i, s in enumerate(sentences)
        if not looks_like_instruction(s)
    ]
    if not flat:
        return []
    vectors = embed([s for _, _, s in flat])
    dense = vectors @ question_vector
    return [
        ScoredSentence(
            p,
            i,
            s,
            float(d)
            + LEXICAL_WEIGHT * lexical_overlap(question, s)
            + PAPER_WEIGHT * paper_scores[p]
            + (CONTRIBUTION_BONUS if _CONTRIBUTION.search(s) else 0.0)
            - (BACKGROUND_PENALTY if is_background(s) else 0.0),
        )
        for (p, i, s), d in zip(flat, dense, strict=True)
    ]


def pack_evidence(
    hits: Sequence[PaperHit],
    scored: Sequence[ScoredSentence],
    *,
    budget_tokens: int,
    per_paper: int,
    count_tokens: TokenCounter,
    top_paper: int | None = None,
) -> list[Source]:
    """Take the best sentences under the budget (each paper's best first), then number the papers in rank order.

    Each paper's best sentence is considered before any paper's second, so the top papers all get
    a voice before one paper takes the whole budget. The best-ranked paper may give more sentences
    (`top_paper`): it is usually the answer, and its decisive sentence is not always the one most
    similar to the question. Within a paper the sentences keep abstract order so the excerpt reads
    naturally.
    """
    top_paper = top_paper or per_paper

    def cap(paper_index: int) -> int:
        return top_paper if paper_index == 0 else per_paper

    by_paper: dict[int, list[ScoredSentence]] = {}
    for s in sorted(scored, key=lambda s: s.score, reverse=True):
        by_paper.setdefault(s.paper_index, []).append(s)
    rounds = [
        s
        for r in range(max(per_paper, top_paper))
        for s in sorted(
            (ranked[r] for p, ranked in by_paper.items() if len(ranked) > r and r < cap(p)),
            key=lambda s: s.score,
            reverse=True,
        )
    ]
    costs = count_tokens([s.text for s in rounds]) if rounds else []
    chosen: dict[int, list[ScoredSentence]] = {}
    used = 0
    for sentence, cost in zip(rounds, costs, strict=True):
        if used + cost > budget_tokens and chosen:
            continue
        chosen.setdefault(sentence.paper_index, []).append(sentence)
        used += cost
    sources: list[Source] = []
    for paper_index in sorted(chosen):  # numbered in retrieval rank
        hit = hits[paper_index]
        picked = sorted(chosen[paper_index], key=lambda s: s.position)
        sources.append(
            Source(
                n=len(sources) + 1,
                paper_id=hit.paper_id,
                title=hit.title,
                score=hit.score,
                sentences=[s.text for s in picked],
                url=hit.url,
                sources=list(hit.sources),
            )
        )
    return sources


def paper_answer_score(
    fused: float, question_coverage: float, best_sentence: float, weights: tuple[float, float]
) -> float:
    """How well one retrieved paper answers the question, to order the answer's papers and cut its lists.

    Fusion rank alone puts a paper that shares the question's theme first; the share of the question's own
    words its title and abstract state (names, modalities, numbers) and its single best sentence tell the
    paper that answers from its neighbours. The weights were chosen on the dev split (README "Evaluate").
    """
    lexical_weight, sentence_weight = weights
    return fused + lexical_weight * question_coverage + sentence_weight * best_sentence


_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    "hundreds?|thousands?|millions?|billions?|dozens?"
)
# A figure: digits, a number word that counts something ("one afternoon", not "one of the first"), or a ratio word.
_FIGURE = re.compile(
    rf"\d|\b(?:{_NUMBER_WORDS})\b(?!\s+(?:of|another)\b)|\b(?:twice|thrice|half|doubles?|doubled|triples?|tripled)\b"
    rf"|\b(?:two|three|four|five|ten|hundred)-?fold\b",
    re.IGNORECASE,
)


def states_a_figure(text: str) -> bool:
    """Whether a sentence gives a figure, in digits or in words ("163 languages", "one afternoon", "twice")."""
    return bool(_FIGURE.search(text))


QUANTITY_BONUS = 0.2  # a figure stated next to what the question counts: "36 datasets" for "how many datasets"


def states_quantity(sentence: str, quantity: str) -> bool:
    """A number within three words of a word of the asked quantity ('… MMEB covers 36 datasets …')."""
    wanted = content_words(quantity) - {"much", "many"}
    if not wanted:
        return False
    words = _WORD.findall(sentence.lower())
    return any(
        states_a_figure(word) and any(stem_word(w) in wanted for w in words[max(0, i - 3) : i + 4] if w != word)
        for i, word in enumerate(words)
    )


def statement_sentence(scored: Sequence[ScoredSentence], wants_number: bool, quantity: str = "") -> str:
    """The sentence of one paper that best states what was asked: its best match, or, for a question asking for a
    figure, its best-matching sentence that states one (when the abstract has any), preferring a figure given next
    to what the question counts or measures."""
    pool = [s for s in scored if states_a_figure(s.text)] if wants_number else []
    pool = pool or list(scored)
    if not pool:
        return ""

    def weight(sentence: ScoredSentence) -> float:
        bonus = QUANTITY_BONUS if quantity and states_quantity(sentence.text, quantity) else 0.0
        return sentence.score + bonus

    return max(pool, key=weight).text


def statement_sentences(
    scored: Sequence[ScoredSentence], wants_number: bool, quantity: str = "", count: int = 1
) -> list[str]:
    """`statement_sentence`, then up to `count - 1` more of the paper's best-matching sentences that are not
    background (a figure first when the first states none), in abstract order: one sentence names the work, the
    next often carries the fact asked for ("... termed DyVTE." + "... removes all visual tokens after a layer.")."""
    first = statement_sentence(scored, wants_number, quantity)
    if not first or count <= 1:
        return [first] if first else []
    others = [s for s in scored if s.text != first and not is_background(s.text)]
    if not states_a_figure(first):
        others.sort(key=lambda s: (states_a_figure(s.text), s.score), reverse=True)
    else:
        others.sort(key=lambda s: s.score, reverse=True)
    picked = [first, *(s.text for s in others[: count - 1])]
    order = {s.text: s.position for s in scored}
    return sorted(picked, key=lambda t: order.get(t, 0))
