#!/usr/bin/env python3
"""The web dashboard in a real browser: headless Chromium (Debian's chromium
and chromium-driver) driven by selenium, against a real hydrad on loopback.

A job is submitted over HTTP (nothing through the UI); the test opens the
dashboard, gives the token, finds the job in the list, opens it, and checks
the heatmap (one cell per ablated component x downstream slot, values equal
to the API's summary rows), the scatter (one point per component) and the
summary table; the token must be in sessionStorage and not localStorage.
A screenshot is saved as a test artifact.

Then jobs at work (one prompt per work unit): a named job's list entry
(name, created time, prompts); a running job's page (times, its rate and
ETA, the progress bar, and the partial heatmap: the means of the rows of
the prompts done so far, checked against the API's variant rows once the
job ends, replaced by the summary at the end); a multi-method job (the
method selector holds each method, and the heatmap redraws for the one
chosen, as the API's summary).

usage: test_dashboard.py HYDRAD ROOT ARTIFACT_DIR"""
import json
import os
import sys
import time
import urllib.request

from hydra_testutil import Checks, Daemon
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HYDRAD, ROOT, ARTIFACTS = sys.argv[1:4]
check = Checks("test_dashboard")
TOKEN = "dash-token-0123456789abcdef"
server = Daemon(HYDRAD, os.path.join(ROOT, "tests", "data", "tiny-gpt2"), {TOKEN: "alice user"},
                "--unit-prompts", "1")
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
    pts = driver.find_elements(By.CSS_SELECTOR, "#scatter circle[data-component]")
    check("scatter: one point per component", len(pts) == n_comp, len(pts))
    legend = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#scatter text.legend-entry")]
    check("scatter: a legend of attention and MLP", legend == ["attention", "MLP"], legend)
    ticks = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#scatter text.tick")]
    check("scatter: tick numbers on its axes, 0 among them",
          len(ticks) >= 4 and "0" in ticks and all(float(t) == float(t) for t in ticks), ticks)
    lim = max(abs(v) for r in summary for v, sl in zip(r["effects"], slots) if v is not None
              and sl != r["component"])
    lo, hi = driver.find_element(By.ID, "heat-lo").text, driver.find_element(By.ID, "heat-hi").text
    check("heatmap: a colour legend from -max to +max |change| off the diagonal",
          hi == f"+{lim:.3f}" and lo == f"\u2212{lim:.3f}", (lo, hi, lim))
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

    # a running job: facts, progress, partial heatmap; then the summary
    slow = {"model": "tiny", "name": "slow sweep", "labels": {"sweep": "dash"},
            "prompts": [{"ids": [(7 * i + j) % 997 + 3 for j in range(100)]} for i in range(3)],
            "ablations": {"components": ["*"], "methods": ["resample"], "samples": 80, "seed": 3,
                          "positions": "all", "each_draw": True}, "reuse": False}
    run_job = server.submit(slow)
    driver.get(URL + "/#job=" + run_job)
    slow_wait = WebDriverWait(driver, 300)  # a unit of this job is minutes in a sanitizer build
    slow_wait.until(lambda d: d.execute_script("return document.body.dataset.partial"))
    # one snapshot of the page (it redraws every second while the job runs)
    snap = driver.execute_script("""
      const q = (s) => [...document.querySelectorAll(s)];
      return {facts: Object.fromEntries(q('#job-facts tr').map((tr) => [tr.dataset.fact, tr.querySelector('td').textContent])),
              title: document.getElementById('job-title').textContent,
              width: document.querySelector('#job-progress > div').style.width,
              partialShown: !document.getElementById('partial').hidden,
              partialText: document.getElementById('partial-n').textContent,
              cells: q('#heatmap td.cell').map((c) => [c.dataset.component, c.dataset.slot, c.dataset.value])};""")
    facts = snap["facts"]
    st = json.loads(server.get(f"/v1/jobs/{run_job}")[1])
    check("running job: the page names it and shows its start, rate and ETA",
          "slow sweep" in snap["title"] and facts.get("name") == "slow sweep"
          and facts.get("labels") == "sweep=dash" and facts.get("started", "–") != "–"
          and facts.get("rate", "–").endswith("/s") and facts.get("ETA", "–") != "–"
          and facts.get("finished") == "–", facts)
    width = snap["width"]
    check("running job: the progress bar has moved", width not in ("", "0%"), width)
    partial_text = snap["partialText"]
    k = int(partial_text.split()[0]) if partial_text[:1].isdigit() else 0
    pcells = {(c, s_): v for c, s_, v in snap["cells"]}
    check("running job: the partial note is shown with the prompts so far",
          snap["partialShown"] and 1 <= k < 3, partial_text)
    check("running job: the job has not ended yet (else the partial view proves nothing)",
          st["state"] == "running", st["state"])
    driver.save_screenshot(os.path.join(ARTIFACTS, "dashboard-running.png"))
    slow_wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == run_job)
    rrows = server.rows(run_job)
    rheader = next(r for r in rrows if r["type"] == "header")
    worst, n_cells = 0.0, 0
    for comp in rheader["components"]:
        got = [r for r in rrows if r["type"] == "variant" and r["component"] == comp and r["prompt"] < k]
        for s_i, slot in enumerate(rheader["slots"]):
            v = pcells.get((comp, slot))
            if v is None:
                worst = float("inf")
                continue
            n_cells += 1
            want = sum(r["effects"][s_i] for r in got) / len(got)
            worst = max(worst, abs(float(v) - want) / max(1e-6, abs(want)))
    check(f"running job: partial heatmap = the mean of the first {k} prompts' variant rows "
          f"({n_cells} cells, relative error {worst:.1e} <= 1e-5)", n_cells == len(rheader["components"]) * len(rheader["slots"]) == 42 and worst <= 1e-5, worst)
    check("ended job: the partial note is gone", not driver.find_element(By.ID, "partial").is_displayed())

    # the list: names, created times, prompts
    driver.get(URL + "/#")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#jobs tr[data-id='{run_job}']"))
    cells = [td.text for td in driver.find_elements(By.CSS_SELECTOR, f"#jobs tr[data-id='{run_job}'] td")]
    created = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(int(st["created_at"])))
    check("the list: id prefix, name, state, created (UTC), prompts",
          len(cells) == 10 and run_job.startswith(cells[0]) and cells[1] == "slow sweep"
          and cells[2] == "done" and cells[4] == created and cells[5] == "3", cells)

    # a multi-method job: the selector holds both, the heatmap follows it
    mm_job = server.submit({"model": "tiny", "prompts": ["the cat sat on the mat", "a dog ran in the park"],
                            "ablations": {"components": ["attn.*", "mlp.*"], "methods": ["zero", "mean"]}})
    server.wait(mm_job)
    mrows = server.rows(mm_job)
    mslots = next(r for r in mrows if r["type"] == "header")["slots"]
    driver.get(URL + "/#job=" + mm_job)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == mm_job)
    opts_ = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "#method option")]
    check("multi-method job: the selector holds zero and mean", opts_ == ["zero", "mean"], opts_)
    for method in ("mean", "zero"):
        driver.execute_script(f"const s = document.getElementById('method'); s.value = '{method}'; "
                              "s.dispatchEvent(new Event('change'));")
        mcells = {(c.get_attribute("data-component"), c.get_attribute("data-slot")):
                  float(c.get_attribute("data-value")) for c in driver.find_elements(By.CSS_SELECTOR, "#heatmap td.cell")}
        want = {(r["component"], s_): r["effects"][i] for r in mrows if r["type"] == "summary"
                and r["method"] == method for i, s_ in enumerate(mslots)}
        check(f"multi-method job: the heatmap for {method} is its summary's table",
              len(mcells) == len(want) == 42 and all(abs(mcells[k_] - v) <= 1e-9 for k_, v in want.items()),
              (len(mcells), len(want)))
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
