"""The browser chat: a thin Gradio client of `rag.answering.Assistant` and `rag.library.Library`.

`rag ui` starts it on 127.0.0.1. Answers stream into the chat; `[n]` markers link to source cards
that show the title, the supporting passage highlighted in the abstract, the source files, the score
and whether the citation verified. Everything a paper contributes is escaped before it reaches the
page (see ui/render.py).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

from rag.chunking import abstract_sentences
from rag.config import Settings, default_config_dir
from rag.errors import RagError
from rag.ingest import IngestProgress
from rag.library import Library
from ui.render import CSS, answer_html, escape, source_cards_html

EXAMPLES = [
    "Is there work that drops all visual tokens partway through an MLLM?",
    "Is there a benchmark for matching objects across images for MLLMs?",
    "How many languages does the mOSCAR corpus cover?",
]
UPLOAD_TYPES = (".jsonl", ".json", ".csv", ".txt", ".bib", ".ris", ".pdf")


def safe_upload_name(name: str) -> str:
    """A plain file name: no folders, no leading dots, only [A-Za-z0-9._-]; keeps the extension."""
    base = PurePath(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".") or "upload"
    return cleaned[-120:]


def parse_filter_text(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,;\n]", text or "") if part.strip()]


class AssistantPool:
    """Assistants for the settings chosen in the page; they share the embedder, the index and each model."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._assistants: dict[tuple, Any] = {}
        self._models: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def get(self, profile: str, papers: int, mode: str, rerank: bool, filters: list[str]):
        from rag.answering import Assistant
        from rag.config import load_settings
        from rag.llm import load_chat_model

        key = (profile, papers, mode, rerank, tuple(filters))
        with self._lock:
            if key in self._assistants:
                return self._assistants[key]
            base = load_settings(profile if profile != "default" else None)
            overrides = {
                "llm": base.llm.model_dump(),
                "answer": base.answer.model_dump() | {"list_papers": int(papers)},
                "retrieval": base.retrieval.model_dump() | {"mode": mode, "rerank": bool(rerank), "filters": filters},
            }
            library = self.library.derive(overrides)
            chat_model = None
            if library.settings.answer.mode == "generate":
                model_key = (library.settings.llm.backend, library.settings.llm.model, library.settings.llm.base_url)
                if model_key not in self._models:
                    self._models[model_key] = load_chat_model(library.settings.llm)
                chat_model = self._models[model_key]
            assistant = Assistant(library, chat_model)
            self._assistants[key] = assistant
            return assistant

    def forget_indexes(self) -> None:
        """After an ingest: assistants re-open the index (new papers, new BM25 catalog); models stay loaded."""
        with self._lock:
            self._assistants.clear()


def abstracts_for(library: Library, paper_ids: list[str]) -> dict[str, str]:
    passages = library.store().passages_of(paper_ids)
    return {pid: " ".join(abstract_sentences(texts)) for pid, texts in passages.items()}


def stats_markdown(library: Library) -> str:
    try:
        stats = library.stats()
    except RagError as exc:
        return f"**Index:** {escape(str(exc))}"
    return (
        f"**Index:** {stats.papers} papers, {stats.chunks} chunks, model `{stats.model}`, "
        + (f"{stats.size_bytes / 1e6:.1f} MB at " if stats.size_bytes is not None else "on the server ")
        + f"`{escape(stats.path)}`"
    )


# The page runs only its own code: no framing by other sites (clickjacking), no sniffed content
# types, nothing fetched from other origins. Gradio's page needs inline scripts and styles.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "media-src 'self' data: blob:",
            "connect-src 'self' ws: wss:",
            "worker-src 'self' blob:",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
        ]
    ),
}


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every HTTP response (streamed ones too)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().title() not in SECURITY_HEADERS]
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(settings: Settings):
    import gradio as gr

    library = Library(settings)
    pool = AssistantPool(library)
    profiles = ["default"] + sorted(p.stem for p in default_config_dir().glob("*.yaml") if p.stem != "default")
    upload_dir = Path(os.path.expanduser(settings.ui.upload_dir or str(settings.index_path / "uploads")))

    def respond(question, chat, history, profile, papers, mode, rerank, filters) -> Iterator[tuple]:
        question = (question or "").strip()
        chat = list(chat or [])
        if not question:
            yield chat, history, gr.skip(), ""
            return
        chat += [{"role": "user", "content": escape(question)}, {"role": "assistant", "content": "…"}]
        yield chat, history, gr.skip(), ""
        try:
            assistant = pool.get(profile, papers, mode, rerank, parse_filter_text(filters))
            text, answer = "", None
            for piece in assistant.stream(question, history):
                if isinstance(piece, str):
                    text += piece
                    chat[-1] = {"role": "assistant", "content": escape(text)}
                    yield chat, history, gr.skip(), ""
                else:
                    answer = piece
            if answer is None:
                raise RagError("no answer came back")
            chat[-1] = {"role": "assistant", "content": answer_html(answer)}
            ids = [s.paper_id for s in answer.evidence] or [h.paper_id for h in answer.sources[:5]]
            cards = source_cards_html(answer, abstracts_for(assistant.library, ids))
            yield chat, [*history, answer], cards, ""
        except RagError as exc:
            chat[-1] = {"role": "assistant", "content": f'<div class="rag-error">{escape(str(exc))}</div>'}
            yield chat, history, gr.skip(), ""
        except Exception as exc:  # noqa: BLE001 - the page shows one readable line, never a traceback
            message = f"Something went wrong: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            chat[-1] = {"role": "assistant", "content": f'<div class="rag-error">{escape(message)}</div>'}
            yield chat, history, gr.skip(), ""

    def new_chat():
        return [], [], source_cards_html(None, {}), ""

    def ingest_files(files, progress=gr.Progress()):  # noqa: B008 - Gradio injects progress this way
        if not files:
            return "Choose one or more files first (JSONL, CSV, TXT, BibTeX, RIS, PDF).", stats_markdown(library)
        upload_dir.mkdir(parents=True, exist_ok=True)
        kept, refused = [], []
        limit = settings.ui.max_upload_mb * 1e6
        for item in files:
            source = Path(getattr(item, "name", None) or str(item))
            original = getattr(item, "orig_name", None) or source.name
            name = safe_upload_name(original)
            if not name.lower().endswith(UPLOAD_TYPES):
                refused.append(f"{escape(original)}: only {', '.join(UPLOAD_TYPES)} files are accepted")
            elif source.stat().st_size > limit:
                refused.append(f"{escape(original)}: larger than {settings.ui.max_upload_mb:g} MB")
            else:
                target = upload_dir / name
                shutil.copyfile(source, target)
                kept.append(target)
        lines = [f"- refused {line}" for line in refused]
        if kept:
            problems: list[str] = []

            def on_progress(state: IngestProgress) -> None:
                progress((state.done, state.total), desc=state.describe())

            try:
                report = library.ingest(kept, on_problem=lambda p: problems.append(str(p)), progress=on_progress)
            except RagError as exc:
                return f"Ingest failed: {escape(str(exc))}", stats_markdown(library)
            pool.forget_indexes()
            lines.insert(
                0,
                f"Ingested {report.papers_embedded} new or changed papers ({report.chunks_embedded} chunks) from "
                f"{', '.join(escape(p.name) for p in kept)}; {report.papers_unchanged} unchanged.",
            )
            lines += [f"- skipped {escape(p)}" for p in problems]
            lines += [f"- skipped {escape(line)}" for line in report.problem_summary]
        return "\n".join(lines), stats_markdown(library)

    with gr.Blocks(title="paper-rag", analytics_enabled=False) as app:
        gr.Markdown("# Ask the papers\nAnswers cite the indexed abstracts; `[n]` links to its source card.")
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Conversation", elem_id="chat", height=460)
                    question = gr.Textbox(
                        placeholder="Ask about the indexed papers…", show_label=False, elem_id="question", lines=1
                    )
                    with gr.Row():
                        send = gr.Button("Ask", variant="primary", elem_id="send")
                        clear = gr.Button("New chat", elem_id="new-chat")
                    gr.Examples(EXAMPLES, inputs=question, label="Try")
                with gr.Column(scale=2):
                    cards = gr.HTML(source_cards_html(None, {}), elem_id="sources")
            with gr.Accordion("Settings", open=False, elem_id="settings"):
                profile = gr.Dropdown(profiles, value="default", label="Profile (configs/*.yaml)")
                papers = gr.Slider(
                    1, 10, value=settings.answer.list_papers, step=1, label="Most papers in a list answer"
                )
                mode = gr.Radio(["hybrid", "dense", "bm25"], value=settings.retrieval.mode, label="Retrieval")
                rerank = gr.Checkbox(value=settings.retrieval.rerank, label="Sentence re-ranking")
                filters = gr.Textbox(label="Filters", placeholder="source=000_*.txt, date>=2024-01, categories=cs.CL")
            history = gr.State([])
        with gr.Tab("Ingest", elem_id="ingest-tab"):
            gr.Markdown(
                "Upload JSONL, CSV, TXT, Hugging Face page dumps, BibTeX or RIS exports, or PDF papers "
                f"(up to {settings.ui.max_upload_mb:g} MB each)."
            )
            files = gr.File(file_count="multiple", file_types=list(UPLOAD_TYPES), elem_id="upload")
            ingest_button = gr.Button("Ingest", variant="primary", elem_id="ingest")
            ingest_report = gr.Markdown(elem_id="ingest-report")
            stats = gr.Markdown(stats_markdown(library), elem_id="index-stats")

        inputs = [question, chatbot, history, profile, papers, mode, rerank, filters]
        outputs = [chatbot, history, cards, question]
        limit = settings.ui.concurrency
        send.click(respond, inputs, outputs, concurrency_limit=limit, concurrency_id="answer")
        question.submit(respond, inputs, outputs, concurrency_limit=limit, concurrency_id="answer")
        clear.click(new_chat, None, [chatbot, history, cards, question])
        ingest_button.click(ingest_files, files, [ingest_report, stats], concurrency_limit=1)
    app.queue(max_size=settings.ui.queue_size)
    return app


def launch(settings: Settings, *, host: str | None = None, port: int | None = None, block: bool = True):
    app = build_app(settings)
    auth = None
    if settings.ui.auth_user:
        password = os.environ.get(settings.ui.auth_password_env)
        if not password:
            raise RagError(f"ui.auth_user is set but ${settings.ui.auth_password_env} holds no password")
        auth = (settings.ui.auth_user, password)
    host = host or settings.ui.host
    port = port or settings.ui.port
    print(f"paper-rag chat: http://{host}:{port}  (Ctrl-C stops it)", flush=True)
    from starlette.middleware import Middleware

    app.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        app_kwargs={"middleware": [Middleware(SecurityHeaders)]},
        max_file_size=f"{settings.ui.max_upload_mb:g}mb",
        prevent_thread_lock=not block,
        show_error=False,
        css=CSS,
        quiet=True,
    )
    return app
