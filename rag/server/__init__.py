"""`rag serve`: the HTTP API, an OpenAI-compatible endpoint and the chat page on one port, in one process.

A thin client of `rag.service.Service`, like the chat page (ui/) and the command line: routes parse
requests, call the service and shape its typed records as JSON; nothing here knows about Chroma,
chunks or prompts.

- app.py: the FastAPI app (lifespan, API key, CORS, limits, JSON errors, health, offline docs)
- routes.py: /v1/ask (+SSE), /v1/search, /v1/papers/{id}, /v1/stats, /v1/ingest jobs
- openai_api.py: /v1/chat/completions and /v1/models in the OpenAI format
- schemas.py: request bodies; errors.py: one JSON error shape; docs.py: the OpenAPI page without a CDN
- cli.py: registers `rag serve` with the command line
"""
