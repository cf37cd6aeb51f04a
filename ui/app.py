"""The browser chat: a thin Gradio client of the service layer (`rag.service.Service`).

`rag ui` starts it on 127.0.0.1; `rag serve` mounts it at / beside the HTTP API, over the same service.
Answers stream into the chat; `[n]` markers link to source cards
that show the title, the supporting passage highlighted in the abstract, the source files, the score
and whether the citation verified. Everything a paper contributes is escaped before it reaches the
page (see ui/render.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paper_rag_ui.render import CSS, answer_html, escape, source_cards_html
from rag.config import Settings
from rag.errors import RagError
from rag.service import UPLOAD_TYPES, Service, Sessions, safe_upload_name

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # an offline tool does not phone home

EXAMPLES = [
    "Is there work that drops all visual tokens partway through an MLLM?",
    "Is there a benchmark for matching objects across images for MLLMs?",
    "How many languages does the mOSCAR corpus cover?",
]
__all__ = ["UPLOAD_TYPES", "build_app", "launch", "mount", "parse_filter_text", "safe_upload_name", "stats_markdown"]


def parse_filter_text(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,;\n]", text or "") if part.strip()]


def stats_markdown(library: Any) -> str:
    """The index line of the Ingest tab; `library` is a `Library` or a `Service`."""
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


def build_app(service: Service):
    """The chat page over a `Service`: answers, sessions, uploads and ingest jobs are the service's."""
    import gradio as gr

    settings = service.settings

    def respond(question, chat, session, profile, papers, mode, rerank, filters) -> Iterator[tuple]:
        question = (question or "").strip()
        chat = list(chat or [])
        session = session or Sessions.new_id()
        if not question:
            yield chat, session, gr.skip(), ""
            return
        chat += [{"role": "user", "content": escape(question)}, {"role": "assistant", "content": "…"}]
        yield chat, session, gr.skip(), ""
        overrides = {
            "answer.list_papers": int(papers),
            "retrieval.mode": mode,
            "retrieval.rerank": bool(rerank),
            "retrieval.filters": parse_filter_text(filters),
        }
        try:
            text, answer = "", None
            for piece in service.stream(question, profile=profile, overrides=overrides, session=session):
                if isinstance(piece, str):
                    text += piece
                    chat[-1] = {"role": "assistant", "content": escape(text)}
                    yield chat, session, gr.skip(), ""
                else:
                    answer = piece
            if answer is None:
                raise RagError("no answer came back")
            chat[-1] = {"role": "assistant", "content": answer_html(answer)}
            ids = [s.paper_id for s in answer.evidence] or [h.paper_id for h in answer.sources[:5]]
            cards = source_cards_html(answer, service.abstracts(ids))
            yield chat, session, cards, ""
        except RagError as exc:
            chat[-1] = {"role": "assistant", "content": f'<div class="rag-error">{escape(str(exc))}</div>'}
            yield chat, session, gr.skip(), ""
        except Exception as exc:  # noqa: BLE001 - the page shows one readable line, never a traceback
            message = f"Something went wrong: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            chat[-1] = {"role": "assistant", "content": f'<div class="rag-error">{escape(message)}</div>'}
            yield chat, session, gr.skip(), ""

    def new_chat(session):
        if session:
            service.sessions.reset(session)
        return [], Sessions.new_id(), source_cards_html(None, {}), ""

    def ingest_files(files, progress=gr.Progress()):  # noqa: B008 - Gradio injects progress this way
        if not files:
            return "Choose one or more files first (JSONL, CSV, TXT, BibTeX, RIS, PDF).", stats_markdown(service)
        uploads = []
        for item in files:
            source = Path(getattr(item, "name", None) or str(item))
            uploads.append((getattr(item, "orig_name", None) or source.name, source))
        try:
            job = service.ingest_files(uploads)
        except RagError as exc:  # every file refused, or the job queue is full
            return "\n".join(f"- refused {escape(line)}" for line in str(exc).split("; ")), stats_markdown(service)
        while not service.jobs.wait(job, 0.5):
            if job.papers_total:
                progress((job.papers_done, job.papers_total), desc=job.progress_text)
        lines = [f"- refused {escape(line)}" for line in job.refused]
        if job.error:
            lines.insert(0, f"Ingest failed: {escape(job.error)}")
        else:
            report = job.report
            lines.insert(
                0,
                f"Ingested {report.papers_embedded} new or changed papers ({report.chunks_embedded} chunks) from "
                f"{', '.join(escape(name) for name in job.files)}; {report.papers_unchanged} unchanged.",
            )
        lines += [f"- skipped {escape(p)}" for p in job.to_json()["problems"]]
        return "\n".join(lines), stats_markdown(service)

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
                profile = gr.Dropdown(service.profiles(), value="default", label="Profile (rag/configs/*.yaml)")
                papers = gr.Slider(
                    1, 10, value=settings.answer.list_papers, step=1, label="Most papers in a list answer"
                )
                mode = gr.Radio(["hybrid", "dense", "bm25"], value=settings.retrieval.mode, label="Retrieval")
                rerank = gr.Checkbox(value=settings.retrieval.rerank, label="Sentence re-ranking")
                filters = gr.Textbox(label="Filters", placeholder="source=000_*.txt, date>=2024-01, categories=cs.CL")
            session = gr.State("")  # the service keeps this chat's turns under a per-page session id
        with gr.Tab("Ingest", elem_id="ingest-tab"):
            gr.Markdown(
                "Upload JSONL, CSV, TXT, Hugging Face page dumps, BibTeX or RIS exports, or PDF papers "
                f"(up to {settings.ui.max_upload_mb:g} MB each)."
            )
            files = gr.File(file_count="multiple", file_types=list(UPLOAD_TYPES), elem_id="upload")
            ingest_button = gr.Button("Ingest", variant="primary", elem_id="ingest")
            ingest_report = gr.Markdown(elem_id="ingest-report")
            stats = gr.Markdown(stats_markdown(service), elem_id="index-stats")

        inputs = [question, chatbot, session, profile, papers, mode, rerank, filters]
        outputs = [chatbot, session, cards, question]
        limit = settings.ui.concurrency
        send.click(respond, inputs, outputs, concurrency_limit=limit, concurrency_id="answer")
        question.submit(respond, inputs, outputs, concurrency_limit=limit, concurrency_id="answer")
        clear.click(new_chat, session, [chatbot, session, cards, question])
        ingest_button.click(ingest_files, files, [ingest_report, stats], concurrency_limit=1)
    app.queue(max_size=settings.ui.queue_size)
    return app


def _auth(settings: Settings, api_key: str | None = None):
    """The page's login: ui.auth_user with $RAG_UI_PASSWORD; else, when the API has a key, the key as password."""
    if settings.ui.auth_user:
        password = os.environ.get(settings.ui.auth_password_env)
        if not password:
            raise RagError(f"ui.auth_user is set but ${settings.ui.auth_password_env} holds no password")
        return (settings.ui.auth_user, password)
    if api_key:
        import hmac

        return lambda _user, password: hmac.compare_digest(password.encode(), api_key.encode())
    return None


def mount(app, service: Service, *, path: str = "/", api_key: str | None = None):
    """The chat page on an existing FastAPI app (`rag serve`): one port, one process, one set of models."""
    import gradio as gr

    settings = service.settings
    app.add_middleware(SecurityHeaders)
    return gr.mount_gradio_app(
        app,
        build_app(service),
        path=path,
        auth=_auth(settings, api_key),
        max_file_size=f"{settings.ui.max_upload_mb:g}mb",
        show_error=False,
        css=CSS,
        footer_links=[],
        run_history=False,
    )


def launch(settings: Settings, *, host: str | None = None, port: int | None = None, block: bool = True):
    service = Service(settings)
    app = build_app(service)
    host = host or settings.ui.host
    port = port or settings.ui.port
    auth = _auth(settings)
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
