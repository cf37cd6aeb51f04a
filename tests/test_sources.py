import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rag.sources import load_corpus, parse_page_dump
from tests.conftest import DYVTE_TITLE

ABSTRACT = (
    "We study a problem that matters. " * 6
    + "Our method improves accuracy by 12% on three benchmarks while using half the compute of prior work."
)


def test_seeds_give_275_unique_papers_from_370_pairs(seed_corpus):
    assert seed_corpus.records_read == 370
    assert len(seed_corpus.papers) == 275
    assert seed_corpus.problems == []
    # every pair is accounted for by exactly one source entry of one paper
    assert sum(len(p.sources) for p in seed_corpus.papers) == 370


def test_repeated_paper_lists_every_source_file(seed_corpus):
    dyvte = next(p for p in seed_corpus.papers if p.title == DYVTE_TITLE)
    names = sorted(Path(s).name for s in dyvte.sources)
    assert names == ["000_74cbff6dd2033f19.txt", "003_7208fcced9317935.txt"]
    assert max(len(p.sources) for p in seed_corpus.papers) == 4


def test_seed_text_is_normalised_and_raw_text_kept(seed_corpus):
    mixt = next(p for p in seed_corpus.papers if "M^2IXT" in p.abstract)
    assert "18% relative" in mixt.abstract and "~20 times smaller" in mixt.abstract
    assert r"18\%" in mixt.raw_abstract and "sim20times" in mixt.raw_abstract
    assert not any("\\%" in p.abstract or "x2013" in p.abstract for p in seed_corpus.papers)


def test_page_dump_headers_recognised_by_content_anywhere(tmp_path):
    text = "\n\n".join(
        [
            "new",
            "Subscribe",
            "Paper One",
            ABSTRACT,
            "Daily Papers",
            "Mar 14",
            "Paper Two",
            ABSTRACT.replace("12%", "9%"),
        ]
    )
    corpus = load_corpus([_write(tmp_path / "dump.txt", text)])
    assert [p.title for p in corpus.papers] == ["Paper One", "Paper Two"]
    assert corpus.problems == []


def test_orphans_are_reported_with_line_and_never_glued(tmp_path):
    lines = ["new", "Subscribe", "Orphan Title", "Real Title", ABSTRACT, ABSTRACT.replace("12%", "99%"), "Last Title"]
    corpus = load_corpus([_write(tmp_path / "dump.txt", "\n".join(lines))])
    assert [p.title for p in corpus.papers] == ["Real Title"]
    assert "12%" in corpus.papers[0].abstract
    messages = [str(p) for p in corpus.problems]
    assert any(m.endswith("dump.txt:3: title without an abstract: 'Orphan Title'") for m in messages)
    assert any("dump.txt:6: abstract without a title" in m for m in messages)
    assert any("dump.txt:7: title without an abstract" in m for m in messages)


def test_jsonl_keeps_metadata_and_reports_broken_line(tmp_path):
    rows = [
        json.dumps({"title": "Good One", "abstract": ABSTRACT, "venue": "ICLR", "year": 2024}),
        '{"title": "broken", "abstract": ',
        json.dumps({"title": "No abstract here"}),
        json.dumps({"title": "Good Two", "abstract": ABSTRACT}),
    ]
    corpus = load_corpus([_write(tmp_path / "papers.jsonl", "\n".join(rows))])
    assert [p.title for p in corpus.papers] == ["Good One", "Good Two"]
    assert corpus.papers[0].extra == {"venue": "ICLR"} and corpus.papers[0].date == "2024"
    messages = [str(p) for p in corpus.problems]
    assert any("papers.jsonl:2: not valid JSON" in m for m in messages)
    assert any("papers.jsonl:3: missing abstract" in m for m in messages)


def test_arxiv_snapshot_format(tmp_path):
    row = {
        "id": "2401.01234",
        "submitter": "A. Author",
        "authors": "A. Author, B. Author",
        "title": "  A Paper\n  About Things",
        "abstract": "  We do things.\n  They work.",
        "categories": "cs.CL cs.LG",
        "update_date": "2024-01-05",
        "versions": [{"version": "v1"}],
    }
    paper = load_corpus([_write(tmp_path / "arxiv-metadata.json", json.dumps(row))]).papers[0]
    assert (paper.paper_id, paper.title, paper.abstract) == (
        "2401.01234",
        "A Paper About Things",
        "We do things. They work.",
    )
    assert paper.authors == "A. Author, B. Author" and paper.categories == "cs.CL cs.LG"
    assert paper.date == "2024-01-05" and paper.url == "https://arxiv.org/abs/2401.01234"
    assert "submitter" in paper.extra and "versions" in paper.extra


def test_csv_with_extra_columns_and_csv_without_abstract(tmp_path):
    good = _write(tmp_path / "good.csv", f'title,abstract,venue\nCSV Paper,"{ABSTRACT}",NeurIPS\n')
    bad = _write(tmp_path / "bad.csv", "title,summary_text\nX,Y\n")
    corpus = load_corpus([good, bad])
    assert [p.title for p in corpus.papers] == ["CSV Paper"] and corpus.papers[0].extra == {"venue": "NeurIPS"}
    assert [str(p) for p in corpus.problems] == [f"{bad}: no 'abstract' column (columns: title, summary_text); skipped"]


def test_plain_documents(tmp_path):
    md = _write(tmp_path / "note.md", "# My Notes\n\nSome text about attention.\nMore text.\n")
    txt = _write(tmp_path / "one_liner.txt", "Just one line of text.")
    corpus = load_corpus([md, txt])
    assert [(p.title, p.abstract) for p in corpus.papers] == [
        ("My Notes", "Some text about attention. More text."),
        ("one liner", "Just one line of text."),
    ]


def test_bad_files_are_reported_and_good_ones_read(tmp_path):
    good = _write(tmp_path / "good.jsonl", json.dumps({"title": "Fine", "abstract": ABSTRACT}))
    empty = _write(tmp_path / "empty.jsonl", "")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02garbage\xff" * 100)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\xe9 title\n".encode("latin-1"))
    docx = _write(tmp_path / "paper.docx", "PK")
    corpus = load_corpus([tmp_path / "missing.jsonl", empty, binary, latin, docx, good])
    assert [p.title for p in corpus.papers] == ["Fine"]
    messages = sorted(str(p) for p in corpus.problems)
    assert len(messages) == 5
    assert any("missing.jsonl: no such file or folder" in m for m in messages)
    assert any("empty.jsonl: empty file" in m for m in messages)
    assert any("blob.txt: binary file" in m for m in messages)
    assert any("latin.txt: not UTF-8 text" in m for m in messages)
    assert any("paper.docx: unsupported file type '.docx'" in m for m in messages)
    assert all("\n" not in m for m in messages)


def test_folder_is_read_recursively(tmp_path):
    _write(tmp_path / "a" / "one.jsonl", json.dumps({"title": "One", "abstract": ABSTRACT}))
    _write(tmp_path / "b" / "two.csv", f'title,abstract\nTwo,"{ABSTRACT}"\n')
    _write(tmp_path / ".hidden" / "three.jsonl", json.dumps({"title": "Three", "abstract": ABSTRACT}))
    assert sorted(p.title for p in load_corpus([tmp_path]).papers) == ["One", "Two"]


_title = (
    st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=3, max_size=60).map(str.strip).filter(bool)
)
_lines = st.lists(
    st.one_of(
        st.tuples(st.just("T"), _title), st.tuples(st.just("A"), st.integers(0, 10**6)), st.just(("F", "Subscribe"))
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(_lines)
def test_page_dump_parser_pairs_each_title_with_the_next_abstract_only(items):
    lines, expected_pairs, n_titles, n_abstracts = [], [], 0, 0
    pending = None
    for kind, value in items:
        if kind == "T":
            line = f"T{n_titles} {value}"
            n_titles += 1
            pending = line
        elif kind == "A":
            line = f"Abstract {value}. " + "filler words here " * 20
            n_abstracts += 1
            if pending is not None:
                expected_pairs.append((pending, line.strip()))
            pending = None
        else:
            line = value
        lines.append(line)
    pairs, problems = parse_page_dump(lines, "f")
    assert [(t, a) for t, a, _ in pairs] == expected_pairs
    # every title and abstract is either paired or reported
    assert 2 * len(pairs) + len(problems) == n_titles + n_abstracts


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_duplicate_id_with_different_text_keeps_first_and_reports(tmp_path):
    rows = [
        json.dumps({"id": "p1", "title": "First", "abstract": ABSTRACT}),
        json.dumps({"id": "p1", "title": "Other", "abstract": ABSTRACT}),
    ]
    corpus = load_corpus([_write(tmp_path / "dup.jsonl", "\n".join(rows))])
    assert [p.title for p in corpus.papers] == ["First"]
    assert [str(p) for p in corpus.problems] == [
        f"{tmp_path / 'dup.jsonl'}:2: duplicate id 'p1' with different text; kept the first"
    ]
