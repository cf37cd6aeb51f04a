"""One typed settings tree, loaded from rag/configs/default.yaml, a named profile, env vars and overrides.

Later layers win: default.yaml < rag/configs/<profile>.yaml < RAG_SECTION__KEY env vars < explicit
overrides (CLI flags). Unknown keys and wrong types are errors that name the key and the layer
that set it, so a typo never turns silently into a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag.errors import ConfigError

ENV_PREFIX = "RAG_"
PROFILE_ENV = "RAG_PROFILE"
CONFIG_DIR_ENV = "RAG_CONFIG_DIR"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CorpusSettings(_Section):
    paths: list[str] = Field(
        default_factory=list,
        description="Files or folders `rag ingest` reads when given no paths; empty means the built-in corpus.",
    )
    max_abstract_chars: int = Field(
        20_000,
        ge=1000,
        description="Longest abstract (or plain document) indexed, in characters; a longer one is cut at a sentence "
        "end and reported (arXiv abstracts stay under 2,000; a megabyte would take minutes to embed).",
    )


class SourcesSettings(_Section):
    pdf_full_text: bool = Field(
        False,
        description="PDFs: also index the body text (chunked like abstracts, under the same paper), not only the "
        "title and abstract of the first page; many more passages to embed.",
    )
    pdf_max_pages: int = Field(
        40, ge=1, description="PDFs with pdf_full_text: pages read at most (a thesis or a book stops here)."
    )


class IndexSettings(_Section):
    path: str = Field(
        "~/.local/share/rag/index",
        description="Folder of the persistent Chroma index; with `server` set, only the local BM25 catalog and "
        "ingest lock live here.",
    )
    server: str | None = Field(
        None,
        description="A Chroma server (`chroma run`) to hold the index instead of a local folder, as "
        "http://HOST:PORT (https:// for TLS); null = the local persistent index at `path`.",
    )
    collection: str = Field("papers", description="Chroma collection holding the chunks.")
    batch_papers: int = Field(
        64, ge=1, description="Papers embedded and committed together; a crash loses at most one batch of work."
    )
    sentence_vectors: bool = Field(
        True,
        description="Also embed every abstract sentence at ingest, so answers pick evidence without embedding "
        "at question time (about 2x the ingest time; extractive answers become ~5x faster).",
    )
    trust_fingerprints: bool = Field(
        True,
        description="Re-ingest: when every file given has the path, size, mtime and content hash (blake2b) it had "
        "at the last complete ingest of the same files and settings, and the index is as that run left it, "
        "report it unchanged without reading a record; false = always read and compare every record.",
    )


class EmbeddingSettings(_Section):
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model: the packaged all-MiniLM-L6-v2, a local folder, or a model name.",
    )
    backend: Literal["auto", "torch", "onnx", "openvino"] = Field(
        "auto",
        description="Encoder runtime: 'torch' (sentence-transformers), 'onnx' (onnxruntime) or 'openvino', both "
        "reading an ONNX export made once from the same weights; 'auto' = torch on a GPU, else onnx.",
    )
    precision: Literal["fp32", "int8"] = Field(
        "fp32",
        description="'int8' = dynamically quantized weights (onnx/openvino only): faster, slightly different "
        "vectors, so an index records its precision and refuses to mix them.",
    )
    threads: int | None = Field(None, ge=1, description="onnx/openvino encoder threads; None means all cores.")
    cache_dir: str = Field(
        "~/.cache/paper-rag/encoders",
        description="Where ONNX exports of the encoder are kept, each with the checksums it was made and verified by.",
    )
    batch_size: int = Field(64, ge=1, description="Texts per encoder call.")
    device: str = Field("auto", description="'auto' (GPU when present), 'cpu', 'cuda', 'cuda:1', ...")
    max_tokens: int | None = Field(
        None, ge=16, description="Embedder input limit in its own wordpieces; None means the model's own limit."
    )

    @model_validator(mode="after")
    def _int8_needs_onnx(self) -> EmbeddingSettings:
        if self.precision == "int8" and self.backend == "torch":
            raise ValueError("precision int8 needs backend onnx or openvino (or auto)")
        return self


class ChunkingSettings(_Section):
    chunk_tokens: int = Field(
        160, ge=16, description="Target passage size in tiktoken (cl100k) tokens; shorter abstracts stay whole."
    )
    overlap_tokens: int = Field(
        32, ge=0, description="Tokens of trailing sentences repeated at the next chunk's start."
    )
    prepend_title: bool = Field(True, description="Embed 'title + passage' so every chunk carries its paper's topic.")


class RetrievalSettings(_Section):
    k: int = Field(5, ge=1, description="Papers returned by a search.")
    mode: Literal["dense", "bm25", "hybrid"] = Field(
        "hybrid", description="'dense' (vectors), 'bm25' (keywords) or 'hybrid' (both, fused by reciprocal rank)."
    )
    candidates: int = Field(40, ge=1, description="Chunks fetched from the vector store before grouping into papers.")
    lexical_candidates: int = Field(40, ge=1, description="Papers fetched from BM25 before fusion.")
    rrf_k: float = Field(
        5.0,
        gt=0,
        description="Reciprocal rank fusion constant: score = sum of weight / (rrf_k + rank); small values trust "
        "each ranking's top more (5 was best on SciFact's train split, see README).",
    )
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in the fusion.")
    lexical_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in the fusion.")
    bm25_k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(0.4, ge=0, le=1, description="BM25 length normalisation.")
    title_weight: int = Field(2, ge=1, description="BM25 counts title words this many times (field weighting).")
    query_stopwords: Literal["lucene", "english"] = Field(
        "english",
        description="Words dropped from a question before BM25: 'lucene' (33) or 'english' (179, question words too).",
    )
    rerank: bool = Field(
        False,
        description="Re-score the fused candidates by their best single abstract sentence (stored sentence "
        "vectors), a third ranking in the fusion.",
    )
    rerank_depth: int = Field(30, ge=1, description="Fused candidates the reranker re-scores.")
    rerank_weight: float = Field(1.0, ge=0, description="Weight of the sentence ranking when rerank is on.")
    mmr_lambda: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Diversity: None is off; otherwise maximal marginal relevance, 1 = pure relevance, lower = more "
        "varied papers for multi-paper questions.",
    )
    passages: int = Field(2, ge=1, description="Best passages kept per paper in a result.")
    filters: list[str] = Field(
        default_factory=list,
        description="Default filters, as `rag search --where` takes them: source=FILE, date>=2024-01, KEY=VALUE.",
    )


class LLMSettings(_Section):
    backend: Literal["llamacpp", "openai", "llamaindex", "none"] = Field(
        "llamacpp",
        description="'llamacpp' (local GGUF), 'openai' (any OpenAI-compatible endpoint), 'llamaindex' (any "
        "LlamaIndex LLM class: llamaindex_class, llamaindex_kwargs) or 'none'.",
    )
    model: str = Field(
        "qwen2.5-coder-0.5b-instruct",
        description="llamacpp: a packaged model name (see `rag models`) or a .gguf path; openai: the model name.",
    )
    model_dir: str = Field(
        "~/.cache/paper-rag/models", description="Where packaged models are joined and verified once."
    )
    chat_format: str | None = Field(
        "chatml", description="llama.cpp chat format; None reads the template from the GGUF file."
    )
    n_ctx: int = Field(4096, ge=512, description="llama.cpp context window in tokens.")
    n_threads: int | None = Field(None, ge=1, description="llama.cpp threads; None means all cores.")
    n_batch: int = Field(512, ge=8, description="llama.cpp logical batch: prompt tokens submitted per decode call.")
    n_ubatch: int = Field(512, ge=8, description="llama.cpp physical batch: prompt tokens computed at once.")
    flash_attn: bool = Field(False, description="llama.cpp flash attention (measured in bench/speed.py).")
    prompt_cache: bool = Field(
        True,
        description="Keep the evaluated state of the prompt prefix that consecutive requests share (system prompt, "
        "instructions) on disk beside the model, so a new process reads only what changed.",
    )
    temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature; low stays near the evidence.")
    max_tokens: int = Field(200, ge=16, description="Most tokens generated for one answer.")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai: the endpoint, up to and including /v1.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai: the environment variable holding the API key (never logged or stored)."
    )
    timeout_s: float = Field(60.0, gt=0, description="openai: seconds to wait for the server before giving up.")
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="openai and llamaindex: retries when the server answers 429/502/503/504 (rate limit, "
        "overloaded), waiting its Retry-After (at most 10 s) or 0.5 s doubling.",
    )
    llamaindex_class: str = Field(
        "llama_index.llms.openai_like.OpenAILike",
        description="llamaindex: the LLM class as module.Class, e.g. llama_index.llms.ollama.Ollama; its package "
        "is an optional extra (see README, 'Use any LLM provider').",
    )
    llamaindex_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="llamaindex: keyword arguments for the class (model, api_base, base_url, request_timeout, ...); "
        "the API key comes from api_key_env, never from here.",
    )
    concurrency: int = Field(
        4,
        ge=1,
        description="openai and llamaindex: answers generated at once in one process (the chat page and the HTTP "
        "API share them); a local llamacpp model always answers one at a time.",
    )
    queue_size: int = Field(
        8,
        ge=0,
        description="Answers that may wait for the model; one more is refused at once ('busy, N waiting', HTTP 503 "
        "with Retry-After) instead of waiting without end.",
    )


class AnswerSettings(_Section):
    mode: Literal["generate", "extractive"] = Field(
        "extractive",
        description="'extractive' quotes each answering paper's evidence, no LLM writing (the default: on the test "
        "splits the model's wording moved facts by less than it cost); 'generate' writes each statement with the LLM.",
    )
    papers: int = Field(
        10, ge=1, description="Retrieved papers considered for an answer; the answer uses those that answer."
    )
    list_papers: int = Field(8, ge=1, description="Most papers in a list answer ('which papers ...').")
    list_considered: int = Field(15, ge=1, description="Retrieved papers a list question reads (dev split).")
    judge_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Answer only from a paper the judge (rag.answer.judge) finds at least this likely to answer; "
        "below it the answer says what the nearest papers lack. None: the operating point fitted with the judge's "
        "weights on the dev splits of two fields (one with the judge model, one for the statistics alone).",
    )
    judge_model: str | None = Field(
        "qwen2.5-coder-1.5b-instruct-q4_k_m",
        description="A local GGUF (packaged name or file) that reads the best candidate's sentences and says whether "
        "they answer, where the term statistics are unsure (answer.judge_band); None: the statistics alone decide.",
    )
    judge_band: tuple[float, float] = Field(
        (0.3, 0.8),
        description="The judge model is asked only when the statistics' probability falls inside this band.",
    )
    gap_check: tuple[float, float] | None = Field(
        (0.9, -0.5),
        description="(highest probability, cut): where the best candidate lacks a question term and the statistics' "
        "probability is at most the first value, the judge model is asked whether its abstract mentions that "
        "term in other words; Yes-vs-No log-odds below the cut refuse. None: not asked.",
    )
    statement_sentences: int = Field(
        2,
        ge=1,
        le=4,
        description="Sentences quoted as a one-paper answer's statement: the best match, then the next best (a "
        "figure first when the best states none); list lines quote one each.",
    )
    list_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A list answer ('which papers ...') takes every considered paper at least this likely to answer.",
    )
    rank_lexical_weight: float = Field(
        0.6, ge=0, description="Answer score: weight of the share of the question's words a paper states."
    )
    rank_sentence_weight: float = Field(
        0.5, ge=0, description="Answer score: weight of the paper's best-matching sentence (similarity + overlap)."
    )
    evidence_tokens: int = Field(
        320, ge=32, description="Evidence budget in tiktoken tokens for the model, shared by the answering papers."
    )
    sentences_per_paper: int = Field(2, ge=1, description="Most evidence sentences the model sees from one paper.")
    top_paper_sentences: int = Field(
        4, ge=1, description="Most evidence sentences from the best paper, usually the one that answers."
    )
    written_slots: int = Field(
        3,
        ge=0,
        description="Papers the model writes a statement for, best first; the rest of a long list quote their "
        "evidence sentence (each written statement costs a generation).",
    )
    slot_tokens: int = Field(
        60, ge=8, description="Most tokens the model writes about one paper (one line of the answer)."
    )
    support_threshold: float = Field(
        0.55, ge=0, le=1, description="An answer sentence is supported when it is this close to a cited sentence."
    )
    condense: Literal["llm", "concat"] = Field(
        "concat", description="Follow-ups: 'llm' rewrites them with the model; 'concat' appends the last question."
    )
    history_turns: int = Field(3, ge=0, description="Earlier turns a follow-up may draw on.")


class EvalSettings(_Section):
    golden: str | None = Field(
        None,
        description="Golden set `rag eval` reads; None means the dev split, eval/golden/dev.jsonl (`--split test` "
        "reports on the test split).",
    )
    out: str = Field("eval-report", description="Folder for report.json, report.md and the charts.")
    fail_under: dict[str, float] = Field(
        default_factory=dict,
        description="Gate: metric floors, e.g. {'retrieval.hit@5': 0.9}; `rag eval` exits 1 when one is missed.",
    )
    max_drop: float = Field(
        0.02, ge=0, description="With --baseline: a quality metric falling by more than this fails the run."
    )


class UISettings(_Section):
    host: str = Field("127.0.0.1", description="Address the browser app binds; keep loopback unless you add a login.")
    port: int = Field(7860, ge=1, le=65535, description="Port of the browser app.")
    concurrency: int = Field(
        1, ge=1, description="Answers generated at once (a local model answers one at a time; others queue)."
    )
    queue_size: int = Field(64, ge=1, description="Requests that may wait in the queue before new ones are refused.")
    max_upload_mb: float = Field(20.0, gt=0, description="Largest file the ingest tab accepts.")
    auth_user: str | None = Field(None, description="Login name; with auth_password_env set, the app asks to log in.")
    auth_password_env: str = Field(
        "RAG_UI_PASSWORD", description="Environment variable holding the login password (never stored in config)."
    )
    upload_dir: str | None = Field(None, description="Where uploads are kept; None means <index.path>/uploads.")


class ServerSettings(_Section):
    host: str = Field(
        "127.0.0.1", description="Address `rag serve` binds; keep loopback and put a TLS reverse proxy in front."
    )
    port: int = Field(8080, ge=1, le=65535, description="Port of `rag serve` (HTTP API, OpenAI endpoint, chat page).")
    api_key_env: str = Field(
        "RAG_API_KEY",
        description="Environment variable holding the API key; when it holds one, /v1/* needs "
        "`Authorization: Bearer KEY` (the key is never stored in config or logged).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API from another site (CORS), e.g. "
        "['https://chat.example.org']; empty = CORS off.",
    )
    max_body_kb: int = Field(1024, ge=1, description="Largest JSON request body, in kB; larger ones get HTTP 413.")
    max_upload_files: int = Field(
        10, ge=1, description="Most files in one POST /v1/ingest (each at most ui.max_upload_mb)."
    )
    profiles: list[str] | None = Field(
        None, description="Profiles a request may choose (`profile`, or the OpenAI `model`); None = every profile."
    )
    chat_page: bool = Field(True, description="Serve the chat page at / on the same port.")
    sessions: int = Field(
        1000, ge=1, description="Chat sessions remembered (their recent turns); the least recently used go first."
    )


class Settings(_Section):
    corpus: CorpusSettings = Field(default_factory=CorpusSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    ui: UISettings = Field(default_factory=UISettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    @property
    def index_path(self) -> Path:
        return Path(os.path.expanduser(self.index.path))


def default_config_dir() -> Path:
    """The profiles shipped inside the package (rag/configs/), so an installed wheel finds them too."""
    return Path(__file__).resolve().parent / "configs"


def load_settings(
    profile: str | None = None,
    *,
    config_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings tree; `overrides` uses dotted keys, e.g. {"index.path": "/tmp/idx"}."""
    env = os.environ if env is None else env
    config_dir = Path(config_dir or env.get(CONFIG_DIR_ENV) or default_config_dir())
    profile = profile or env.get(PROFILE_ENV) or None

    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    default_file = config_dir / "default.yaml"
    if default_file.is_file():
        _merge(merged, _read_yaml(default_file), str(default_file), origins)
    if profile and profile != "default":
        as_file = profile.endswith((".yaml", ".yml")) or os.sep in profile
        profile_file = Path(profile).expanduser() if as_file else config_dir / f"{profile}.yaml"
        if as_file and not profile_file.is_file():
            raise ConfigError(f"profile file {profile_file} does not exist")
        if not profile_file.is_file():
            known = sorted(p.stem for p in config_dir.glob("*.yaml")) if config_dir.is_dir() else []
            raise ConfigError(f"unknown profile '{profile}': no {profile_file} (known: {', '.join(known) or 'none'})")
        _merge(merged, _read_yaml(profile_file), str(profile_file), origins)
    for name, value in sorted(env.items()):
        if name.startswith(ENV_PREFIX) and "__" in name:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            _merge(merged, _nest({dotted: _parse_scalar(value)}), f"env {name}", origins)
    if overrides:
        _merge(merged, _nest(dict(overrides)), "command line", origins)

    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None


def apply_overrides(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """A copy of `settings` with dotted-key overrides, validated like every other layer."""
    merged = settings.model_dump()
    origins: dict[str, str] = {}
    _merge(merged, _nest(dict(overrides)), "override", origins)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _merge(
    into: dict[str, Any], layer: Mapping[str, Any], origin: str, origins: dict[str, str], prefix: str = ""
) -> None:
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value, origin, origins, f"{path}.")
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
            origins[path] = origin
            if isinstance(value, Mapping):
                for sub in _leaf_paths(value, f"{path}."):
                    origins[sub] = origin


def _leaf_paths(tree: Mapping[str, Any], prefix: str) -> list[str]:
    out = []
    for key, value in tree.items():
        out.append(f"{prefix}{key}")
        if isinstance(value, Mapping):
            out.extend(_leaf_paths(value, f"{prefix}{key}."))
    return out


def _describe(exc: ValidationError, origins: Mapping[str, str]) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        origin = origins.get(key)
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{key}: {reason}" + (f" (set in {origin})" if origin else ""))
    return "config error: " + "; ".join(parts)
