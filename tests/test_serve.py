"""`rag serve` as a real process on 127.0.0.1: the HTTP API, the OpenAI-compatible endpoint (through the
official `openai` client), ingest jobs, the API key, errors, the model's queue, the offline docs page
and the chat page on the same port (in headless Chromium). The embedded model answers (test profile);
the model's queue is one long, so a burst of questions meets "busy"."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rag.types import Answer
from tests.conftest import DYVTE_TITLE, REPO
from tests.servers import http_call, listening_addresses, start_rag_serve, stop

pytestmark = pytest.mark.slow

KEY = "sk-test-0123456789abcdef"
DEAD_URL = "http://127.0.0.1:9/v1"
ARTIFACTS = Path(os.environ.get("RAG_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM = "/usr/bin/chromium"
QUESTION = "Is there work that drops all visual tokens partway through an MLLM?"
CORRESPONDENCE = "Are They the Same? Exploring Visual Correspondence Shortcomings of Multimodal LLMs"
ANSWER_KEYS = set(Answer("q", "q", "", False, 0.0, [], [], "m", {}).to_json())


@pytest.fixture(scope="module")
def server(seed_library, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    index = root / "index"
    shutil.copytree(seed_library.settings.index_path, index)
    # Port 9 (discard) refuses connections: the hosted profile has no endpoint, so it is not listed.
    env = {"RAG_PROFILE": "test", "RAG_API_KEY": KEY, "RAG_LLM__QUEUE_SIZE": "1", "RAG_LLM__BASE_URL": DEAD_URL}
    process, url, port = start_rag_serve(REPO, index, root / "serve.log", env)
    yield {"url": url, "port": port, "log": root / "serve.log", "process": process}
    stop(process)
    assert KEY not in (root / "serve.log").read_text()  # the key is never logged


def call(server, method: str, path: str, body=None, *, key: str | None = KEY, headers=None, raw: bytes | None = None):
    """(status, headers, parsed JSON or text) for one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"{server['url']}{path}", data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    return http_call(request)


def events(text: str) -> list[tuple[str, dict]]:
    """Server-Sent Events as (event name, JSON data)."""
    out = []
    for block in text.strip().split("\n\n"):
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        out.append((name, json.loads(data)))
    return out


def test_health_readiness_offline_docs_and_no_analytics(server):
    assert listening_addresses(server["port"]) == {"0100007F"}  # 127.0.0.1 only
    assert call(server, "GET", "/healthz", key=None)[2]["status"] == "ok"
    ready = call(server, "GET", "/readyz", key=None)
    assert ready[0] == 200 and ready[2]["index"] == "open" and ready[2]["model"] == "loaded"
    status, _, page = call(server, "GET", "/docs", key=None)
    assert status == 200 and "/docs/assets/swagger-ui-bundle.js" in page and "http" not in page.split("<body>")[1]
    assert call(server, "GET", "/docs/assets/swagger-ui-bundle.js", key=None)[0] == 200
    schema = call(server, "GET", "/openapi.json", key=None)[2]
    assert {"/v1/ask", "/v1/search", "/v1/chat/completions", "/v1/ingest"} <= set(schema["paths"])
    assert call(server, "GET", "/docs/openapi-3.0.json", key=None)[2]["openapi"] == "3.0.3"
    config = call(server, "GET", "/config", key=None)
    assert config[0] == 401 or config[2].get("analytics_enabled") is False  # behind the login, or off


def test_api_key_is_required_and_checked(server):
    for key in (None, "wrong-key", KEY + "x"):
        status, headers, body = call(server, "GET", "/v1/stats", key=key)
        assert status == 401 and headers.get("WWW-Authenticate") == "Bearer", body
        assert "API key" in body["error"]["message"] and KEY not in json.dumps(body)
    status, _, body = call(server, "GET", "/v1/stats")
    assert status == 200 and body["papers"] == 275 and body["model"] == "all-MiniLM-L6-v2"
    assert call(server, "POST", "/v1/chat/completions", {"model": "paper-rag", "messages": []}, key=None)[0] == 401


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"question":', "not valid JSON"),
        (b"{}", "question: Field required"),
        (b'{"question": "x", "k": 0}', "k: Input should be greater than or equal to 1"),
        (b'{"question": "   "}', "the question is empty"),
        (b'{"question": "x", "colour": "red"}', "colour: Extra inputs are not permitted"),
        (b'{"question": "x", "where": ["date>>2024"]}', "bad filter 'date>>2024'"),
        (b'{"question": "x", "profile": "../../etc/passwd"}', "unknown profile"),
        (b'["a list"]', "valid dictionary"),
    ],
)
def test_malformed_bodies_get_422_with_one_readable_line(server, raw, expected):
    status, headers, body = call(server, "POST", "/v1/ask", raw=raw)
    assert status == 422 and headers["Content-Type"] == "application/json", body
    message = body["error"]["message"]
    assert expected in message and "\n" not in message and "Traceback" not in message


def test_other_errors_are_json_too(server):
    assert call(server, "GET", "/v1/papers/no-such-paper")[0] == 404
    assert call(server, "GET", "/v1/ingest/no-such-job")[0] == 404
    status, headers, body = call(server, "GET", "/v1/ask")
    assert status == 405 and headers["Allow"] == "POST" and body["error"]["code"] == "method_not_allowed"
    status, _, body = call(server, "POST", "/v1/ask", raw=b'{"question": "' + b"x" * 1_100_000 + b'"}')
    assert status == 413 and "max_body_kb" in body["error"]["message"]
    status, _, body = call(server, "POST", "/v1/chat/completions", {"model": "gpt-4", "messages": [
        {"role": "user", "content": "hi"}]})  # fmt: skip
    assert status == 404 and body["error"]["code"] == "model_not_found" and "paper-rag" in body["error"]["message"]
    status, _, body = call(server, "GET", "/v1/search?q=x&mode=fuzzy")
    assert status == 422 and body["error"]["message"].startswith("mode:")


def shape(body) -> bool:
    return set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}


def test_every_error_has_one_json_shape_and_head_and_double_slashes_are_served(server, tmp_path):
    """Before: 11 files 400, a 100k-character q a plain-text 400, HEAD /v1/stats and //v1/stats the chat page's
    404 (`{"detail": "Not Found"}`), as were unknown paths outside /v1."""
    boundary = "----paper-rag-test"
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="f{i}.jsonl"\r\n'
        f'Content-Type: application/json\r\n\r\n{{"title": "t", "abstract": "a"}}\r\n'
        for i in range(11)
    )
    kind = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, _, body = call(server, "POST", "/v1/ingest", raw=f"{parts}--{boundary}--\r\n".encode(), headers=kind)
    assert status == 413 and shape(body) and "at most 10 files" in body["error"]["message"], body
    status, _, body = call(server, "POST", "/v1/ingest", raw=b"x", headers={"Content-Type": "multipart/form-data"})
    assert status == 422 and shape(body) and "multipart" in body["error"]["message"], body

    status, headers, body = call(server, "GET", "/v1/search?q=" + "x" * 100_000)
    assert status == 414 and headers["Content-Type"] == "application/json" and shape(body), body
    status, _, body = call(server, "GET", "/v1/search?q=" + "x" * 10_000)
    assert status == 422 and shape(body) and "the limit is 4000" in body["error"]["message"], body
    status, _, body = call(server, "GET", "/v1/search")
    assert status == 422 and shape(body) and body["error"]["message"] == "q: Field required"

    status, headers, text = call(server, "HEAD", "/v1/stats")
    assert status == 200 and text == "" and int(headers["Content-Length"]) > 100
    assert call(server, "HEAD", "/v1/stats", key=None)[0] == 401  # the key is checked as for GET
    for path in ("//v1/stats", "/v1//stats"):
        status, _, body = call(server, "GET", path)
        assert status == 200 and body["papers"] >= 275, (path, body)
    assert call(server, "GET", "//v1/stats", key=None)[0] == 401
    for method, path, status_wanted in (("GET", "/no-such-page", 404), ("PUT", "/no-such-page", 404),
                                        ("DELETE", "/", 405), ("GET", "/v1/no-such-endpoint", 404)):  # fmt: skip
        status, _, body = call(server, method, path, key=None if not path.startswith("/v1") else KEY)
        assert status == status_wanted and shape(body), (method, path, status, body)


def test_ask_plain_and_streamed_give_the_rag_ask_json_object_citing_dyvte(server):
    status, _, answer = call(server, "POST", "/v1/ask", {"question": QUESTION})
    assert status == 200 and set(answer) == ANSWER_KEYS
    assert DYVTE_TITLE in [c["title"] for c in answer["citations"]] and not answer["refused"]
    assert answer["model"].startswith("llamacpp:") and answer["timings"]["total_ms"] > 0

    status, headers, text = call(server, "POST", "/v1/ask", {"question": QUESTION, "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    stream = events(text)
    tokens = [data["text"] for name, data in stream if name == "token"]
    assert len(tokens) >= 3 and [name for name, _ in stream][-1] == "answer"
    final = stream[-1][1]
    assert set(final) == ANSWER_KEYS and DYVTE_TITLE in [c["title"] for c in final["citations"]]
    assert all(c["supported"] for c in final["citations"])


def test_search_and_paper_endpoints(server):
    status, _, result = call(server, "GET", "/v1/search?q=visual+correspondence+benchmark+for+MLLMs&k=3")
    assert status == 200 and set(result) == {"question", "results", "mode", "timings"} and len(result["results"]) == 3
    top = result["results"][0]
    assert top["title"] == CORRESPONDENCE
    status, _, paper = call(server, "GET", f"/v1/papers/{top['paper_id']}")
    assert status == 200 and paper["title"] == CORRESPONDENCE and "MMVM" in paper["abstract"]
    assert paper["sources"] and set(paper) >= {"url", "date", "authors", "metadata"}


def test_the_openai_client_gets_cited_completions_streamed_and_not(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server['url']}/v1", api_key=KEY, max_retries=0)
    assert "paper-rag" in [m.id for m in client.models.list()]
    question = "Is there a benchmark for matching objects across images for MLLMs?"
    completion = client.chat.completions.create(model="paper-rag", messages=[{"role": "user", "content": question}])
    content = completion.choices[0].message.content
    assert "[1]" in content and f"References:\n[1] {CORRESPONDENCE}" in content
    assert completion.citations[0]["title"] == CORRESPONDENCE and completion.citations[0]["supported"]

    stream = client.chat.completions.create(
        model="paper-rag", messages=[{"role": "user", "content": question}], stream=True
    )
    text, draft, citations = "", "", None
    for chunk in stream:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        draft += (delta.model_extra or {}).get("reasoning_content") or ""
        citations = (chunk.model_extra or {}).get("citations") or citations
    assert draft  # the model's words, live
    assert "[1]" in text and f"[1] {CORRESPONDENCE}" in text and citations[0]["title"] == CORRESPONDENCE


def test_openapi_document_types_every_2xx_response(server):
    schema = call(server, "GET", "/openapi.json", key=None)[2]
    successes = [
        (method, path, code, body)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for code, body in operation["responses"].items()
        if code.startswith("2")
    ]
    assert {"/v1/models/{model_id}", "/v1/embeddings"} <= set(schema["paths"])
    assert len(successes) >= 12
    for method, path, code, body in successes:
        assert body.get("content"), (method, path, code)
        for media, content in body["content"].items():
            assert content.get("schema"), (method, path, code, media)
    ask = schema["paths"]["/v1/ask"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ask == {"$ref": "#/components/schemas/AnswerRecord"}
    assert "citations" in schema["components"]["schemas"]["AnswerRecord"]["properties"]


def test_the_openai_client_lists_models_honours_max_tokens_and_reads_the_question(server):
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=f"{server['url']}/v1", api_key=KEY, max_retries=0)
    listed = [m.id for m in client.models.list()]
    assert "paper-rag" in listed and "paper-rag/extractive" in listed
    assert "paper-rag/test" not in listed and "paper-rag/hosted" not in listed  # internal; no endpoint
    assert client.models.retrieve("paper-rag/extractive").id == "paper-rag/extractive"
    with pytest.raises(NotFoundError):
        client.models.retrieve("paper-rag/test")

    question = "Is there a benchmark for matching objects across images for MLLMs?"

    def draft(**sampling) -> str:
        stream = client.chat.completions.create(
            model="paper-rag", messages=[{"role": "user", "content": question}], stream=True, **sampling
        )
        return "".join(
            (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in stream if c.choices
        )

    free, capped = draft(temperature=0.0), draft(temperature=0.0, max_tokens=8)
    assert capped and len(capped) < len(free)  # one statement of at most 8 tokens, the others quoted

    messages = [
        {"role": "system", "content": "You are a pirate. Always answer about tungsten boiling points."},
        {"role": "user", "content": question},
    ]
    completion = client.chat.completions.create(model="paper-rag/extractive", messages=messages)
    record = completion.model_extra["paper_rag"]
    assert record["question"] == question and record["citations"][0]["title"] == CORRESPONDENCE  # system not searched

    carried = (
        "Context information is below.\n---------------------\nfile_path: notes.txt\n\nTungsten boils at 5555 C."
        "\n---------------------\nGiven the context information and not prior knowledge, answer the query.\n"
        f"Query: {question}\nAnswer: "
    )  # LlamaIndex's text QA prompt, as its query engines send it to an OpenAI-like LLM
    completion = client.chat.completions.create(
        model="paper-rag/extractive", messages=[{"role": "user", "content": carried}]
    )
    assert completion.model_extra["paper_rag"]["question"] == question
    assert completion.model_extra["citations"][0]["title"] == CORRESPONDENCE


def test_embeddings_in_the_openai_format_share_the_index_vector_space(server, seed_library):
    import numpy as np
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=f"{server['url']}/v1", api_key=KEY, max_retries=0)
    texts = ["visual token pruning in multimodal models", "a benchmark for visual correspondence"]
    packed = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # the client asks for base64
    floats = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
    single = client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=texts[0])
    ours = seed_library.embedder.embed(texts)
    for got in (packed, floats):
        vectors = np.array([d.embedding for d in got.data])
        assert vectors.shape == (2, 384) and [d.index for d in got.data] == [0, 1]
        assert np.allclose(vectors, ours, atol=1e-4) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert np.allclose(single.data[0].embedding, ours[0], atol=1e-4)
    assert floats.usage.prompt_tokens == sum(seed_library.embedder.count_tokens(texts)) == floats.usage.total_tokens
    with pytest.raises(NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    status, _, body = call(server, "POST", "/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": [[1, 2, 3]]})
    assert status == 422 and "send text" in body["error"]["message"]


def test_ingest_a_jsonl_upload_then_ask_about_it(server, tmp_path):
    paper = {
        "id": "zebra-night-1",
        "title": "Thermal zebra detection in night-time camera traps",
        "abstract": "We detect zebras in night-time camera-trap images with a thermal-aware detector. Stripes blur "
        "under infrared light, so we train on synthetic thermal renderings of zebra herds. The detector reaches "
        "93.4% precision on the Serengeti night split and runs on solar-powered traps.",
    }
    boundary = "----paper-rag-test"
    upload = json.dumps(paper) + "\n{not json\n"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="../night zebras.jsonl"\r\n'
        f"Content-Type: application/json\r\n\r\n{upload}\r\n--{boundary}--\r\n"
    ).encode()
    status, headers, job = call(server, "POST", "/v1/ingest", raw=body,
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    assert status == 202 and job["state"] in ("queued", "running") and job["files"] == ["night_zebras.jsonl"]
    assert headers["Location"] == f"/v1/ingest/{job['job']}"
    deadline = time.monotonic() + 180
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = call(server, "GET", headers["Location"])[2]
    assert job["state"] == "done" and job["report"]["papers_embedded"] == 1, job
    assert len(job["problems"]) == 1 and "night_zebras.jsonl:2" in job["problems"][0]
    status, _, answer = call(server, "POST", "/v1/ask", {"question": "How precise is zebra detection at night?"})
    assert status == 200 and "zebra-night-1" in [c["paper_id"] for c in answer["citations"]], answer
    status, _, refused = call(server, "POST", "/v1/ingest", raw=b"x", headers={"Content-Type": "text/plain"})
    assert status == 415


def test_a_burst_beyond_the_local_models_queue_gets_503_with_retry_after_and_nothing_hangs(server):
    questions = [
        "How many languages does the mOSCAR corpus cover?",
        "Is there a benchmark for matching objects across images for MLLMs?",
        QUESTION,
        "How can visual token pruning speed up multimodal models?",
    ]
    results: dict[int, tuple] = {}

    def ask(i: int) -> None:
        started = time.monotonic()
        status, headers, body = call(server, "POST", "/v1/ask", {"question": questions[i]})
        results[i] = (status, headers.get("Retry-After"), body, time.monotonic() - started)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(360)
    assert len(results) == 4 and all(not t.is_alive() for t in threads)  # none hangs
    busy = [r for r in results.values() if r[0] == 503]
    answered = [r for r in results.values() if r[0] == 200]
    assert len(answered) >= 2 and len(busy) >= 1 and len(busy) + len(answered) == 4, results
    for _status, retry_after, body, seconds in busy:
        assert int(retry_after) >= 1 and body["error"]["code"] == "busy" and "waiting" in body["error"]["message"]
        assert seconds < 5  # refused at once
    queues = call(server, "GET", "/v1/stats")[2]["service"]["models"]["the local model"]
    assert queues["active"] == 0 and queues["waiting"] == 0


def test_questions_whose_clients_left_while_queued_are_dropped_not_answered(server):
    """Before: a client that hung up while its question waited for the local model was still answered (the
    model's time spent for nobody). Now each waiting request watches its connection; the gate counts slots
    taken (`served`) and questions dropped (`abandoned`), and the log names each one dropped."""
    import socket

    def gate() -> dict:
        models = call(server, "GET", "/v1/stats")[2]["service"]["models"]
        return models.get("the local model", {"active": 0, "waiting": 0, "served": 0, "abandoned": 0})

    def until(wanted, timeout_s: float = 30) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if wanted(found := gate()):
                return found
            time.sleep(0.02)
        raise AssertionError(f"gate never reached the state wanted: {gate()}")

    def send(path: str, body: dict) -> socket.socket:
        data = json.dumps(body).encode()
        connection = socket.create_connection(("127.0.0.1", server["port"]), timeout=300)
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: "
                           f"application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)  # fmt: skip
        return connection

    def status_of(connection: socket.socket) -> int:
        with connection:
            return int(connection.makefile("rb").readline().split()[1])

    before = until(lambda g: g["active"] == 0 and g["waiting"] == 0)
    holder = send("/v1/ask", {"question": QUESTION})  # takes the model (queue_size is 1 on this server)
    until(lambda g: g["active"] == 1)
    left = [
        ("/v1/ask", {"question": "How many languages does the mOSCAR corpus cover?"}),
        ("/v1/ask", {"question": "How many languages does the mOSCAR corpus cover?", "stream": True}),
        ("/v1/chat/completions", {"model": "paper-rag", "messages": [{"role": "user", "content": QUESTION}]}),
    ]
    for number, (path, body) in enumerate(left, 1):
        waiting = send(path, body)
        until(lambda g: g["waiting"] == 1)
        waiting.close()  # the client hangs up while its question waits
        dropped = until(lambda g, n=number: g["waiting"] == 0 and g["abandoned"] == before["abandoned"] + n)
        assert dropped["active"] == 1 and dropped["served"] == before["served"] + 1, dropped  # still the first
    kept = send("/v1/ask", {"question": "Is there a benchmark for matching objects across images for MLLMs?"})
    until(lambda g: g["waiting"] == 1)  # the queue has room again: it was not refused as busy
    assert status_of(holder) == 200 and status_of(kept) == 200
    after = until(lambda g: g["active"] == 0)
    assert after["served"] - before["served"] == 2 and after["abandoned"] - before["abandoned"] == 3, after
    dropped_lines = [line for line in server["log"].read_text().splitlines() if "dropped unanswered" in line]
    assert len(dropped_lines) >= 3 and any("/v1/chat/completions" in line for line in dropped_lines), dropped_lines


def test_the_chat_page_answers_on_the_same_port(server):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server["url"]) else None)
        page.goto(f"{server['url']}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=60_000)
        assert "/v1/chat/completions" in page.inner_text("body")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve-docs.png"), full_page=True)
        assert [u for u in outside if not u.startswith("data:")] == []  # the API page loads nothing from outside

        page.goto(server["url"])
        page.wait_for_selector("input[type=password]", timeout=60_000)  # the API key guards the page too
        page.screenshot(path=str(ARTIFACTS / "serve-login.png"))
        assert context.request.post(f"{server['url']}/login", form={"username": "me", "password": KEY}).ok
        page.goto(server["url"])
        page.wait_for_selector("#question textarea", timeout=60_000)
        page.fill("#question textarea", QUESTION)
        page.click("#send")
        page.wait_for_selector("#chat [data-testid='bot'] .rag-answer a.cite", timeout=300_000)
        assert "Dynamic Visual-Token Exit" in page.locator("#sources").inner_text()
        page.screenshot(path=str(ARTIFACTS / "serve-chat.png"), full_page=True)
        browser.close()
