"""The web console in a real browser: Debian's chromium, driven by Playwright, against a real ``tailor serve``.

The walk a new user takes (sign in, upload the sample CSV, read its report, start a head-method job, watch it
finish, promote the version, keep its inputs, classify in the playground, label an answer in the review queue
with the keyboard, retrain and compare the two versions (or cancel the retrain), in English the trust pages
(verify the audit chain, run a bias report, a promotion refused by the release gate then overridden), sign out)
in English and in Chinese; a tenant that cannot see another's pages; no request leaving the server; no error in the browser's
console; a label for every control. Every page is screenshotted into ``screenshots/console/``
(``TAILOR_SCREENSHOTS`` to change; not committed), with each page's weight and server time in ``pages.json``.

Skipped when chromium is missing, unless ``TAILOR_TEST_BROWSER=required`` (as ``.ci/run`` sets after installing it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SAMPLE_CSV = ROOT / "src" / "tailor" / "sample_data" / "finance_sentiment_train.csv"
SHOTS = Path(os.environ.get("TAILOR_SCREENSHOTS", ROOT / "screenshots" / "console"))
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--metrics-recording-only"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium():
    executable = shutil.which("chromium")
    if executable is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("TAILOR_TEST_BROWSER") == "required":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@dataclass
class Tab:
    """One browser tab on the server, with everything that must not happen recorded as it happens."""

    page: object
    base: str
    lang: str
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    weights: dict = field(default_factory=dict)

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("networkidle")

    def shot(self, name: str) -> None:
        """Screenshot the page as ``<lang>-<name>.png`` and note its weight and server time."""
        self.page.wait_for_load_state("networkidle")
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SHOTS / f"{self.lang}-{name}.png", full_page=True)
        self.check_accessible(name)
        self.weights[f"{self.lang}-{name}"] = self.page.evaluate("""() => {
            const nav = performance.getEntriesByType("navigation")[0];
            const resources = performance.getEntriesByType("resource");
            const timing = nav.serverTiming.find(t => t.name === "page");
            return {url: location.pathname + location.search,
                    bytes: nav.encodedBodySize + resources.reduce((sum, r) => sum + r.encodedBodySize, 0),
                    requests: 1 + resources.length, server_ms: timing ? timing.duration : null};
        }""")

    def check_accessible(self, name: str) -> None:
        """Every control has a label (a <label>, aria-label or aria-labelledby) and every button a name, and the
        page has one <h1> and a language."""
        unnamed = self.page.evaluate("""() => {
            const named = el => (el.labels && el.labels.length) || el.getAttribute("aria-label")
                                || el.getAttribute("aria-labelledby");
            const controls = [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
                .filter(el => !named(el)).map(el => el.outerHTML.slice(0, 120));
            const buttons = [...document.querySelectorAll("button")]
                .filter(b => !b.textContent.trim() && !b.getAttribute("aria-label")).map(b => b.outerHTML.slice(0, 120));
            return [...controls, ...buttons];
        }""")
        assert unnamed == [], f"{name}: controls without a label: {unnamed}"
        assert self.page.locator("h1").count() == 1 and self.page.locator("html").get_attribute("lang")

    def assert_clean(self) -> None:
        assert self.outside == [], f"requests left the server: {self.outside}"
        assert self.errors == [], f"errors in the browser console: {self.errors}"


def open_tab(browser, server_url: str, lang: str) -> Tab:
    context = browser.new_context(locale="zh-CN" if lang == "zh" else "en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    tab = Tab(page, server_url, lang)

    def on_request(request):
        if not (request.url.startswith(server_url) or request.url.startswith("data:")):
            tab.outside.append(request.url)

    page.on("request", on_request)
    page.on("console", lambda message: message.type == "error" and tab.errors.append(message.text))
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    page.on("response", lambda response: response.status >= 500 and tab.errors.append(
        f"{response.status} {response.request.method} {response.url}"))
    return tab


def save_weights(tabs: list[Tab]) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    merged = {}
    target = SHOTS / "pages.json"
    if target.exists():
        merged = json.loads(target.read_text())
    for tab in tabs:
        merged.update(tab.weights)
    target.write_text(json.dumps(merged, indent=1, sort_keys=True))


def sign_in(tab: Tab, key: str) -> None:
    tab.go("/")  # the root leads to the console, which asks for a key in the browser's language
    assert tab.page.url.startswith(tab.base + "/console/sign-in")
    tab.shot("sign-in")
    tab.page.locator("#key").fill(key)
    tab.page.locator("form.card button[type=submit]").click()
    tab.page.wait_for_url(re.compile(r".*/console(\?.*)?$"))
    tab.shot("home")


def upload_and_read_the_report(tab: Tab) -> str:
    """Upload the sample CSV on the Data page; return the file id the report page shows."""
    tab.go("/console/data")
    tab.page.locator("#file").set_input_files(SAMPLE_CSV)
    tab.page.locator("#upload-button").click()
    tab.page.wait_for_url(re.compile(r".*/console/data/file-[\w-]+"))
    tab.page.locator("#no-blockers").wait_for()
    tab.shot("data-report")
    file_id = tab.page.url.rsplit("/", 1)[-1].split("?")[0]
    tab.go("/console/data")
    assert tab.page.locator("#files").get_by_text(SAMPLE_CSV.name).count() >= 1
    tab.shot("data")
    return file_id


def start_a_head_job(tab: Tab, file_id: str) -> str:
    """Open Fine-tune from the file's report, pick the head method and one epoch, launch; return the job id."""
    tab.go(f"/console/data/{file_id}")
    tab.page.locator("#finetune-link").click()
    tab.page.wait_for_url(re.compile(r".*/console/finetune\?file="))
    tab.page.locator("#method").select_option("head")
    tab.page.locator("#n_epochs").fill("1")
    tab.page.locator("#estimate table").wait_for(timeout=90_000)  # the base's speed is measured once
    tab.shot("finetune")
    tab.page.locator("#launch").click()
    tab.page.wait_for_url(re.compile(r".*/console/jobs/ftjob-[\w-]+"))
    return tab.page.url.rsplit("/", 1)[-1].split("?")[0]


def watch_the_job_finish(tab: Tab, job_id: str) -> str:
    """Stay on the job page while it runs (its status and curves update live); return the fine-tuned model."""
    tab.page.locator("#job-status.status-succeeded").wait_for(timeout=300_000)
    tab.page.locator("#job-result a").wait_for()
    assert tab.page.locator("svg.chart polyline").count() >= 1
    tab.shot("job")
    tab.go("/console/jobs")
    assert tab.page.locator(f'a[href="/console/jobs/{job_id}"]').count() == 1
    tab.shot("jobs")
    tab.go(f"/console/jobs/{job_id}")
    return tab.page.locator("#job-result a").inner_text()


def promote(tab: Tab, model_page: str) -> str:
    """On the model's page, point a new alias ``production`` at version 1; return the model's name."""
    tab.go(model_page)
    tab.shot("model")
    tab.page.locator("#release-new-alias").fill("production")
    tab.page.locator("#release-new-reason").fill("first release")
    tab.page.locator('form[data-alias=""] button[value="set"]').click()
    tab.page.locator('#aliases tr[data-alias="production"]').wait_for()
    assert tab.page.locator("#history").get_by_text("first release").count() == 1
    tab.shot("model-released")
    name = tab.page.locator(".release-forms").get_attribute("data-model")
    tab.go(f"/console/models/{name}/1")
    tab.shot("model-version")
    tab.go("/console/models")
    tab.shot("models")
    return name


def classify(tab: Tab, name: str) -> None:
    """In the playground, classify two texts through the alias; every label's probability is shown."""
    tab.go(f"/console/playground?model={name}@production")
    tab.page.locator("#pg-input").fill("$AAPL beats estimates, shares jump 6% after hours\n"
                                       "Regional bank stocks slide as deposit outflows accelerate")
    tab.page.locator("#pg-classify-form button[type=submit]").click()
    results = tab.page.locator("#pg-results > li")
    results.nth(1).wait_for()
    assert results.count() == 2
    assert tab.page.locator("#pg-results dl.bars dt").count() == 6  # 3 labels per text
    tab.shot("playground")


def store_inputs(tab: Tab, name: str) -> None:
    """On the model's monitoring page, turn on keeping its input texts (they feed the review queue)."""
    tab.go(f"/console/monitoring/{name}")
    tab.page.locator('#monitoring-config input[name="store_inputs"]').check()
    tab.page.locator('#monitoring-config button[type="submit"]').click()
    tab.page.locator("#saved:not(:empty)").wait_for()


def review_and_retrain(tab: Tab, name: str) -> str:
    """Label the first queued answer with key 1, undo it with U, label it again and the second answer with key
    2, then start a retrain on the labels; return the retrain job's id."""
    tab.go(f"/console/review/{name}")
    tab.shot("review")
    given = tab.page.locator("#given")
    tab.page.keyboard.press("1")
    tab.page.wait_for_function("() => document.getElementById('given').textContent === '1'")
    tab.page.keyboard.press("u")
    tab.page.wait_for_function("() => document.getElementById('given').textContent === '0'")
    tab.page.keyboard.press("1")
    tab.page.wait_for_function("() => document.getElementById('given').textContent === '1'")
    tab.page.keyboard.press("2")
    tab.page.wait_for_function("() => document.getElementById('given').textContent === '2'")
    assert given.inner_text() == "2"
    tab.page.locator("#retrain:not([disabled])").click()
    tab.page.wait_for_url(re.compile(r".*/console/jobs/ftjob-[\w-]+"))
    return tab.page.url.rsplit("/", 1)[-1]


def cancel(tab: Tab) -> None:
    """Cancel the job whose page is open, with its button."""
    tab.page.locator('#job-actions button[data-action="cancel"]').click()
    tab.page.locator("#job-status.status-cancelled").wait_for()


def compare_with_the_retrain(tab: Tab, name: str) -> None:
    """Watch the retrain (open on its job page) finish as version 2, then see both versions side by side."""
    tab.page.locator("#job-status.status-succeeded").wait_for(timeout=300_000)
    tab.go(f"/console/models/{name}/compare?a=1&b=2")
    assert tab.page.locator("main table").count() >= 1
    tab.shot("model-compare")


def trust(tab: Tab, name: str) -> None:
    """Verify the audit chain; run version 1's bias report (the slice finder and the counterfactual check); set
    a release gate version 2 fails (it has no slice report), see its promotion from a shadow refused with the
    reason, then override it with a reason (an admin's)."""
    tab.go("/console/audit")
    tab.page.locator('#audit-verify button[name="verify"]').click()
    tab.page.locator("#chain-result .status-succeeded").wait_for()
    tab.shot("audit")
    tab.go(f"/console/models/{name}/1/bias")
    tab.page.locator("#bias-counterfactual").check()
    tab.page.locator("#bias-form button[type=submit]").click()
    tab.page.locator("#worst-h").wait_for(timeout=120_000)  # the page reloads with the stored report
    assert tab.page.locator("#flip-rate").count() == 1
    tab.shot("bias")
    tab.go("/console/gate")
    tab.page.locator("#gate-min_accuracy").fill("1")
    tab.page.locator("#gate-require_fairness").check()  # version 2 has no slice report: refused whatever it scores
    tab.page.locator("#gate-form button[type=submit]").click()
    tab.page.locator('#gate tr[data-threshold="min_accuracy"] td:text("1")').wait_for()
    tab.shot("gate")
    tab.go(f"/console/models/{name}")
    form = tab.page.locator('form.release[data-alias="production"]')
    form.locator('select[name="version"]').select_option("2")
    with tab.page.expect_navigation():  # the page reloads with the shadow, its scripts ready for the promote
        form.locator('button[value="shadow"]').click()
    promote_button = tab.page.locator('form.release[data-alias="production"] button[value="promote"]')
    promote_button.click()
    refusal = tab.page.locator('form.release[data-alias="production"] [data-error-for="version"]')
    refusal.wait_for()
    message = refusal.inner_text()  # the API's refusal, with the failing number against the threshold
    assert message.startswith(f"release gate: {name}:2 fails: ")
    assert f"no slice report: run tailor eval {name}:2 FILE --slice-col COL" in message
    assert message.endswith("(an admin may override with a reason)")
    tab.errors.remove("Failed to load resource: the server responded with a status of 409 (Conflict)")  # expected
    tab.shot("gate-refused")
    form = tab.page.locator('form.release[data-alias="production"]')
    form.locator('input[name="override"]').check()
    form.locator('input[name="reason"]').fill("accepted by the risk board")
    promote_button.click()
    tab.page.locator("#history").get_by_text("accepted by the risk board", exact=False).wait_for()
    assert tab.page.locator('#aliases tr[data-alias="production"] td.num').inner_text() == "2"


def visit_the_other_pages(tab: Tab, name: str) -> None:
    for page, path in (("monitoring", f"/console/monitoring/{name}"), ("monitoring-index", "/console/monitoring"),
                       ("review-index", "/console/review"), ("keys", "/console/keys")):
        tab.go(path)
        tab.shot(page)


def sign_out(tab: Tab) -> None:
    tab.page.locator("form.signout button").click()
    tab.page.wait_for_url(re.compile(r".*/console/sign-in\?reason=signed_out"))
    signed_out = {"en": "You are signed out.", "zh": "你已退出登录。"}[tab.lang]
    assert tab.page.locator("p.notice").inner_text() == signed_out
    tab.go("/console/jobs")
    assert "/console/sign-in" in tab.page.url


def walk(tab: Tab, key: str, *, retrain: bool) -> dict:
    """The whole loop; the retrain from the review queue is watched to the end and compared with the first
    version (``retrain``), or cancelled. Returns the URLs of what it made (for the tenant-isolation check)."""
    sign_in(tab, key)
    file_id = upload_and_read_the_report(tab)
    job_id = start_a_head_job(tab, file_id)
    watch_the_job_finish(tab, job_id)
    model_page = tab.page.locator("#job-result a").get_attribute("href")
    name = promote(tab, model_page)
    store_inputs(tab, name)
    classify(tab, name)
    visit_the_other_pages(tab, name)
    review_and_retrain(tab, name)
    if retrain:
        compare_with_the_retrain(tab, name)
        trust(tab, name)
    else:
        cancel(tab)
    sign_out(tab)
    return {"file": f"/console/data/{file_id}", "job": f"/console/jobs/{job_id}", "model": model_page,
            "version": f"/console/models/{name}/1", "playground": f"/console/playground?model={name}",
            "monitoring": f"/console/monitoring/{name}"}


def test_the_whole_loop_in_english_and_in_chinese(server, chromium):
    english = open_tab(chromium, server.url, "en")
    made = walk(english, server.key, retrain=True)
    assert english.page.locator("html").get_attribute("lang") == "en"
    english.assert_clean()

    globex_key = server.cli("tenants", "create", "globex")["key"]["secret"]
    chinese = open_tab(chromium, server.url, "zh")  # a browser asking for Chinese gets Chinese
    walk(chinese, globex_key, retrain=False)
    assert chinese.page.locator("html").get_attribute("lang") == "zh-CN"
    chinese.assert_clean()

    sign_in(chinese, globex_key)  # globex cannot see acme's pages: each is a 404 page
    for what, path in made.items():
        response = chinese.page.goto(server.url + path)
        assert response.status == 404, (what, path, response.status)
    chinese.shot("not-found")
    save_weights([english, chinese])
