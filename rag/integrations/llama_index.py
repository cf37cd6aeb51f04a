"""paper-rag inside LlamaIndex apps, and LlamaIndex documents into paper-rag.

Out: `PaperRetriever` is a LlamaIndex retriever over our hybrid search (one node per paper: its
best passages, with paper id, title, url, date and source files in metadata). A node's score is
the paper's cosine similarity to the question (what `SimilarityPostprocessor` and score-based
rerankers assume: higher is closer, comparable across questions); the fused rank-fusion score and
rank that ordered the results stay in metadata. `RetrieverQueryEngine`,
`CondensePlusContextChatEngine`, agents and evaluators run on it.
`PaperQueryEngine` and `PaperChatEngine` wrap `Assistant`: the response text is the checked
answer and `source_nodes` are the cited papers with their supporting passage and `supported` flag.

In: `document_records` (rag/integrations/documents.py) turns LlamaIndex `Document`s into records for
`Library.ingest_documents`.

    from rag.integrations.llama_index import PaperRetriever, PaperQueryEngine
    retriever = PaperRetriever(Library.from_config(), similarity_top_k=5)
    engine = PaperQueryEngine.from_config()            # cited, verified answers
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.core.chat_engine.types import AgentChatResponse, BaseChatEngine, StreamingAgentChatResponse
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rag.chunking import abstract_sentences
from rag.integrations.documents import document_records
from rag.library import Library
from rag.types import Answer, PaperHit

__all__ = [
    "CheckedStreamingChatResponse",
    "CheckedStreamingResponse",
    "PaperChatEngine",
    "PaperQueryEngine",
    "PaperRetriever",
    "answer_nodes",
    "document_records",
    "paper_node",
]

_HIDDEN_FROM_LLM = [
    "paper_id", "url", "date", "sources", "similarity", "fused", "bm25", "rank", "supported", "n", "cited",
]  # fmt: skip

_T = TypeVar("_T")
_END = object()


async def _in_worker(items: Iterator[_T]) -> AsyncIterator[_T]:
    """A blocking iterator stepped in a worker thread, so the event loop runs while it works."""
    while True:
        item = await asyncio.to_thread(next, items, _END)
        if item is _END:
            return
        yield item  # type: ignore[misc]


# --- out: retrieval -----------------------------------------------------------------------------


def paper_node(hit: PaperHit, rank: int, passages: int | None = None) -> NodeWithScore:
    """One retrieved paper as a node: its best passages as text, the title shown to the LLM.

    The score is the paper's best cosine similarity (its `similarity`), not the fused score: fused
    values depend on the other results and on the rank depth, so a cutoff on them means nothing.
    """
    text = " ".join(abstract_sentences((hit.passages or [hit.passage])[:passages]))
    metadata = {
        "paper_id": hit.paper_id,
        "title": hit.title,
        "url": hit.url,
        "date": hit.date,
        "sources": list(hit.sources),
        "similarity": round(hit.score, 4),
        "fused": round(hit.fused, 6),
        "bm25": hit.lexical,
        "rank": rank,
    }
    node = TextNode(
        id_=hit.paper_id,
        text=text,
        metadata=metadata,
        excluded_llm_metadata_keys=_HIDDEN_FROM_LLM,
        excluded_embed_metadata_keys=list(metadata),
    )
    return NodeWithScore(node=node, score=hit.score)


class PaperRetriever(BaseRetriever):
    """Our hybrid retrieval as a LlamaIndex retriever: each paper once, in our ranking's order.

    Nodes come in the fused ranking's order (`metadata["rank"]`); their scores are similarities, so
    a later node can score higher than an earlier one that keyword search ranked up.
    """

    def __init__(
        self,
        library: Library,
        *,
        similarity_top_k: int | None = None,
        k: int | None = None,
        where: Iterable[str] | None = None,
        mode: str | None = None,
        rerank: bool | None = None,
        passages: int | None = None,
    ) -> None:
        """`similarity_top_k` (LlamaIndex's name) or `k`: how many papers; `passages` caps a node's passages."""
        if similarity_top_k is not None and k is not None and similarity_top_k != k:
            raise ValueError(f"PaperRetriever: give similarity_top_k or k, not both ({similarity_top_k} != {k})")
        super().__init__()
        self.library = library
        self.passages = passages
        self.k = similarity_top_k if similarity_top_k is not None else k
        self.where = list(where) if where else None
        self.mode = mode
        self.rerank = rerank

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.library.search(
            query_bundle.query_str, k=self.k, where=self.where, mode=self.mode, rerank=self.rerank
        )
        return [paper_node(hit, rank, self.passages) for rank, hit in enumerate(hits, start=1)]

    @property
    def similarity_top_k(self) -> int | None:
        return self.k

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


# --- out: cited answers -----------------------------------------------------------------------------


def answer_nodes(answer: Answer) -> list[NodeWithScore]:
    """The cited papers of an answer: supporting passage as text, `supported` in metadata."""
    score_of = {hit.paper_id: hit.score for hit in answer.sources}
    nodes = []
    for citation in answer.citations:
        metadata = {
            "paper_id": citation.paper_id,
            "title": citation.title,
            "url": citation.url,
            "n": citation.n,
            "supported": citation.supported,
        }
        node = TextNode(
            id_=f"{citation.paper_id}#cite{citation.n}",
            text=citation.supporting_passage,
            metadata=metadata,
            excluded_llm_metadata_keys=_HIDDEN_FROM_LLM,
            excluded_embed_metadata_keys=list(metadata),
        )
        nodes.append(NodeWithScore(node=node, score=score_of.get(citation.paper_id)))
    return nodes


def answer_metadata(answer: Answer) -> dict[str, Any]:
    """What a LlamaIndex caller needs beyond the text: how the answer was made, and the Answer itself."""
    return {
        "refused": answer.refused,
        "mode": answer.mode,
        "grounded": answer.grounded,
        "model": answer.model,
        "notes": list(answer.notes),
        "error": answer.error,
        "nearest": [{"paper_id": h.paper_id, "title": h.title, "score": h.score} for h in answer.sources],
        "answer": answer,
    }


@dataclass
class CheckedStreamingResponse(StreamingResponse):
    """Streams the model's tokens as they come; once the stream ends, the response is the checked answer.

    The checked text can differ from the streamed tokens (markers corrected, or an answer that
    failed verification replaced by the extractive one): `str(response)`, `get_response()` and
    `answer` give the checked one, and `source_nodes` are filled with the verified citations.
    """

    answer: Answer | None = field(default=None)

    def _finish(self) -> None:
        if self.response_gen is not None:
            for _ in self.response_gen:
                pass

    def __str__(self) -> str:
        self._finish()
        return self.answer.answer if self.answer else ""

    def get_response(self) -> Response:
        self._finish()
        return Response(self.answer.answer if self.answer else "", self.source_nodes, self.metadata)

    async def async_response_gen(self) -> AsyncIterator[str]:
        """The tokens, generated in a worker thread so the event loop keeps running."""
        if self.response_gen is not None:
            async for token in _in_worker(self.response_gen):
                yield token


def _stream_checked(items: Iterator[str | Answer], response: CheckedStreamingResponse) -> Iterator[str]:
    for item in items:
        if isinstance(item, Answer):
            response.answer = item
            response.response_txt = item.answer
            response.source_nodes.extend(answer_nodes(item))
            response.metadata = answer_metadata(item)
        else:
            yield item


class PaperQueryEngine(CustomQueryEngine):
    """`Assistant` as a LlamaIndex query engine: cited, verified answers; refusals when the papers do not say."""

    assistant: Any
    streaming: bool = False

    @classmethod
    def from_config(
        cls, profile: str | None = None, overrides: Mapping[str, Any] | None = None, *, streaming: bool = False
    ) -> PaperQueryEngine:
        from rag.answering import Assistant

        return cls(assistant=Assistant.from_config(profile, overrides), streaming=streaming)

    def custom_query(self, query_str: str) -> Response | StreamingResponse:
        if self.streaming:
            response = CheckedStreamingResponse(response_gen=iter(()), source_nodes=[])
            response.response_gen = _stream_checked(self.assistant.stream(query_str), response)
            return response
        answer = self.assistant.ask(query_str)
        return Response(answer.answer, answer_nodes(answer), answer_metadata(answer))

    async def acustom_query(self, query_str: str) -> Response | StreamingResponse:
        """`aquery`: the answer is made in a worker thread (a streamed one as its tokens are read)."""
        if self.streaming:
            return self.custom_query(query_str)  # nothing runs until its tokens are read
        return await asyncio.to_thread(self.custom_query, query_str)


class PaperChatEngine(BaseChatEngine):
    """`Assistant` as a LlamaIndex chat engine: follow-ups lean on the earlier turns, answers stay checked."""

    def __init__(self, assistant: Any) -> None:
        self.assistant = assistant
        self._history: list[tuple[str, str]] = []

    @classmethod
    def from_config(cls, profile: str | None = None, overrides: Mapping[str, Any] | None = None) -> PaperChatEngine:
        from rag.answering import Assistant

        return cls(Assistant.from_config(profile, overrides))

    def reset(self) -> None:
        self._history = []

    @property
    def chat_history(self) -> list[ChatMessage]:
        messages = []
        for question, answer in self._history:
            messages.append(ChatMessage(role=MessageRole.USER, content=question))
            messages.append(ChatMessage(role=MessageRole.ASSISTANT, content=answer))
        return messages

    def _turns(self, chat_history: Sequence[ChatMessage] | None) -> list[tuple[str, str]]:
        if chat_history is None:
            return list(self._history)
        turns, question = [], None
        for message in chat_history:
            if message.role == MessageRole.USER:
                question = message.content or ""
            elif message.role == MessageRole.ASSISTANT and question is not None:
                turns.append((question, message.content or ""))
                question = None
        return turns

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        turns = self._turns(chat_history)
        answer = self.assistant.ask(message, history=turns)
        self._history = [*turns, (message, answer.answer)]
        return AgentChatResponse(
            response=answer.answer, source_nodes=answer_nodes(answer), metadata=answer_metadata(answer)
        )

    def _checked_stream(self, message: str, turns: list[tuple[str, str]], response: CheckedStreamingChatResponse):
        text = ""
        for item in self.assistant.stream(message, history=turns):
            if isinstance(item, Answer):
                response.answer = item
                response.source_nodes.extend(answer_nodes(item))
                response.metadata = answer_metadata(item)
                self._history = [*turns, (message, item.answer)]
                continue
            text += item
            yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=item)

    def stream_chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> StreamingAgentChatResponse:
        """Tokens as the model writes them; once read, `response`/`str()` are the checked answer, as `chat` gives."""
        turns = self._turns(chat_history)
        response = CheckedStreamingChatResponse(is_writing_to_memory=False)
        response.chat_stream = self._checked_stream(message, turns, response)
        return response

    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        """`chat` in a worker thread: an app's event loop keeps serving while the answer is made."""
        return await asyncio.to_thread(self.chat, message, chat_history)

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        """`stream_chat` for `async_response_gen()`: each step runs in a worker thread."""
        turns = self._turns(chat_history)
        response = CheckedStreamingChatResponse(is_writing_to_memory=False)
        response.achat_stream = _in_worker(self._checked_stream(message, turns, response))
        return response


@dataclass
class CheckedStreamingChatResponse(StreamingAgentChatResponse):
    """A chat stream whose final text is the checked answer (with its `[n]` markers), as `chat` returns.

    The streamed tokens are the model's draft; once they have been read, `response`, `str()` and
    `source_nodes` are those of the checked `Answer` (also in `answer` and `metadata["answer"]`).
    """

    answer: Answer | None = None
    metadata: dict[str, Any] | None = None

    @property
    def response_gen(self) -> Iterator[str]:  # type: ignore[override]
        yield from StreamingAgentChatResponse.response_gen.fget(self)  # type: ignore[attr-defined]
        self._settle()

    async def async_response_gen(self) -> AsyncIterator[str]:  # type: ignore[override]
        async for token in super().async_response_gen():
            yield token
        self._settle()

    def _settle(self) -> None:
        if self.answer is not None:
            self.response = self.answer.answer
            self.is_done = True

    def __str__(self) -> str:
        if self.answer is None and self.chat_stream is not None:
            for _ in self.response_gen:
                pass
        return self.answer.answer if self.answer is not None else self.response
