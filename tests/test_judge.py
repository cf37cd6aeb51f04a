"""The answer judge (rag/answer/judge.py): term weights from the collection, spelling tolerance, what is missing,
and the decision, on small inputs; the real index and model are in test_answering.py."""

from __future__ import annotations

import pytest

from rag.answer.candidates import Candidate
from rag.answer.evidence import ScoredSentence
from rag.answer.judge import (
    JudgeWeights,
    Logistic,
    candidate_features,
    decide,
    judge_candidates,
    load_weights,
    matches,
    missing_phrase,
)
from rag.answer.model_judge import fit_tokens
from rag.answer.question import Term, question_terms, read_question
from rag.config import load_settings
from rag.types import PaperHit


class _Keywords:
    """Document frequencies of a tiny collection, as the BM25 index reports them."""

    def __init__(self, df: dict[str, int], papers: int = 100) -> None:
        self._df, self._papers = df, papers

    def __len__(self) -> int:
        return self._papers

    def stem_frequency(self, stem: str) -> int:
        return self._df.get(stem, 0)


KEYWORDS = _Keywords({"mllm": 60, "music": 3, "sheet": 1, "transcrib": 2, "read": 30, "visual": 70, "token": 40})


def test_terms_are_weighted_by_the_collection_and_drop_question_grammar():
    terms = question_terms("Is there an MLLM that reads sheet music and transcribes it?", KEYWORDS)
    by_word = {t.word: t for t in terms.terms}
    assert set(by_word) == {"MLLM", "reads", "sheet", "music", "transcribes"}
    assert by_word["sheet"].weight > by_word["music"].weight > by_word["reads"].weight > by_word["MLLM"].weight
    assert all(0 < t.weight <= 1 for t in terms.terms)


def test_spelling_tolerance_only_for_words_the_collection_never_uses():
    stems = frozenset({"visual", "token", "prune", "bake"})
    assert matches(Term("visul", "visul", 0, 0, 1.0), stems)  # a typo: unknown to the collection
    assert not matches(Term("base", "base", 0, 12, 0.5), stems)  # a real word elsewhere: needs itself
    assert not matches(Term("bread", "bread", 0, 0, 1.0), stems)
    assert matches(Term("MLLM", "mllm", 0, 5, 0.5), frozenset({"mllms"}))  # the stemmer's vowelless plural


def test_missing_phrase_uses_the_questions_own_words():
    terms = question_terms("Is there an MLLM that reads sheet music and transcribes it?", KEYWORDS)
    paper = "M2UGen: music understanding and generation with MLLMs. It reads music audio."
    features = candidate_features(terms, paper, similarity=0.5, sentence=0.5)
    assert {t.word for t in features.missing} == {"sheet", "transcribes"}
    assert missing_phrase(terms, features.missing) == "sheet music or transcribes"
    assert features.coverage < 1.0 and features.rarest_missing == max(t.weight for t in features.missing)


def test_missing_phrase_names_the_rarest_terms_first_even_words_the_collection_never_uses():
    keywords = _Keywords({"predictor": 20, "best": 50, "accuraci": 60, "reach": 40, "structur": 30})
    terms = question_terms("Which protein structure predictor reaches the best accuracy on CASP15?", keywords)
    paper = "A structure-aware benchmark of multimodal models."
    features = candidate_features(terms, paper, similarity=0.5, sentence=0.5)
    assert {"protein", "CASP15", "best"} <= {t.word for t in features.missing}
    # "protein" and "CASP15" appear in no indexed paper, so they are what is missing, not "best" or "predictor"
    assert missing_phrase(terms, features.missing) == "protein structure or CASP15"


def test_a_negated_term_is_not_what_is_missing_and_a_speakers_framing_is_no_term():
    keywords = _Keywords({"metric": 10, "pretrain": 20, "lvlm": 15, "run": 40, "sft": 8, "first": 50})
    question = "I think someone proposed a metric for LVLM pretraining without running SFT first?"
    terms = question_terms(question, keywords)
    by_word = {t.word: t for t in terms.terms}
    assert "think" not in by_word and "someone" not in by_word and "proposed" not in by_word  # the speaker's words
    assert [w for w, t in by_word.items() if t.negated] == ["running", "SFT", "first"]
    paper = "A metric that measures how well an LVLM's pretraining fused the modalities."
    features = candidate_features(terms, paper, similarity=0.5, sentence=0.5)
    assert features.missing == () and features.coverage == 1.0  # lacking what was asked away is no gap
    # Present, a negated term still counts: the paper that says "without SFT" states it.
    said = candidate_features(terms, paper + " No SFT run is needed first.", similarity=0.5, sentence=0.5)
    assert said.coverage == 1.0
    # "not just images" still asks for images; "rather than X" does not ask for X.
    kept = question_terms("alignment that covers audio outputs, not just images?", _Keywords({"imag": 5}))
    assert not any(t.negated for t in kept.terms)
    photos = question_terms("pairs street-view photos, rather than satellite imagery, with captions", keywords)
    assert {t.word for t in photos.terms if t.negated} == {"satellite", "imagery"}
    numeral = question_terms("Does type I interferon drive lupus?", keywords)  # "I" opens no clause here
    assert {t.word for t in numeral.terms} == {"interferon", "drive", "lupus"}
    attention = question_terms("a model that doesn't use attention", keywords).terms[-1]
    assert attention.word == "attention" and attention.negated


def test_missing_phrase_keeps_a_hyphenated_word_whole():
    keywords = _Keywords({"fast": 50, "magnet": 5, "brain": 30, "record": 20, "non": 40, "invas": 3})
    terms = question_terms("decoding from a fast, non-invasive magnetic brain recording", keywords)
    features = candidate_features(terms, "Decoding from magnetic brain recordings.", similarity=0.5, sentence=0.5)
    assert missing_phrase(terms, features.missing, limit=1) == "non-invasive"
    assert missing_phrase(question_terms("a diffusion model for weather", keywords), [], limit=1) == ""


def _candidate(title: str, text: str, score: float, sentences: list[str]) -> Candidate:
    hit = PaperHit(title, title, score, text, [])
    scored = [ScoredSentence(0, i, s, score) for i, s in enumerate(sentences)]
    return Candidate(hit, scored, score, None, f"{title} {text}")


class _Reader:
    def __init__(self, log_odds: float, mentioned: float = 0.0) -> None:
        self.value, self.mentioned, self.asked = log_odds, mentioned, []

    def log_odds(self, question, title, sentences):
        self.asked.append((question, title, list(sentences)))
        return self.value

    def mentions(self, title, text, phrase):
        self.asked.append(("mentions", title, phrase))
        return self.mentioned


def test_the_gap_check_asks_whether_the_best_paper_mentions_its_rarest_missing_term():
    settings = load_settings().answer
    question = "Which paper uses a diffusion model for weather forecasting?"
    keywords = _Keywords({"diffus": 20, "model": 70, "weather": 2, "forecast": 3, "use": 50})
    reading = read_question(question, question, keywords, follow_up=False, refers_back=False)
    weights = JudgeWeights(Logistic((4.0, 0.0, -2.0, 2.0, 2.0, 0.0), -2.0))
    met2net = _candidate("Met2Net", "a weather forecasting model in two stages", 0.6, ["Two stages."])
    judged = judge_candidates(reading.terms, [met2net], weights)
    assert [t.word for t in judged[0].features.missing] == ["diffusion"]
    gap = settings.model_copy(update={"judge_band": (0.0, 0.0), "judge_threshold": 0.5, "gap_check": (1.0, 0.0)})
    absent = _Reader(0.0, mentioned=-1.5)
    verdict = decide(reading, judged, gap, weights, absent)
    assert verdict.answering == [] and absent.asked == [("mentions", "Met2Net", "diffusion model")]
    assert "log-odds -1.50" in verdict.reason
    said_otherwise = _Reader(0.0, mentioned=2.0)
    assert decide(reading, judged, gap, weights, said_otherwise).answering[0].hit.title == "Met2Net"
    off = _Reader(0.0, mentioned=-9.0)
    assert decide(reading, judged, gap.model_copy(update={"gap_check": None}), weights, off).answering
    above = gap.model_copy(update={"gap_check": (judged[0].probability - 0.01, 0.0)})  # sure enough: not asked
    assert decide(reading, judged, above, weights, off).answering and not off.asked


def test_decide_refuses_below_the_threshold_and_asks_the_model_only_inside_the_band():
    settings = load_settings().answer.model_copy(update={"gap_check": None})
    reading = read_question("Is there an MLLM that reads sheet music?", "Is there an MLLM that reads sheet music?",
                            KEYWORDS, follow_up=False, refers_back=False)  # fmt: skip
    weights = JudgeWeights(Logistic((4.0, 0.0, -2.0, 2.0, 2.0, 0.0), -3.0))
    judged = judge_candidates(
        reading.terms,
        [
            _candidate("M2UGen", "music understanding with MLLMs", 0.5, ["It reads music audio."]),
            _candidate("Other", "visual tokens", 0.2, ["Visual tokens."]),
        ],
        weights,
    )
    assert judged[0].hit.title == "M2UGen" and judged[0].probability > judged[1].probability
    band = settings.model_copy(update={"judge_band": (0.0, 1.0), "judge_threshold": 0.5})
    no = _Reader(-4.0)
    verdict = decide(reading, judged, band, weights, no)
    assert verdict.answering == [] and verdict.model_log_odds == -4.0 and no.asked[0][1] == "M2UGen"
    yes = _Reader(+6.0)
    assert decide(reading, judged, band, weights, yes).answering[0].hit.title == "M2UGen"
    outside = settings.model_copy(update={"judge_band": (0.99, 1.0), "judge_threshold": 0.0})
    unasked = _Reader(-9.0)
    assert decide(reading, judged, outside, weights, unasked).answering and not unasked.asked


def test_the_shipped_weights_match_the_features():
    weights = load_weights()
    assert len(weights.answers.coefficients) == 6 and len(weights.model.coefficients) == 2


@pytest.mark.parametrize("value", [-50.0, 0.0, 50.0])
def test_probability_is_bounded(value):
    weights = JudgeWeights(Logistic((value,) * 6, value))
    features = candidate_features(question_terms("sheet music", KEYWORDS), "music", 0.5, 0.5)
    assert 0.0 <= weights.probability(features) <= 1.0


def test_a_long_prompt_loses_the_middle_of_its_excerpt_not_the_question():
    prompt = list(range(100))  # token ids: the excerpt, then the question and the reply's start
    assert fit_tokens(prompt, room=50, tail=10) == list(range(40)) + list(range(90, 100))
    assert fit_tokens(prompt, room=100) == prompt
