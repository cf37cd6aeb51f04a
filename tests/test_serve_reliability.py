"""`rag serve` as a real process against hostile and unlucky clients: cross-site writes from a browser,
same-named uploads queued behind a long job, a catalog replaced under the running server by
`rag check --repair`, a hosted model backend that is down. A small index and the extractive profile
(no local model), with the chat page mounted (its CORS layer is part of what is tested)."""

from __future__ import annotations

import json
import shlex
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, make_library, run_cli, write_jsonl
from tests.servers import free_port, http_call, start_rag_serve, stop

pytestmark = pytest.mark.slow

PLANTED = "Planted Paper About Quantum Pancakes"


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder, seed_corpus):
    root = tmp_path_factory.mktemp("serve-reliability")
    index = root / "index"
    corpus = write_jsonl(root / "corpus.jsonl", seed_corpus.papers[:6])
    make_library(index, embedder).ingest([corpus], progress=False)
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: a hosted backend that is down
    env = {"RAG_PROFILE": "extractive", "RAG_LLM__BASE_URL": dead, "RAG_LLM__TIMEOUT_S": "5"}
    process, url, port = start_rag_serve(REPO, index, root / "serve.log", env)
    yield {"url": url, "port": port, "index": index, "root": root, "log": root / "serve.log"}
    stop(process)
    assert "Traceback" not in (root / "serve.log").read_text()


def call(server, method: str, path: str, body=None, *, headers=None, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"{server['url']}{path}", data=data, method=method, headers=headers or {})
    if data is not None and raw is None:
        request.add_header("Content-Type", "application/json")
    return http_call(request)


def upload(server, name: str, content: str, headers: dict | None = None):
    boundary = "----paper-rag-test"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/json\r\n\r\n{content}\r\n--{boundary}--\r\n"
    ).encode()
    kind = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return call(server, "POST", "/v1/ingest", raw=body, headers=kind | (headers or {}))


def finished(server, job: dict, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = call(server, "GET", f"/v1/ingest/{job['job']}")[2]
    return job


def record(title: str, abstract: str, paper_id: str | None = None) -> str:
    return json.dumps({"id": paper_id or title.lower().replace(" ", "-"), "title": title, "abstract": abstract})


def top_titles(server, question: str, mode: str = "hybrid") -> list[str]:
    status, _, found = call(server, "GET", f"/v1/search?q={urllib.request.quote(question)}&k=3&mode={mode}")
    assert status == 200, found
    return [hit["title"] for hit in found["results"]]


def test_cross_site_writes_are_refused_and_no_origin_gets_cors_headers(server):
    """Before: 202 for a cross-site multipart upload (the planted paper became the top hit), and
    `access-control-allow-origin` for any http://localhost:* page from the chat page's CORS layer."""
    planted = record(PLANTED, "Quantum pancakes flip themselves in superposition on a hot griddle.")
    for headers in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://localhost:3000"},  # another port on this machine is another origin
        {"Origin": "null"},  # a sandboxed frame
        {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
    ):
        status, _, body = upload(server, "x.jsonl", planted, headers)
        assert status == 403 and body["error"]["code"] == "cross_site", (headers, status, body)
        assert "cross-site request refused" in body["error"]["message"]
    chat = {"model": "paper-rag", "messages": [{"role": "user", "content": "hi"}]}
    for path, payload in (
        ("/v1/ask", {"question": "quantum pancakes", "extractive": True}),
        ("/v1/chat/completions", chat),
    ):
        status, _, body = call(server, "POST", path, payload, headers={"Origin": "https://evil.example"})
        assert status == 403, (path, status, body)
    for origin in ("http://localhost:3000", "https://evil.example"):
        request = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        for path in ("/v1/ask", "/v1/ingest", "/"):
            _, headers, _ = call(server, "OPTIONS", path, headers=request)
            assert "access-control-allow-origin" not in {k.lower() for k in headers}, (origin, path, dict(headers))
        _, headers, _ = call(server, "GET", "/v1/stats", headers={"Origin": origin})
        assert "access-control-allow-origin" not in {k.lower() for k in headers}
    assert PLANTED not in top_titles(server, "quantum pancakes griddle")
    own = {"Origin": server["url"], "Sec-Fetch-Site": "same-origin"}  # the chat page's own requests
    status, _, _ = call(server, "POST", "/v1/ask", {"question": "token pruning", "extractive": True}, headers=own)
    assert status == 200


def test_same_named_uploads_queued_behind_a_long_job_each_ingest_their_own_bytes(server):
    """Before: the second refs.jsonl replaced the first while it waited; job 1 embedded Y, X was lost."""
    long = "\n".join(
        record(f"Filler Study Number {i} on Tidal Sediment", f"Sediment sample {i} was measured at low tide. " * 30)
        for i in range(40)
    )
    first = upload(server, "long.jsonl", long)[2]
    x = upload(server, "refs.jsonl", record("Xylophone Tuning with Graph Networks", "Graph networks tune xylophones."))[
        2
    ]
    y = upload(server, "refs.jsonl", record("Yodel Detection in Alpine Audio", "A detector finds yodels in audio."))[2]
    assert x["state"] == "queued" and y["state"] == "queued", (x, y)
    for job in (first, x, y):
        done = finished(server, job)
        assert done["state"] == "done", done
    assert (
        finished(server, x)["report"]["papers_embedded"] == 1 and finished(server, y)["report"]["papers_embedded"] == 1
    )
    assert top_titles(server, "tuning xylophones with graph networks")[0] == "Xylophone Tuning with Graph Networks"
    assert top_titles(server, "yodel detection in alpine audio")[0] == "Yodel Detection in Alpine Audio"


def test_a_catalog_replaced_by_rag_check_repair_is_followed_by_the_running_server(server):
    """Before: every BM25/hybrid search and /v1/ask answered 503 "attempt to write a readonly database"
    after the repair and the next ingest, until a restart, while /readyz said 200."""
    assert top_titles(server, "visual tokens", mode="bm25")
    catalog = server["index"] / "papers-catalog.sqlite3"
    catalog.write_bytes(b"\x13\x37garbage" * (catalog.stat().st_size // 9))
    repair = run_cli("check", "--repair", index=server["index"])
    assert repair.returncode == 0, repair.stdout + repair.stderr[-800:]
    for mode in ("bm25", "hybrid"):  # the server's catalog connection still points at the replaced file
        assert top_titles(server, "visual tokens", mode)
    later = server["root"] / "later.jsonl"  # another process writes the index: the server refreshes its catalog
    later.write_text(record("Zeppelin Route Planning Under Wind", "Zeppelins plan routes in wind.") + "\n")
    assert run_cli("ingest", str(later), index=server["index"]).returncode == 0
    for mode in ("bm25", "hybrid", "dense"):
        assert top_titles(server, "zeppelin route planning wind", mode)[0] == "Zeppelin Route Planning Under Wind"
    status, _, answer = call(
        server, "POST", "/v1/ask", {"question": "How do zeppelins plan routes?", "extractive": True}
    )
    assert status == 200, answer
    status, _, ready = call(server, "GET", "/readyz")
    assert status == 200 and ready["index"] == "open", ready


def test_readyz_says_what_it_cannot_serve_when_the_vector_files_are_damaged(server, tmp_path):
    folders = [p for p in server["index"].iterdir() if p.is_dir() and len(p.name) == 36]
    target = max(folders, key=lambda p: (p / "data_level0.bin").stat().st_size) / "header.bin"
    original = target.read_bytes()
    try:
        target.write_bytes(original[:40] + bytes([original[40] ^ 0xFF]) + original[41:])
        status, _, ready = call(server, "GET", "/readyz")
        assert status == 503 and "rag check --repair" in ready["index"] and "header.bin" in ready["index"], ready
        status, _, body = call(server, "GET", "/v1/search?q=visual+tokens&mode=dense")
        assert status == 503 and "rag check --repair" in body["error"]["message"], body
    finally:
        target.write_bytes(original)
    assert call(server, "GET", "/v1/search?q=visual+tokens&mode=dense")[0] == 200  # a success clears the failure
    assert call(server, "GET", "/readyz")[0] == 200


def test_a_dead_hosted_backend_is_an_error_the_openai_client_raises_on(server):
    """Before: 200 with finish_reason "stop" and the fallback text; the failure only in paper_rag.error."""
    import openai

    client = openai.OpenAI(base_url=f"{server['url']}/v1", api_key="none", max_retries=0)
    messages = [{"role": "user", "content": "Is there work that drops visual tokens partway through an MLLM?"}]
    with pytest.raises(openai.APIStatusError) as plain:
        client.chat.completions.create(model="paper-rag/hosted", messages=messages)
    assert plain.value.status_code == 502 and "backend" in str(plain.value)
    with pytest.raises(openai.APIError):
        for _chunk in client.chat.completions.create(model="paper-rag/hosted", messages=messages, stream=True):
            pass
    status, _, body = call(server, "POST", "/v1/chat/completions", {"model": "paper-rag/hosted", "messages": messages})
    assert status == 502 and body["error"]["code"] == "backend_error" and body["paper_rag"]["answer"], body
    ok = client.chat.completions.create(model="paper-rag/extractive", messages=messages)  # the rest still works
    assert ok.choices[0].message.content


def test_an_ingest_job_killed_with_the_server_is_reported_interrupted_after_restart(tmp_path, embedder, seed_corpus):
    """Before: GET /v1/ingest/{job} was 404 after the restart, and nothing said what had been ingested."""
    index = tmp_path / "index"
    make_library(index, embedder).ingest([write_jsonl(tmp_path / "six.jsonl", seed_corpus.papers[:6])], progress=False)
    papers = seed_corpus.papers[6:66]
    env = {"RAG_PROFILE": "extractive", "RAG_INDEX__BATCH_PAPERS": "4"}
    process, url, _ = start_rag_serve(REPO, index, tmp_path / "first.log", env, args=("--no-ui",))
    try:
        first = {"url": url}
        job = upload(first, "sixty.jsonl", "\n".join(record(p.title, p.abstract, p.paper_id) for p in papers))[2]
        queued = upload(first, "later.jsonl", record("Kelp Forest Acoustics", "Kelp forests hum at night."))[2]
        deadline = time.monotonic() + 240
        while job["progress"]["papers_done"] < 8 and job["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
            job = call(first, "GET", f"/v1/ingest/{job['job']}")[2]
        assert job["state"] == "running", job
        process.kill()  # SIGKILL: no shutdown code runs
        process.wait(30)
    finally:
        stop(process)

    process, url, _ = start_rag_serve(REPO, index, tmp_path / "second.log", env, args=("--no-ui",))
    try:
        second = {"url": url}
        status, _, got = call(second, "GET", f"/v1/ingest/{job['job']}")
        assert status == 200 and got["state"] == "interrupted", got
        done = got["progress"]["papers_done"]
        assert done >= 8 and got["progress"]["papers_total"] == 60
        assert f"{done} of the 60 papers it had to embed were committed and stay in the index" in got["error"]
        assert "upload the files again, or run: rag ingest " in got["error"]
        status, _, later = call(second, "GET", f"/v1/ingest/{queued['job']}")
        assert later["state"] == "interrupted" and "nothing from it was ingested" in later["error"], later
        indexed = call(second, "GET", "/v1/stats")[2]["papers"] - 6
        assert done <= indexed <= done + 4, (done, indexed)  # at most the batch being written when it died
        new = upload(second, "kelp.jsonl", record("Kelp Forest Acoustics", "Kelp forests hum at night."))[2]
        assert int(new["job"].split("-")[1]) > int(queued["job"].split("-")[1])  # job numbers go on
        assert finished(second, new)["state"] == "done"
    finally:
        stop(process)
    command = shlex.split(got["error"].split("run: ", 1)[1].split(" (papers already", 1)[0])
    assert command[:2] == ["rag", "ingest"] and all(Path(p).is_file() for p in command[2:]), command
    finish = run_cli(*command[1:], "--json", index=index, extra_env={"RAG_PROFILE": "extractive"})
    assert finish.returncode == 0, finish.stderr[-800:]
    report = json.loads(finish.stdout)
    assert report["papers_embedded"] == 60 - indexed, report  # what was committed is not embedded again


@pytest.mark.parametrize("key", ["clé-secrète", "key\twith-a-tab", "   "])
def test_an_api_key_that_is_not_printable_ascii_is_refused_at_start_in_one_line(server, key):
    result = run_cli("serve", "--port", str(free_port()), index=server["index"],
                     extra_env={"RAG_API_KEY": key, "RAG_PROFILE": "extractive"}, timeout=120)  # fmt: skip
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr[-800:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "$RAG_API_KEY" in lines[0] and "ASCII" in lines[0], result.stderr
    assert key.strip() == "" or key not in result.stderr  # the key itself is never printed
