"""Chunking against the real MiniLM tokenizer: nothing the embedder would silently drop."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.chunking import ChunkPlan, chunk_paper, split_sentences, tiktoken_counter
from rag.sources import make_paper


@pytest.fixture(scope="module")
def plan(embedder):
    return ChunkPlan(chunk_tokens=160, overlap_tokens=32, embed_limit=embedder.max_tokens)


def test_tiktoken_works_offline():
    assert tiktoken_counter()(["hello world"]) == [2]


def test_split_sentences_keeps_abbreviations():
    text = "We use e.g. LLaVA and InternVL et al. in tests. Results improve by 3.5 points! Is it good? Yes."
    assert split_sentences(text) == [
        "We use e.g. LLaVA and InternVL et al. in tests.",
        "Results improve by 3.5 points!",
        "Is it good?",
        "Yes.",
    ]


def test_every_seed_chunk_fits_the_embedder_with_its_title(seed_corpus, embedder, plan):
    too_long_whole = 0
    for paper in seed_corpus.papers:
        if embedder.count_tokens([f"{paper.title}\n{paper.abstract}"])[0] > embedder.max_tokens:
            too_long_whole += 1
        chunks = chunk_paper(paper, plan, tiktoken_counter(), embedder.count_tokens)
        counts = embedder.count_tokens([c.embed_text for c in chunks])
        assert max(counts) <= embedder.max_tokens, paper.title
        assert all(c.embed_text.startswith(paper.title + "\n") for c in chunks)
        # nothing lost: every sentence of the abstract is in some chunk
        joined = " ".join(c.text for c in chunks)
        assert all(sentence in joined for sentence in split_sentences(paper.abstract))
    assert too_long_whole >= 270  # the reason chunking exists: almost every abstract overflows 256 wordpieces


def test_short_abstract_stays_whole(embedder, plan):
    paper = make_paper("Short", "One sentence. Another sentence.", "s")
    chunks = chunk_paper(paper, plan, tiktoken_counter(), embedder.count_tokens)
    assert [c.text for c in chunks] == ["One sentence. Another sentence."]
    assert chunks[0].chunk_id == f"{paper.paper_id}#0"


def test_overlap_repeats_trailing_sentences(seed_corpus, embedder, plan):
    paper = next(p for p in seed_corpus.papers if "DyVTE" in p.abstract)
    chunks = chunk_paper(paper, plan, tiktoken_counter(), embedder.count_tokens)
    assert len(chunks) >= 2
    last_sentence_of_first = split_sentences(chunks[0].text)[-1]
    assert chunks[1].text.startswith(last_sentence_of_first)
    no_overlap = ChunkPlan(160, 0, embedder.max_tokens)
    plain = chunk_paper(paper, no_overlap, tiktoken_counter(), embedder.count_tokens)
    assert not plain[1].text.startswith(split_sentences(plain[0].text)[-1])


def test_giant_sentence_and_giant_word_are_split_not_truncated(embedder):
    plan = ChunkPlan(chunk_tokens=160, overlap_tokens=0, embed_limit=embedder.max_tokens)
    words = " ".join(f"token{i}" for i in range(600))
    blob = "x" * 5000
    paper = make_paper("Title", f"{words}. {blob}", "s")
    chunks = chunk_paper(paper, plan, tiktoken_counter(), embedder.count_tokens)
    assert max(embedder.count_tokens([c.embed_text for c in chunks])) <= embedder.max_tokens
    joined = "".join(c.text.replace(" ", "") for c in chunks)
    assert joined == (words + "." + blob).replace(" ", "")


def test_giant_title_is_left_out_of_the_embedded_text(embedder, plan):
    title = " ".join(f"word{i}" for i in range(200))
    paper = make_paper(title, "A short abstract.", "s")
    chunks = chunk_paper(paper, plan, tiktoken_counter(), embedder.count_tokens)
    assert chunks[0].embed_text == "A short abstract."


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1, max_size=400),
        min_size=1,
        max_size=12,
    )
)
def test_chunks_always_fit_and_keep_all_text(embedder, sentences):
    plan = ChunkPlan(chunk_tokens=60, overlap_tokens=0, embed_limit=embedder.max_tokens)
    abstract = " ".join(s.strip() for s in sentences if s.strip()) or "x"
    paper = make_paper("A title", abstract, "s")
    chunks = chunk_paper(paper, plan, tiktoken_counter(), embedder.count_tokens)
    assert max(embedder.count_tokens([c.embed_text for c in chunks])) <= embedder.max_tokens
    assert "".join("".join(c.text.split()) for c in chunks) == "".join(paper.abstract.split())
