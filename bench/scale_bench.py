"""Scale benchmark (issue 24): one command, every figure measured in the same run; JSON + Markdown + PNG.

    .venv/bin/python bench/scale_bench.py                       # 1k, 10k, 100k papers (about 80 min on 2 cores)
    .venv/bin/python bench/scale_bench.py --sizes 1000,10000 --work /tmp/scale-work

For each size, a synthetic corpus in the arXiv snapshot format (`bench/synth_corpus.py`: real abstract
sentences recombined, real titles spliced), then, each step in its own process:

1. `scale:N` - ingest into a fresh index (default settings): papers/s, peak RSS, index size on disk;
   for real-vector sizes, the raw encoder given again the very calls ingest made to it (a seeded
   sample, --raw-sample texts), right after, in the same process: ingest ÷ raw encoder; a no-op
   re-ingest in-process; hybrid and dense search p50/p95 over 50 golden questions; extractive answers
   (`rag ask --extractive`: rag.Assistant with answer.mode extractive, answer.judge_model null) and
   default-profile answers (the judge model reads where the statistics are unsure).
2. `cli:N` - what a user runs in a new process: `rag ingest` of the same unchanged file, `rag check`.
3. `server:N` - `chroma run --path INDEX` on 127.0.0.1, this project as its client (`index.server`):
   hybrid and dense search, extractive answers, the server's peak RSS. The server is always stopped.
The index is deleted once measured.

Vectors: sizes up to --real-up-to (default 10,000) are embedded by MiniLM during ingest. Larger ones
would take many hours on 2 CPU cores, so their chunk and sentence vectors are composed from a pool of real
sentence vectors when --pool holds them (made on a GPU: `bench/synth_corpus.py --pool-texts POOL`, then
`bench/gpu_vectors.py embed POOL MODEL_DIR POOL`), else stand-ins: the real model's identity and
tokenizer, a seeded random unit vector per text. Parsing, chunking with both tokenizers, Chroma's
writes and the BM25 catalog run for real either way, and every search embeds the question with the
real model. For those sizes the report derives ingest with MiniLM from the raw encoder's measured rate.

The default answer mode is timed on each size's index (--default-answers questions) and, beside it,
read from an evaluation report on the built-in corpus (--default-answer-report). --with-baselines adds
the built-in corpus (`bench/ingest_bench.py`) and the LlamaIndex quickstart comparison
(`bench/quickstart_baseline.py`). --append adds sizes to an earlier run's scale.json (kept with its
machine record and, unless measured again, its baselines).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gpu_vectors import StandInEmbedder  # noqa: E402
from quickstart_baseline import golden_questions, measure_search, percentile, result_row  # noqa: E402

from rag.chunking import split_sentences  # noqa: E402
from rag.config import load_settings  # noqa: E402
from rag.library import Library  # noqa: E402

BIG, BIG_BATCH_PAPERS = 50_000, 256


class ComposedEmbedder(StandInEmbedder):
    """Chunk vectors as the normalised mean of known sentence vectors; tokenizers from the real model."""

    def __init__(self, base, table: dict[str, np.ndarray]) -> None:
        super().__init__(base)
        self._table = table
        self.unknown = 0

    def _vector(self, text: str) -> np.ndarray:
        body = text.split("\n", 1)[-1]  # the title line is synthetic; its words are in the BM25 index
        found = [self._table[k] for k in (" ".join(s.split()) for s in split_sentences(body)) if k in self._table]
        if not found:
            self.unknown += 1
            seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "little")
            vector = np.random.default_rng(seed).standard_normal(self.dimension).astype(np.float32)
        else:
            vector = np.mean(found, axis=0)
        return vector / np.linalg.norm(vector)

    def embed(self, texts):
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts]).astype(np.float32)


def load_pool_table(pool: Path, library: Library) -> dict[str, np.ndarray]:
    """Pool sentence -> vector; vectors made elsewhere (a GPU) are used, else made here once and kept."""
    with gzip.open(pool / "texts.json.gz", "rt", encoding="utf-8") as handle:
        texts = json.load(handle)
    parts = sorted(pool.glob("vectors-*.npy"))
    if parts:
        matrix = np.concatenate([np.load(p).astype(np.float32) for p in parts])
    else:
        started = time.perf_counter()
        matrix = library.embedder.embed(texts)
        np.save(pool / "vectors-00.npy", matrix.astype(np.float16))
        seconds = time.perf_counter() - started
        info = {"texts": len(texts), "seconds": round(seconds, 2), "texts_per_s": round(len(texts) / seconds, 1)}
        info |= {"device": f"cpu ({library.embedder.backend})", "weights_dtype": library.embedder.precision}
        (pool / "embed.json").write_text(json.dumps(info, indent=2))
    if len(matrix) != len(texts):
        raise SystemExit(f"{len(texts)} pool texts but {len(matrix)} vectors in {pool}")
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return dict(zip(texts, matrix, strict=True))


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def time_searches(library: Library, questions: list[str], mode: str, k: int = 10) -> dict:
    library.search("warm-up", k=k, mode=mode)
    latencies = []
    for question in questions:
        started = time.perf_counter()
        library.search(question, k=k, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(latencies), 1), "p95_ms": round(percentile(latencies, 95), 1)}


# --- one synthetic size, in its own process ------------------------------------------------------------


class RecordingEmbedder:
    """The real embedder, unchanged; remembers every text ingest gave it (for the raw-encoder measure)."""

    def __init__(self, base) -> None:
        self._base = base
        self.calls: list[tuple[list[str], float]] = []  # (texts, seconds) of each call ingest made

    def __getattr__(self, name):
        return getattr(self._base, name)

    def embed(self, texts):
        started = time.perf_counter()
        vectors = self._base.embed(texts)
        self.calls.append((list(texts), time.perf_counter() - started))
        return vectors


def rag_cli(index: Path, *args: str, timeout: float = 900) -> dict:
    """One `rag` command in a new process: wall seconds and its --json output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "rag.cli", *args, "--index", str(index), "--json"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "rc": None, "output": {"timed_out_after_s": timeout}}
    wall = time.perf_counter() - started
    try:
        output = json.loads(done.stdout)
    except json.JSONDecodeError:
        output = {"stdout": done.stdout[-500:], "stderr": done.stderr[-500:]}
    return {"wall_s": round(wall, 2), "rc": done.returncode, "output": output}


def size_settings(index: Path, extra: dict | None = None):
    return load_settings(overrides={"index.path": str(index)} | (extra or {}), env={})


def time_answers(library: Library, questions: list[str]) -> dict:
    """`rag ask` through rag.Assistant, in the library's answer mode (after one warm-up answer: model loads)."""
    from rag.answering import Assistant

    assistant = Assistant.from_config(library=library)
    assistant.ask("warm-up: what is a visual token?")
    latencies = [assistant.ask(q).timings["total_ms"] for q in questions]
    return {"p50_ms": round(statistics.median(latencies), 1), "p95_ms": round(percentile(latencies, 95), 1)}


class EtaLog:
    """What `rag ingest` tells the user while it runs (the up-front estimate, each batch's time left), kept to be
    compared with how long the ingest then took."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int, int, float | None]] = []  # (seconds, done, total, seconds_left)
        self.said: dict | None = None
        self._shown = -1

    def estimate(self, estimate) -> None:
        print(f"    {estimate.describe()}", flush=True)
        self.said = {"seconds": round(estimate.seconds, 1), "texts": estimate.texts, "basis": estimate.basis}

    def progress(self, update) -> None:
        self.points.append((update.seconds, update.done, update.total, update.seconds_left))
        tenth = 10 * update.done // max(1, update.total)
        if tenth != self._shown:
            self._shown = tenth
            print(f"    {update.describe()}", flush=True)

    def accuracy(self) -> dict:
        """At each share of the papers done, the time left the bar showed ÷ the time it then took (1.0 = exact);
        the up-front estimate ÷ the whole embedding phase."""
        if not self.points:
            return {}
        end = self.points[-1][0]
        result: dict = {"embedding_s": round(end, 1)}
        if self.said is not None:
            result["estimate_s"] = self.said["seconds"]
            result["estimate_basis"] = self.said["basis"]
            result["estimate_vs_actual"] = round(self.said["seconds"] / end, 3) if end else None
        shown = {}
        for share in (0.05, 0.1, 0.25, 0.5, 0.75):
            point = next((p for p in self.points if p[1] >= share * p[2]), None)
            if point is None or point[3] is None or end - point[0] <= 0:
                continue
            shown[f"{share:.0%}"] = round(point[3] / (end - point[0]), 3)
        result["eta_vs_actual"] = shown
        return result


def scale_one(
    papers: int, work: Path, pool: Path, vectors: str, raw_sample: int, answers: int, default_answers: int
) -> dict:
    from synth_corpus import find_scifact, load_pool, write_corpus

    corpus = work / f"synth-{papers}.jsonl"
    if not corpus.exists():
        write_corpus(load_pool(find_scifact()), papers, corpus)
    index = work / f"index-{papers}"
    shutil.rmtree(index, ignore_errors=True)
    # At the default 64 papers a batch, 10k stand-in papers went at about 40 papers/s on 2 busy cores
    # (100k: over 40 minutes, extrapolated); from 50k on, bigger batches (as this bench used before).
    # Only the commit size differs: no-op re-ingest, check and search run with the default settings.
    batch = BIG_BATCH_PAPERS if papers >= BIG and vectors != "real" else None
    settings = size_settings(index, {"index.batch_papers": batch} if batch else None)
    real = Library(settings).embedder
    if vectors == "real":
        real.embed(["warm-up"])  # model load is not ingest
        embedder = RecordingEmbedder(real)
    elif vectors == "composed":
        embedder = ComposedEmbedder(real, load_pool_table(pool, Library(settings)))
    else:
        from noop_reingest import HashedVectors

        embedder = HashedVectors(real)
    library = Library(settings, embedder)
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    eta = EtaLog()
    report = library.ingest([corpus], progress=eta.progress, on_estimate=eta.estimate)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store = library.store()
    sentences = len(store.sentence_texts())
    texts = report.chunks_embedded + sentences
    row: dict = {
        "papers": report.papers_embedded,
        "vectors": vectors,
        "batch_papers": settings.index.batch_papers,
        "chunks": report.chunks_embedded,
        "sentences": sentences,
        "corpus_mb": round(corpus.stat().st_size / 1e6, 1),
        "ingest_s": round(report.seconds, 1),
        "ingest_embed_s": round(report.embed_seconds, 1),
        "ingest_papers_per_s": round(report.papers_embedded / report.seconds, 1),
        "ingest_texts_per_s": round(texts / report.seconds, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "rss_before_ingest_mb": round(rss_before_mb, 1),
    }
    if vectors == "real":  # the encoder alone, given again the very calls ingest made (a seeded sample of them)
        import random

        calls = list(embedder.calls)
        random.Random(7).shuffle(calls)
        seen = sum(len(texts) for texts, _ in calls)
        replayed, during_ingest_s, started = 0, 0.0, time.perf_counter()
        for texts, seconds in calls:
            real.embed(texts)
            replayed += len(texts)
            during_ingest_s += seconds
            if raw_sample and replayed >= raw_sample:
                break
        raw_s = time.perf_counter() - started
        # The raw encoder's time for all of ingest's calls: ingest's own time in them, scaled by how the
        # sampled calls compare (chunk and sentence calls differ in length, so a plain rate would be biased).
        raw_all_s = report.embed_seconds * raw_s / during_ingest_s
        row["raw_encoder"] = {
            "texts": replayed,
            "of": seen,
            "calls": len(embedder.calls),
            "seconds": round(raw_s, 1),
            "same_calls_during_ingest_s": round(during_ingest_s, 1),
            "all_calls_estimated_s": round(raw_all_s, 1),
        }
        row["raw_texts_per_s"] = round(seen / raw_all_s, 1)
        row["ingest_vs_raw"] = round(raw_all_s / report.seconds, 3)
    if vectors == "composed":
        row["unknown_texts"] = embedder.unknown
    row["eta"] = eta.accuracy()
    noop = library.ingest([corpus], progress=False)
    assert noop.papers_embedded == 0, noop
    row["noop_inprocess_s"] = round(noop.seconds, 3)
    row["index_mb"] = round(folder_mb(index), 1)
    library = Library(settings, real)  # questions are embedded by the real model
    questions = [q for q, _ in golden_questions()][:50]
    row["dense"] = time_searches(library, questions, "dense")
    row["hybrid"] = time_searches(library, questions, "hybrid")
    extractive = library.derive({"answer.mode": "extractive", "answer.judge_model": None})
    row["extractive"] = time_answers(extractive, questions[:answers])
    if default_answers:  # the default profile: extractive, with the judge model reading where it is unsure
        row["default"] = time_answers(library, questions[:default_answers])
        row["default"]["judge_model"] = settings.answer.judge_model
    return row


def scale_cli(papers: int, work: Path) -> dict:
    """What a user runs in a new process: `rag ingest` of the unchanged file, `rag check`."""
    index, corpus = work / f"index-{papers}", work / f"synth-{papers}.jsonl"
    noop = rag_cli(index, "ingest", str(corpus))
    assert noop["rc"] == 0 and noop["output"].get("papers_embedded") == 0, noop
    check = rag_cli(index, "check", timeout=900)
    result = {"noop_cli_s": noop["wall_s"], "noop_cli_ingest_s": noop["output"].get("seconds")}
    result |= {"check_cli_s": check["wall_s"], "check_rc": check["rc"]}
    if check["wall_s"] is None:
        result["check_cli_s"] = f"> {check['output']['timed_out_after_s']} (stopped)"
    result["check_ok"] = check["output"].get("ok")
    result["check_findings"] = [f.get("problem", "")[:160] for f in check["output"].get("findings", [])]
    result["check_seconds"] = check["output"].get("seconds")
    return result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _client_searches(job: tuple[str, int, list[str], float]) -> tuple[list[float], float]:
    """One client process: its own Library on the server, its searches timed from a common start."""
    client, port, questions, start_at = job
    library = Library(size_settings(Path(client), {"index.server": f"http://127.0.0.1:{port}"}))
    library.search("warm-up", k=10, mode="hybrid")
    time.sleep(max(0.0, start_at - time.time()))
    latencies, started = [], time.perf_counter()
    for question in questions:
        t0 = time.perf_counter()
        library.search(question, k=10, mode="hybrid")
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies, time.perf_counter() - started


def concurrent_clients(client: Path, port: int, questions: list[str], counts=(1, 2, 4)) -> list[dict]:
    """Users at once against one `chroma run`: that many client processes (each its own model, as separate app
    servers would be), each searching every question (rotated), all starting together."""
    import multiprocessing

    rows = []
    context = multiprocessing.get_context("spawn")
    for count in counts:
        start_at = time.time() + 20 + 5 * count  # after every client has loaded its model
        jobs = [(str(client), port, questions[i:] + questions[:i], start_at) for i in range(count)]
        with context.Pool(count) as pool:
            results = pool.map(_client_searches, jobs)
        latencies = [ms for lat, _ in results for ms in lat]
        wall = max(w for _, w in results)
        rows.append(
            {
                "clients": count,
                "searches_per_s": round(len(latencies) / wall, 1),
                "p50_ms": round(statistics.median(latencies), 1),
                "p95_ms": round(percentile(latencies, 95), 1),
            }
        )
        print(f"    {count} concurrent client(s): {rows[-1]}", flush=True)
    return rows


def scale_server(papers: int, work: Path, answers: int) -> dict:
    """The same index served by `chroma run`; this project as its client (`index.server`)."""
    import urllib.request

    index = work / f"index-{papers}"
    client = work / f"client-{papers}"  # the client's own folder: BM25 catalog and ingest lock
    shutil.rmtree(client, ignore_errors=True)
    client.mkdir()
    for item in index.iterdir():  # the catalog travels with the client; Chroma's files stay the server's
        if item.is_file() and item.name != "chroma.sqlite3" and not item.name.startswith("."):
            shutil.copy2(item, client / item.name)
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    log = (work / f"chroma-{papers}.log").open("w")
    server = subprocess.Popen(
        [str(chroma), "run", "--path", str(index), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        started = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    tail = (work / f"chroma-{papers}.log").read_text()[-800:]
                    raise SystemExit(f"chroma run did not come up: {tail}") from None
                time.sleep(0.5)
        up_s = time.perf_counter() - started
        settings = size_settings(client, {"index.server": f"http://127.0.0.1:{port}"})
        library = Library(settings)
        questions = [q for q, _ in golden_questions()][:50]
        started = time.perf_counter()
        library.search("first search: opens the collection, checks the catalog", k=10, mode="hybrid")
        first_s = time.perf_counter() - started
        result = {
            "server_start_s": round(up_s, 2),
            "server_first_search_s": round(first_s, 2),
            "server_dense": time_searches(library, questions, "dense"),
            "server_hybrid": time_searches(library, questions, "hybrid"),
        }
        extractive = library.derive({"answer.mode": "extractive", "answer.judge_model": None})
        result["server_extractive"] = time_answers(extractive, questions[:answers])
        result["server_concurrent"] = concurrent_clients(client, port, questions)
        with open(f"/proc/{server.pid}/status") as status:  # the server's own peak memory
            hwm = next(line for line in status if line.startswith("VmHWM"))
        result["server_peak_rss_mb"] = round(int(hwm.split()[1]) / 1024, 1)
        return result
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log.close()
        shutil.rmtree(client, ignore_errors=True)


# --- this project on the built-in corpus, beside the quickstart ----------------------------------------


def ours_on_builtin(work: Path, ask: int) -> dict:
    index = work / "builtin-index"
    shutil.rmtree(index, ignore_errors=True)  # a fresh index: a kept --work folder would make this a no-op
    library = Library(load_settings(overrides={"index.path": str(index)}, env={}))
    library.embedder.embed(["warm-up"])  # model load is not ingest
    report = library.ingest(progress=False)
    questions = golden_questions()
    searched = measure_search(lambda q: [h.title for h in library.search(q, k=5)], questions)
    asked = []
    if ask:
        from rag.answering import Assistant

        assistant = Assistant.from_config(library=library)
        assistant.ask("warm-up: what is a visual token?")
        for question, _ in questions[:ask]:
            timings = assistant.ask(question).timings
            asked.append({"first_token_s": timings["first_token_ms"] / 1000, "total_s": timings["total_ms"] / 1000})
    name = "paper-rag (default settings)"
    return result_row(name, report.papers_embedded, report.chunks_embedded, report.seconds, searched, asked)


# --- the orchestrating process ---------------------------------------------------------------------------


def child(*args: str) -> dict:
    """Run one step in a fresh process (its peak RSS is its own); it prints one JSON object last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def tolerant(me: list[str], step: str) -> dict:
    """A step whose failure is recorded, not fatal: the sizes after it still run."""
    try:
        return child(*me, "--step", step)
    except (subprocess.CalledProcessError, json.JSONDecodeError, IndexError) as exc:
        return {f"{step.partition(':')[0]}_error": str(exc)[-300:]}


def ask_summary(asked: list[dict]) -> dict:
    if not asked:
        return {}
    return {
        "first_token_s_median": round(statistics.median(a["first_token_s"] for a in asked), 2),
        "total_s_median": round(statistics.median(a["total_s"] for a in asked), 2),
        "questions": len(asked),
    }


def vectors_for(size: int, real_up_to: int, pool: Path) -> str:
    if size <= real_up_to:
        return "real"
    if (pool / "texts.json.gz").exists() and any(pool.glob("vectors-*.npy")):
        return "composed"
    return "stand-in"


def machine_load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg_1_5_15": [one, five, fifteen]}


def default_answer_figures(report: Path) -> dict | None:
    """The default answer mode (extractive + the 1.5B judge model) from an evaluation report, not re-run."""
    if not report.is_file():
        return None
    data = json.loads(report.read_text())
    answer = data["summary"]["answer"]
    meta = data.get("meta", {})
    return {
        "source": str(report),
        "finished": meta.get("finished"),
        "items": answer.get("items"),
        "judge_model": data.get("config", {}).get("answer", {}).get("judge_model"),
        "p50_ms": answer.get("p50_total_ms"),
        "p95_ms": answer.get("p95_total_ms"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    parser.add_argument(
        "--pool",
        type=Path,
        default=Path.home() / ".cache" / "paper-rag" / "scale-pool",
        help="sentence pool with vectors (texts.json.gz, vectors-*.npy); without it, stand-in vectors",
    )
    parser.add_argument("--real-up-to", type=int, default=10000, help="sizes up to this are embedded by MiniLM")
    parser.add_argument("--raw-sample", type=int, default=1500, help="texts the raw encoder re-embeds (0 = all)")
    parser.add_argument("--answers", type=int, default=20, help="extractive answers timed per size")
    parser.add_argument(
        "--default-answers", type=int, default=10, help="default-profile answers (judge model on) timed per size"
    )
    parser.add_argument("--no-server", action="store_true", help="skip the Chroma client/server measure")
    parser.add_argument(
        "--default-answer-report",
        type=Path,
        default=REPO / "bench" / "results" / "eval-test-default" / "report.json",
        help="evaluation report whose answer latency stands for the default (judged) answer mode",
    )
    parser.add_argument("--ask", type=int, default=5, help="baseline: questions answered end to end by each system")
    parser.add_argument("--with-baselines", action="store_true", help="also the built-in corpus and quickstart steps")
    parser.add_argument("--append", action="store_true", help="add these sizes to OUT/scale.json's (a second run)")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: scale:N | cli:N | server:N | ours
    parser.add_argument("--vectors", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="rag-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.step:
        kind, _, size = args.step.partition(":")
        if kind == "scale":
            result = scale_one(
                int(size), work, args.pool, args.vectors, args.raw_sample, args.answers, args.default_answers
            )
        elif kind == "cli":
            result = scale_cli(int(size), work)
        elif kind == "server":
            result = scale_server(int(size), work, args.answers)
        else:
            result = ours_on_builtin(work, args.ask)
        print(json.dumps(result))
        return

    import torch

    bench_started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    me = ["bench/scale_bench.py", "--work", str(work), "--pool", str(args.pool)]
    me += ["--ask", str(args.ask), "--raw-sample", str(args.raw_sample), "--answers", str(args.answers)]
    me += ["--default-answers", str(args.default_answers)]
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "start": machine_load(),
        },
        "default_answer": default_answer_figures(args.default_answer_report),
    }
    if args.with_baselines:
        print("built-in corpus: ingest vs raw encode ...", file=sys.stderr)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        subprocess.run([sys.executable, "bench/ingest_bench.py", "--out", str(args.out)], cwd=REPO, env=env, check=True)
        results["builtin"] = json.loads((args.out / "ingest.json").read_text())
        print("this project vs the LlamaIndex quickstart ...", file=sys.stderr)
        try:
            ours = child(*me, "--step", "ours")
            theirs = child("bench/quickstart_baseline.py", "--ask", str(args.ask))
        except subprocess.CalledProcessError as exc:  # e.g. the bench extra not installed: the sizes still run
            results["baseline_error"] = f"{' '.join(map(str, exc.cmd[1:]))} failed (exit {exc.returncode})"
            print(f"  skipped: {results['baseline_error']}", file=sys.stderr)
        else:
            for side in (ours, theirs):
                side["ask_summary"] = ask_summary(side.pop("ask"))
            results["baseline"] = {"ours": ours, "quickstart": theirs}
    results["scale"] = []
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.append and (args.out / "scale.json").exists():  # an earlier run's sizes, kept with its machine record
        earlier = json.loads((args.out / "scale.json").read_text())
        results["runs"] = earlier.get("runs") or [
            {
                "sizes": [r["papers"] for r in earlier["scale"]],
                **{k: earlier["machine"].get(k) for k in ("start", "end")},
            }
        ]
        results["scale"] = earlier["scale"]
        for key in ("builtin", "baseline"):  # measured by the earlier run, unless this one measures them again
            if key in earlier and key not in results:
                results[key] = earlier[key]
    for size in sizes:
        vectors = vectors_for(size, args.real_up_to, args.pool)
        print(f"synthetic corpus of {size} papers ({vectors} vectors) ...", file=sys.stderr)
        row = child(*me, "--vectors", vectors, "--step", f"scale:{size}")
        print(f"  {size}: new-process no-op ingest and rag check ...", file=sys.stderr)
        row |= tolerant(me, f"cli:{size}")
        if not args.no_server:
            print(f"  {size}: the same index through chroma run ...", file=sys.stderr)
            row |= tolerant(me, f"server:{size}")
        shutil.rmtree(work / f"index-{size}", ignore_errors=True)  # measured; big indexes are not kept
        results["scale"].append(row)
        (args.out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")  # keep what is done
    embedded = args.pool / "embed.json"  # where and how fast the pool's sentences were embedded
    if any(row["vectors"] == "composed" for row in results["scale"]) and embedded.exists():
        results["pool_vectors"] = json.loads(embedded.read_text())
    results["machine"]["end"] = machine_load()
    results["wall_s"] = round(time.perf_counter() - bench_started, 1)
    if "runs" in results:
        this = {"sizes": sizes, "wall_s": results["wall_s"]}
        results["runs"].append(this | {k: results["machine"][k] for k in ("start", "end")})
    (args.out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    from scale_report import write_report

    print(write_report(results, args.out))


if __name__ == "__main__":
    main()
