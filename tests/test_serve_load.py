"""`rag serve` under load on 127.0.0.1: 20 clients for 60 s, each alternating GET /v1/search and an
extractive POST /v1/ask. No request may fail; p50/p95 per endpoint and the server's memory go to
test-artifacts/serve-load.json. Bounded: the clients stop by themselves after 60 s."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.servers import LOAD_QUESTIONS as QUESTIONS
from tests.servers import listening_addresses, rss_mb, start_rag_serve, stop

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("RAG_TEST_ARTIFACTS", REPO / "test-artifacts"))
CLIENTS = 20
SECONDS = 60


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))] if ordered else float("nan")


@pytest.fixture(scope="module")
def server(seed_library, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-load")
    index = root / "index"
    shutil.copytree(seed_library.settings.index_path, index)
    process, url, port = start_rag_serve(REPO, index, root / "serve.log", {"RAG_PROFILE": "extractive"})
    yield {"url": url, "port": port, "process": process}
    stop(process)


def test_twenty_clients_for_a_minute_on_search_and_extractive_ask_without_errors(server):
    assert listening_addresses(server["port"]) == {"0100007F"}  # 127.0.0.1 only
    config = json.loads(urllib_get(server, "/config"))
    assert config["analytics_enabled"] is False  # the chat page does not phone home
    latencies: dict[str, list[float]] = {"search": [], "ask": []}
    errors: list[str] = []
    memory: list[tuple[float, float]] = []
    started = time.monotonic()
    stop_at = started + SECONDS
    host, port = "127.0.0.1", server["port"]

    def client(number: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)  # one keep-alive connection per client
        i = number
        while time.monotonic() < stop_at:
            question = QUESTIONS[i % len(QUESTIONS)]
            kind = "search" if i % 2 == 0 else "ask"
            i += 1
            t0 = time.monotonic()
            try:
                if kind == "search":
                    connection.request("GET", f"/v1/search?{urllib.parse.urlencode({'q': question, 'k': 5})}")
                else:
                    body = json.dumps({"question": question})
                    connection.request("POST", "/v1/ask", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = json.loads(response.read())
                if response.status != 200:
                    errors.append(f"{kind} {response.status}: {payload}"[:300])
                elif kind == "search" and not payload["results"]:
                    errors.append(f"search without results: {question}")
                elif kind == "ask" and not (payload["citations"] or payload["refused"]):
                    errors.append(f"ask without citations: {payload['answer'][:200]}")
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                errors.append(f"client {number} {kind}: {type(exc).__name__}: {exc}"[:300])
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
            latencies[kind].append(time.monotonic() - t0)
        connection.close()

    def sample_memory() -> None:
        while time.monotonic() < stop_at + 1:
            memory.append((time.monotonic() - started, rss_mb(server["process"].pid)))
            time.sleep(1)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    threads.append(threading.Thread(target=sample_memory))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 120)
    middle = [mb for t, mb in memory if SECONDS / 3 <= t < 2 * SECONDS / 3]
    late = [mb for t, mb in memory if t >= 2 * SECONDS / 3]
    figures = {
        "clients": CLIENTS,
        "seconds": SECONDS,
        "errors": len(errors),
        **{
            kind: {
                "requests": len(values),
                "per_s": round(len(values) / SECONDS, 2),
                "p50_ms": round(1000 * statistics.median(values), 1) if values else None,
                "p95_ms": round(1000 * _percentile(values, 0.95), 1),
            }
            for kind, values in latencies.items()
        },
        "rss_mb_middle_max": round(max(middle), 1) if middle else None,
        "rss_mb_late_max": round(max(late), 1) if late else None,
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "serve-load.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    assert all(not t.is_alive() for t in threads)  # every client stopped by itself
    assert not errors, errors[:5]
    assert len(latencies["search"]) >= CLIENTS and len(latencies["ask"]) >= CLIENTS, figures
    assert middle and late and max(late) - max(middle) < 64, figures  # no growth trend once warm


def urllib_get(server, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{server['url']}{path}", timeout=30) as response:
        return response.read().decode()
