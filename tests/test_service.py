"""The service layer: the model's gate and queue, sessions, the upload area, ingest jobs beside searches,
and assistants that share one set of loaded parts. The gate, sessions and uploads are exercised with
real threads and files; the service itself over a real Chroma index with the real MiniLM model."""

from __future__ import annotations

import gc
import io
import json
import shutil
import threading
import time

import pytest

from rag.errors import ConfigError, RagError
from rag.service import Abandoned, Busy, ModelGate, Service, Sessions, UploadArea, UploadRefused
from rag.types import Answer
from tests.conftest import DYVTE_TITLE, make_library, run_cli

QUESTION = "Is there work that drops all visual tokens partway through an MLLM?"


# --- the gate -------------------------------------------------------------------------------------


def test_gate_admits_slots_then_queue_then_refuses_at_once():
    gate = ModelGate("the local model", slots=1, queue_size=1, typical_s=4.0)
    first = gate.acquire()
    admitted = threading.Event()

    def waiter() -> None:
        gate.release(gate.acquire())  # waits in the queue until the first is done
        admitted.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 5
    while gate.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gate.status() == {"slots": 1, "active": 1, "waiting": 1, "queue_size": 1, "served": 1, "abandoned": 0,
                             "refused": 0}  # fmt: skip
    started = time.monotonic()
    with pytest.raises(Busy) as refused:
        gate.acquire()
    assert time.monotonic() - started < 0.5  # refused at once, not after a timeout
    assert "1 are waiting" in str(refused.value) and refused.value.retry_after_s == 8  # 2 answers of ~4 s
    assert not admitted.is_set()
    gate.release(first)
    thread.join(5)
    assert admitted.is_set() and gate.status()["active"] == 0


def test_a_waiter_whose_client_left_is_dropped_and_passes_the_slot_on():
    gate = ModelGate("the local model", slots=1, queue_size=3)
    first = gate.acquire()
    gone = threading.Event()
    outcomes: list[str] = []

    def leaving() -> None:
        try:
            gate.acquire(gone.is_set)
            outcomes.append("served")
        except Abandoned:
            outcomes.append("dropped")

    def staying() -> None:  # no way to ask (the chat page, the CLI): waits without a timeout
        gate.release(gate.acquire())
        outcomes.append("answered")

    threads = [threading.Thread(target=leaving), threading.Thread(target=staying)]
    for thread in threads:
        thread.start()
        deadline = time.monotonic() + 5
        while gate.waiting < threads.index(thread) + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    gone.set()
    threads[0].join(5)
    assert outcomes == ["dropped"] and gate.status()["waiting"] == 1 and gate.status()["abandoned"] == 1
    gate.release(first)
    threads[1].join(5)
    assert outcomes == ["dropped", "answered"] and gate.status()["served"] == 2 and gate.active == 0
    with pytest.raises(Abandoned):  # a client gone before its turn came never takes the slot either
        gate.acquire(lambda: True)
    assert gate.status()["served"] == 2 and gate.status()["abandoned"] == 2


def test_held_stream_frees_its_slot_when_finished_closed_or_dropped():
    gate = ModelGate("m", slots=1, queue_size=0)
    assert list(gate.hold(iter("abc"))) == ["a", "b", "c"] and gate.active == 0
    held = gate.hold(iter("abc"))
    next(held)
    with pytest.raises(Busy):
        gate.hold(iter("x"))
    held.close()
    assert gate.active == 0
    next(gate.hold(iter("abc")))  # dropped half-read: the garbage collector frees the slot
    gc.collect()
    assert gate.active == 0

    def failing():
        yield "a"
        raise RagError("model failed")

    with pytest.raises(RagError):
        list(gate.hold(failing()))
    assert gate.active == 0


def test_sessions_keep_recent_turns_and_forget_the_least_recently_used():
    sessions = Sessions(limit=2)
    answer = Answer("q", "q", "a [1].", False, 1.0, [], [], "extractive", {})
    for _ in range(12):
        sessions.add("one", answer)
    sessions.add("two", answer)
    sessions.history("one")  # "one" is now the most recently used
    sessions.add("three", answer)
    assert len(sessions.history("one")) == 10 and sessions.history("two") == [] and len(sessions) == 2
    sessions.reset("one")
    assert sessions.history("one") == []


def test_upload_area_sanitises_names_and_refuses_types_and_sizes(tmp_path):
    area = UploadArea(tmp_path / "uploads", max_mb=0.001)  # 1 kB
    kept = area.save("../../etc/my papers (1).jsonl", io.BytesIO(b'{"title": "t", "abstract": "a"}\n'))
    assert kept.name == "my_papers__1_.jsonl" and kept.parent.parent == tmp_path / "uploads"
    assert kept.read_bytes().startswith(b'{"title"')
    with pytest.raises(UploadRefused, match="only .jsonl"):
        area.save("evil.exe", io.BytesIO(b"MZ"))
    with pytest.raises(UploadRefused) as big:
        area.save("big.jsonl", io.BytesIO(b"x" * 5000))  # streamed: refused mid-copy
    assert big.value.too_large
    kept_files = sorted(p.name for p in (tmp_path / "uploads").rglob("*") if p.is_file())
    assert kept_files == ["my_papers__1_.jsonl"]  # nothing half-written
    records = area.save_records([{"title": "T", "abstract": "A"}], "api.jsonl")
    assert json.loads(records.read_text()) == {"title": "T", "abstract": "A"}


def test_same_named_uploads_each_keep_their_own_bytes(tmp_path):
    """Before: the second `refs.jsonl` replaced the first in uploads/ while the first job waited."""
    area = UploadArea(tmp_path / "uploads", max_mb=1)
    first = area.save("refs.jsonl", io.BytesIO(b'{"title": "X", "abstract": "x"}\n'))
    second = area.save("refs.jsonl", io.BytesIO(b'{"title": "Y", "abstract": "y"}\n'))
    records = area.save_records([{"title": "Z", "abstract": "z"}], "refs.jsonl")
    assert len({first, second, records}) == 3 and {p.name for p in (first, second, records)} == {"refs.jsonl"}
    assert b'"X"' in first.read_bytes() and b'"Y"' in second.read_bytes() and b'"Z"' in records.read_bytes()


def test_job_records_outlive_the_jobs_queue_and_unfinished_ones_read_back_interrupted(tmp_path):
    """The records on disk, read by a new queue (as a restarted server does): the running job says what it
    committed and how to finish, the queued one that nothing ran, the finished one is as it was."""
    from rag.ingest import IngestProgress, IngestReport
    from rag.service.jobs import IngestJobs

    folder = tmp_path / "jobs"
    release = threading.Event()

    def run(paths, on_problem, progress):
        if paths[0].name == "quick.jsonl":
            return IngestReport()
        progress(IngestProgress(8, 20, 30, 2.0))  # two batches committed, then the server "dies"
        release.wait(10)
        return IngestReport()

    jobs = IngestJobs(run, lambda job: None, folder)
    quick = jobs.submit([tmp_path / "quick.jsonl"], ["quick.jsonl"])
    assert jobs.wait(quick, 10) and quick.state == "done"
    running = jobs.submit([tmp_path / "up loads" / "big.jsonl"], ["big.jsonl"])
    queued = jobs.submit([tmp_path / "later.jsonl"], ["later.jsonl"])
    deadline = time.monotonic() + 10
    while running.papers_done < 8 and time.monotonic() < deadline:
        time.sleep(0.01)

    again = IngestJobs(run, lambda job: None, folder)  # the next server's, over the same index
    got = again.get(running.job_id).to_json()
    assert got["state"] == "interrupted" and got["progress"]["papers_done"] == 8, got
    assert "8 of the 20 papers it had to embed were committed" in got["error"]
    assert f"rag ingest '{tmp_path / 'up loads' / 'big.jsonl'}'" in got["error"]
    assert again.get(queued.job_id).state == "interrupted" and "nothing from it" in again.get(queued.job_id).error
    assert again.get(quick.job_id).to_json()["report"] == quick.to_json()["report"]
    assert again.submit([tmp_path / "quick.jsonl"], ["quick.jsonl"]).job_id.startswith("ingest-4-")  # numbers go on
    release.set()


def test_local_models_share_one_slot_and_a_hosted_model_gets_llm_concurrency(tmp_path):
    from rag.config import load_settings

    local = Service(load_settings(overrides={"index.path": str(tmp_path), "llm.queue_size": 2}, env={}))
    one, other = local.gate(local.assistant()), local.gate(local.assistant("careful"))
    assert one is other and one.slots == 1 and one.queue_size == 2  # two GGUFs, one CPU: one answer at a time
    assert local.gate(local.assistant("extractive")) is None  # no model, no queue
    hosted = Service(load_settings(overrides={"index.path": str(tmp_path), "llm.backend": "openai",
                                              "llm.concurrency": 3}, env={}))  # fmt: skip
    assert hosted.gate(hosted.assistant(None, {"answer.mode": "generate"})).slots == 3
    judged = hosted.gate(hosted.assistant())  # the default judge model is local, whatever writes
    assert judged is not None and judged.slots == 1


# --- the service over a real index ------------------------------------------------------------------


@pytest.fixture
def service(seed_library, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(seed_library.settings.index_path, index)
    library = make_library(index, seed_library.embedder, **{"answer.mode": "extractive", "answer.judge_model": None})
    return Service(library.settings, library=library)


@pytest.mark.slow
def test_search_is_the_rag_search_json_object(service):
    result = service.search(QUESTION, k=3, mode="dense").to_json()
    cli = run_cli("search", QUESTION, "-k", "3", "--mode", "dense", "--json", index=service.settings.index_path)
    expected = json.loads(cli.stdout)
    assert result.keys() == expected.keys() and result["results"][0]["title"] == DYVTE_TITLE
    strip = [{k: v for k, v in r.items() if k != "score"} for r in result["results"]]
    assert strip == [{k: v for k, v in r.items() if k != "score"} for r in expected["results"]]


@pytest.mark.slow
def test_sessions_carry_follow_ups_and_assistants_share_loaded_parts(service):
    first = service.ask("Is there a benchmark for matching objects across images for MLLMs?", session="s1-abcdef")
    follow = service.ask("What accuracy does its model reach?", session="s1-abcdef")
    assert "follow-up to" in follow.standalone_question
    assert {c.paper_id for c in follow.citations} & {c.paper_id for c in first.citations}
    fresh = service.ask("What accuracy does its model reach?", session="s2-abcdef")
    assert fresh.standalone_question == "What accuracy does its model reach?"

    base = service.assistant()
    narrowed = service.assistant("extractive", {"retrieval.k": 3, "retrieval.mode": "bm25"})
    assert narrowed is service.assistant("extractive", {"retrieval.mode": "bm25", "retrieval.k": 3})
    assert narrowed is not base and narrowed.settings.retrieval.k == 3
    assert narrowed.library.embedder is base.library.embedder
    assert narrowed.library.store() is base.library.store()
    assert narrowed.library.retriever().keyword_index() is base.library.retriever().keyword_index()
    for k in range(1, 41):
        service.assistant(None, {"retrieval.k": k})
    assert len(service._assistants) <= 32
    with pytest.raises(ConfigError, match="unknown profile"):
        service.assistant("../../etc/passwd")


@pytest.mark.slow
def test_ingest_job_runs_beside_searches_which_see_the_paper_when_it_is_done(service):
    failures: list[str] = []
    searches = [0]
    stop = threading.Event()

    def search_all_along() -> None:
        while not stop.is_set():
            try:
                service.search("zebra stripes under infrared light", k=3)
                searches[0] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                failures.append(repr(exc))

    searcher = threading.Thread(target=search_all_along)
    searcher.start()
    records = [
        {"id": "zebra-1", "title": "Thermal zebra detection in night-time camera traps",
         "abstract": "We detect zebras in night-time camera-trap images with a thermal-aware detector. Stripes blur "
                     "under infrared light, so we train on synthetic thermal renderings of zebra herds."},
        {"abstract": "no title here"},
    ]  # fmt: skip
    job = service.ingest_records(records, "zebras.jsonl")
    second = service.ingest_records(
        [{"title": "Quantum kale greenhouse yields", "abstract": "Kale under quantum dots grows 12% more leaves."}],
        "kale.jsonl",
    )
    assert service.jobs.wait(job, 120) and service.jobs.wait(second, 120)
    stop.set()
    searcher.join(30)
    assert failures == [] and searches[0] > 0
    assert job.state == "done" and job.report.papers_embedded == 1
    assert len(job.problems) == 1 and "zebras.jsonl:2" in job.problems[0]
    assert second.started >= job.finished  # one job at a time, in order
    hits = service.search("zebra stripes under infrared light", k=3).hits
    assert hits[0].paper_id == "zebra-1"
    paper = service.paper("zebra-1")
    assert paper.title.startswith("Thermal zebra") and "thermal-aware detector" in paper.abstract
    assert paper.sources[0].endswith("/zebras.jsonl") and "/uploads/" in paper.sources[0]
    assert service.stats().papers == 277
