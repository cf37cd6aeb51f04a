"""The browser app in real headless Chromium (Debian's, driven by Playwright; no browser is downloaded).

One `rag ui` server on 127.0.0.1 with the embedded model answers every test. Screenshots of each
step go to test-artifacts/ (or $RAG_TEST_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from rag.config import Settings
from tests.conftest import REPO, make_library
from tests.servers import start_rag_ui, stop

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("RAG_TEST_ARTIFACTS", REPO / "test-artifacts"))
QUESTION = "Is there a benchmark for matching objects across images for MLLMs?"
XSS_TITLE = "Zebra stripes <img src=x onerror=alert(1)> under infrared light"


@pytest.fixture(scope="module")
def ui_server(seed_library, tmp_path_factory):
    """One `rag ui` over a copy of the seed index; yields (url, index folder)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    index = tmp_path_factory.mktemp("ui") / "index"
    shutil.copytree(seed_library.settings.index_path, index)  # uploads must not touch the shared index
    log = tmp_path_factory.mktemp("ui-log") / "server.log"
    # The test profile's fast writer, with the default judge deciding what to answer (as a user's chat does).
    env = {"RAG_PROFILE": "test", "RAG_ANSWER__JUDGE_MODEL": Settings().answer.judge_model or ""}
    server, url, _port = start_rag_ui(REPO, index, log, env)
    yield url, index
    stop(server)


@pytest.fixture(scope="module")
def ui_url(ui_server):
    return ui_server[0]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser, ui_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.dialogs = []  # any alert() a planted script manages to run lands here
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(ui_url)
    page.wait_for_selector("#question textarea", timeout=60_000)
    yield page
    context.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _bot_messages(page):
    return page.locator("#chat [data-testid='bot']")


def _ask(page, question: str, timeout_s: float = 240) -> list[int]:
    """Ask and wait for the final answer; returns the answer's text length seen at each poll."""
    before = _bot_messages(page).count()
    page.fill("#question textarea", question)
    page.click("#send")
    lengths: list[int] = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        bots = _bot_messages(page)
        if bots.count() > before:
            lengths.append(len(bots.last.inner_text()))
            if bots.last.locator(".rag-answer, .rag-refusal, .rag-error").count():
                return lengths
        time.sleep(0.1)
    raise AssertionError(f"no final answer within {timeout_s}s; lengths seen {lengths[-5:]}")


def test_answer_streams_with_linked_marker_and_matching_card(page):
    _shot(page, "01-first-visit")
    lengths = _ask(page, QUESTION)
    growing = [n for n in lengths if n > 1]
    assert len(set(growing)) >= 3, f"the text did not grow while streaming: {lengths}"
    answer = _bot_messages(page).last
    marker = answer.locator("a.cite").first
    n = marker.get_attribute("href").removeprefix("#src-")  # the page keeps href, drops data-*
    assert f"[{n}" in answer.inner_text()
    card = page.locator(f"#sources #src-{n}")
    assert card.count() == 1
    assert "Are They the Same? Exploring Visual Correspondence" in card.locator(".title").inner_text()
    _shot(page, "02-answer-with-sources")


def test_answer_shapes_name_list_and_refusal(page):
    _ask(page, "Is there work that drops all visual tokens partway through an MLLM?")
    named = _bot_messages(page).last.locator(".rag-answer")
    assert named.locator("strong").first.inner_text() == "DyVTE"
    assert named.inner_text().startswith("Yes — DyVTE")
    _ask(page, "Which papers reduce visual tokens to speed up MLLM inference?")
    items = _bot_messages(page).last.locator(".rag-answer ul.rag-list li")
    assert items.count() >= 3
    for i in range(items.count()):  # one paper a line: its name (bold) or title (italic), then its marker
        item = items.nth(i)
        assert item.locator("strong, em").count() >= 1 and item.locator("a.cite").count() == 1
    _shot(page, "06-list-answer")
    _ask(page, "Which paper uses reinforcement learning from human feedback to reduce hallucination in video LLMs?")
    refusal = _bot_messages(page).last.locator(".rag-refusal")
    assert refusal.count() == 1 and "video" in refusal.inner_text()
    assert refusal.locator("a.cite").count() == 0
    _shot(page, "07-refusal-names-what-is-missing")


def test_expand_card_follow_up_and_new_chat(page):
    _ask(page, QUESTION)
    first = page.locator("#sources details.source-card").first
    first.locator("summary").click()
    assert first.get_attribute("open") is not None
    assert first.locator(".abstract").inner_text().strip()
    assert first.locator("mark").count() == 1  # the supporting passage, highlighted in the abstract
    _shot(page, "03-card-expanded")
    _ask(page, "What accuracy does its model reach?")
    assert _bot_messages(page).count() == 2
    follow_up = _bot_messages(page).last.inner_text()
    assert "51.06" in follow_up or "Are They the Same" in page.locator("#sources").inner_text()
    _shot(page, "04-follow-up")
    page.click("#new-chat")
    page.wait_for_function("document.querySelectorAll('#chat [data-testid=\"bot\"]').length === 0")
    assert "Sources appear here" in page.locator("#sources").inner_text()
    _shot(page, "05-new-chat")


def test_upload_a_paper_then_ask_about_it_with_inert_html(page, tmp_path):
    papers = [
        {
            "id": "ui-zebra-1",
            "title": XSS_TITLE,
            "abstract": "We detect zebras in night-time camera-trap images with a thermal-aware detector. "
            "Stripes blur under infrared light, so we train on synthetic thermal renderings of zebra herds. "
            "The detector reaches 93.4% precision on the Serengeti night split and runs on solar-powered traps.",
        }
    ]
    upload = tmp_path / "new papers.jsonl"
    upload.write_text("".join(json.dumps(p) + "\n" for p in papers), encoding="utf-8")
    page.get_by_role("tab", name="Ingest").click()
    page.set_input_files("#upload input[type=file]", str(upload))
    page.click("#ingest")
    page.wait_for_function(
        "(document.querySelector('#ingest-report')?.innerText || '').includes('Ingested')",
        timeout=120_000,
    )
    assert "Ingested 1 new or changed papers" in page.locator("#ingest-report").inner_text()
    assert "276 papers" in page.locator("#index-stats").inner_text()
    _shot(page, "06-ingest")
    page.get_by_role("tab", name="Chat").click()
    _ask(page, "How precise is zebra detection in night-time camera traps?")
    cards = page.locator("#sources").inner_text()
    answer = _bot_messages(page).last
    assert "Zebra stripes <img src=x onerror=alert(1)> under infrared light" in cards  # shown as text
    assert answer.locator("a.cite").count() >= 1
    assert page.locator("#sources img").count() == 0 and page.locator("#chat img[src='x']").count() == 0
    assert page.dialogs == [] and page.evaluate("typeof window.__rag_xss") == "undefined"
    _shot(page, "07-uploaded-paper-cited")


def _upload_refused(page, path) -> str:
    """Upload a file the app must refuse; returns what the page said (its report or Gradio's toast)."""
    page.get_by_role("tab", name="Ingest").click()
    page.set_input_files("#upload input[type=file]", str(path))
    page.click("#ingest")
    # Either Gradio refuses the file at upload (a toast) or the app does (its report); both are one readable line.
    page.wait_for_function(
        "/refused|larger than|Choose one/.test(document.querySelector('#ingest-report')?.innerText || '')"
        " || document.querySelectorAll('.toast-body').length > 0",
        timeout=60_000,
    )
    assert "Traceback" not in page.content()
    return page.locator("#ingest-report").inner_text() + " ".join(page.locator(".toast-body").all_inner_texts())


def test_bad_upload_gives_a_readable_message(page, tmp_path):
    (tmp_path / "evil.exe").write_bytes(b"MZ\x00\x01binary")
    shown = _upload_refused(page, tmp_path / "evil.exe")
    assert "evil.exe" in shown or "Invalid file type" in shown or "Choose one" in shown, shown
    assert "1 new or changed" not in shown
    _shot(page, "08-bad-upload")


def test_oversized_upload_is_refused_and_nothing_is_ingested(page, tmp_path, ui_server):
    big = tmp_path / "huge.jsonl"
    line = json.dumps({"title": "Oversized upload", "abstract": "x " * 500}) + "\n"
    big.write_text(line * (21_000_000 // len(line) + 1))  # over ui.max_upload_mb (20 MB)
    papers_before = make_library(ui_server[1]).stats().papers
    shown = _upload_refused(page, big)
    assert "Ingested" not in shown, shown
    assert make_library(ui_server[1]).stats().papers == papers_before
    _shot(page, "09-oversized-upload")
