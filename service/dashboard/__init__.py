"""The browser dashboard: a few HTML pages and hand-written scripts served by the API's own app.

The pages hold no data of their own: their scripts read and write everything through the
public REST API under ``/api/v1`` (the same calls a user's script makes), so the dashboard
needs no extra endpoint, no session and no build step. Plotly.js comes from the ``plotly``
Python package, served from this app: nothing is loaded from another origin.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
PAGES_DIR = PACKAGE_DIR / "pages"

#: Scripts only from this origin; Plotly's WebGL traces compile shaders with ``new Function``
#: ('unsafe-eval') and it injects its own <style> elements ('unsafe-inline' styles).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'"
)
_PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"}


@cache
def plotly_bundle() -> tuple[Path, str]:
    """The Plotly.js bundle the ``plotly`` package ships, and that package's version (which
    goes into the URL, so the file can be cached for good)."""
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    return path, plotly.__version__


def plotly_url() -> str:
    return f"/vendor/plotly-{plotly_bundle()[1]}.min.js"


#: Each page: its title, and whether it draws plots (then Plotly.js loads before its script).
_PAGES: dict[str, tuple[str, bool]] = {
    "jobs": ("Jobs", False),
    "job": ("Job", True),
    "compare": ("Compare fronts", True),
    "devices": ("Devices", False),
}


@cache
def _page_html(name: str) -> str:
    """One skeleton (header, nav, token box, banner) for every page; only the title, the
    scripts and the ``data-page`` differ."""
    title, plots = _PAGES[name]
    scripts = [f'    <script src="{plotly_url()}" defer></script>'] if plots else []
    scripts.append(f'    <script type="module" src="/static/{name}.js"></script>')
    return (
        (PAGES_DIR / "page.html")
        .read_text()
        .replace("{{title}}", title)
        .replace("{{scripts}}", "\n".join(scripts))
        .replace("{{page}}", name)
    )


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(_page_html(name), headers=_PAGE_HEADERS)


router = APIRouter(include_in_schema=False)


@router.get("/")
def jobs_page() -> HTMLResponse:
    """The jobs list: the dashboard's home."""
    return _page("jobs")


@router.get("/jobs")
def jobs_alias() -> RedirectResponse:
    return RedirectResponse("/")


@router.get("/jobs/{job_id}")
def job_page(job_id: str) -> HTMLResponse:
    """One job; the page's script reads the id from the path (an unknown one is its message)."""
    return _page("job")


@router.get("/compare")
def compare_page() -> HTMLResponse:
    return _page("compare")


@router.get("/devices")
def devices_page() -> HTMLResponse:
    return _page("devices")


@router.get("/vendor/plotly-{version}.min.js")
def plotly_js(version: str) -> FileResponse:
    """Plotly.js from the installed ``plotly`` package; the versioned URL never changes
    content, so browsers keep it for a year."""
    path, installed = plotly_bundle()
    return vendor_file(path, "text/javascript", asked=version, installed=installed)


def vendor_file(path: Path, media_type: str, *, asked: str, installed: str) -> FileResponse:
    """A file an installed package ships, at a URL naming the package's version: 404 for any
    other version, else served to be kept for a year (that URL never changes content)."""
    if asked != installed or not path.is_file():
        raise HTTPException(404, f"{path.name} {asked} is not served here; {installed} is")
    return FileResponse(
        path,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard's pages at ``/`` and its scripts and styles at ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
