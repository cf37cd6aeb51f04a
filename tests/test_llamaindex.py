"""LlamaIndex both ways: our retrieval and cited answers inside LlamaIndex, and LlamaIndex LLMs and documents in ours.

The LLM is the embedded 0.5B model behind llama-cpp-python's OpenAI-compatible server, reached
through LlamaIndex's own `OpenAILike` integration.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import threading
import time

import pytest

from rag.config import LLMSettings
from rag.errors import LLMError
from rag.llm import load_chat_model
from tests.conftest import DYVTE_TITLE, make_library, run_cli

QUESTION = "Is there work that drops all visual tokens partway through an MLLM?"
KEY = "sk-test-key-123456"


def _llm_kwargs(base_url: str) -> dict:
    return {"model": "qwen-0.5b", "api_base": base_url, "is_chat_model": True, "context_window": 4096}


def _titles(nodes) -> list[str]:
    return [n.node.metadata["title"] for n in nodes]


# --- fast: selection and errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class_path", "hint"),
    [
        ("llama_index.llms.ollama.Ollama", "pip install 'paper-rag[llm-ollama]'"),
        ("llama_index.llms.some_provider.SomeLLM", "pip install llama-index-llms-some-provider"),
    ],
)
def test_missing_provider_package_is_one_line_naming_what_to_install(class_path, hint):
    model = load_chat_model(LLMSettings(backend="llamaindex", llamaindex_class=class_path))
    with pytest.raises(LLMError) as caught:
        list(model.stream([{"role": "user", "content": "hi"}], max_tokens=8, temperature=0))
    assert hint in str(caught.value) and "\n" not in str(caught.value)


def test_wrong_class_and_wrong_kwargs_are_one_line():
    with pytest.raises(LLMError, match="no LlamaIndex LLM class 'Nope'"):
        load_chat_model(LLMSettings(backend="llamaindex", llamaindex_class="llama_index.llms.openai_like.Nope")).load()
    bad = LLMSettings(backend="llamaindex", llamaindex_kwargs={"model": "m", "temperature": "hot"})
    with pytest.raises(LLMError, match="llm.llamaindex_kwargs: OpenAILike refused them"):
        load_chat_model(bad).load()


class _EchoesKey(http.server.BaseHTTPRequestHandler):
    """A server that answers 401 and quotes the key it was sent, as some proxies do."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.dumps({"error": {"message": f"bad key {self.headers.get('Authorization')}"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_provider_errors_never_show_the_key(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _EchoesKey)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TEST_RAG_KEY", KEY)
    settings = LLMSettings(
        backend="llamaindex",
        api_key_env="TEST_RAG_KEY",
        llamaindex_kwargs={"model": "m", "api_base": f"http://127.0.0.1:{server.server_port}/v1", "max_retries": 0},
    )
    try:
        with pytest.raises(LLMError, match="AuthenticationError") as caught:
            list(load_chat_model(settings).stream([{"role": "user", "content": "hi"}], max_tokens=8, temperature=0))
    finally:
        server.shutdown()
    assert KEY not in str(caught.value) and "[api key]" in str(caught.value)


# --- slow: real index, real model ------------------------------------------------------------------


@pytest.mark.slow
def test_retriever_gives_one_node_per_paper_with_metadata(seed_library):
    from llama_index.core.schema import MetadataMode

    from rag.integrations.llama_index import PaperRetriever

    nodes = PaperRetriever(seed_library, similarity_top_k=5).retrieve(QUESTION)
    assert DYVTE_TITLE in _titles(nodes) and len({n.node.node_id for n in nodes}) == 5
    assert [n.node.metadata["rank"] for n in nodes] == [1, 2, 3, 4, 5]  # our ranking's order
    fused = [n.node.metadata["fused"] for n in nodes]
    assert fused == sorted(fused, reverse=True)
    assert all(n.score == pytest.approx(n.node.metadata["similarity"], abs=1e-4) for n in nodes)  # score = cosine
    meta = nodes[0].node.metadata
    assert {"paper_id", "title", "url", "date", "sources", "similarity", "fused", "rank"} <= set(meta)
    shown = nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert meta["title"] in shown and meta["paper_id"] not in shown
    filtered = PaperRetriever(seed_library, k=3, where=["source=000_*.txt"]).retrieve(QUESTION)
    assert filtered and all(any("000_" in s for s in n.node.metadata["sources"]) for n in filtered)


@pytest.mark.slow
def test_llamaindex_engines_on_our_retriever_with_a_local_llm(seed_library, openai_server):
    from llama_index.core.chat_engine import CondensePlusContextChatEngine
    from llama_index.core.postprocessor import SimilarityPostprocessor
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.llms.openai_like import OpenAILike

    from rag.integrations.llama_index import PaperRetriever

    llm = OpenAILike(**_llm_kwargs(openai_server), api_key="none", max_tokens=48, temperature=0.0, timeout=300)
    retriever = PaperRetriever(seed_library, similarity_top_k=4, passages=1)
    cutoff = SimilarityPostprocessor(similarity_cutoff=0.5)
    response = RetrieverQueryEngine.from_args(retriever, llm=llm, node_postprocessors=[cutoff]).query(QUESTION)
    assert str(response).strip() and DYVTE_TITLE in _titles(response.source_nodes)
    assert all(n.score >= 0.5 for n in response.source_nodes)
    off_topic = cutoff.postprocess_nodes(retriever.retrieve("What is the boiling point of tungsten?"))
    assert off_topic == []  # a similarity means the same across questions
    chat = CondensePlusContextChatEngine.from_defaults(retriever, llm=llm)
    reply = chat.chat(QUESTION)
    assert str(reply).strip() and DYVTE_TITLE in _titles(reply.source_nodes)


@pytest.mark.slow
def test_our_query_engine_gives_verified_citations_streamed_or_not(seed_library, openai_server, monkeypatch):
    from rag.answering import Assistant
    from rag.integrations.llama_index import PaperChatEngine, PaperQueryEngine

    monkeypatch.setenv("OPENAI_API_KEY", "none")
    library = seed_library.derive(
        {"llm.backend": "llamaindex", "llm.llamaindex_kwargs": _llm_kwargs(openai_server), "answer.mode": "generate"}
    )
    assistant = Assistant.from_config(library=library)
    assert assistant.model_name == "llamaindex:OpenAILike:qwen-0.5b"

    response = PaperQueryEngine(assistant=assistant).query(QUESTION)
    answer = response.metadata["answer"]
    assert response.response == answer.answer and not answer.refused and answer.error is None
    assert DYVTE_TITLE in _titles(response.source_nodes)
    for node, citation in zip(response.source_nodes, answer.citations, strict=True):
        assert node.node.text == citation.supporting_passage and node.node.metadata["supported"] == citation.supported
    assert any(n.node.metadata["supported"] for n in response.source_nodes)

    streamed = PaperQueryEngine(assistant=assistant, streaming=True).query(QUESTION)
    tokens = list(streamed.response_gen)
    assert len(tokens) > 3  # tokens arrive one by one
    assert str(streamed) == streamed.answer.answer and DYVTE_TITLE in _titles(streamed.source_nodes)

    chat = PaperChatEngine(assistant).chat(QUESTION)
    streamed_chat = PaperChatEngine(assistant).stream_chat(QUESTION)
    deltas = list(streamed_chat.response_gen)
    assert len(deltas) > 3
    checked = streamed_chat.answer
    assert streamed_chat.response == str(streamed_chat) == checked.answer  # the checked text, not the raw stream
    assert chat.response and re.search(r"\[\d+\]", chat.response)  # the unstreamed chat: checked text, markers
    assert re.search(r"\[\d+\]", streamed_chat.response)  # with its markers
    assert [n.node.node_id for n in streamed_chat.source_nodes] == [n.node.node_id for n in chat.source_nodes]

    refused = PaperChatEngine(assistant).chat("What is the boiling point of tungsten?")
    assert refused.metadata["refused"] and refused.source_nodes == []


@pytest.mark.slow
def test_async_calls_leave_the_event_loop_running(seed_library, openai_server, monkeypatch):
    """achat / astream_chat / aquery run the answer in a worker thread: a concurrent coroutine keeps ticking."""
    from rag.answering import Assistant
    from rag.integrations.llama_index import PaperChatEngine, PaperQueryEngine

    monkeypatch.setenv("OPENAI_API_KEY", "none")
    library = seed_library.derive(
        {"llm.backend": "llamaindex", "llm.llamaindex_kwargs": _llm_kwargs(openai_server), "answer.mode": "generate"}
    )
    assistant = Assistant.from_config(library=library)

    async def ticking(call):
        ticks, gaps, done = [], [], False

        async def ticker():
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                ticks.append(now)
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        try:
            result = await call()
        finally:
            done = True
            await task
        elapsed = time.perf_counter() - started
        assert elapsed > 0.3 and len(ticks) >= 10 and max(gaps) < max(0.25, elapsed / 4), (elapsed, max(gaps))
        return result

    async def streamed():
        response = await PaperChatEngine(assistant).astream_chat(QUESTION)
        tokens = [token async for token in response.async_response_gen()]
        return response, tokens

    async def main():
        reply = await ticking(lambda: PaperChatEngine(assistant).achat(QUESTION))
        assert DYVTE_TITLE in _titles(reply.source_nodes)
        response, tokens = await ticking(streamed)
        assert len(tokens) > 3 and response.response == response.answer.answer and response.source_nodes
        queried = await ticking(lambda: PaperQueryEngine(assistant=assistant).aquery(QUESTION))
        assert DYVTE_TITLE in _titles(queried.source_nodes)

    asyncio.run(main())


@pytest.mark.slow
def test_rag_ask_through_a_llamaindex_llm_streams_verifies_and_refuses(seed_library, openai_server):
    env = {
        "RAG_LLM__BACKEND": "llamaindex",
        "RAG_LLM__LLAMAINDEX_KWARGS": json.dumps(_llm_kwargs(openai_server)),
        "OPENAI_API_KEY": "none",
        "RAG_ANSWER__MODE": "generate",
    }
    index = seed_library.settings.index_path
    result = run_cli("ask", QUESTION, "--json", index=index, extra_env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"].startswith("llamaindex:OpenAILike") and answer["mode"] in ("generate", "fallback")
    assert DYVTE_TITLE in [c["title"] for c in answer["citations"]]
    refused = run_cli("ask", "What is the boiling point of tungsten?", index=index, extra_env=env)
    assert refused.returncode == 0 and "The indexed abstracts do not cover this." in refused.stdout


@pytest.mark.slow
def test_ingest_documents_from_llamaindex(tmp_path, embedder):
    from llama_index.core import Document

    library = make_library(tmp_path / "idx", embedder)
    documents = [
        Document(
            text="We route each audio frame to two of sixteen experts, which halves inference cost.",
            metadata={"title": "Sparse Mixture Routing for Speech", "year": 2024, "journal": "Speech Letters"},
        ),
        Document(text="Recurrent Chart Readers\nWe read charts column by column with a small recurrent network."),
        Document(text="", metadata={"file_name": "empty.txt"}),
    ]
    problems = []
    report = library.ingest_documents(documents, on_problem=problems.append)
    assert (report.papers_embedded, len(problems)) == (2, 1) and "no title and text" in str(problems[0])
    again = library.ingest_documents(documents)
    assert (again.papers_embedded, again.papers_unchanged) == (0, 2)  # incremental, like files
    hits = library.search("halving the cost of speech recognition", k=1, where=["journal=Speech Letters"])
    assert [h.title for h in hits] == ["Sparse Mixture Routing for Speech"] and hits[0].date == "2024"
    assert library.search("reading charts", k=1)[0].title == "Recurrent Chart Readers"
