#!/usr/bin/env python3
"""The web dashboard in a real browser: headless Chromium (Debian's chromium
and chromium-driver) driven by selenium, against a real hydrad on loopback.

A job is submitted over HTTP (nothing through the UI); the test opens the
dashboard, gives the token, finds the job in the list, opens it, and checks
the heatmap (one cell per ablated component x downstream slot, values equal
to the API's summary rows), the scatter (one point per component) and the
summary table; the token must be in sessionStorage and not localStorage.
A screenshot is saved as a test artifact.

usage: test_dashboard.py HYDRAD ROOT ARTIFACT_DIR"""
import os
import sys
import urllib.request

from hydra_testutil import Checks, Daemon
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HYDRAD, ROOT, ARTIFACTS = sys.argv[1:4]
check = Checks("test_dashboard")
TOKEN = "dash-token-0123456789abcdef"
server = Daemon(HYDRAD, os.path.join(ROOT, "tests", "data", "tiny-gpt2"), {TOKEN: "alice user"})
URL = server.url
driver = None
try:
    spec = {"model": "tiny", "preset": "hydra", "ablations": {"samples": 3},
            "prompts": ["the cat sat on the mat", "a dog ran in the park", "one two three four"]}
    job = server.submit(spec)
    server.wait(job)
    rows = server.rows(job)
    header = next(r for r in rows if r["type"] == "header")
    summary = [r for r in rows if r["type"] == "summary"]

    page = urllib.request.urlopen(URL + "/", timeout=10)
    check("GET / is the dashboard, public, with a same-origin policy",
          "text/html" in page.headers["Content-Type"]
          and "default-src 'self'" in page.headers.get("Content-Security-Policy", ""))

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1800"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    wait = WebDriverWait(driver, 30)
    driver.get(URL + "/")
    wait.until(lambda d: d.find_element(By.ID, "login-view").is_displayed())
    check("without a token the page asks for one", True)
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "login").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#jobs tr[data-id='{job}']"))
    row = driver.find_element(By.CSS_SELECTOR, f"#jobs tr[data-id='{job}']")
    check("the job list shows the job, done", "done" in row.text, row.text)
    check("the token is in sessionStorage only",
          driver.execute_script("return sessionStorage.getItem('hydra-token')") == TOKEN
          and driver.execute_script("return localStorage.length") == 0
          and TOKEN not in driver.current_url)
    row.find_element(By.TAG_NAME, "a").click()
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == job)
    cells = driver.find_elements(By.CSS_SELECTOR, "#heatmap td.cell")
    n_comp, slots = len(summary), header["slots"]
    check(f"heatmap: {n_comp} components x {len(slots)} slots cells",
          len(cells) == n_comp * len(slots), len(cells))
    worst = 0.0
    by = {(c.get_attribute("data-component"), c.get_attribute("data-slot")): c for c in cells}
    for r in summary:
        for k, s in enumerate(slots):
            c = by.get((r["component"], s))
            if c is None:
                worst = float("inf")
                continue
            v = r["effects"][k]
            worst = max(worst, abs(float(c.get_attribute("data-value")) - v) if v is not None else 0)
    check("heatmap cells hold the summary's effect-table values", worst <= 1e-9, worst)
    diag = by.get((summary[0]["component"], summary[0]["component"]))
    check("a component's own cell is minus its direct effect",
          diag is not None and abs(float(diag.get_attribute("data-value"))
                                   + summary[0]["direct_effect"]["mean"]) <= 1e-4)
    pts = driver.find_elements(By.CSS_SELECTOR, "#scatter circle")
    check("scatter: one point per component", len(pts) == n_comp, len(pts))
    trs = driver.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
    first = trs[0].find_elements(By.TAG_NAME, "td") if trs else []
    check("summary table: one row per component, direct and total as the API",
          len(trs) == n_comp and first and first[0].text == summary[0]["component"]
          and abs(float(first[3].text) - summary[0]["direct_effect"]["mean"]) <= 1e-3
          and abs(float(first[4].text) - summary[0]["total_effect"]["mean"]) <= 1e-3,
          [t.text for t in first])
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "dashboard.png")
    driver.save_screenshot(shot)
    check(f"screenshot saved ({shot})", os.path.getsize(shot) > 10000)

    # a per-position grid: the component x position heatmap, cells as the API's means
    grid_job = server.submit({"model": "tiny", "prompts": ["the cat sat on the mat", "a dog ran in the park"],
                              "ablations": {"components": ["resid_pre.1", "attn.2"], "methods": ["zero"],
                                            "positions": {"each": "all"}}})
    server.wait(grid_job)
    grows = server.rows(grid_job)
    gheader = next(r for r in grows if r["type"] == "header")
    gsum = [r for r in grows if r["type"] == "summary"]
    driver.get(URL + "/#job=" + grid_job)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == grid_job)
    check("grid: the position heatmap is shown", driver.find_element(By.ID, "grid-section").is_displayed())
    gcells = driver.find_elements(By.CSS_SELECTOR, "#gridmap td.cell")
    want = {(r["component"], r["position"]): r["total_effect"]["mean"] for r in gsum}
    got = {(c.get_attribute("data-component"), int(c.get_attribute("data-position"))):
           float(c.get_attribute("data-value")) for c in gcells}
    check("grid: one cell per component x position, values as the API",
          len(gcells) == len(gheader["components"]) * len(gheader["grid"])
          and all(abs(got[k] - v) <= 1e-6 for k, v in want.items()), (len(gcells), len(want)))
    heads = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#gridmap thead th")][1:]
    check("grid: columns are the grid's positions", heads == [str(p) for p in gheader["grid"]], heads)
    check("grid: the colour scale's end is written out",
          driver.find_element(By.ID, "grid-lim").text.startswith("±"))
    driver.save_screenshot(os.path.join(ARTIFACTS, "dashboard-grid.png"))
    driver.find_element(By.ID, "logout").click()
    check("forgetting the token clears the session",
          driver.execute_script("return sessionStorage.getItem('hydra-token')") is None)
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    check("no script errors in the console", not errors, errors)
finally:
    if driver:
        driver.quit()
    server.stop()

sys.exit(check.exit_code())
