"""The dashboard in a real headless Chromium (Debian's, driven by Selenium and chromedriver)
against the app served by uvicorn on a free port: the jobs list, a finished job's front and
subnet panel, the ONNX download loaded by onnxruntime, 5,000 points on a front, the clear
states (no jobs, unknown job, failed job, no front yet), compare, devices, and the new-job form
with its token prompt. Every page is checked for console errors; screenshots go to
``$NAS_SCREENSHOT_DIR`` or the test run's temporary directory.

One browser and one server for the module (results are written straight into the tables,
tests/_results.py), so the file stays well under a minute.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from _results import ORT, TORCH, Results, fill_results, tiny_onnx
from _serving import serving
from test_api_jobs import AUTH, TOKEN, _table

from service.db import create_db_engine, create_session_factory
from service.migrate import upgrade_database
from service.models import (
    Artifact,
    Job,
    JobEvent,
    JobStage,
    ParetoFront,
    ParetoMember,
    Subnet,
    SubnetLatency,
)
from service.settings import Settings
from workers.spec import STAGE_ORDER

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the dev extra is not installed: skipped (or failed) below
    webdriver = None  # type: ignore[assignment]

CHROMIUM = Path(os.environ.get("NAS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("NAS_CHROMEDRIVER", "/usr/bin/chromedriver"))
_missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
if webdriver is None:
    _missing.append("the selenium package")
if _missing:
    _reason = f"browser tests need {', '.join(_missing)} (apt-get install chromium chromium-driver)"
    if os.environ.get("NAS_REQUIRE_BROWSER") == "1":
        pytest.fail(_reason + "; NAS_REQUIRE_BROWSER=1", pytrace=False)
    pytest.skip(_reason, allow_module_level=True)

BIG_FRONT = 5_000
BIG_OTHERS = 1_000
WAIT_S = 20


# --- server and browser ----------------------------------------------------------------------


@dataclass
class Server:
    url: str
    settings: Settings


@dataclass
class Data:
    finished: Results
    failed: int
    running: int
    big: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("dashboard")
    (root / "data").mkdir()
    settings = Settings(
        database_url=f"sqlite:///{root / 'nas.db'}",
        artifact_dir=root / "var",
        data_root=root / "data",
        api_tokens=[TOKEN],
        dispatcher_enabled=False,
    )
    upgrade_database(settings.database_url)
    with serving(settings) as url:
        yield Server(url, settings)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("NAS_SCREENSHOT_DIR")
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--enable-unsafe-swiftshader",  # WebGL (scattergl) in software, without a warning
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": True,
        },
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver
    finally:
        driver.quit()


# --- data --------------------------------------------------------------------------------------


def _job(name: str, state: str, **fields: Any) -> Job:
    spec = {"name": name, "space": "bignas", "preset": "tiny", "dataset": {"kind": "digits"}}
    return Job(
        name=name,
        owner="local",
        space="bignas",
        preset="tiny",
        spec=spec,
        state=state,
        progress=fields.pop("progress", 0.0),
        attempt=1,
        **fields,
    )


HV_TRACE = [[4, 0.61], [8, 0.74], [12, 0.9]]


def _training_events(job_id: int, epochs: int) -> list[JobEvent]:
    events = []
    for epoch in range(1, epochs + 1):
        data = {
            "kind": "epoch",
            "epoch": epoch,
            "step": 10 * epoch,
            "total_steps": 10 * epochs,
            "phase": "full",
            "lr": 0.1,
            "losses": {"max": 2.0 / epoch, "min": 1.0 / epoch},
            "samples_per_s": 100.0,
            "max_val_acc": 60.0 + 10 * epoch,
            "min_val_acc": 50.0 + 10 * epoch,
            "sampler": {},
        }
        events.append(
            JobEvent(
                job_id=job_id,
                kind="metrics",
                stage="training",
                data=data,
                message=f"epoch {epoch}",
                key=f"training/epoch/{epoch}",
            )
        )
    holdout = {
        "predictor": "auto",
        "rmse": 1.5,
        "kendall_tau": 0.8,
        "spearman": 0.9,
        "chosen": "ridge",
        "num_subnets": 20,
    }
    events.append(
        JobEvent(
            job_id=job_id,
            kind="metrics",
            stage="building_predictor",
            data=holdout,
            message="predictor",
            key="building_predictor/holdout",
        )
    )
    # the searching stage's hypervolume over its measured subnets, one device
    trace = {"device": "host-cpu-onnxruntime", "hypervolume": 0.9, "hypervolume_trace": HV_TRACE}
    events.append(
        JobEvent(
            job_id=job_id,
            kind="metrics",
            stage="searching",
            data=trace,
            message="front",
            key="searching/host-cpu-onnxruntime",
        )
    )
    return events


def _big_job(session: Any) -> int:
    """A succeeded job whose ORT front has BIG_FRONT members, and BIG_OTHERS subnets off it."""
    finished = datetime(2026, 11, 21, 9, tzinfo=UTC)
    job = _job(
        "five thousand",
        "succeeded",
        progress=100.0,
        stage="exporting",
        started_at=finished - timedelta(minutes=20),
        finished_at=finished,
    )
    job.spec = {**job.spec, "devices": [ORT], "search": {"budgets": {ORT: {"latency_ms": 2.0}}}}
    session.add(job)
    session.flush()
    rng = np.random.default_rng(0)
    total = BIG_FRONT + BIG_OTHERS
    latency = np.sort(rng.uniform(0.2, 4.0, BIG_FRONT))
    subnets = [
        Subnet(
            job_id=job.id,
            arch_id=f"big{i:05d}",
            resolution=32,
            macs=1_000_000 + 997 * i,
            params=100_000 + 13 * i,
            predicted_accuracy=80.0 + 15.0 * min(i, BIG_FRONT) / total,
            arch={"space": "bignas", "preset": "tiny", "resolution": 32, "depth": [2, 3, 2]},
        )
        for i in range(total)
    ]
    session.add_all(subnets)
    session.flush()
    for i, subnet in enumerate(subnets):
        if i < BIG_FRONT:
            ms = float(latency[i])
        else:  # slower and less accurate than the front: dominated
            ms = float(rng.uniform(2.0, 4.5))
            subnet.predicted_accuracy = float(rng.uniform(70.0, 80.0))
        subnet.measured_accuracy = subnet.predicted_accuracy  # fronts are drawn at measurements
        session.add(SubnetLatency(subnet_id=subnet.id, device=ORT, predicted_ms=ms, measured_ms=ms))
    front = ParetoFront(
        job_id=job.id, device=ORT, objectives=["accuracy", f"latency:{ORT}"], hypervolume=0.9
    )
    session.add(front)
    session.flush()
    session.add_all(
        ParetoMember(front_id=front.id, subnet_id=s.id, position=i)
        for i, s in enumerate(reversed(subnets[:BIG_FRONT]))
    )
    return job.id


@pytest.fixture(scope="module")
def data(server: Server) -> Data:
    finished = fill_results(server.settings)
    engine = create_db_engine(server.settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            session.add_all(_training_events(finished.job_id, epochs=3))
            start = datetime(2026, 11, 20, 11, 51, tzinfo=UTC)
            for position, name in enumerate(["training", "building_predictor", "searching"]):
                session.add(
                    JobStage(
                        job_id=finished.job_id,
                        name=name,
                        position=position,
                        state="succeeded",
                        progress=100.0,
                        started_at=start + timedelta(minutes=3 * position),
                        finished_at=start + timedelta(minutes=3 * position + 3),
                    )
                )
            failed = _job(
                "broken data",
                "failed",
                stage="training",
                error="training failed: CUDA out of memory (a made-up error)",
                started_at=start,
                finished_at=start + timedelta(minutes=1),
            )
            running = _job(
                "still training",
                "training",
                stage="training",
                progress=35.0,
                started_at=datetime.now(UTC),
            )
            session.add_all([failed, running])
            session.flush()
            session.add(
                JobStage(
                    job_id=failed.id,
                    name="training",
                    position=0,
                    state="failed",
                    started_at=start,
                    finished_at=start + timedelta(minutes=1),
                )
            )
            big = _big_job(session)
            session.commit()
            return Data(finished, failed.id, running.id, big)
    finally:
        engine.dispose()


# --- helpers ------------------------------------------------------------------------------------


def console_errors(driver: WebDriver, allowed: tuple[str, ...] = ()) -> list[str]:
    """SEVERE browser log entries since the last call, but for the failed requests a page is
    expected to make (``allowed``: regexes, e.g. the 404 of an unknown job)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not any(re.search(a, entry["message"]) for a in allowed)
    ]


def open_page(driver: WebDriver, url: str) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(condition, message=what)


def wait_css(driver: WebDriver, selector: str) -> Any:
    return wait_for(driver, EC.presence_of_element_located((By.CSS_SELECTOR, selector)), selector)


def plot_dataset(driver: WebDriver) -> dict[str, str]:
    wait_for(
        driver,
        lambda d: d.execute_script(
            "const p = document.getElementById('front-plot'); return p && p.dataset.renderMs"
        ),
        "the front plot",
    )
    return driver.execute_script("return {...document.getElementById('front-plot').dataset}")


@contextmanager
def written(server: Server) -> Iterator[Any]:
    """A session on the served database, for rows a test writes while the browser is open."""
    engine = create_db_engine(server.settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


#: ``[left, top, right, bottom]`` of the element ``arguments[0]`` in viewport pixels.
RECT_JS = (
    "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]"
)


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def trace_points(driver: WebDriver, meta: str) -> int:
    return driver.execute_script(
        "const t = document.getElementById('front-plot').data.find(t => t.meta === arguments[0]);"
        "return t ? t.x.length : -1",
        meta,
    )


# --- tests ---------------------------------------------------------------------------------------


def test_an_empty_jobs_list_says_so(browser: WebDriver, server: Server, screenshots: Path) -> None:
    open_page(browser, server.url + "/")
    notice = wait_css(browser, "#jobs .notice")
    assert "No jobs yet" in notice.text
    browser.save_screenshot(str(screenshots / "jobs-empty.png"))
    assert console_errors(browser) == []


def test_the_jobs_page_lists_the_finished_job_and_filters_by_state(
    browser: WebDriver, server: Server, data: Data, screenshots: Path
) -> None:
    open_page(browser, server.url + "/")
    row = wait_css(browser, f'tr[data-job-id="{data.finished.job_id}"]')
    assert row.get_attribute("data-state") == "succeeded"
    assert "digits on bignas" in row.text and "bignas (tiny)" in row.text and "100%" in row.text
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.job-row")) == 4
    browser.save_screenshot(str(screenshots / "jobs.png"))
    Select(browser.find_element(By.ID, "state-filter")).select_by_value("failed")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.job-row")) == 1, "filter")
    assert browser.find_element(By.CSS_SELECTOR, "tr.job-row").get_attribute("data-job-id") == str(
        data.failed
    )
    Select(browser.find_element(By.ID, "state-filter")).select_by_value("cancelled")
    assert "No cancelled jobs" in wait_css(browser, "#jobs .notice").text
    assert "state=cancelled" in browser.current_url
    assert console_errors(browser) == []


def test_the_job_page_draws_every_subnet_and_each_front(
    browser: WebDriver, server: Server, data: Data, screenshots: Path
) -> None:
    results = data.finished
    open_page(browser, f"{server.url}/jobs/{results.job_id}")
    shown = plot_dataset(browser)
    front = results.fronts[ORT]
    drawable = [r for r in results.rows if r.measured is not None and r.latency_ms(ORT) is not None]
    assert int(shown["frontPoints"]) == trace_points(browser, "front") == len(front)
    assert int(shown["cloudPoints"]) == trace_points(browser, "cloud") == len(drawable) - len(front)
    budget_lines = browser.execute_script(
        "return document.getElementById('front-plot').layout.shapes.map(s => s.x0)"
    )
    assert budget_lines == [results.budget_ms]
    # the stage timeline, training curves and predictor quality are there too
    rows = browser.find_elements(By.CSS_SELECTOR, ".tl-row")
    assert [r.get_attribute("data-stage") for r in rows] == list(STAGE_ORDER)
    assert browser.execute_script(
        "return document.getElementById('accuracy-plot').data.map(t => t.y.length)"
    ) == [3, 3]
    assert "ridge" in browser.find_element(By.ID, "predictor-summary").text
    measured = [r for r in results.rows if r.measured is not None and r.predicted is not None]
    wait_for(
        browser,
        lambda d: d.execute_script(
            "const p = document.getElementById('predictor-plot'); return p && p.data"
        ),
        "quality",
    )
    assert browser.execute_script(
        "return document.getElementById('predictor-plot').data[1].x.length"
    ) == len(measured)
    wait_for(
        browser,
        lambda d: d.execute_script(
            "const p = document.getElementById('hypervolume-plot'); return p && p.data"
        ),
        "hypervolume over the search",
    )
    assert browser.execute_script(
        "return document.getElementById('hypervolume-plot').data.map(t => [t.x, t.y])"
    ) == [[[4, 8, 12], [0.61, 0.74, 0.9]]]
    browser.save_screenshot(str(screenshots / "job.png"))

    Select(browser.find_element(By.ID, "axis-select")).select_by_value("macs")
    wait_for(
        browser,
        lambda d: (
            d.execute_script("return document.getElementById('front-plot').layout.xaxis.type")
            == "log"
        ),
        "MACs axis",
    )
    assert trace_points(browser, "front") == len(front)
    Select(browser.find_element(By.ID, "axis-select")).select_by_value("latency")
    Select(browser.find_element(By.ID, "device-select")).select_by_value(TORCH)
    wait_for(browser, lambda d: trace_points(d, "front") == len(results.fronts[TORCH]), "torch")
    assert (
        browser.execute_script("return document.getElementById('front-plot').layout.shapes.length")
        == 0
    )  # no budget on that device
    assert console_errors(browser) == []


def test_clicking_a_point_opens_the_panel_and_the_onnx_download_runs(
    browser: WebDriver, server: Server, data: Data, downloads: Path, screenshots: Path
) -> None:
    results = data.finished
    chosen = results.by_id(results.onnx_subnet)
    open_page(browser, f"{server.url}/jobs/{results.job_id}")
    plot_dataset(browser)
    plot = browser.find_element(By.ID, "front-plot")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    x, y = browser.execute_script(
        "const gd = arguments[0], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;"
        "return [xa._offset + xa.l2p(arguments[1]), ya._offset + ya.l2p(arguments[2])]",
        plot,
        chosen.latency_ms(ORT),
        chosen.accuracy,
    )
    size = plot.size
    offset = (round(x - size["width"] / 2), round(y - size["height"] / 2))
    ActionChains(browser).move_to_element_with_offset(plot, *offset).pause(0.3).click().perform()
    title = wait_css(browser, "#subnet-panel h3")
    wait_for(browser, lambda d: title.text == f"Subnet #{chosen.id}", "the panel of the point")
    panel = browser.find_element(By.ID, "subnet-panel")
    text = panel.text.lower()
    assert chosen.arch_id in text and "architecture" in text and "depth" in text
    assert {b.text for b in panel.find_elements(By.CSS_SELECTOR, "button[id^=download-]")} == {
        "ONNX",
        "TorchScript",
        "PyTorch zip",
    }
    assert trace_points(browser, "selected") == 1
    browser.save_screenshot(str(screenshots / "job-panel.png"))

    for old in downloads.iterdir():
        old.unlink()
    browser.find_element(By.ID, "download-onnx").click()
    target = downloads / f"subnet-{chosen.id}.onnx"
    wait_for(browser, lambda d: target.is_file() and target.stat().st_size > 0, "the ONNX file")
    assert "sha256 checked" in wait_css(browser, "#download-status .notice-ok").text
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"x": np.ones((1, 16), dtype=np.float32)})
    assert logits.shape == (1, 10)
    assert target.read_bytes() == results.onnx_bytes
    assert console_errors(browser) == []


def test_five_thousand_points_on_a_front_render_in_under_two_seconds(
    browser: WebDriver, server: Server, data: Data, screenshots: Path
) -> None:
    open_page(browser, f"{server.url}/jobs/{data.big}")
    shown = plot_dataset(browser)
    assert int(shown["frontPoints"]) == trace_points(browser, "front") == BIG_FRONT
    assert int(shown["cloudPoints"]) == BIG_OTHERS
    render_ms = float(shown["renderMs"])
    print(f"\n5,000-point front: Plotly drew it in {render_ms:.0f} ms")
    assert render_ms < 2000
    browser.save_screenshot(str(screenshots / "job-5000.png"))
    assert console_errors(browser) == []


def test_unknown_failed_and_unsearched_jobs_say_what_is_going_on(
    browser: WebDriver, server: Server, data: Data, screenshots: Path
) -> None:
    open_page(browser, f"{server.url}/jobs/999999")
    assert "Job 999999 not found" in wait_css(browser, "main .notice-error").text
    assert console_errors(browser, allowed=(r"/api/v1/jobs/999999 .* 404",)) == []
    open_page(browser, f"{server.url}/jobs/not-a-number")
    assert "Job not found" in wait_css(browser, "main .notice-error").text
    assert console_errors(browser) == []

    open_page(browser, f"{server.url}/jobs/{data.failed}")
    error = wait_css(browser, "#job-head .notice-error")
    assert "CUDA out of memory" in error.text
    fronts = wait_css(browser, "#fronts-card .notice")
    assert "the job failed before its search finished" in fronts.text
    assert "No training epochs" in browser.find_element(By.ID, "curves").text
    browser.save_screenshot(str(screenshots / "job-failed.png"))
    assert console_errors(browser) == []

    open_page(browser, f"{server.url}/jobs/{data.running}")
    assert "No Pareto front yet" in wait_css(browser, "#fronts-card .notice").text
    assert "35%" in browser.find_element(By.ID, "job-head").text
    assert console_errors(browser) == []


def test_compare_puts_two_fronts_on_one_plot(
    browser: WebDriver, server: Server, data: Data, screenshots: Path
) -> None:
    job = data.finished.job_id
    open_page(browser, f"{server.url}/compare?a={job}&da={ORT}&b={job}&db={TORCH}")
    wait_for(
        browser,
        lambda d: d.execute_script(
            "const p = document.getElementById('compare-plot'); return p && p.dataset.fronts"
        ),
        "the comparison",
    )
    sizes = browser.execute_script(
        "return document.getElementById('compare-plot').data"
        ".filter(t => t.mode === 'markers').map(t => t.x.length)"
    )
    assert sizes == [len(data.finished.fronts[ORT]), len(data.finished.fronts[TORCH])]
    browser.save_screenshot(str(screenshots / "compare.png"))
    Select(browser.find_element(By.ID, "job-b")).select_by_value(str(data.big))
    wait_for(
        browser,
        lambda d: (
            d.execute_script(
                "return document.getElementById('compare-plot').data"
                ".filter(t => t.mode === 'markers').map(t => t.x.length)"
            )
            == [len(data.finished.fronts[ORT]), BIG_FRONT]
        ),
        "two jobs",
    )
    assert f"b={data.big}" in browser.current_url
    assert console_errors(browser) == []


def test_the_devices_page_lists_tables_with_their_calibration_error(
    browser: WebDriver, server: Server, screenshots: Path
) -> None:
    table = _table("pi4-ort")
    created = httpx.post(f"{server.url}/api/v1/devices", json=table, headers=AUTH, timeout=30)
    assert created.status_code == 201, created.text
    open_page(browser, f"{server.url}/devices")
    card = wait_css(browser, 'section[data-device="pi4-ort"]')
    mape = f"{100 * table['calibration']['mape']:.1f}%"
    wait_for(browser, lambda d: mape in card.text, "the calibration error")
    assert "bignas (tiny)" in card.text
    builtin = browser.find_element(By.CSS_SELECTOR, f'section[data-device="{ORT}"]')
    assert "built in" in builtin.text
    browser.save_screenshot(str(screenshots / "devices.png"))
    assert console_errors(browser) == []


def test_the_new_job_form_asks_for_a_token_then_queues_the_job(
    browser: WebDriver, server: Server, data: Data, screenshots: Path
) -> None:
    open_page(browser, server.url + "/")
    browser.execute_script("sessionStorage.clear()")
    wait_css(browser, "tr.job-row")
    browser.find_element(By.ID, "new-job-button").click()
    name = wait_css(browser, "#f-name")
    name.clear()
    name.send_keys("from the dashboard")
    Select(browser.find_element(By.ID, "f-dataset")).select_by_value("imagefolder")
    browser.find_element(By.CSS_SELECTOR, "#job-form button[type=submit]").click()
    token = wait_css(browser, "#token-input")  # 401: the service wants a token
    token.send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, ".token-form button[type=submit]").click()
    browser.find_element(By.CSS_SELECTOR, "#job-form button[type=submit]").click()
    refused = wait_css(browser, "#job-form .notice-error")  # 422: no root for an imagefolder
    wait_for(browser, lambda d: "root" in refused.text, "the 422 message")
    field_errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".field-error")]
    assert any("root" in text for text in field_errors)
    Select(browser.find_element(By.ID, "f-dataset")).select_by_value("digits")
    browser.find_element(By.CSS_SELECTOR, "#job-form button[type=submit]").click()
    queued = wait_css(browser, "#job-form .notice-ok")
    job_id = int(re.search(r"Job (\d+) queued", queued.text).group(1))
    title = browser.execute_script(RECT_JS, queued.find_element(By.TAG_NAME, "strong"))
    link = browser.execute_script(RECT_JS, queued.find_element(By.TAG_NAME, "a"))
    assert link[0] - title[2] >= 4, "the notice's link runs into its title"
    browser.save_screenshot(str(screenshots / "new-job.png"))
    job = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", timeout=30).json()
    assert job["name"] == "from the dashboard" and job["state"] == "queued"
    wait_css(browser, f'tr[data-job-id="{job_id}"]')  # the list shows it at once
    expected = (r"/api/v1/jobs - .* 401", r"/api/v1/jobs - .* 422")
    assert console_errors(browser, allowed=expected) == []


def test_plotly_is_served_from_the_app_and_the_schema_stays_api_only(server: Server) -> None:
    page = httpx.get(server.url + "/jobs/1", timeout=30)
    assert (
        page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    )
    src = re.search(r'src="(/vendor/plotly-[^"]+)"', page.text).group(1)
    bundle = httpx.get(server.url + src, timeout=30)
    assert bundle.status_code == 200 and "immutable" in bundle.headers["cache-control"]
    assert httpx.get(server.url + "/vendor/plotly-0.0.0.min.js", timeout=30).status_code == 404
    assert not re.search(r"(src|href)=\"https?://", page.text)  # nothing from another origin
    paths = httpx.get(server.url + "/openapi.json", timeout=30).json()["paths"]
    assert all(p == "/health" or p.startswith("/api/v1/") for p in paths)


def test_no_drawn_front_point_is_dominated_by_another_drawn_point(
    browser: WebDriver, server: Server, data: Data
) -> None:
    """The trust check a user makes by eye: on the latency axis of each device, nothing drawn
    sits above-left of a front point. A subnet that was only predicted (the search's favourite
    here: 99% predicted, within the budget, never measured) is in the legend, not drawn."""
    results = data.finished
    open_page(browser, f"{server.url}/jobs/{results.job_id}")
    plot_dataset(browser)
    for device in (ORT, TORCH):
        Select(browser.find_element(By.ID, "device-select")).select_by_value(device)
        count = len(results.fronts[device])
        wait_for(browser, lambda d, n=count: trace_points(d, "front") == n, device)
        traces = browser.execute_script(
            "return document.getElementById('front-plot').data.map(t => "
            "({meta: t.meta, name: t.name, visible: t.visible, x: t.x, y: t.y, ids: t.customdata}))"
        )
        drawn = [t for t in traces if t["visible"] != "legendonly" and t["meta"] != "envelope"]
        points = [(x, y) for t in drawn for x, y in zip(t["x"], t["y"], strict=True)]
        (front,) = [t for t in drawn if t["meta"] == "front"]
        assert front["x"], f"no front drawn on {device}"
        for fx, fy in zip(front["x"], front["y"], strict=True):
            beaten = [(x, y) for x, y in points if x <= fx and y >= fy and (x < fx or y > fy)]
            assert not beaten, f"{device}: front point ({fx}, {fy}) is beaten by {beaten}"
        # drawn figures are the measured ones, and the legend says so
        for t in drawn:
            for subnet_id, y in zip(t["ids"], t["y"], strict=True):
                assert y == results.by_id(subnet_id).measured
        names = {t["meta"]: t["name"] for t in traces}
        assert "measured" in names["front"] and "measured" in names["cloud"]
        (predicted,) = [t for t in traces if t["meta"] == "predicted"]
        assert predicted["visible"] == "legendonly" and "never measured" in predicted["name"]
        favourite = max(
            (r for r in results.rows if r.predicted is not None),
            key=lambda r: r.predicted,  # type: ignore[arg-type, return-value]
        )
        assert favourite.measured is None and favourite.id in predicted["ids"]
    assert console_errors(browser) == []


def test_health_warnings_show_as_a_banner_and_a_marker_in_the_list(
    browser: WebDriver, server: Server, screenshots: Path
) -> None:
    """A job that succeeded although its predictor cannot rank (a health gate set to warn)."""
    from workers.health import check_predictor
    from workers.spec import HealthSettings

    report = check_predictor(kendall_tau=0.04, rmse=25.3, num_test=8, settings=HealthSettings())
    engine = create_db_engine(server.settings.database_url)
    try:
        with create_session_factory(engine)() as session:
            now = datetime.now(UTC)
            job = _job("no skill", "succeeded", progress=100.0, started_at=now, finished_at=now)
            session.add(job)
            session.flush()
            session.add(
                JobEvent(
                    job_id=job.id,
                    kind="metrics",
                    stage="building_predictor",
                    key="health/predictor",
                    message=report.summary(),
                    data={**report.model_dump(mode="json"), "outcome": report.outcome},
                )
            )
            session.commit()
            job_id = job.id
    finally:
        engine.dispose()
    open_page(browser, server.url + "/")
    row = wait_css(browser, f'tr[data-job-id="{job_id}"]')
    assert row.find_element(By.CSS_SELECTOR, ".health-warning").text == "⚠ 2 warnings"
    open_page(browser, f"{server.url}/jobs/{job_id}")
    banner = wait_css(browser, "#health-warnings .notice-warn")
    assert "Succeeded with 2 health warnings" in banner.text
    assert "predictor kendall tau (predictor): measured 0.040, needs ≥ 0.200" in banner.text
    assert "predictor rmse (predictor): measured 25.300, needs ≤ 10.000" in banner.text
    assert "What to change: measure more subnets" in banner.text
    browser.save_screenshot(str(screenshots / "job-health-warnings.png"))
    assert console_errors(browser) == []


# --- what a first-time user ran into (issue 31) -----------------------------------------------


def test_a_running_stage_bar_is_as_long_as_its_progress(
    browser: WebDriver, server: Server, screenshots: Path
) -> None:
    """A stage at 0% drew a full bar (its share of the elapsed time, all of it while it was
    the only stage): the bar now shows the percentage written beside it."""
    jobs = {}
    with written(server) as session:
        for progress in (0.0, 35.0):
            job = _job(f"training at {progress:.0f}%", "training", stage="training")
            job.progress, job.started_at = progress, datetime.now(UTC) - timedelta(minutes=2)
            session.add(job)
            session.flush()
            stage = JobStage(job_id=job.id, name="training", position=0, state="running")
            stage.progress, stage.started_at = progress, job.started_at
            session.add(stage)
            jobs[progress] = job.id
        session.commit()
    for progress, job_id in jobs.items():
        open_page(browser, f"{server.url}/jobs/{job_id}")
        row = wait_css(browser, '.tl-row[data-stage="training"]')
        assert f"{progress:.0f}%" in row.find_element(By.CSS_SELECTOR, ".tl-info").text
        bar = browser.execute_script(RECT_JS, row.find_element(By.CSS_SELECTOR, ".tl-bar"))
        track = browser.execute_script(RECT_JS, row.find_element(By.CSS_SELECTOR, ".tl-track"))
        shown = 100 * (bar[2] - bar[0]) / (track[2] - track[0])
        assert shown == pytest.approx(progress, abs=2), f"{progress}% drawn as {shown:.0f}%"
        assert console_errors(browser) == []
    browser.save_screenshot(str(screenshots / "job-running.png"))


def test_the_built_in_badge_stands_apart_from_the_device_name(
    browser: WebDriver, server: Server
) -> None:
    open_page(browser, f"{server.url}/devices")
    heading = wait_css(browser, f'section[data-device="{ORT}"] h2')
    badge = heading.find_element(By.CSS_SELECTOR, ".badge")
    name = browser.execute_script(
        "const range = document.createRange();"
        "range.setStartBefore(arguments[0].firstChild); range.setEndBefore(arguments[1]);"
        "const r = range.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]",
        heading,
        badge,
    )
    box = browser.execute_script(RECT_JS, badge)
    assert not overlap(name, box)
    assert max(box[0] - name[2], box[1] - name[3]) >= 4  # a visible gap, beside or below
    assert console_errors(browser) == []


def test_the_new_job_form_shows_its_placeholders_whole(browser: WebDriver, server: Server) -> None:
    open_page(browser, server.url + "/")
    wait_css(browser, "#new-job-button").click()
    wait_css(browser, "#f-root")
    # each placeholder's width in the field's own font against the field's content box
    fits = browser.execute_script(
        "const context = document.createElement('canvas').getContext('2d');"
        "return [...document.querySelectorAll('#job-form input[placeholder]')].map((input) => {"
        "  const s = getComputedStyle(input, '::placeholder');"
        "  context.font = `${s.fontStyle} ${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;"
        "  const own = getComputedStyle(input);"
        "  const padding = parseFloat(own.paddingLeft) + parseFloat(own.paddingRight);"
        "  const room = input.clientWidth - padding;"
        "  return [input.placeholder, context.measureText(input.placeholder).width, room,"
        "          input.scrollWidth <= input.clientWidth];"
        "})"
    )
    assert len(fits) >= 2  # the dataset root and a budget per device
    cut = [
        f"“{text}”: {width:.0f} px in {room:.0f}"
        for text, width, room, whole in fits
        if not (whole and width <= room)
    ]
    assert cut == []
    assert console_errors(browser) == []


def test_the_subnet_panel_shows_its_download_status_and_what_is_exported(
    browser: WebDriver, server: Server, data: Data, screenshots: Path
) -> None:
    """The status sat below the panel's inner scroll box, and the panel kept saying "Not
    exported yet" after the download had exported the file."""
    results = data.finished
    chosen = next(i for i in results.fronts[ORT] if i != results.onnx_subnet)
    open_page(browser, f"{server.url}/jobs/{results.job_id}")
    plot_dataset(browser)
    members = browser.find_element(By.CSS_SELECTOR, "#front-members details")
    members.find_element(By.TAG_NAME, "summary").click()
    members.find_element(By.XPATH, f".//button[text()='#{chosen}']").click()
    panel = wait_css(browser, "#subnet-panel")
    wait_for(browser, lambda d: "Not exported yet" in panel.text, "the panel of a new subnet")
    # the file appears while the download runs (as an export on demand would leave it)
    content = tiny_onnx()
    relative = Path("jobs", str(results.job_id), "exports", "status", "subnet.onnx")
    (server.settings.artifact_dir / relative).parent.mkdir(parents=True, exist_ok=True)
    (server.settings.artifact_dir / relative).write_bytes(content)
    with written(server) as session:
        sha256 = hashlib.sha256(content).hexdigest()
        session.add(
            Artifact(
                job_id=results.job_id,
                subnet_id=chosen,
                kind="onnx",
                path=relative.as_posix(),
                size_bytes=len(content),
                sha256=sha256,
            )
        )
        session.commit()
    browser.find_element(By.ID, "download-onnx").click()
    status = wait_css(browser, "#download-status .notice-ok")
    clipping = browser.execute_script(
        "const box = arguments[0].getBoundingClientRect(), clips = [];"
        "for (let node = arguments[0].parentElement; node !== document.body;"
        "     node = node.parentElement) {"
        "  const s = getComputedStyle(node);"
        "  if (s.overflowX === 'visible' && s.overflowY === 'visible') continue;"
        "  const r = node.getBoundingClientRect();"
        "  const bottom = r.top + node.clientTop + node.clientHeight;"
        "  if (box.top < r.top || box.bottom > bottom + 0.5) clips.push(node.id || node.className);"
        "}"
        "return clips",
        status,
    )
    assert clipping == [], f"the download status is scrolled away inside {clipping}"
    wait_for(browser, lambda d: "Exported: onnx" in panel.text, "the panel's export state")
    assert "Not exported yet" not in panel.text
    browser.save_screenshot(str(screenshots / "job-panel-exported.png"))
    assert console_errors(browser) == []


def test_the_budget_label_keeps_clear_of_the_plot_toolbar(
    browser: WebDriver, server: Server, data: Data, screenshots: Path
) -> None:
    """Zoomed so the budget line sits at the right edge (where a budget above every subnet
    puts it): the label and the toolbar both live at the top right."""
    results = data.finished
    open_page(browser, f"{server.url}/jobs/{results.job_id}")
    plot_dataset(browser)
    plot = browser.find_element(By.ID, "front-plot")
    browser.execute_script(
        "return Plotly.relayout(arguments[0], {'xaxis.range': [0, arguments[1] * 1.02]})",
        plot,
        results.budget_ms,
    )
    label = next(
        a for a in plot.find_elements(By.CSS_SELECTOR, ".annotation") if "budget" in a.text
    )
    toolbar = plot.find_element(By.CSS_SELECTOR, ".modebar")
    assert not overlap(
        browser.execute_script(RECT_JS, label), browser.execute_script(RECT_JS, toolbar)
    )
    browser.save_screenshot(str(screenshots / "job-budget-at-the-edge.png"))
    assert console_errors(browser) == []


def test_compare_puts_devices_thirty_times_apart_on_a_log_axis(
    browser: WebDriver, server: Server, screenshots: Path
) -> None:
    slow = "pi4-ort"
    with written(server) as session:
        now = datetime.now(UTC)
        job = _job("fast and slow", "succeeded", progress=100.0, started_at=now, finished_at=now)
        job.spec = {**job.spec, "devices": [ORT, slow]}
        session.add(job)
        session.flush()
        subnets = [
            Subnet(
                job_id=job.id,
                arch_id=f"speed{i}",
                resolution=32,
                macs=10**6 * (i + 1),
                params=10**5,
                measured_accuracy=80.0 + 2 * i,
                arch={"space": "bignas"},
            )
            for i in range(4)
        ]
        session.add_all(subnets)
        session.flush()
        for device, scale in ((ORT, 1.0), (slow, 30.0)):
            front = ParetoFront(
                job_id=job.id, device=device, objectives=["accuracy"], hypervolume=0.5
            )
            session.add(front)
            session.flush()
            for i, subnet in enumerate(subnets):
                ms = scale * (1.0 + 0.2 * i)
                session.add(SubnetLatency(subnet_id=subnet.id, device=device, predicted_ms=ms))
                session.add(ParetoMember(front_id=front.id, subnet_id=subnet.id, position=i))
        session.commit()
        job_id = job.id
    open_page(browser, f"{server.url}/compare?a={job_id}&da={ORT}&b={job_id}&db={slow}")
    wait_for(
        browser,
        lambda d: d.execute_script(
            "const p = document.getElementById('compare-plot'); return p && p.dataset.fronts"
        ),
        "the comparison",
    )
    assert (
        browser.execute_script(
            "return document.getElementById('compare-plot')._fullLayout.xaxis.type"
        )
        == "log"
    )
    browser.save_screenshot(str(screenshots / "compare-log.png"))
    assert console_errors(browser) == []


# --- the finetuning stage (issue 29) -------------------------------------------------------------

#: arch_id -> (inherited val accuracy, ORT latency ms, MACs, fine-tuned val accuracy or None)
FINETUNED_JOB = {
    "ft-a": (93.0, 0.9, 4_000_000, 95.5),
    "ft-b": (90.0, 0.6, 3_000_000, 92.25),
    "ft-c": (86.0, 0.3, 2_000_000, None),
    "ft-d": (80.0, 0.8, 3_500_000, None),  # beaten: off the front
}


def _finetuned_job(server: Server) -> tuple[int, dict[str, int], bytes]:
    """A succeeded job whose finetuning stage trained two of its front's three subnets (rows
    as the service stores them), with the fine-tuned weights of the best one on disk."""
    weights = b"a fine-tuned state dict" * 50
    with written(server) as session:
        now = datetime.now(UTC)
        job = _job("fine-tuned", "succeeded", progress=100.0, stage="exporting")
        job.started_at, job.finished_at = now - timedelta(minutes=30), now
        job.spec = {
            **job.spec,
            "devices": [ORT],
            "search": {"budgets": {ORT: {"latency_ms": 1.0}}},
            "finetune": {"subnets": 2, "samples": 3, "max_epochs": 2, "grace_epochs": 1},
        }
        session.add(job)
        session.flush()
        for position, name in enumerate(STAGE_ORDER):
            stage = JobStage(job_id=job.id, name=name, position=position, state="succeeded")
            stage.progress, stage.started_at = 100.0, now - timedelta(minutes=25 - 5 * position)
            stage.finished_at = stage.started_at + timedelta(minutes=4)
            session.add(stage)
        ids = {}
        for arch_id, (accuracy, ms, macs, tuned) in FINETUNED_JOB.items():
            subnet = Subnet(
                job_id=job.id,
                arch_id=arch_id,
                arch={"space": "bignas", "preset": "tiny", "resolution": 32, "depth": [2, 2]},
                resolution=32,
                macs=macs,
                params=macs // 10,
                predicted_accuracy=accuracy + 1.0,
                measured_accuracy=accuracy,
                finetuned_accuracy=tuned,
                finetune=None
                if tuned is None
                else {
                    "holdout_accuracy": tuned - 0.5,
                    "recipe": {"lr": 0.004, "weight_decay": 3e-5, "epochs": 2, "kd_weight": 0.5},
                    "epochs": 2,
                    "trials": 3,
                    "stopped_early": 1,
                    "weights": f"finetuned/{arch_id}.pt",
                },
            )
            session.add(subnet)
            session.flush()
            session.add(SubnetLatency(subnet_id=subnet.id, device=ORT, measured_ms=ms))
            ids[arch_id] = subnet.id
        front = ParetoFront(
            job_id=job.id, device=ORT, objectives=["accuracy", f"latency:{ORT}"], hypervolume=0.4
        )
        session.add(front)
        session.flush()
        for position, arch_id in enumerate(["ft-a", "ft-b", "ft-c"]):
            session.add(ParetoMember(front_id=front.id, subnet_id=ids[arch_id], position=position))
        relative = Path("jobs", str(job.id), "finetuned", "ft-a.pt")
        (server.settings.artifact_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (server.settings.artifact_dir / relative).write_bytes(weights)
        session.add(
            Artifact(
                job_id=job.id,
                subnet_id=ids["ft-a"],
                kind="finetuned_weights",
                path=relative.as_posix(),
                size_bytes=len(weights),
                sha256=hashlib.sha256(weights).hexdigest(),
            )
        )
        session.commit()
        return job.id, ids, weights


#: Each fine-tuning arrow as drawn: its line's two ends in the plot's pixels (the arrow's group
#: also holds its head, a path of its own).
ARROWS_JS = (
    "return [...arguments[0].querySelectorAll('.annotation-arrow-g path')]"
    "  .map((p) => p.getAttribute('d').match(/^M([-\\d.e]+),([-\\d.e]+)L([-\\d.e]+),([-\\d.e]+)$/))"
    "  .filter(Boolean).map((ends) => ends.slice(1, 5).map(Number))"
)
#: Pixels of (x, accuracy) points on the plot's axes (x in data units, log or linear alike).
PIXELS_JS = (
    "const gd = arguments[0], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;"
    "return arguments[1].map(([x, y]) => [xa._offset + xa.l2p(xa.d2l(x)), ya._offset + ya.l2p(y)])"
)


def test_a_fine_tuned_subnet_has_its_second_point_an_arrow_and_a_column(
    browser: WebDriver, server: Server, downloads: Path, screenshots: Path
) -> None:
    job_id, ids, weights = _finetuned_job(server)
    tuned = {a: v for a, v in FINETUNED_JOB.items() if v[3] is not None}
    open_page(browser, f"{server.url}/jobs/{job_id}")
    shown = plot_dataset(browser)
    assert shown["frontPoints"] == "3" and shown["finetunedPoints"] == str(len(tuned))
    plot = browser.find_element(By.ID, "front-plot")
    (trace,) = browser.execute_script(
        "return arguments[0].data.filter(t => t.meta === 'finetuned')"
        ".map(t => ({name: t.name, x: t.x, y: t.y, ids: t.customdata}))",
        plot,
    )
    assert trace["name"].startswith("fine-tuned")
    drawn = {
        subnet_id: (x, y)
        for subnet_id, x, y in zip(trace["ids"], trace["x"], trace["y"], strict=True)
    }
    assert drawn == {ids[a]: (v[1], v[3]) for a, v in tuned.items()}
    legend = [e.text for e in plot.find_elements(By.CSS_SELECTOR, ".legendtext")]
    assert any(text.startswith("fine-tuned") for text in legend), legend

    for axis in ("latency", "macs"):  # a linear axis, then a log one
        Select(browser.find_element(By.ID, "axis-select")).select_by_value(axis)
        wait_for(
            browser,
            lambda d, axis=axis: (
                d.execute_script("return arguments[0].layout.xaxis.type", plot)
                == ("linear" if axis == "latency" else "log")
            ),
            axis,
        )
        arrows = browser.execute_script(ARROWS_JS, plot)
        assert len(arrows) == len(tuned), f"{axis}: {arrows}"
        for arch_id, (accuracy, ms, macs, finetuned) in tuned.items():
            x = ms if axis == "latency" else macs
            (start, head) = browser.execute_script(PIXELS_JS, plot, [[x, accuracy], [x, finetuned]])
            # an arrow from the inherited point up to the fine-tuned one (stood off a little)
            matching = [
                a
                for a in arrows
                if abs(a[0] - start[0]) < 1
                and abs(a[1] - start[1]) < 10
                and abs(a[2] - head[0]) < 1
                and abs(a[3] - head[1]) < 10
            ]
            assert len(matching) == 1, f"{axis}, {arch_id}: no arrow {start} -> {head} in {arrows}"
            assert matching[0][3] < matching[0][1]  # upwards: fine-tuning gained accuracy
    browser.save_screenshot(str(screenshots / "job-finetuned.png"))

    # the members table: both accuracies side by side
    members = browser.find_element(By.CSS_SELECTOR, "#front-members details")
    members.find_element(By.TAG_NAME, "summary").click()
    headers = [th.text for th in members.find_elements(By.CSS_SELECTOR, "thead th")]
    assert headers.index("Fine-tuned (measured)") == headers.index("Accuracy (measured)") + 1
    cells = {
        row.find_elements(By.TAG_NAME, "td")[1].text: [
            td.text for td in row.find_elements(By.TAG_NAME, "td")[2:4]
        ]
        for row in members.find_elements(By.CSS_SELECTOR, "tbody tr")
    }
    assert cells == {
        f"#{ids[a]}": [f"{v[0]:.2f}%", "\u2013" if v[3] is None else f"{v[3]:.2f}%"]
        for a, v in FINETUNED_JOB.items()
        if a != "ft-d"
    }
    timeline = browser.find_element(By.CSS_SELECTOR, '.tl-row[data-stage="finetuning"]')
    assert timeline.get_attribute("data-state") == "succeeded"
    assert "2 subnets per device, 3 recipes each" in browser.find_element(By.ID, "job-head").text

    # the panel: the fine-tuned figure, its recipe, and its weights downloaded
    members.find_element(By.XPATH, f".//button[text()='#{ids['ft-a']}']").click()
    panel = wait_css(browser, "#subnet-panel")
    wait_for(browser, lambda d: "Fine-tuned accuracy" in panel.text, "the fine-tuned figures")
    assert "95.50% measured on val" in panel.text and "lr 0.004" in panel.text
    for old in downloads.iterdir():
        old.unlink()
    browser.find_element(By.ID, "download-finetuned").click()
    target = downloads / f"subnet-{ids['ft-a']}.finetuned.pt"
    wait_for(browser, lambda d: target.is_file() and target.read_bytes() == weights, "weights")
    assert "sha256 checked" in wait_css(browser, "#download-status .notice-ok").text
    assert console_errors(browser) == []
