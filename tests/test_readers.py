"""The user's own library: BibTeX and RIS exports and PDF papers, read into papers or reported in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.config import SourcesSettings
from rag.readers.bibtex import parse_bibtex, split_authors
from rag.readers.latex import decode_latex, strip_braces
from rag.readers.references import find_arxiv_id, iso_date
from rag.readers.ris import parse_ris
from rag.sources import load_corpus
from tests.conftest import DYVTE_TITLE
from tests.pdfs import write_paper_pdf, write_scanned_pdf

ABSTRACT = (
    "We propose a lightweight recurrent model for reading charts in scientific figures. "
    "It reaches 81.2% accuracy on ChartQA while using a third of the parameters of prior work."
)

# As Zotero (Better BibTeX), JabRef and Mendeley write them: macros, accents, nested braces, odd fields.
MESSY_BIB = r"""% Encoding: UTF-8
@string{cvpr = "IEEE/CVF Conference on Computer Vision and Pattern Recognition"}
@comment{jabref-meta: databaseType:bibtex;}

@inproceedings{wu2024dyvte,
  title = {Accelerating {Multimodal} Large Language Models via Dynamic Visual-Token Exit and the Empirical Findings},
  author = {Wu, Qiong and Lin, Wenhao and Ye, Weihao and others},
  booktitle = cvpr # " Workshops",
  year = 2025, month = jun,
  eprint = {2411.19628}, archivePrefix = {arXiv},
  abstract = {The excessive use of visual tokens in existing Multimoal Large Language Models (MLLMs) often
              exhibits obvious redundancy and brings in prohibitively expensive computation.},
}
@article{godel1931,
  title = "{\"U}ber formal unentscheidbare S{\"a}tze der {Principia Mathematica} und verwandter {Systeme}",
  author = {G{\"o}del, Kurt},
  journal = {Monatshefte f{\"u}r Mathematik},
  year = {1931},
  doi = {https://doi.org/10.1007/BF01700692},
  keywords = {logic, incompleteness},
  abstract = {G\"{o}del shows that a consistent system rich enough for arithmetic has true but unprovable
              statements; about 18\% of readers find this {\em surprising}.},
  file = {:/home/me/Zotero/storage/ABCD/godel.pdf:application/pdf},
}
@misc{scholar1, title = {A Google Scholar Export Without Abstract}, author = {Doe, Jane}, year = 2020}
@misc{scholar2, title = {Another One Without}, year = 2021}
@article{broken2021, title = {Broken {entry, year = 2021,
@article{charts2023,
  title = {Recurrent Chart Readers},
  author = {M{\o}ller, S{\o}ren and Fran{\c c}ois, Jos{\'e}},
  journal = {Journal of Chart Reading},
  date = {2023-05-17},
  abstract = {%s},
}
""".replace("%s", ABSTRACT)

RIS = """TY  - JOUR
TI  - Sparse Mixture Routing for Speech Models
AU  - Smith, Alice
AU  - Jones, Bob
PY  - 2024///
DA  - 2024/03/05/
JO  - Journal of Speech Research
KW  - speech
KW  - mixture of experts
DO  - 10.1234/JSR.2024.77
AB  - We route each audio frame to two of sixteen experts, which halves inference cost
while keeping word error rate within 0.1 points of the dense model.
ER  -

TY  - CONF
TI  - A Record Without Abstract
PY  - 2022
ER  -
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- pure parts -------------------------------------------------------------------------------


def test_latex_accents_and_braces():
    assert decode_latex(r"G{\"o}del, G\"{o}del, G\"odel") == "Gödel, Gödel, Gödel"
    assert decode_latex(r"Fran{\c c}ois Ho\v{s}ek Stra{\ss}e {\o}rsted na\"{\i}ve Erd\H{o}s") == (
        "François Hošek Straße ørsted naïve Erdős"
    )
    assert decode_latex("pages 1--10 --- R\\&D") == "pages 1–10 — R&D"
    assert strip_braces(r"{{BERT}}: Multi{M}odal \textbf{bold}") == r"BERT: MultiModal \textbf{bold}"


def test_bibtex_parser_macros_concatenation_and_recovery():
    entries, problems = parse_bibtex(MESSY_BIB)
    assert [e.key for e in entries] == ["wu2024dyvte", "godel1931", "scholar1", "scholar2", "charts2023"]
    assert entries[0].fields["booktitle"] == "IEEE/CVF Conference on Computer Vision and Pattern Recognition Workshops"
    assert entries[0].fields["month"] == "06"
    broken_line = MESSY_BIB.splitlines().index("@article{broken2021, title = {Broken {entry, year = 2021,") + 1
    assert problems == [(broken_line, "unbalanced braces in field 'title'; entry skipped")]


def test_names_dates_and_identifiers():
    assert split_authors("Wu, Qiong and {Google Research} and Alan Turing and others") == [
        "Qiong Wu",
        "{Google Research}",  # braces go later, with the rest of the LaTeX
        "Alan Turing",
        "et al.",
    ]
    assert iso_date(None, "2025", "06") == "2025-06"
    assert iso_date("2024/03/05/", None, None) == "2024-03-05"
    assert iso_date(None, "{2019a}", "May") == "2019-05"
    assert find_arxiv_id("arXiv preprint arXiv:2401.01234v3") == "2401.01234"
    assert find_arxiv_id("https://arxiv.org/abs/2411.19628") == "2411.19628"
    assert find_arxiv_id("10.48550/arXiv.2305.00001") == "2305.00001"
    assert find_arxiv_id("Journal of Tests 12(3)") is None


def test_ris_parser_continuation_and_stray_lines():
    records, problems = parse_ris("N1  - before any record\n" + RIS)
    assert [r.first("TI") for r in records] == ["Sparse Mixture Routing for Speech Models", "A Record Without Abstract"]
    assert records[0].first("AB").endswith("within 0.1 points of the dense model.")
    assert records[0].tags["KW"] == ["speech", "mixture of experts"]
    assert problems == [(1, "'N1' line outside a record (no 'TY  -' before it); skipped")]


# --- files into papers ------------------------------------------------------------------------


def test_bibtex_file_gives_papers_with_metadata_and_one_line_problems(tmp_path):
    bib = _write(tmp_path / "refs.bib", MESSY_BIB)
    corpus = load_corpus([bib])
    by_key = {p.extra["citation_key"]: p for p in corpus.papers}
    assert sorted(by_key) == ["charts2023", "godel1931", "wu2024dyvte"]
    dyvte = by_key["wu2024dyvte"]
    assert dyvte.title == DYVTE_TITLE and dyvte.url == "https://arxiv.org/abs/2411.19628"
    assert dyvte.authors == "Qiong Wu, Wenhao Lin, Weihao Ye, et al." and dyvte.date == "2025-06"
    godel = by_key["godel1931"]
    assert godel.title == "Über formal unentscheidbare Sätze der Principia Mathematica und verwandter Systeme"
    assert godel.authors == "Kurt Gödel" and godel.url == "https://doi.org/10.1007/bf01700692"
    assert "about 18% of readers find this surprising." in godel.abstract
    assert godel.extra["journal"] == "Monatshefte für Mathematik" and "file" not in godel.extra
    assert by_key["charts2023"].authors == "Søren Møller, José François" and by_key["charts2023"].date == "2023-05-17"
    messages = [str(p) for p in corpus.problems]
    assert messages == [
        f"{bib}:{MESSY_BIB.splitlines().index('@article{broken2021, title = {Broken {entry, year = 2021,') + 1}: "
        "unbalanced braces in field 'title'; entry skipped",
        f"{bib}: 2 entries have no abstract; skipped (scholar1, scholar2)",
    ]


def test_ris_file(tmp_path):
    corpus = load_corpus([_write(tmp_path / "papers.ris", RIS)])
    [paper] = corpus.papers
    assert paper.authors == "Alice Smith, Bob Jones" and paper.date == "2024-03-05"
    assert paper.url == "https://doi.org/10.1234/jsr.2024.77"
    assert paper.extra["journal"] == "Journal of Speech Research"
    assert paper.extra["keywords"] == "speech, mixture of experts"
    assert [str(p) for p in corpus.problems] == [
        f"{tmp_path / 'papers.ris'}: 1 entry has no abstract; skipped (line 15)"
    ]


def test_non_utf8_bib_with_jabref_encoding_line_is_read(tmp_path):
    text = "% Encoding: windows-1252\n@article{a, title = {Caf\xe9 Models}, abstract = {A na\xefve abstract.}}\n"
    path = tmp_path / "latin.bib"
    path.write_bytes(text.encode("cp1252"))
    [paper] = load_corpus([path]).papers
    assert (paper.title, paper.abstract) == ("Café Models", "A naïve abstract.")


def test_same_paper_across_bib_seeds_json_and_ris_is_one_paper(tmp_path, seed_corpus):
    from rag.sources import builtin_corpus_paths

    bib = _write(tmp_path / "refs.bib", MESSY_BIB)
    # by normalised title: the bib entry and the built-in page dumps
    corpus = load_corpus([*builtin_corpus_paths(), bib])
    dyvte = [p for p in corpus.papers if p.title == DYVTE_TITLE]
    assert len(dyvte) == 1 and sum(s.endswith("refs.bib") for s in dyvte[0].sources) == 1
    assert len(dyvte[0].sources) == 3  # two page dumps and the bib
    assert len(corpus.papers) == len(seed_corpus.papers) + 2  # Gödel and the charts paper are new
    assert not [p for p in corpus.problems if "duplicate id" in p.message]

    # by arXiv id: an arXiv-snapshot row under another title; by DOI: the Gödel paper in RIS, translated
    jsonl = _write(tmp_path / "arxiv.jsonl", '{"id": "2411.19628", "title": "DyVTE", "abstract": "Short."}\n')
    ris = _write(
        tmp_path / "godel.ris",
        "TY  - JOUR\nTI  - On formally undecidable propositions\nDO  - 10.1007/BF01700692\n"
        "AB  - The English translation of the incompleteness paper.\nER  -\n",
    )
    corpus = load_corpus([jsonl, bib, ris])
    by_id = {p.paper_id: p for p in corpus.papers}
    assert sorted(Path(s).name for s in by_id["2411.19628"].sources) == ["arxiv.jsonl", "refs.bib"]
    godel = [p for p in corpus.papers if p.url == "https://doi.org/10.1007/bf01700692"]
    assert len(godel) == 1 and sorted(Path(s).name for s in godel[0].sources) == ["godel.ris", "refs.bib"]
    assert len(corpus.papers) == 3 and len(corpus.problems) == 2  # the broken entry and the no-abstract line


# --- PDF -----------------------------------------------------------------------------------------

PDF_TITLE = "Recurrent Chart Readers for Scientific Figures"
BODY = [
    "Charts carry much of the evidence in scientific papers, yet multimodal models misread their axes. " * 3,
    "Our reader scans the chart column by column with a small recurrent network. " * 4,
    "References",
    "[1] A. Author. A cited paper that must not become body text. 2020.",
]


def test_two_column_pdf_with_running_head_and_arxiv_stamp(tmp_path):
    pdf = write_paper_pdf(
        tmp_path / "paper.pdf",
        title=PDF_TITLE,
        abstract=ABSTRACT,
        body=BODY,
        running_head="Published as a conference paper at ICLR 2025",
        arxiv_stamp="arXiv:2502.01234v2 [cs.CV] 7 Feb 2025",
        pages=3,
    )
    [paper] = load_corpus([pdf]).papers
    assert paper.title == PDF_TITLE
    assert paper.abstract == ABSTRACT
    assert paper.url == "https://arxiv.org/abs/2502.01234" and paper.date == "2025-02-07"
    assert paper.extra["pages"] == "3" and "ICLR" not in paper.abstract

    full = load_corpus([pdf], SourcesSettings(pdf_full_text=True)).papers[0]
    assert full.paper_id == paper.paper_id and full.abstract.startswith(ABSTRACT)
    assert "column by column with a small recurrent network" in full.abstract
    assert "Published as a conference paper" not in full.abstract  # running heads dropped on every page
    assert "must not become body text" not in full.abstract


def test_full_two_column_page_is_read_left_column_then_right(tmp_path):
    body = [f"Paragraph {i} says its own thing about charts and readers and figures. " * 4 for i in range(14)]
    pdf = write_paper_pdf(tmp_path / "full.pdf", title=PDF_TITLE, abstract=ABSTRACT, body=body, pages=1)
    [paper] = load_corpus([pdf], SourcesSettings(pdf_full_text=True)).papers
    assert paper.title == PDF_TITLE and paper.abstract.startswith(ABSTRACT)
    positions = [paper.abstract.find(f"Paragraph {i} says") for i in range(14)]
    shown = [p for p in positions if p >= 0]
    assert len(shown) >= 10 and shown == sorted(shown)  # both columns, in reading order
    assert "Preprint. Under review." not in paper.abstract


def test_one_column_pdf_with_capital_heading(tmp_path):
    pdf = write_paper_pdf(
        tmp_path / "one.pdf", title=PDF_TITLE, abstract=ABSTRACT, two_column=False, abstract_heading="ABSTRACT"
    )
    [paper] = load_corpus([pdf]).papers
    assert (paper.title, paper.abstract) == (PDF_TITLE, ABSTRACT)


def test_scanned_encrypted_and_broken_pdfs_are_one_line_each(tmp_path):
    good = write_paper_pdf(tmp_path / "good.pdf", title=PDF_TITLE, abstract=ABSTRACT)
    scanned = write_scanned_pdf(tmp_path / "scanned.pdf")
    locked = write_paper_pdf(tmp_path / "locked.pdf", title=PDF_TITLE, abstract=ABSTRACT, user_password="secret")
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(good.read_bytes()[:2000])
    not_pdf = _write(tmp_path / "renamed.pdf", "just some text that is not a PDF")
    corpus = load_corpus([scanned, locked, truncated, not_pdf, good])
    assert [p.title for p in corpus.papers] == [PDF_TITLE]
    assert sorted(str(p) for p in corpus.problems) == sorted(
        [
            f"{scanned}: no text layer on the first page (a scanned PDF?); skipped; run OCR on it first (ocrmypdf)",
            f"{locked}: encrypted PDF (it needs a password); skipped; save an unlocked copy",
            f"{truncated}: broken PDF, cannot be opened (Data format error); skipped",
            f"{not_pdf}: not a PDF (no %PDF header); skipped",
        ]
    )


def test_pdf_without_password_for_opening_is_read(tmp_path):
    # encrypted with an empty user password: opens without one (print and copy limits only)
    restricted = write_paper_pdf(tmp_path / "restricted.pdf", title=PDF_TITLE, abstract=ABSTRACT, user_password="")
    assert load_corpus([restricted]).papers[0].title == PDF_TITLE


def test_one_font_pdf_takes_its_title_from_metadata_or_the_lines_above_the_abstract(tmp_path):
    plain = write_paper_pdf(tmp_path / "plain.pdf", title=PDF_TITLE, abstract=ABSTRACT, one_font=True)
    [paper] = load_corpus([plain]).papers
    assert (paper.title, paper.abstract) == (PDF_TITLE, ABSTRACT)
    assert paper.authors == "Ada Lovelace, Alan Turing"  # the affiliations after the names are not people

    stated = "Recurrent Chart Readers: Reading Figures Column by Column"
    tagged = write_paper_pdf(tmp_path / "tagged.pdf", title=PDF_TITLE, abstract=ABSTRACT, one_font=True,
                             two_column=False, metadata_title=stated)  # fmt: skip
    assert load_corpus([tagged]).papers[0].title == stated  # the document says what it is called

    untitled = write_paper_pdf(
        tmp_path / "untitled.pdf", title=PDF_TITLE, abstract=ABSTRACT, one_font=True, abstract_heading="Overview"
    )
    corpus = load_corpus([untitled])
    assert corpus.papers == [] and "no title found on the first page" in str(corpus.problems[0])


def test_pdf_full_text_leaves_section_headings_out_of_sentences(tmp_path):
    body = [
        "Charts carry much of the evidence in scientific papers, yet multimodal models misread their axes. " * 3,
        "3 Experiments",
        "We train the reader on ChartQA and PlotQA with the same schedule for every model. " * 3,
        "4 Conclusion",
        "Column by column reading makes chart questions cheaper to answer. " * 2,
    ]
    for one_font in (False, True):
        pdf = write_paper_pdf(tmp_path / f"body{one_font}.pdf", title=PDF_TITLE, abstract=ABSTRACT, body=body,
                              pages=1, one_font=one_font)  # fmt: skip
        [paper] = load_corpus([pdf], SourcesSettings(pdf_full_text=True)).papers
        assert paper.abstract.startswith(ABSTRACT) and "every model. We train" in paper.abstract
        assert "Experiments" not in paper.abstract and "Conclusion" not in paper.abstract
        assert "1 Introduction" not in paper.abstract


def test_bibtex_keeps_math_and_zoteros_tilde(tmp_path):
    bib = _write(
        tmp_path / "math.bib",
        r"""@article{div2023, title = {Tuning the $\alpha$-Divergence},
  abstract = {We tune $\alpha$ and $\beta \le 0.5$ in $O(n^2)$ time; accuracy rises 75\%\textasciitilde{}89\%.}}
""",
    )
    [paper] = load_corpus([bib]).papers
    assert paper.title == "Tuning the α-Divergence"
    assert paper.abstract == "We tune α and β ≤ 0.5 in $O(n^2)$ time; accuracy rises 75%~89%."


@pytest.mark.slow
def test_one_font_pdf_is_ingested_and_cited(tmp_path):
    from tests.conftest import run_cli

    pdf = write_paper_pdf(tmp_path / "plain.pdf", title=PDF_TITLE, abstract=ABSTRACT, body=BODY, one_font=True)
    index = tmp_path / "index"
    ingest = run_cli("ingest", str(pdf), "--json", index=index)
    assert ingest.returncode == 0 and json.loads(ingest.stdout)["papers_embedded"] == 1, ingest.stderr
    result = run_cli(
        "ask", "What accuracy does the recurrent chart reader reach on ChartQA?", "--profile", "extractive", "--json",
        index=index,
    )  # fmt: skip
    answer = json.loads(result.stdout)
    assert result.returncode == 0 and [c["title"] for c in answer["citations"]] == [PDF_TITLE]
    assert "81.2%" in answer["answer"] and "[1]" in answer["answer"]
    stored = run_cli("search", "chart reader", "--json", index=index)
    assert json.loads(stored.stdout)["results"][0]["passage"].startswith("We propose a lightweight recurrent model")


@pytest.mark.parametrize("suffix", [".bib", ".ris"])
def test_empty_reference_exports(tmp_path, suffix):
    path = _write(tmp_path / f"empty{suffix}", "% nothing here\n" if suffix == ".bib" else "\n\n")
    corpus = load_corpus([path])
    assert corpus.papers == [] and len(corpus.problems) == 1 and "\n" not in str(corpus.problems[0])


# --- end to end: rag ingest, rag ask, rag search --where -----------------------------------------

USER_BIB = r"""@article{speech2024,
  title = {Sparse Mixture Routing for Speech Models},
  author = {Smith, Alice and Jones, Bob}, journal = {Journal of Speech Research}, year = {2024},
  abstract = {We route each audio frame of a speech recognizer to two of sixteen experts. Sparse routing
              halves the inference cost of speech recognition while the word error rate stays within
              0.1 points of the dense model.},
}
@article{protein2021,
  title = {Protein Folding with Tiny Transformers},
  author = {M{\"u}ller, Jana}, journal = {Bioinformatics Letters}, year = {2021},
  abstract = {A transformer with four million parameters predicts protein contact maps. It reaches 71\% of
              the accuracy of models a hundred times larger on the CASP14 targets.},
}
@misc{noabstract, title = {Exported Without Its Abstract}, year = 2022}
@article{broken, title = {Never {closed, year = 2020,
"""
USER_RIS = """TY  - JOUR
TI  - Coral Reef Monitoring from Drone Imagery
AU  - Reef, Rita
PY  - 2023
JO  - Marine Robotics
AB  - Drones photograph coral reefs at low tide and a segmentation network measures bleaching.
AB  - Surveys that took divers a week take a drone one afternoon.
ER  -
"""


@pytest.mark.slow
def test_rag_ingest_own_library_then_ask_and_filter(tmp_path):
    from tests.conftest import run_cli

    bib = _write(tmp_path / "refs.bib", USER_BIB)
    ris = _write(tmp_path / "papers.ris", USER_RIS)
    pdf = write_paper_pdf(
        tmp_path / "paper.pdf",
        title=PDF_TITLE,
        abstract=ABSTRACT,
        body=BODY,
        arxiv_stamp="arXiv:2502.01234v1 [cs.CV] 7 Feb 2025",
    )
    scanned = write_scanned_pdf(tmp_path / "scanned.pdf")
    index = tmp_path / "index"
    ingest = run_cli("ingest", str(bib), str(ris), str(pdf), str(scanned), index=index)
    assert ingest.returncode == 1, ingest.stderr  # done, with skipped inputs
    assert "read 4 records (4 papers) from 4 files: 4 embedded" in ingest.stdout
    problems = [line for line in ingest.stderr.splitlines() if line.startswith("rag: skipped")]
    assert len(problems) == 3 and any("1 entry has no abstract; skipped (noabstract)" in p for p in problems)
    assert any("refs.bib:15: unbalanced braces" in p for p in problems)
    assert any("scanned.pdf: no text layer" in p for p in problems)

    asks = {  # one paper from each file
        "How much does sparse expert routing cut the inference cost of speech recognition?": (
            "Sparse Mixture Routing for Speech Models"
        ),
        "How long does a drone take to survey coral reef bleaching?": "Coral Reef Monitoring from Drone Imagery",
        "What accuracy does the recurrent chart reader reach on ChartQA?": PDF_TITLE,
    }
    for question, title in asks.items():
        result = run_cli("ask", question, "--extractive", "--json", index=index)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert title in [c["title"] for c in answer["citations"]], (question, answer)

    recent = _search(index, "models", "--where", "year>=2023")
    assert sorted(recent) == sorted(
        ["Sparse Mixture Routing for Speech Models", "Coral Reef Monitoring from Drone Imagery", PDF_TITLE]
    )
    assert _search(index, "models", "--where", "journal=Journal of Speech Research") == [
        "Sparse Mixture Routing for Speech Models"
    ]
    assert _search(index, "models", "--where", "venue=Bioinformatics Letters") == [
        "Protein Folding with Tiny Transformers"
    ]


def _search(index: Path, question: str, *args: str) -> list[str]:
    from tests.conftest import run_cli

    result = run_cli("search", question, "-k", "10", "--json", *args, index=index)
    assert result.returncode == 0, result.stderr
    return [r["title"] for r in json.loads(result.stdout)["results"]]


def _macro_bomb(doublings: int = 40) -> str:
    """`@string` macros that double each other: m40 alone would be 10 x 2^40 characters."""
    lines = ['@string{m0 = "0123456789"}'] + [f"@string{{m{i} = m{i - 1} # m{i - 1}}}" for i in range(1, doublings + 1)]
    lines.append(
        f"@article{{bomb, title = {{A Title Made of Macros}}, year = 2024, abstract = m{doublings} # m{doublings}}}"
    )
    return "\n".join(lines) + "\n" + USER_BIB


def test_bibtex_macro_expansion_is_capped_and_reported_once():
    from rag.readers.bibtex import MAX_FIELD_CHARS

    entries, problems = parse_bibtex(_macro_bomb())
    bomb = next(e for e in entries if e.key == "bomb")
    assert len(bomb.fields["abstract"]) == MAX_FIELD_CHARS
    assert [m for _, m in problems if "bomb" in m] == [
        f"entry 'bomb': field 'abstract' is longer than {MAX_FIELD_CHARS:,} characters (after @string expansion); "
        "cut there"
    ]
    assert "protein2021" in {e.key for e in entries}  # the entries after it are still read


@pytest.mark.slow
def test_rag_ingest_survives_a_bibtex_macro_bomb_and_reads_the_other_files(tmp_path):
    """Before: 2.7 GB in 8 s, then "unexpected MemoryError", and the JSONL beside it never ingested."""
    import os
    import resource
    import subprocess
    import sys

    from tests.conftest import REPO, run_cli

    bib = _write(tmp_path / "bomb.bib", _macro_bomb())
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"title": "Kelp Forest Mapping with Sonar", "abstract": ABSTRACT}) + "\n")

    def capped() -> None:  # the child may not take the machine, whatever happens
        resource.setrlimit(resource.RLIMIT_DATA, (3 * 2**30, 3 * 2**30))

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {
        "RAG_INDEX__PATH": str(tmp_path / "index")
    }
    ingest = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ingest", str(bib), str(other)],
        capture_output=True, text=True, env=env, timeout=240, cwd=REPO, preexec_fn=capped,
    )  # fmt: skip
    assert ingest.returncode == 1, ingest.stderr[-1500:]  # done, with a problem reported
    assert "MemoryError" not in ingest.stderr and "Traceback" not in ingest.stderr
    bomb_lines = [line for line in ingest.stderr.splitlines() if "'bomb'" in line]
    assert len(bomb_lines) == 1 and "field 'abstract' is longer than 100,000 characters" in bomb_lines[0], bomb_lines
    assert "from 2 files" in ingest.stdout and "embedded" in ingest.stdout, ingest.stdout
    found = run_cli("search", "kelp forest sonar", "-k", "1", "--json", index=tmp_path / "index")
    assert "Kelp Forest Mapping with Sonar" in found.stdout, found.stdout[-800:]
