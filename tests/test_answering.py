"""The answer chain against real parts: the built-in corpus in Chroma, MiniLM, the default profile (quoted
evidence, the 1.5B judge model reading where the statistics are unsure), the 0.5B model writing
(`answer.mode: generate`), and a real OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from rag.answering import Assistant
from rag.config import load_settings
from rag.library import Library
from rag.types import Answer
from tests.conftest import DYVTE_TITLE, REPO, run_cli

pytestmark = pytest.mark.slow

DYVTE_QUESTION = "Is there work that drops all visual tokens partway through an MLLM?"
MATCHING_QUESTION = "Is there a benchmark for matching objects across images for MLLMs?"
FOLLOW_UP = "What accuracy does its model reach?"
MMVM_TITLE = "Are They the Same? Exploring Visual Correspondence Shortcomings of Multimodal LLMs"
MOSCAR_TITLE = "mOSCAR: A Large-scale Multilingual and Multimodal Document-level Corpus"
PROTEIN_QUESTION = "How do proteins fold into their three-dimensional structure?"


def _assistant(seed_library, **overrides) -> Assistant:
    settings = load_settings(overrides={"index.path": str(seed_library.settings.index_path), **overrides}, env={})
    library = Library(settings)
    library._embedder = seed_library.embedder
    return Assistant.from_config(library=library)


def _check_citations(answer: Answer) -> None:
    source_ids = {s.paper_id for s in answer.sources}
    assert answer.citations, answer.answer
    assert {c.paper_id for c in answer.citations} <= source_ids
    for citation in answer.citations:
        assert f"[{citation.n}]" in answer.answer
        assert citation.supporting_passage


# --- extractive mode: no LLM ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractive(seed_library):
    return _assistant(seed_library, **{"answer.mode": "extractive", "answer.judge_model": None})


def test_extractive_answer_cites_dyvte(extractive):
    answer = extractive.ask(DYVTE_QUESTION)
    assert not answer.refused and answer.mode == "extractive"
    first_marker = int(re.search(r"\[(\d+)", answer.answer).group(1))
    assert {c.n: c.title for c in answer.citations}[first_marker] == DYVTE_TITLE  # the lead sentence is DyVTE's
    _check_citations(answer)
    assert answer.grounded == 1.0


def test_out_of_scope_question_is_refused_without_claims(extractive):
    answer = extractive.ask(PROTEIN_QUESTION)
    assert answer.refused and answer.citations == []
    assert answer.answer.startswith("The indexed abstracts do not cover this.")
    assert answer.sources  # the nearest papers are still listed


def test_extractive_follow_up_stays_on_the_same_paper(extractive):
    first = extractive.ask(MATCHING_QUESTION)
    assert first.citations[0].title == MMVM_TITLE
    second = extractive.ask(FOLLOW_UP, history=[first])
    assert second.standalone_question != FOLLOW_UP
    assert second.citations[0].title == MMVM_TITLE
    assert "51.06" in second.answer


def test_history_as_plain_pairs_is_accepted(extractive):
    answer = extractive.ask(FOLLOW_UP, history=[(MATCHING_QUESTION, "MMVM is such a benchmark.")])
    assert answer.citations[0].title == MMVM_TITLE


def test_evidence_uses_stored_sentence_vectors(extractive):
    embedder = extractive.library.embedder
    calls: list[int] = []
    original = embedder.embed
    embedder.embed = lambda texts: calls.append(len(texts)) or original(texts)
    try:
        extractive.ask("Which benchmark evaluates visual matching across images for multimodal LLMs?")
    finally:
        embedder.embed = original
    assert calls == [1]  # only the question is embedded; the evidence sentences come from the index


def test_stream_yields_text_then_the_answer(extractive):
    items = list(extractive.stream(DYVTE_QUESTION))
    assert isinstance(items[-1], Answer) and all(isinstance(i, str) for i in items[:-1])
    assert "".join(items[:-1]) == items[-1].answer


# --- the default: the judge decides, with the 1.5B model reading where the statistics are unsure ------------


@pytest.fixture(scope="module")
def judged(seed_library):
    assistant = _assistant(seed_library)
    assert assistant.settings.answer.judge_model and assistant.settings.answer.mode == "extractive"
    return assistant


def test_sheet_music_is_not_answered_with_a_near_neighbour(judged):
    answer = judged.ask("Is there an MLLM that reads sheet music and transcribes it?")
    assert answer.refused and not answer.answer.startswith("Yes"), answer.answer
    assert "sheet" in answer.answer.lower() and answer.citations == []


def test_a_near_miss_on_a_common_word_is_read_by_the_model(judged):
    # Met^2Net forecasts weather but is no diffusion model; "diffusion" is common in this collection, so the term
    # statistics alone answer from it. The model, asked whether its abstract mentions a diffusion model, says No.
    answer = judged.ask("Which paper uses a diffusion model for weather forecasting?")
    assert answer.refused and answer.citations == [], answer.answer
    assert "diffusion model" in answer.answer and "Met^2Net" in answer.answer, answer.answer


def test_dyvte_is_named_first(judged):
    answer = judged.ask(DYVTE_QUESTION)
    assert answer.answer.startswith("Yes — **DyVTE**"), answer.answer
    assert answer.citations[0].title == DYVTE_TITLE and answer.grounded == 1.0
    assert 0.9 <= answer.sentences[0].support <= 1.0  # measured: the quoted sentence against its own evidence


@pytest.mark.parametrize(
    "question",
    [
        "How do I bake sourdough bread?",
        "Which protein structure predictor reaches the best accuracy on CASP15?",
        "Which paper uses reinforcement learning from human feedback to reduce hallucination in video LLMs?",
    ],
)
def test_questions_no_abstract_answers_are_refused(judged, question):
    answer = judged.ask(question)
    assert answer.refused and answer.citations == [], answer.answer


def test_answers_from_answers_md_still_hold(judged):
    moscar = judged.ask("How many languages does the mOSCAR corpus cover?")
    assert "163" in moscar.answer and moscar.citations[0].title == MOSCAR_TITLE, moscar.answer
    listed = judged.ask("Which papers reduce visual tokens to speed up MLLM inference?")
    assert listed.shape == "list" and len(listed.citations) >= 3, listed.answer
    assert DYVTE_TITLE in [c.title for c in listed.citations]


def test_a_statement_the_evidence_does_not_state_scores_low(judged):
    from rag.answer.verify import EvidenceSupport

    answer = judged.ask(DYVTE_QUESTION)
    support = EvidenceSupport(judged.library.embedder.embed)
    unrelated = support(["Bananas ripen faster next to apples in a paper bag."], answer.evidence[:1])[0][0]
    assert unrelated < judged.settings.answer.support_threshold  # the same check that scored the answer's 1.0


# --- the embedded local model via llama.cpp --------------------------------------------------------


@pytest.fixture(scope="module")
def local_model(seed_library):
    return _assistant(seed_library, **{"answer.mode": "generate"})


def test_local_model_answer_cites_dyvte(local_model):
    answer = local_model.ask(DYVTE_QUESTION)
    assert not answer.refused
    assert DYVTE_TITLE in [c.title for c in answer.citations], answer.to_json()
    _check_citations(answer)
    assert answer.model.startswith("llamacpp:qwen2.5-coder-0.5b")


TOKEN_REDUCTION_TITLES = {
    DYVTE_TITLE,
    "Accelerating Multimodal Large Language Models by Searching Optimal Vision Token Reduction",
    "AIM: Adaptive Inference of Multi-Modal LLMs via Token Merging and Pruning",
    "TokenPacker: Efficient Visual Projector for Multimodal LLM",
    "Matryoshka Multimodal Models",
    "\u03b3-MoD: Exploring Mixture-of-Depth Adaptation for Multimodal Large Language Models",
}


def test_local_model_names_dyvte_in_the_first_sentence(local_model):
    answer = local_model.ask(DYVTE_QUESTION)
    first_sentence = re.split(r"(?<=[.!?])\s", answer.answer, maxsplit=1)[0]
    assert "DyVTE" in first_sentence, answer.answer
    assert answer.citations[0].title == DYVTE_TITLE


def test_local_model_lists_token_reduction_papers_by_name(local_model):
    answer = local_model.ask("Which papers reduce visual tokens to speed up MLLM inference?")
    assert answer.mode == "generate" and answer.shape == "list", answer.to_json()
    cited = [c for c in answer.citations if c.title in TOKEN_REDUCTION_TITLES]
    assert len(cited) >= 3, [c.title for c in answer.citations]
    lines = answer.answer.splitlines()
    for citation in cited:  # each on its own line, named, with its marker
        line = next(line for line in lines if f"[{citation.n}]" in line)
        assert line.startswith("- ") and "*" in line.split(" — ")[0]


def test_local_model_refuses_rlhf_for_video_naming_what_is_missing(local_model):
    question = "Which paper uses reinforcement learning from human feedback to reduce hallucination in video LLMs?"
    answer = local_model.ask(question)
    assert answer.refused and answer.citations == [], answer.answer
    assert "video" in answer.answer.lower()
    assert any(h.title == "Aligning Large Multimodal Models with Factually Augmented RLHF" for h in answer.sources)


def test_local_model_refuses_a_generic_worded_question_from_another_field(local_model):
    answer = local_model.ask("Which protein structure predictor reaches the best accuracy on CASP15?")
    assert answer.refused and answer.citations == [], answer.answer


def test_local_model_refuses_out_of_scope(local_model):
    answer = local_model.ask(PROTEIN_QUESTION)
    assert answer.refused and answer.citations == []


def test_local_model_two_turn_chat(local_model):
    first = local_model.ask(MATCHING_QUESTION)
    assert MMVM_TITLE in [c.title for c in first.citations], first.to_json()
    second = local_model.ask(FOLLOW_UP, history=[first])
    assert [c.title for c in second.citations] == [MMVM_TITLE], second.to_json()
    assert "51.06" in second.answer


def test_local_model_streams_tokens(local_model):
    items = list(local_model.stream(MATCHING_QUESTION))
    assert isinstance(items[-1], Answer)
    assert len(items) > 3  # tokens arrive one by one, not as one block


def test_cli_ask_json_schema(seed_library):
    result = run_cli("ask", DYVTE_QUESTION, "--json", index=seed_library.settings.index_path, timeout=600)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    expected = {
        "question",
        "standalone_question",
        "answer",
        "refused",
        "grounded",
        "citations",
        "sources",
        "model",
        "timings",
    }
    assert expected <= set(answer)
    assert set(answer["timings"]) >= {"retrieve_ms", "first_token_ms", "total_ms"}
    assert DYVTE_TITLE in [c["title"] for c in answer["citations"]]
    assert {c["paper_id"] for c in answer["citations"]} <= {s["paper_id"] for s in answer["sources"]}
    for citation in answer["citations"]:
        assert set(citation) == {"n", "paper_id", "title", "url", "supporting_passage", "supported"}


def test_cli_missing_model_file_still_prints_papers(seed_library, tmp_path):
    missing = tmp_path / "absent.gguf"
    result = run_cli("ask", DYVTE_QUESTION, "--model", str(missing), index=seed_library.settings.index_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("rag: error:")]
    assert len(errors) == 1 and "model file not found" in errors[0] and str(missing) in errors[0]
    assert DYVTE_TITLE in result.stdout  # the retrieved papers are still shown


def test_cli_unreachable_endpoint_still_prints_papers(seed_library):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli(
        "ask",
        DYVTE_QUESTION,
        "--profile",
        "hosted",
        index=seed_library.settings.index_path,
        extra_env={"RAG_LLM__BASE_URL": f"http://127.0.0.1:{port}/v1"},
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("rag: error:")]
    assert len(errors) == 1 and "cannot reach the LLM endpoint" in errors[0]
    assert DYVTE_TITLE in result.stdout


def test_cli_endpoint_timeout_still_prints_papers(seed_library):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    port = listener.getsockname()[1]
    try:
        result = run_cli(
            "ask",
            DYVTE_QUESTION,
            "--profile",
            "hosted",
            index=seed_library.settings.index_path,
            extra_env={"RAG_LLM__BASE_URL": f"http://127.0.0.1:{port}/v1", "RAG_LLM__TIMEOUT_S": "1.5"},
        )
    finally:
        listener.close()
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("rag: error:")]
    assert len(errors) == 1 and "did not answer within 1.5s" in errors[0]
    assert DYVTE_TITLE in result.stdout


def test_cli_chat_two_turns(seed_library):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_INDEX__PATH": str(seed_library.settings.index_path), "RAG_ANSWER__MODE": "extractive"})
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "chat"],
        input=f"{MATCHING_QUESTION}\n{FOLLOW_UP}\n/quit\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(MMVM_TITLE) >= 2
    assert "51.06" in result.stdout


# --- a real OpenAI-compatible server: llama-cpp-python's, on 127.0.0.1 ------------------------------


def test_openai_backend_streams_from_a_real_server(seed_library, openai_server, monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "not-a-real-key")
    assistant = _assistant(
        seed_library,
        **{
            "llm.backend": "openai",
            "llm.base_url": openai_server,
            "llm.model": "qwen-0.5b",
            "llm.api_key_env": "TEST_OPENAI_KEY",
            "llm.timeout_s": 120,
            "llm.temperature": 0.0,
            "answer.mode": "generate",
        },
    )
    items = list(assistant.stream("How many languages does the mOSCAR corpus cover?"))
    answer = items[-1]
    assert isinstance(answer, Answer) and answer.error is None, answer.notes
    assert len(items) > 3  # streamed token by token over server-sent events
    assert "".join(items[:-1]).strip()  # the streamed text is the model's
    assert answer.model == "openai:qwen-0.5b" and answer.mode == "generate", answer.to_json()
    assert "163" in answer.answer
    _check_citations(answer)
    assert [c.title for c in answer.citations] == [MOSCAR_TITLE]


# --- the chain's decisions, with a scripted model (real index and embedder) --------------------------


class _Scripted:
    """A chat model that replies with fixed text: for checking what the chain does with a reply."""

    name = "scripted"

    def __init__(self, reply: str | Exception) -> None:
        self.reply = reply
        self.calls = 0

    def stream(self, messages, *, max_tokens, temperature):
        self.calls += 1
        if isinstance(self.reply, Exception):
            raise self.reply
        words = self.reply.split(" ")
        yield from (w if i == 0 else f" {w}" for i, w in enumerate(words))

    def complete(self, messages, prefix, *, max_tokens, temperature, stop):
        self.prefixes = [*getattr(self, "prefixes", []), prefix]
        yield from self.stream(messages, max_tokens=max_tokens, temperature=temperature)


def _scripted(seed_library, reply) -> Assistant:
    assistant = _assistant(seed_library, **{"llm.backend": "none", "answer.mode": "generate"})
    assistant.chat_model = _Scripted(reply)
    return assistant


def test_a_statement_cites_the_paper_it_was_written_about(seed_library):
    # The model writes after "Yes — **DyVTE** ...:" and cites [2]; the statement is DyVTE's own words, so it
    # stays, cited as [1], the paper the system asked it to write about.
    reply = "DyVTE improves the efficiency of MLLMs with a dynamic visual-token exit [2]."
    assistant = _scripted(seed_library, reply)
    answer = assistant.ask(DYVTE_QUESTION)
    assert answer.mode == "generate", answer.to_json()
    assert "dynamic visual-token exit [1]" in answer.answer
    assert answer.answer.startswith("Yes — **DyVTE**") and "[2]" not in answer.answer
    assert [c.title for c in answer.citations] == [DYVTE_TITLE]
    assert assistant.chat_model.prefixes[0].endswith("**DyVTE** (dynamic visual-token exit): ")


def test_invented_number_is_not_supported_and_falls_back(seed_library):
    reply = "CoLVA reaches 97.5% accuracy on MMVM [1]."
    assistant = _scripted(seed_library, reply)
    answer = assistant.ask(MATCHING_QUESTION)
    assert answer.mode == "fallback" and "97.5" not in answer.answer
    assert answer.grounded == 1.0 and answer.citations


def test_markers_the_model_writes_are_not_kept(seed_library):
    reply = "The MMVM benchmark evaluates visual matching of over 30 different MLLMs [1][9]."
    assistant = _scripted(seed_library, reply)
    answer = assistant.ask(MATCHING_QUESTION)
    assert "[9]" not in answer.answer and [c.n for c in answer.citations] == [1]
    assert answer.citations[0].title == MMVM_TITLE


def test_model_decline_becomes_a_refusal(seed_library):
    reply = "The indexed abstracts do not cover this."
    assistant = _scripted(seed_library, reply)
    answer = assistant.ask(MATCHING_QUESTION)
    assert answer.refused and answer.citations == [] and answer.sources


def test_backend_error_falls_back_to_extractive_with_the_error(seed_library):
    from rag.errors import LLMError

    assistant = _scripted(seed_library, LLMError("cannot reach the LLM endpoint http://x (is the server running?)"))
    answer = assistant.ask(MATCHING_QUESTION)
    assert answer.mode == "fallback" and answer.error.startswith("cannot reach")
    assert answer.citations[0].title == MMVM_TITLE


def test_weak_retrieval_refuses_before_calling_the_model(seed_library):
    assistant = _scripted(seed_library, "anything [1].")
    answer = assistant.ask(PROTEIN_QUESTION)
    assert answer.refused and assistant.chat_model.calls == 0


def test_llm_condense_rewrites_the_follow_up(seed_library):
    assistant = _scripted(seed_library, "What accuracy does CoLVA reach on the MMVM benchmark?")
    assistant.settings.answer.condense = "llm"
    answer = assistant.ask(FOLLOW_UP, history=[(MATCHING_QUESTION, "MMVM is such a benchmark [1].")])
    assert answer.standalone_question == "What accuracy does CoLVA reach on the MMVM benchmark?"
    assert answer.citations[0].title == MMVM_TITLE


def test_a_statement_only_another_paper_supports_is_replaced(seed_library):
    # MINIMA's own words, written where the system asked about the MMVM paper: not supported by [1]'s evidence.
    reply = "MINIMA is a unified image matching framework for multiple cross-modal cases."
    assistant = _scripted(seed_library, reply)
    answer = assistant.ask(MATCHING_QUESTION)
    assert answer.mode == "fallback" and "MINIMA" not in answer.answer
    assert answer.citations[0].title == MMVM_TITLE and any("not supported" in n for n in answer.notes)
