"""Chunking stage: split an abstract into passages that fit the embedder, title included.

Two token counts matter and they differ: the *budget* (tiktoken cl100k tokens, the unit the rest
of the system budgets prompts in) decides the target passage size; the *embedder's own tokenizer*
decides the hard limit, because a sentence-transformers model silently drops every wordpiece past
its `max_seq_length`. A chunk is only emitted once its exact embedded text has been counted with
the embedder's tokenizer and fits.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rag.types import Chunk, Paper

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Counts tokens of each text; for the embedder it includes the special tokens it adds."""

_ABBREVIATIONS = {"e.g", "i.e", "etc", "al", "vs", "fig", "figs", "eq", "eqs", "sec", "cf", "approx", "no", "resp"}
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9(\[\"'])")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences, keeping abbreviations such as 'e.g.' and 'et al.' inside."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start : match.start()].rstrip()
        last_word = candidate.rsplit(" ", 1)[-1].rstrip(".!?\"')]").lower()
        if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
            continue
        if candidate:
            sentences.append(candidate)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def abstract_sentences(passages: Sequence[str]) -> list[str]:
    """The abstract's sentences in order, once each, from its (overlapping) chunks."""
    seen: set[str] = set()
    out: list[str] = []
    for passage in passages:
        for sentence in split_sentences(passage):
            key = " ".join(sentence.split())
            if key not in seen:
                seen.add(key)
                out.append(key)
    return out


@dataclass(frozen=True)
class ChunkPlan:
    """The sizes one chunking run works to."""

    chunk_tokens: int  # budget tokens (tiktoken) per passage
    overlap_tokens: int  # budget tokens of trailing sentences repeated in the next passage
    embed_limit: int  # the embedder's hard limit, special tokens included
    prepend_title: bool = True


def embed_text_for(title: str, passage: str, prepend_title: bool) -> str:
    return f"{title}\n{passage}" if prepend_title else passage


def uses_title(title: str, plan: ChunkPlan, count_embed: TokenCounter) -> bool:
    """Whether a paper's chunks are embedded with its title in front.

    A title that would eat over half the embedder's window is left out of the embedded text rather
    than letting it crowd out (or truncate) the passage.
    """
    return title_fits(count_embed([embed_text_for(title, "", True)])[0], plan)


def title_fits(title_cost: int, plan: ChunkPlan) -> bool:
    """`uses_title` given the title line's embedder token count."""
    return plan.prepend_title and title_cost <= plan.embed_limit // 2


def chunk_paper(paper: Paper, plan: ChunkPlan, count_budget: TokenCounter, count_embed: TokenCounter) -> list[Chunk]:
    """Split one paper into chunks; an abstract that fits stays whole."""
    special, title_cost = count_embed(["", embed_text_for(paper.title, "", True)])  # one call: each costs ~0.1 ms
    use_title = title_fits(title_cost, plan)
    room = plan.embed_limit - (title_cost if use_title else special)
    passages = _pack(paper.abstract, plan, room, special, count_budget, count_embed)
    passages = _enforce_embed_limit(passages, paper.title, use_title, plan.embed_limit, count_embed)
    return [
        Chunk(
            chunk_id=f"{paper.paper_id}#{i}",
            paper_id=paper.paper_id,
            index=i,
            text=passage,
            embed_text=embed_text_for(paper.title, passage, use_title),
        )
        for i, passage in enumerate(passages)
    ]


def _pack(
    abstract: str, plan: ChunkPlan, room: int, special: int, count_budget: TokenCounter, count_embed: TokenCounter
) -> list[str]:
    """Greedy sentence packing using per-sentence counts (wordpiece counts add up across spaces)."""
    sentences = split_sentences(abstract)
    if not sentences:
        return []
    pieces: list[str] = []
    budget: list[int] = []
    embed: list[int] = []
    sentence_counts = zip(count_budget(sentences), count_embed(sentences), strict=True)
    for sentence, (n_budget, n_embed) in zip(sentences, sentence_counts, strict=True):
        if n_embed - special <= room and n_budget <= plan.chunk_tokens:
            parts, part_budget, part_embed = [sentence], [n_budget], [n_embed]
        else:
            parts = _split_long_sentence(sentence, room, plan.chunk_tokens, count_budget, count_embed, special)
            part_budget, part_embed = count_budget(parts), count_embed(parts)
        pieces.extend(parts)
        budget.extend(part_budget)
        embed.extend(n - special for n in part_embed)

    chunks: list[list[int]] = []
    current: list[int] = []
    for i in range(len(pieces)):
        if current and (
            sum(budget[j] for j in current) + budget[i] > plan.chunk_tokens
            or sum(embed[j] for j in current) + embed[i] > room
        ):
            chunks.append(current)
            current = _overlap_tail(current, budget, embed, plan.overlap_tokens, room - embed[i])
        current = current + [i]
    chunks.append(current)
    return [" ".join(pieces[j] for j in chunk) for chunk in chunks]


def _overlap_tail(indices: list[int], budget: list[int], embed: list[int], overlap: int, room: int) -> list[int]:
    """Trailing sentences of the previous chunk (never all of it) that fit the overlap and the room."""
    tail: list[int] = []
    used_budget = used_embed = 0
    for j in reversed(indices[1:]):
        if used_budget + budget[j] > overlap or used_embed + embed[j] > room:
            break
        tail.insert(0, j)
        used_budget += budget[j]
        used_embed += embed[j]
    return tail


def _split_long_sentence(
    sentence: str, room: int, chunk_tokens: int, count_budget: TokenCounter, count_embed: TokenCounter, special: int
) -> list[str]:
    """A sentence longer than a whole chunk is cut at word boundaries into fitting windows."""
    if count_embed([sentence])[0] - special <= room and count_budget([sentence])[0] <= chunk_tokens:
        return [sentence]
    out: list[str] = []
    for part in _halves(sentence):
        out.extend(_split_long_sentence(part, room, chunk_tokens, count_budget, count_embed, special))
    return out


def _halves(text: str) -> list[str]:
    """Cut at the middle word boundary; one enormous word (a URL, a formula) is cut by characters."""
    words = text.split()
    if len(words) > 1:
        half = len(words) // 2
        return [" ".join(words[:half]), " ".join(words[half:])]
    half = max(1, len(text) // 2)
    return [text[:half], text[half:]]


def _enforce_embed_limit(
    passages: list[str], title: str, use_title: bool, limit: int, count_embed: TokenCounter
) -> list[str]:
    """Count each passage's exact embedded text; split any that a non-additive tokenizer pushed over."""
    counts = count_embed([embed_text_for(title, p, use_title) for p in passages])
    out: list[str] = []
    for passage, count in zip(passages, counts, strict=True):
        if count <= limit or len(passage) < 2:
            out.append(passage)
        else:
            out.extend(_enforce_embed_limit(_halves(passage), title, use_title, limit, count_embed))
    return out


@lru_cache(maxsize=4)
def tiktoken_counter(encoding_name: str = "cl100k_base") -> TokenCounter:
    """A tiktoken counter that works offline, from the encodings llama-index-core ships."""
    encoding = get_tiktoken_encoding(encoding_name)

    def count(texts: Sequence[str]) -> list[int]:
        return [len(encoding.encode_ordinary(text)) for text in texts]

    return count


def get_tiktoken_encoding(encoding_name: str = "cl100k_base"):  # -> tiktoken.Encoding
    spec = importlib.util.find_spec("llama_index.core")
    if spec is not None and spec.submodule_search_locations:
        cache = Path(next(iter(spec.submodule_search_locations))) / "_static" / "tiktoken_cache"
        if cache.is_dir():
            os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    import tiktoken

    return tiktoken.get_encoding(encoding_name)
