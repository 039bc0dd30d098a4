"""The interactive API docs: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, working offline.

FastAPI's own docs pages load their scripts from a CDN, so they are blank where the service
has no internet. These are the same pages (FastAPI's ``get_swagger_ui_html`` and
``get_redoc_html``) loading the Swagger UI and ReDoc files that the ``fastapi-offline`` package
ships, served from this app as the dashboard serves Plotly.js, under the dashboard's
Content-Security-Policy. That policy allows no inline script, so Swagger UI's start-up script,
inline in FastAPI's page, is served as a file of its own; ``/redoc`` adds to it only the blob:
worker that ReDoc's search runs in.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.metadata import version
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from service.dashboard import CONTENT_SECURITY_POLICY, vendor_file

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
SWAGGER_INIT_URL = "/docs/swagger-init.js"

#: The files of fastapi-offline served here, with their media types; nothing else is.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}

_PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"}
#: ReDoc's search index runs in a worker that its (same-origin) script builds from a blob: URL;
#: only this page may start one.
_REDOC_HEADERS = {
    **_PAGE_HEADERS,
    "Content-Security-Policy": f"{CONTENT_SECURITY_POLICY}; worker-src 'self' blob:",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


@cache
def docs_assets() -> tuple[Path, str]:
    """The folder of Swagger UI and ReDoc files that ``fastapi-offline`` ships, and that
    package's version (which goes into the URLs, so the files can be cached for good)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static", version("fastapi-offline")


def asset_url(name: str) -> str:
    return f"/vendor/fastapi-offline-{docs_assets()[1]}/{name}"


@cache
def swagger_ui(openapi_url: str, title: str) -> tuple[str, str]:
    """Swagger UI's page and its start-up script: FastAPI's page, its inline script moved out."""
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - Swagger UI",
        swagger_js_url=asset_url("swagger-ui-bundle.js"),
        swagger_css_url=asset_url("swagger-ui.css"),
        swagger_favicon_url=asset_url("favicon.png"),
        # Never ask validator.swagger.io about the schema: the service may have no internet.
        swagger_ui_parameters={"validatorUrl": None},
    ).body.decode()
    scripts = _INLINE_SCRIPT.findall(page)
    if len(scripts) != 1:  # FastAPI changed its page: fail loudly, not with a blank page
        raise RuntimeError(f"expected one inline <script> in FastAPI's Swagger UI page: {page}")
    return _INLINE_SCRIPT.sub(f'<script src="{SWAGGER_INIT_URL}"></script>', page), scripts[0]


@cache
def redoc(openapi_url: str, title: str) -> str:
    return get_redoc_html(
        openapi_url=openapi_url,
        title=f"{title} - ReDoc",
        redoc_js_url=asset_url("redoc.standalone.js"),
        redoc_favicon_url=asset_url("favicon.png"),
        with_google_fonts=False,
    ).body.decode()


def mount_api_docs(app: FastAPI) -> None:
    """Serve the docs pages and their files; the app must be created with ``docs_url=None``
    and ``redoc_url=None``, or FastAPI would serve its CDN pages at the same paths."""
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("create the app with docs_url=None and redoc_url=None")
    openapi_url = app.openapi_url
    if openapi_url is None:  # no schema, nothing to document
        return
    router = APIRouter(include_in_schema=False)

    @router.get(DOCS_URL)
    def swagger_ui_page() -> HTMLResponse:
        return HTMLResponse(swagger_ui(openapi_url, app.title)[0], headers=_PAGE_HEADERS)

    @router.get(SWAGGER_INIT_URL)
    def swagger_ui_init() -> Response:
        script = swagger_ui(openapi_url, app.title)[1]
        return Response(script, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @router.get(REDOC_URL)
    def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc(openapi_url, app.title), headers=_REDOC_HEADERS)

    @router.get("/vendor/fastapi-offline-{asked}/{name}")
    def docs_asset(asked: str, name: str) -> FileResponse:
        """A Swagger UI or ReDoc file from the installed ``fastapi-offline`` package."""
        if name not in ASSETS:
            raise HTTPException(404, f"{name} is not served here")
        folder, installed = docs_assets()
        return vendor_file(folder / name, ASSETS[name], asked=asked, installed=installed)

    app.include_router(router)
