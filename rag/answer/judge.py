"""Selecting: does a candidate paper answer the question, which ones do, and what is missing when none does.

Read from the evidence, not from word lists, so it works on any collection a user ingests:
- the question's terms are weighted by the collection's own statistics (BM25 idf from the keyword
  index: a word most papers use says little, a word few use says much);
- each term is looked for in each candidate's title and abstract with the keyword index's tokenizer
  (Snowball stems) and spelling tolerance (one or two edits, a shared long prefix), so "visul" finds
  "visual" and "transcribe" finds "transcription";
- a small logistic model turns a candidate's features (how much of the question's weight it states,
  the rarest asked term it lacks, the share of terms the collection has never seen, its similarity)
  into the probability that it answers. Its coefficients are fitted on the dev splits of two
  collections from different fields (`eval/fit_judge.py`), never on a test split;
- optionally (`answer.judge_model`), a local model reads the best candidate's sentences and says Yes
  or No; its log-probabilities move the probability where the features are unsure.

The rare terms the best candidate lacks, in the question's own words, name what is missing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from rag.answer.candidates import Candidate, Features
from rag.answer.question import QuestionTerms, Reading, Shape, Term
from rag.config import AnswerSettings
from rag.errors import RagError
from rag.lexical import keyword_tokens


@lru_cache(maxsize=4096)
def paper_stems(text: str) -> frozenset[str]:
    return frozenset(keyword_tokens(text, frozenset()))


def _edits_within(a: str, b: str, limit: int) -> bool:
    """Damerau-Levenshtein distance(a, b) <= limit, cut short as soon as it cannot be."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous2: list[int] | None = None
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if previous2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit


def matches(term: Term, stems: frozenset[str]) -> bool:
    """The term's stem, or, for a word the collection never uses (a typo, another spelling), a word one or two
    edits away or sharing its long prefix ("visul" -> "visual", "transcrib" -> "transcript")."""
    stem = term.stem
    if stem in stems or stem + "s" in stems or (stem.endswith("s") and stem[:-1] in stems):
        return True  # the stemmer leaves a plural of a vowelless acronym: "mllms" next to "mllm"
    if term.df > 0 or len(stem) < 5 or stem.isdigit():
        return False
    limit = 1 if len(stem) < 8 else 2
    prefix = stem[:6] if len(stem) >= 7 else None
    for other in stems:
        if prefix and len(other) >= 7 and other.startswith(prefix):
            return True
        # Typos seldom hit the first letter; comparing only words that share it keeps this cheap.
        if other[:1] == stem[:1] and abs(len(other) - len(stem)) <= limit and _edits_within(stem, other, limit):
            return True
    return False


FEATURE_NAMES = ("coverage", "rarest_missing", "unseen", "similarity", "sentence", "answer_score")


def candidate_features(
    terms: QuestionTerms, text: str, similarity: float, sentence: float, answer_score: float = 0.0
) -> Features:
    stems = paper_stems(text)
    known_total = covered = 0.0
    rarest = 0.0
    unseen = 0
    missing: list[Term] = []
    for term in terms.terms:
        found = matches(term, stems)
        if term.negated and not found:
            continue  # asked to be absent: lacking it is no gap
        if term.df == 0 and not found:
            unseen += 1
            missing.append(term)
            continue
        known_total += term.weight
        if found:
            covered += term.weight
        else:
            rarest = max(rarest, term.weight)
            missing.append(term)
    count = max(1, len(terms.terms))
    coverage = covered / known_total if known_total else 0.0
    return Features(coverage, rarest, unseen / count, similarity, sentence, answer_score, tuple(missing))


@dataclass(frozen=True)
class Logistic:
    coefficients: tuple[float, ...]
    intercept: float

    def __call__(self, values: Sequence[float]) -> float:
        z = self.intercept + sum(c * x for c, x in zip(self.coefficients, values, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


@dataclass(frozen=True)
class JudgeWeights:
    """Two small logistic models, fitted by eval/fit_judge.py on the dev splits of two fields: `answers` says
    whether a candidate answers the question, and so also which candidate comes first (on dev the gold paper is
    first for 217 of 226 answerable questions in this order, 213 in answer-score order; scifact-dev 61 of 62
    either way); `model` combines it with a model's Yes/No log-odds."""

    answers: Logistic
    model: Logistic = Logistic((1.0, 1.0), 0.0)  # over (logit of answers' probability, model log-odds)
    threshold_with_model: float = 0.5  # the operating points chosen on dev (false refusals <= ~3 %)
    threshold_alone: float = 0.5

    def probability(self, features: Features) -> float:
        return self.answers(features.vector())


def missing_phrase(terms: QuestionTerms, missing: Sequence[Term], limit: int = 2) -> str:
    """What the best candidate lacks, in the question's own words: the rarest missing terms (a word the collection
    never uses is the rarest), each with the content word beside it ("sheet music", "diffusion model"), joined by
    'or'. On the dev questions this names "LiDAR point clouds" rather than "frozen RGB", "stock prices" rather than
    "transformer models"."""
    ranked = sorted(missing, key=lambda t: (-t.weight, t.position))[:limit]
    content = {t.position for t in terms.terms}
    phrases: list[str] = []
    for term in sorted(ranked, key=lambda t: t.position):
        start = end = term.position
        while start in terms.hyphenated:  # a hyphenated word is one word: "non-invasive", not "invasive magnetic"
            start -= 1
        while end + 1 in terms.hyphenated:
            end += 1
        if start == end and end + 1 in content and end + 1 < len(terms.words):
            end += 1
        elif start == end and start - 1 in content:
            start -= 1
        phrase = terms.words[start]
        for i in range(start + 1, end + 1):
            phrase += ("-" if i in terms.hyphenated else " ") + terms.words[i]
        if phrases and phrase.split()[0] in phrases[-1].split():
            phrases[-1] = " ".join(dict.fromkeys([*phrases[-1].split(), *phrase.split()]))
        elif phrase not in phrases:
            phrases.append(phrase)
    return " or ".join(phrases)


def judge_candidates(terms: QuestionTerms, candidates: Sequence[Candidate], weights: JudgeWeights) -> list[Candidate]:
    """The candidates with the judge's reading of each, most likely to answer first (ties: answer score)."""
    judged = []
    for candidate in candidates:
        best = max((s.score for s in candidate.sentences), default=0.0)
        features = candidate_features(terms, candidate.text, candidate.hit.score, best, candidate.score)
        judged_one = replace(candidate, features=features, probability=weights.probability(features))
        judged.append(judged_one)
    return sorted(judged, key=lambda c: (c.probability, c.score), reverse=True)


class YesNoReader(Protocol):
    def log_odds(self, question: str, title: str, sentences: Sequence[str]) -> float: ...

    def mentions(self, title: str, text: str, phrase: str) -> float: ...


@dataclass(frozen=True)
class Verdict:
    """The judge's decision for one question."""

    candidates: list[Candidate]  # every considered paper, most likely to answer first
    answering: list[Candidate]  # those the answer may rest on (empty: refuse)
    probability: float  # that the best candidate answers, after the model's reading when it was asked
    model_log_odds: float | None  # the model's Yes-vs-No, when it was asked
    reason: str


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def best_sentences(candidate: Candidate, n: int = 3) -> list[str]:
    """The candidate's sentences that best match the question, in abstract order: what the model reads."""
    top = sorted(candidate.sentences, key=lambda s: s.score, reverse=True)[:n]
    return [s.text for s in sorted(top, key=lambda s: s.position)]


def decide(
    reading: Reading,
    judged: list[Candidate],
    settings: AnswerSettings,
    weights: JudgeWeights,
    model: YesNoReader | None = None,
) -> Verdict:
    """Answer from the best candidate when it is likely enough to answer. Where the term statistics are unsure
    (its probability inside `answer.judge_band`), the model reads that candidate's best sentences and its
    Yes/No log-odds move the probability (a second logistic model over both)."""
    best = judged[0]
    probability, log_odds = best.probability, None
    low, high = settings.judge_band
    if reading.refers_back:
        # "its"/"that paper": the conversation already chose the papers; whether the one it is on states what is
        # asked is the statement check's business (a number question with no figure is still refused).
        return Verdict(
            judged, [best], probability, None, f"probability {probability:.2f}; a follow-up on {best.hit.title!r}"
        )
    if model is not None and low <= probability <= high:
        log_odds = model.log_odds(reading.standalone, best.hit.title, best_sentences(best))
        probability = weights.model((_logit(probability), log_odds))
    reason = f"probability {probability:.2f}" + ("" if log_odds is None else f", model log-odds {log_odds:+.2f}")
    threshold = settings.judge_threshold
    if threshold is None:
        threshold = weights.threshold_with_model if model is not None else weights.threshold_alone
    if probability < threshold:
        return Verdict(judged, [], probability, log_odds, reason)
    one_paper = reading.shape is not Shape.LIST  # a list or comparison rests on several papers, each with a part
    if model is not None and settings.gap_check is not None and one_paper and best.probability <= settings.gap_check[0]:
        # The statistics found a question term the best paper never uses; the model reads whether its abstract
        # says it in other words ("IL-1β" for "il-1b": Yes; a forecasting network for "diffusion model": No).
        lacking = missing_phrase(reading.terms, best.features.missing if best.features else (), limit=1)
        if lacking:
            mentioned = model.mentions(best.hit.title, best.text, lacking)
            reason += f"; does it mention {lacking!r}: log-odds {mentioned:+.2f}"
            if mentioned < settings.gap_check[1]:
                return Verdict(judged, [], probability, log_odds, reason)
    others = [c for c in judged[1:] if c.probability >= settings.list_threshold]
    return Verdict(judged, [best, *others], probability, log_odds, reason)


WEIGHTS_FILE = Path(__file__).with_name("judge_weights.json")


def load_weights(path: Path = WEIGHTS_FILE) -> JudgeWeights:
    """The fitted judge (eval/fit_judge.py writes it); its feature names must match this module's."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if tuple(data["features"]) != FEATURE_NAMES:
        raise RagError(f"{path}: fitted on features {data['features']}, this code reads {list(FEATURE_NAMES)}")

    def logistic(key: str, default: Logistic | None = None) -> Logistic:
        if key not in data and default is not None:
            return default
        return Logistic(tuple(float(c) for c in data[key]["coefficients"]), float(data[key]["intercept"]))

    thresholds = data.get("thresholds", {})
    return JudgeWeights(
        logistic("answers"),
        logistic("model", JudgeWeights.model),
        float(thresholds.get("with_model", 0.5)),
        float(thresholds.get("alone", 0.5)),
    )
