"""The OpenAPI page, served from this machine: Swagger UI's files come from the swagger-ui-bundle package.

FastAPI's default /docs loads Swagger UI from a CDN, which an offline machine cannot reach. The bundled
Swagger UI (4.x) reads OpenAPI 3.0, so the page gets a 3.0 rendering of the schema; /openapi.json stays
FastAPI's own 3.1 document for code generators.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"><link rel="icon" href="{assets}/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "/docs/openapi-3.0.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout", validatorUrl: null}});
</script></body></html>
"""


def openapi_30(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.1 document as 3.0: `anyOf [X, null]` -> X with `nullable`, `examples` -> `example`, ..."""

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: convert(value) for key, value in node.items()}
        for key in ("anyOf", "oneOf"):
            options = node.get(key)
            if isinstance(options, list) and {"type": "null"} in options:
                rest = [o for o in options if o != {"type": "null"}]
                node.pop(key)
                node["nullable"] = True
                if len(rest) == 1:
                    node = {**rest[0], **node}
                else:
                    node[key] = rest
        if node.get("type") == "null":
            node = {k: v for k, v in node.items() if k != "type"} | {"nullable": True}
        if isinstance(node.get("type"), list):  # ["string", "null"]
            types = [t for t in node["type"] if t != "null"]
            if len(types) < len(node["type"]):
                node["nullable"] = True
            node["type"] = types[0] if len(types) == 1 else types
        if "const" in node:
            node["enum"] = [node.pop("const")]
        if isinstance(node.get("examples"), list):
            examples = node.pop("examples")
            if examples:
                node["example"] = examples[0]
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
                node[plain] = node[bound]
                node[bound] = True
        return node

    converted = convert(copy.deepcopy(schema))
    converted["openapi"] = "3.0.3"
    converted.get("info", {}).pop("summary", None)  # 3.1 only
    return converted


def install(app: FastAPI) -> None:
    """/docs (Swagger UI, no CDN), /docs/openapi-3.0.json and the assets under /docs/assets."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(PAGE.format(title=app.title, assets=ASSETS))

    @app.get("/docs/openapi-3.0.json", include_in_schema=False)
    async def schema_30() -> JSONResponse:
        return JSONResponse(openapi_30(app.openapi()))
