"""The dashboard as people use it, in a real browser: an impatient double click or a lost answer
starts one job, a keyboard user can cancel a running job while the page polls, Back returns to
the list as it was left, a narrow screen reaches every column, and an unknown address says so."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import upload, wait_for
from tests.ui.conftest import save_screenshot, sign_in

JOB = re.compile(r".*/ui/jobs/([0-9a-f-]{36})$")


@pytest.fixture(scope="module")
def table():
    from dvrl_core.datasets import make_table

    return make_table(300, n_features=5, signal=3.0, random_state=5)


def settled_scroll(page) -> float:
    """``window.scrollY`` once a wheel's smooth scrolling has stopped: ``mouse.wheel`` does not
    wait for it, and a place read halfway is not where the reader left the page."""
    page.wait_for_function("() => window.scrollY > 300")
    last = None
    while (now := page.evaluate("window.scrollY")) != last:
        last = now
        page.wait_for_timeout(250)
    return now


def said_or_explain(page, selector: str, api, job_id: str, artifacts) -> None:
    """Wait for ``selector``; if it never shows, fail with what the page and the API showed
    instead (a screenshot too), not only a timeout."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.locator(selector).wait_for()
    except PlaywrightTimeout:
        shot = save_screenshot(page, artifacts, "not-said")
        head = page.evaluate("document.querySelector('.page-head')?.outerHTML")
        focused = page.evaluate("document.activeElement && document.activeElement.outerHTML")
        job = api.get(f"/v1/jobs/{job_id}").json()
        pytest.fail(f"{selector} never showed; the head: {head}; the focus: {focused}; the "
                    f"job: {job.get('state')} {job.get('progress')}; screenshot {shot}")


def job_ids(api) -> list[str]:
    return [job["id"] for job in api.get("/v1/jobs", params={"page_size": 100}).json()["items"]]


def test_a_double_click_or_a_lost_answer_starts_one_job(server, api_as, browser_context, table):
    api = api_as("alice")
    dataset_id = upload(api, table, "customers.csv")
    page = browser_context.new_page()
    sign_in(page, server, api.key)
    page.goto(f"{server}/ui/new")
    page.select_option("#field-dataset", dataset_id)
    page.fill("#field-iterations", "20")

    # a number box holding text: said by the field, nothing sent (it went as "" before)
    page.fill("#field-seed", "")
    page.locator("#field-seed").press_sequentially("1e")
    page.click("#start-job")
    assert page.locator('.field-error[data-for="seed"]').inner_text() == "not a number"
    assert job_ids(api) == []
    page.fill("#field-seed", "4")

    # the job is made but its answer never reaches the page; the user clicks again
    lost = []

    def lose_the_answer(route):
        if not lost:
            lost.append(route.fetch())  # the server has the request and answers...
            route.abort("connectionreset")  # ...the page sees the connection drop
        else:
            route.continue_()

    page.route("**/v1/jobs", lose_the_answer)
    page.click("#start-job")
    page.locator("#job-status .alert").wait_for()
    assert lost[0].status == 202
    first = lost[0].json()["id"]
    page.dblclick("#start-job")
    page.wait_for_url(JOB)
    assert JOB.match(page.url)[1] == first
    assert job_ids(api) == [first]
    page.locator("h1 .badge").wait_for()
    assert page.title().startswith(f"Job {first[:8]} · ")
    page.close()
    api.post(f"/v1/jobs/{first}:cancel")


def test_a_keyboard_user_cancels_a_running_job(server, api_as, browser_context, table,
                                               artifacts):
    """The page polls every second; the Cancel button keeps the focus through it and through
    the job's start, a server that stops answering for a while is said and then forgotten,
    the cancelled job says where training stopped, and it can then be deleted."""
    api = api_as("alice")
    spec = {"dataset_id": upload(api, table), "target": "label", "validation": {"fraction": 0.3},
            "seed": 0, "dvrl": {"iterations": 20000, "tolerance": 0}, "evaluations": []}
    blocker = api.post("/v1/jobs", json=spec).json()  # takes the one worker
    wait_for(api, blocker["id"], states=("RUNNING",))
    job = api.post("/v1/jobs", json=spec).json()
    page = browser_context.new_page()
    sign_in(page, server, api.key)
    page.goto(f"{server}/ui/jobs/{job['id']}")
    page.locator("h1 .badge", has_text="queued").wait_for()
    page.focus("#cancel-job")

    # no answer for a while: the progress card says so, and once answers come it is drawn
    # again, though the queued job has not changed (it said "does not answer" until a reload)
    page.route(f"**/v1/jobs/{job['id']}", lambda route: route.abort("connectionrefused"))
    page.locator("#live .alert").wait_for()
    page.unroute(f"**/v1/jobs/{job['id']}")
    page.locator("#live .alert").wait_for(state="detached")
    assert page.locator("#live .live-head .sub").inner_text() == "waiting for a worker"

    api.post(f"/v1/jobs/{blocker['id']}:cancel")  # the job starts: the button keeps the focus
    iteration = page.locator("#live dl.facts div", has_text="Iteration").locator("dd")
    iteration.filter(has_text=re.compile(r"^[1-9][\d,]* / 20,000$")).wait_for(timeout=120_000)
    seen = {iteration.inner_text()}
    while len(seen) < 3:  # two more polls that changed the page
        page.wait_for_timeout(300)
        seen.add(iteration.inner_text())
    assert page.evaluate("document.activeElement.id") == "cancel-job"
    assert page.title().startswith(f"Job {job['id'][:8]} · running")

    # the first request is lost: said beside the button, which takes the key again
    page.route("**/v1/jobs/*:cancel", lambda route: route.abort("connectionreset"))
    page.keyboard.press("Enter")
    said_or_explain(page, ".page-head .actions .alert", api, job["id"], artifacts)
    assert page.evaluate("document.activeElement.id") == "cancel-job"
    assert api.get(f"/v1/jobs/{job['id']}").json()["state"] == "RUNNING"
    page.unroute("**/v1/jobs/*:cancel")
    page.keyboard.press("Enter")
    page.locator("h1 .badge", has_text="cancelled").wait_for(timeout=60_000)
    assert page.locator(".page-head .alert").count() == 0  # the new state's head has none
    # the button pressed is gone: the focus is on the heading, Tab goes on from there
    assert page.evaluate("document.activeElement.tagName") == "H1"
    stopped = wait_for(api, job["id"])["progress"]
    assert stopped["phase"] == "cancelled" and 0 < stopped["iteration"] < 20000
    assert stopped["total"] == 20000
    assert page.locator("#live .live-head .sub").inner_text() == \
        f"cancelled at {stopped['iteration']:,} / 20,000"
    assert iteration.inner_text() == f"{stopped['iteration']:,} / 20,000"

    # a finished job can be deleted from its page: asked once more, the focus on Keep
    page.click("#delete-job")
    assert page.evaluate("document.activeElement.id") == "keep-job"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "delete-job"
    assert api.get(f"/v1/jobs/{job['id']}").status_code == 200  # kept
    page.click("#delete-job")
    page.click("#confirm-delete")
    page.locator("#deleted-notice").wait_for()
    assert page.url == f"{server}/ui"  # the list, which says what is gone
    assert page.locator("#deleted-notice").inner_text() == \
        f"Job {job['id'][:8]} and its values were deleted."
    assert api.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert page.locator(f'#jobs-table tr[data-job-id="{job["id"]}"]').count() == 0
    # the deleted job's page left the history: Back goes to the page before it, not to "Job
    # not found"
    page.go_back()
    page.wait_for_url(f"{server}/ui")
    page.locator("#jobs-table").wait_for()
    assert page.locator("text=Job not found").count() == 0
    page.close()


def test_the_jobs_list_keeps_its_place(server, api_as, browser_context, table, artifacts):
    """"Show more", a job, then Back: the same rows at the same place. The filter is in the
    address, whatever its case; a narrow screen scrolls the table sideways to its last column;
    an address the dashboard does not know says so, as a page."""
    api = api_as("alice")
    dataset_id = upload(api, table)
    made = []
    for seed in range(27):  # cancelled while queued: nothing runs
        job = api.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "label",
                                         "validation": {"fraction": 0.3}, "seed": seed}).json()
        api.post(f"/v1/jobs/{job['id']}:cancel")
        made.append(job["id"])
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 700})
    sign_in(page, server, api.key)
    rows = page.locator("#jobs-table tr[data-job-id]")
    rows.nth(24).wait_for()
    assert rows.count() == 25
    page.click("text=Show more")
    rows.nth(26).wait_for()
    assert page.url.endswith("/ui?rows=50")
    page.mouse.wheel(0, 2000)
    left_at = settled_scroll(page)
    rows.nth(26).locator("a").click()
    page.wait_for_url(JOB)
    assert JOB.match(page.url)[1] == made[0]  # the oldest, last in the list
    page.go_back()
    rows.nth(26).wait_for()
    assert rows.count() == 27
    page.wait_for_function(f"() => Math.abs(window.scrollY - {left_at}) < 5")

    page.goto(f"{server}/ui?rows=100000")  # the address says what the list shows
    rows.nth(26).wait_for()
    assert page.url == f"{server}/ui?rows=500"

    page.goto(f"{server}/ui?state=CANCELLED")
    rows.nth(24).wait_for()
    assert page.locator('.chip[aria-selected="true"]').inner_text().lower() == "cancelled"
    assert {badge.lower() for badge in rows.locator(".badge").all_inner_texts()} == {"cancelled"}
    assert "cancelled" in rows.first.locator(".progress-cell").inner_text()
    page.goto(f"{server}/ui?state=cancelling")  # a filter of its own (it listed every job)
    page.locator("#jobs-table td.empty").wait_for()
    assert page.locator('.chip[aria-selected="true"]').inner_text().lower() == "cancelling"
    assert page.locator("#jobs-table td.empty").inner_text() == "No cancelling jobs."

    page.set_viewport_size({"width": 400, "height": 800})
    page.goto(f"{server}/ui")
    rows.first.wait_for()
    created = page.locator("#jobs-table th", has_text="Created")
    assert created.bounding_box()["x"] > 400  # past the screen's edge...
    page.locator("#jobs-table").hover()
    page.mouse.wheel(2000, 0)
    page.wait_for_function("() => document.querySelector('.table-scroll').scrollLeft > 0")
    box = created.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 400  # ...and scrolled into view
    # a phone's width: only the table scrolls sideways, never the page (the bar with the key
    # made every page 518 px wide, its "forget" off the screen)
    page.set_viewport_size({"width": 375, "height": 800})
    for address, drawn in (("/ui", "#jobs-table tr[data-job-id]"), ("/ui/new", "#start-job"),
                           (f"/ui/jobs/{made[0]}", "#delete-job")):
        page.goto(f"{server}{address}")
        page.locator(drawn).first.wait_for()
        save_screenshot(page, artifacts, f"narrow{address.replace('/', '-')[:12]}")
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 375, f"{address} is {wide} px wide"
        assert page.locator("#forget-key").bounding_box()["x"] + \
            page.locator("#forget-key").bounding_box()["width"] <= 375

    answer = httpx.get(f"{server}/ui/nowhere")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page.goto(f"{server}/ui/nowhere")
    page.locator("h1", has_text="Page not found").wait_for()
    assert page.title() == "Page not found · DVRL data valuation"
    page.close()


def test_the_form_fills_defaults_and_a_finished_job_says_what_it_did(server, api_as,
                                                                      browser_context, table,
                                                                      artifacts):
    """An empty seed was sent as "" (refused in jargon) and a validation table left unchosen as
    dataset ''; a job that returned the prior before training read 'Iteration 200 / 200'; the
    ways of training were neither offered nor shown; 20 rows 'of 5 flagged'."""
    api = api_as("alice")
    train = upload(api, table.iloc[:200], "train.csv")
    test = upload(api, table.iloc[200:].drop(columns=["label"]), "test-without-label.csv")
    good_test = upload(api, table.iloc[200:], "test.csv")
    page = browser_context.new_page()
    sign_in(page, server, api.key)
    page.goto(f"{server}/ui/new")
    # a screen reader hears the page's name, not every redraw of <main>; unlabelled inputs
    # have a name
    assert page.locator("#announce").inner_text() == "New job"
    assert page.locator("main[aria-live]").count() == 0
    for name in ("validation fraction", "validation table", "validation data", "evaluations"):
        assert page.get_by_label(name, exact=True).count() == 1, name
    page.select_option("#field-dataset", train)
    page.locator("label.segment", has_text="A validation table").click()
    page.click("#start-job")  # no validation table chosen: said by the field, nothing sent
    assert page.locator('.field-error[data-for="validation"]').inner_text() == \
        "choose a validation table"
    page.locator("label.segment", has_text="Hold out a fraction").click()
    page.select_option("#field-test", test)  # lacks the target: said by the test table's field
    page.click("#start-job")
    page.locator('.field-error[data-for="test.dataset_id"]').filter(
        has_text="no column 'label'").wait_for()
    assert page.locator('.field-error[data-for="target"]').inner_text() == ""
    assert job_ids(api) == []

    page.select_option("#field-test", good_test)
    page.fill("#field-seed", "")  # the API's default seed
    page.fill("#field-iterations", "200")
    page.fill("#field-noise", "0.2")
    page.check("#field-choices")
    page.click("#start-job")
    page.wait_for_url(JOB)
    job = wait_for(api, JOB.match(page.url)[1])
    assert job["state"] == "SUCCEEDED", job["error"]
    assert job["spec"]["seed"] == 0
    used = job["summary"]["diagnostics"]["convergence"]["iterations_used"]
    page.wait_for_selector('[data-figure="choices"]', timeout=120_000)
    iteration = page.locator("#live dl.facts div", has_text="Iteration").locator("dd")
    if used == 0:
        assert iteration.inner_text() == "0 of 200: the prior was returned before training"
    else:
        assert iteration.inner_text().startswith(f"{used:,} of 200 used") or used == 200
    choices = job["summary"]["training_choices"]
    figure = page.locator('[data-figure="choices"]')
    assert "(recommended)" in figure.inner_text()
    assert f"{choices['uniform']:.4f}" in figure.inner_text()
    save_screenshot(page, artifacts, "ways-of-training", full_page=True)
    flagged = job["summary"]["flagged"]
    lead = page.locator("#lowest .card-title p.sub").inner_text()
    assert lead.startswith(f"The 20 rows to review first, of {flagged} flagged") if flagged >= 20 \
        else lead.startswith("The 20 lowest-valued rows; the ")
    page.close()
