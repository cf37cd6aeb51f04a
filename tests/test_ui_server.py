"""The chat server under load and behind a login, as `rag ui` runs it on 127.0.0.1.

Load: 20 simulated users (each its own Gradio client session) ask for 60 s on the retrieval-only
extractive path; no request may fail, the p95 latency is reported, and the server's memory must not
keep growing. Login: with `ui.auth_user` set, the page and its API refuse anyone without the password.
Figures go to test-artifacts/load.json.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.servers import LOAD_QUESTIONS as QUESTIONS
from tests.servers import listening_addresses, rss_mb, start_rag_ui, stop

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("RAG_TEST_ARTIFACTS", REPO / "test-artifacts"))
USERS = 20
SECONDS = 60


def _request(question: str) -> tuple:
    """The chat event's inputs: question, chat so far, profile, sources, retrieval mode, rerank, filters."""
    return (question, [], "extractive", 3, "hybrid", False, "")


@pytest.fixture(scope="module")
def index_copy(seed_library, tmp_path_factory):
    index = tmp_path_factory.mktemp("ui-server") / "index"
    shutil.copytree(seed_library.settings.index_path, index)
    return index


def test_twenty_users_for_a_minute_no_errors_and_flat_memory(index_copy, tmp_path):
    from gradio_client import Client

    process, url, port = start_rag_ui(REPO, index_copy, tmp_path / "ui.log", {"RAG_PROFILE": "extractive"})
    try:
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        latencies: list[float] = []
        errors: list[str] = []
        memory: list[tuple[float, float]] = []
        started = time.monotonic()
        stop_at = started + SECONDS

        def user(number: int) -> None:
            client = Client(url, verbose=False)
            i = number
            while time.monotonic() < stop_at:
                question = QUESTIONS[i % len(QUESTIONS)]
                i += 1
                t0 = time.monotonic()
                try:
                    chat, _cards, _ = client.predict(*_request(question), api_name="/respond")
                    last = chat[-1]["content"] if chat else ""
                    if "rag-error" in str(last) or "rag-answer" not in str(last) and "rag-refusal" not in str(last):
                        errors.append(f"user {number}: {str(last)[:200]}")
                except Exception as exc:  # noqa: BLE001 - every failure is counted
                    errors.append(f"user {number}: {type(exc).__name__}: {exc}"[:300])
                latencies.append(time.monotonic() - t0)

        def sample_memory() -> None:
            while time.monotonic() < stop_at + 2:
                memory.append((time.monotonic() - started, rss_mb(process.pid)))
                time.sleep(1)

        threads = [threading.Thread(target=user, args=(n,)) for n in range(USERS)]
        threads.append(threading.Thread(target=sample_memory))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=SECONDS + 240)
        ordered = sorted(latencies)
        p95 = ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan")
        middle = [mb for t, mb in memory if SECONDS / 3 <= t < 2 * SECONDS / 3]
        late = [mb for t, mb in memory if t >= 2 * SECONDS / 3]
        figures = {
            "users": USERS,
            "seconds": SECONDS,
            "requests": len(latencies),
            "errors": len(errors),
            "p50_s": round(statistics.median(ordered), 3) if ordered else None,
            "p95_s": round(p95, 3),
            "rss_mb_start": round(memory[0][1], 1) if memory else None,
            "rss_mb_middle_max": round(max(middle), 1) if middle else None,
            "rss_mb_late_max": round(max(late), 1) if late else None,
        }
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "load.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures))
        assert not errors, errors[:5]
        assert len(latencies) >= USERS * 2, figures
        assert middle and late and max(late) - max(middle) < 64, figures  # no growth trend once warm
    finally:
        stop(process)


def test_login_keeps_the_page_and_its_api_closed_without_the_password(index_copy, tmp_path):
    from gradio_client import Client

    env = {"RAG_PROFILE": "extractive", "RAG_UI__AUTH_USER": "alice", "RAG_UI_PASSWORD": "correct horse"}
    process, url, _port = start_rag_ui(REPO, index_copy, tmp_path / "ui.log", env)
    try:

        def login(password: str) -> int:
            body = urllib.parse.urlencode({"username": "alice", "password": password}).encode()
            try:
                return urllib.request.urlopen(f"{url}/login", data=body, timeout=10).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert login("wrong") in (400, 401)
        assert login("correct horse") == 200
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do; the client never gets in
            Client(url, verbose=False).predict(*_request(QUESTIONS[1]), api_name="/respond")
        client = Client(url, auth=("alice", "correct horse"), verbose=False)
        chat, _cards, _ = client.predict(*_request(QUESTIONS[1]), api_name="/respond")
        assert "163" in str(chat[-1]["content"])
        assert "correct horse" not in (tmp_path / "ui.log").read_text()
    finally:
        stop(process)


def test_the_page_sends_security_headers_and_no_analytics(index_copy, tmp_path):
    process, url, _port = start_rag_ui(REPO, index_copy, tmp_path / "ui.log", {"RAG_PROFILE": "extractive"})
    try:
        page = urllib.request.urlopen(url, timeout=10)
        config = json.loads(urllib.request.urlopen(f"{url}/config", timeout=10).read())
    finally:
        stop(process)
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy and "http" not in policy
    assert config["analytics_enabled"] is False
