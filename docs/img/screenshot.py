"""Takes docs/img/job-page.png: a finished job's page in headless Chromium at 1400x1000, its
best subnet selected, scrolled to the Pareto front. Not a test; rerun it after a UI change.

    cp -r var/demo /tmp/demo-copy          # the database and files `make demo` leaves
    NAS_PORT=8765 NAS_DATABASE_URL=sqlite:////tmp/demo-copy/nas.db \\
      NAS_ARTIFACT_DIR=/tmp/demo-copy/artifacts NAS_DISPATCHER_ENABLED=false \\
      .venv/bin/python -m service &
    .venv/bin/python docs/img/screenshot.py http://127.0.0.1:8765 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

OUT = Path(__file__).resolve().parent / "job-page.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the service, e.g. http://127.0.0.1:8765")
    parser.add_argument("job", type=int, help="a succeeded job's id")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--enable-unsafe-swiftshader",
                     "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_window_size(1400, 1000)
        driver.get(f"{args.url}/jobs/{args.job}")
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script(
                "const p = document.getElementById('front-plot'); return p && p.dataset.renderMs"
            )
        )
        best = driver.find_element(  # the row of the front's best subnet within the budget
            By.XPATH, "//div[@id='front-members']//tr[.//span[contains(@class, 'best')]]//button"
        )
        driver.execute_script("arguments[0].click()", best)
        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#subnet-panel button[id^=download-]")
        )
        driver.execute_script(
            "const card = document.getElementById('fronts-card');"
            "window.scrollTo(0, card.getBoundingClientRect().top + window.scrollY - 12)"
        )
        time.sleep(1.0)  # let WebGL finish drawing
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
