"""docs/api.md and the OpenAPI schema cannot drift: every operation of the schema has its
section, and every section heading names an operation that exists. And the interactive docs
(/docs, /redoc) work offline: every file they load comes from this app, and in a real headless
Chromium (as in tests/test_dashboard.py) Swagger UI draws the operations and ReDoc finds them
under the app's Content-Security-Policy."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from _serving import serving
from fastapi.testclient import TestClient

from service.api.docs import SWAGGER_INIT_URL, asset_url
from service.app import create_app
from service.dashboard import CONTENT_SECURITY_POLICY
from service.settings import Settings

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the dev extra is not installed: skipped (or failed) below
    webdriver = None  # type: ignore[assignment]

CHROMIUM = Path(os.environ.get("NAS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("NAS_CHROMEDRIVER", "/usr/bin/chromedriver"))

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"
HEADING = re.compile(r"^#{2,4} `(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`$", re.M)


def _operations() -> set[tuple[str, str]]:
    app = create_app(Settings(dispatcher_enabled=False))
    return {
        (method.upper(), path)
        for path, methods in app.openapi()["paths"].items()
        for method in methods
    }


def test_every_operation_has_a_section_and_every_section_an_operation() -> None:
    documented = {(method, path) for method, path in HEADING.findall(DOCS.read_text())}
    operations = _operations()
    assert len(operations) >= 15
    assert sorted(operations - documented) == [], "operations without a section in docs/api.md"
    assert sorted(documented - operations) == [], "sections of docs/api.md for no operation"


def test_the_query_parameters_of_the_subnet_list_are_documented() -> None:
    app = create_app(Settings(dispatcher_enabled=False))
    operation = app.openapi()["paths"]["/api/v1/jobs/{job_id}/subnets"]["get"]
    names = [p["name"] for p in operation["parameters"] if p["in"] == "query"]
    text = DOCS.read_text()
    section = text[text.index("### `GET /api/v1/jobs/{job_id}/subnets`") :]
    section = section[: section.index("\n### ", 1)]
    assert [n for n in names if f"`{n}`" not in section] == []


def test_every_field_of_a_job_submission_is_documented() -> None:
    from service.api.schemas.jobs import JobCreate

    text = DOCS.read_text()
    section = text[text.index("### `POST /api/v1/jobs`") :]
    section = section[: section.index("\n### ", 1)]
    assert [n for n in JobCreate.model_fields if f"`{n}" not in section] == []


# --- the interactive docs, offline -------------------------------------------------------------

REFERENCE = re.compile(r'(?:src|href|spec-url)="([^"]*)"')
SPEC_IN_SCRIPT = re.compile(r"\burl: '([^']*)'")
EXTERNAL = re.compile(r"https?://")
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


@pytest.mark.parametrize(
    ("page", "bundle"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_the_docs_pages_load_every_file_from_this_app(page: str, bundle: str) -> None:
    client = TestClient(create_app(Settings(dispatcher_enabled=False)))
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-security-policy"].startswith(CONTENT_SECURITY_POLICY)
    assert EXTERNAL.findall(response.text) == []
    assert "<script>" not in response.text  # the policy runs no inline script
    pending, seen = REFERENCE.findall(response.text), []
    while pending:
        url = pending.pop()
        seen.append(url)
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(MEDIA_TYPES[Path(url).suffix]), url
        if url == SWAGGER_INIT_URL:  # FastAPI's start-up script, moved out of the page
            assert EXTERNAL.findall(asset.text) == []
            pending += SPEC_IN_SCRIPT.findall(asset.text)
    assert asset_url(bundle) in seen and "/openapi.json" in seen


def test_only_the_installed_version_of_the_listed_files_is_served() -> None:
    client = TestClient(create_app(Settings(dispatcher_enabled=False)))
    bundle = asset_url("swagger-ui-bundle.js")
    assert "immutable" in client.get(bundle).headers["cache-control"]
    assert client.get(re.sub(r"-[\d.]+/", "-0.0.0/", bundle)).status_code == 404
    assert client.get(asset_url("LICENSE")).status_code == 404


def _browser_or_skip() -> WebDriver:
    """Headless Chromium, or the test skipped where it is not installed (failed instead under
    NAS_REQUIRE_BROWSER=1, as in tests/test_dashboard.py)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if webdriver is None:
        missing.append("the selenium package")
    if missing:
        reason = (
            f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("NAS_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; NAS_REQUIRE_BROWSER=1", pytrace=False)
        pytest.skip(reason)
    options = Options()
    options.binary_location = str(CHROMIUM)
    # Wide enough for ReDoc's sidebar (and its search box) to show.
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _console_errors(driver: WebDriver, allowed: str | None = None) -> list[str]:
    """SEVERE entries and CSP violations the browser logged since the last call."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if (entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"])
        and not (allowed and re.search(allowed, entry["message"]))
    ]


def _wait_css(driver: WebDriver, selector: str, text: str = "") -> None:
    # Both UIs re-render as they load: an element found may be gone when it is read.
    wait = WebDriverWait(driver, 20, 0.1, ignored_exceptions=[StaleElementReferenceException])
    wait.until(
        lambda d: any(text in e.text for e in d.find_elements(By.CSS_SELECTOR, selector)),
        message=f"{selector} {text!r}",
    )


def test_swagger_ui_and_redoc_work_in_a_browser_under_the_csp(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'nas.db'}",
        artifact_dir=tmp_path / "var",
        data_root=tmp_path / "data",
        dispatcher_enabled=False,
    )
    browser = _browser_or_skip()
    try:
        with serving(settings) as url:
            browser.get(url + "/docs")
            _wait_css(browser, ".opblock .opblock-summary-path", "/api/v1/jobs")
            assert _console_errors(browser) == []
            browser.get(url + "/redoc")
            _wait_css(browser, "[data-section-id]")
            browser.find_element(By.CSS_SELECTOR, "input.search-input").send_keys("subnets")
            _wait_css(browser, '[data-role="search:results"]', "List Subnets")  # its worker ran
            # ReDoc's sidebar asks for a Redocly logo from its CDN: the policy blocks it.
            assert _console_errors(browser, allowed=r"cdn\.redoc\.ly/redoc/logo-mini\.svg") == []
    finally:
        browser.quit()
