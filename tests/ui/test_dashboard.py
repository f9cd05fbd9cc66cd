"""The dashboard in a real browser: what it shows is what the owner-scoped API returns, the
figures are drawn, a job can be uploaded and started through its forms, another owner sees
nothing, and neither the dashboard nor /docs asks any host but the server."""

from __future__ import annotations

import io
import re

import httpx
import pandas as pd
import pytest

from tests.conftest import csv_bytes, upload, wait_for
from tests.ui.conftest import RequestLog, save_screenshot, sign_in

RESULTS_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def splits():
    """400 training rows, 200 validation rows (enough for the trust checks) and 200 test rows."""
    from dvrl_core.datasets import make_table

    table = make_table(800, n_features=6, signal=3.0, random_state=11)
    table.insert(0, "customer", [f"c{i:04d}" for i in range(len(table))])
    return {"train.csv": table.iloc[:400], "valid.csv": table.iloc[400:600],
            "test.csv": table.iloc[600:]}


def number(text: str) -> float:
    """A figure as the page prints it ("65.0%", "0.906", "1,200") as a number."""
    text = text.strip().replace(",", "")
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def test_the_job_page_shows_what_the_api_returns(server, api_as, browser_context, artifacts,
                                                 splits):
    api = api_as("alice")
    ids = {name: upload(api, frame, name) for name, frame in splits.items()}
    job = api.post("/v1/jobs", json={
        "dataset_id": ids["train.csv"], "target": "label", "id_column": "customer",
        "validation": {"dataset_id": ids["valid.csv"]}, "test": {"dataset_id": ids["test.csv"]},
        "label_noise": 0.2, "seed": 0, "dvrl": {"iterations": 60, "tolerance": 0},
        "evaluations": ["removal", "weighted"]}).json()
    page = browser_context.new_page()
    requests = RequestLog(page, server)

    sign_in(page, server, api.key)
    row = page.locator(f'#jobs-table tr[data-job-id="{job["id"]}"]')
    row.wait_for()
    assert row.locator(".badge").inner_text().upper() in ("QUEUED", "RUNNING", "SUCCEEDED")
    assert row.locator(".progress").count() == 1
    save_screenshot(page, artifacts, "jobs-list")

    row.locator("a").first.click()
    page.wait_for_url(f"**/ui/jobs/{job['id']}")
    page.wait_for_selector("#live .progress")
    page.wait_for_selector('[data-figure="histogram"] svg rect.bar, #results .alert',
                           timeout=RESULTS_TIMEOUT_MS)
    assert page.locator("#results .alert").count() == 0, page.locator("#results").inner_text()
    done = wait_for(api, job["id"])
    assert done["state"] == "SUCCEEDED", done["error"]
    summary = done["summary"]
    assert page.locator("h1 .badge").inner_text().upper() == "SUCCEEDED"

    # the figures the API returns, as the page prints them
    def tile(key: str) -> float:
        return number(page.locator(f'[data-metric="{key}"] .tile-value').inner_text())

    assert tile("rows") == summary["rows"] == 400
    assert tile("flagged") == summary["flagged"]
    assert tile("found_at_20") == pytest.approx(summary["label_noise"]["found_at_20"], abs=5e-4)
    assert tile("auroc") == pytest.approx(summary["label_noise"]["auroc"], abs=5e-4)
    assert page.locator("#trust-verdict").inner_text() == summary["trust"]["verdict"]

    # every figure is drawn, with as many lines and bars as the data has
    histogram = page.locator('[data-figure="histogram"]')
    assert histogram.locator("rect.bar").count() >= 5
    assert "All 400 rows" in histogram.inner_text()
    assert page.locator('[data-figure="discovery"] path.line').count() == 3
    removal = page.locator('[data-figure="removal"]')
    assert removal.locator("path.line").count() == 3 and removal.locator("path.band").count() == 1
    curves = api.get(f"/v1/jobs/{job['id']}/curves").json()
    assert removal.locator("circle.dot").count() == 3 * len(curves["removal"]["removed"])
    # a share's axis stops at 1: the random band of a near-perfect score drew it to 1.2
    near_one = {"metric": "auc", "removed": [0, 0.1, 0.2], "remove_lowest": [0.99, 1, 1],
                "remove_highest": [0.98, 0.9, 0.8], "random": [0.99, 0.98, 0.97],
                "random_std": [0.02, 0.1, 0.15]}
    ticks = page.evaluate("""async (curves) => {
        const { removalChart } = await import("/static/ui/js/job.js");
        const figure = removalChart(curves);
        return [...figure.querySelectorAll('text.tick[text-anchor="end"]')]
          .map((t) => Number(t.textContent)); }""", near_one)
    assert max(ticks) == 1 and min(ticks) <= 0.8
    weighted = page.locator('[data-figure="weighted"]')
    assert weighted.locator("rect.bar").count() == 2
    shown = [number(t) for t in weighted.locator("text.bar-value").all_text_contents()]
    expected = summary["weighted_training"]
    assert shown == pytest.approx([expected["unweighted"], expected["weighted"]], abs=5e-5)
    assert page.locator('[data-figure="reward"] path.line').count() == 1

    # the lowest-valued rows with their labels, in the API's order
    lowest = api.get(f"/v1/jobs/{job['id']}/values",
                     params={"order": "rank", "page_size": 20}).json()["items"]
    rows = page.locator("#lowest tbody tr")
    assert rows.count() == 20
    assert [rows.nth(i).get_attribute("data-row") for i in range(20)] == \
        [item["row"] for item in lowest]
    assert [rows.nth(i).locator(".label-pill").inner_text() for i in range(20)] == \
        [item["label"] for item in lowest]
    flipped = sum(item["noise_injected"] for item in lowest)
    assert page.locator("#lowest .flip").count() == flipped
    save_screenshot(page, artifacts, "job-page", full_page=True)
    save_screenshot(page, artifacts, "job-page-top")

    # the download carries the key, and holds every row with the API's values
    with page.expect_download() as download:
        page.click("#download-csv")
    downloaded = pd.read_csv(download.value.path())
    served = pd.read_csv(io.StringIO(api.get(f"/v1/jobs/{job['id']}/values",
                                             params={"format": "csv"}).text))
    assert len(downloaded) == 400
    pd.testing.assert_frame_equal(downloaded, served)

    assert requests.external() == []
    page.close()


def test_a_job_uploaded_and_started_through_the_forms(server, api_as, browser_context,
                                                      artifacts, splits, tmp_path):
    api = api_as("alice")
    table = tmp_path / "customers.csv"
    table.write_bytes(csv_bytes(splits["train.csv"]))
    page = browser_context.new_page()
    requests = RequestLog(page, server)
    sign_in(page, server, api.key)

    page.click('.nav a[data-section="new"]')
    page.wait_for_url("**/ui/new")
    page.set_input_files("#upload-file", str(table))
    page.click("#upload-form button[type=submit]")
    uploaded = page.locator("#upload-status .ok")
    uploaded.wait_for()
    dataset_id = uploaded.get_attribute("data-dataset-id")
    dataset = api.get(f"/v1/datasets/{dataset_id}").json()
    assert dataset["filename"] == "customers.csv" and dataset["rows"] == 400
    assert "400 rows" in uploaded.inner_text()

    page.select_option("#field-dataset", dataset_id)
    page.select_option("#field-target", "label")
    # the rows' names (a warning asked for them, and the form had no field)
    options = page.locator("#field-id-column option").all_inner_texts()
    assert options[0] == "none: rows are numbered" and "label" not in options
    page.select_option("#field-id-column", "customer")
    # how many rows the fraction holds out, and that the trust check wants more
    assert page.locator("#fraction-hint").inner_text() == ": about 80 rows; the trust check " \
        "needs 160 (a larger fraction, or a validation table, lets the job check its values)"
    page.fill("#field-fraction", "0.25")
    assert page.locator("#fraction-hint").inner_text().startswith(": about 100 rows; ")
    page.fill("#field-iterations", "20")
    page.fill("#field-seed", "3")
    page.check("#field-weighted")

    # the API's refusal is shown by the field it names
    page.fill("#field-noise", "1.5")
    page.click("#start-job")
    error = page.locator('.field-error[data-for="label_noise"]')
    error.wait_for()
    assert "less than 1" in error.inner_text()
    assert "invalid" in (page.locator("#field-noise").get_attribute("class") or "")
    save_screenshot(page, artifacts, "new-job-refused", full_page=True)

    page.fill("#field-noise", "0.1")
    page.click("#start-job")
    page.wait_for_url(re.compile(r".*/ui/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[1]
    spec = api.get(f"/v1/jobs/{job_id}").json()["spec"]
    assert spec["dataset_id"] == dataset_id and spec["target"] == "label"
    assert spec["id_column"] == "customer"
    assert spec["validation"] == {"dataset_id": None, "fraction": 0.25}
    assert spec["dvrl"]["iterations"] == 20 and spec["seed"] == 3
    assert spec["label_noise"] == 0.1 and spec["evaluations"] == ["removal", "weighted"]
    page.wait_for_selector("#live .progress")
    assert requests.external() == []
    page.close()
    api.post(f"/v1/jobs/{job_id}:cancel")  # the worker stops at once, not at the fixture's end


def test_a_job_that_ended_early_says_why(server, api_as, browser_context, splits):
    """With the defaults the run ends once the guard has decided (here before the first
    iteration): the trust card says so in the API's words, and no reward curve is drawn."""
    api = api_as("alice")
    ids = {name: upload(api, frame, name) for name, frame in splits.items()}
    job = api.post("/v1/jobs", json={
        "dataset_id": ids["train.csv"], "target": "label", "id_column": "customer",
        "validation": {"dataset_id": ids["valid.csv"]}, "seed": 0,
        "dvrl": {"iterations": 60}, "evaluations": []}).json()
    done = wait_for(api, job["id"])
    assert done["state"] == "SUCCEEDED", done["error"]
    decided = done["summary"]["diagnostics"]["convergence"]["decided"]
    assert decided and done["summary"]["trust"]["returned"] == "prior"
    page = browser_context.new_page()
    sign_in(page, server, api.key)
    page.goto(f"{server}/ui/jobs/{job['id']}")
    page.wait_for_selector("#trust-decided", timeout=RESULTS_TIMEOUT_MS)
    assert page.locator("#trust-decided").inner_text() == \
        f"The prior was returned; the run ended early: {decided}."
    page.wait_for_selector('[data-figure="histogram"] svg rect.bar')
    assert page.locator('[data-figure="reward"]').count() == 0
    assert page.locator("#trust-shift").count() == 0  # no shift: nothing said about one
    assert page.locator("#warnings").count() == 0  # validation rows apart: no warning
    page.close()


def test_a_job_validated_on_its_own_training_table_is_warned_about(server, api_as,
                                                                   browser_context, splits):
    """The training table given as its own validation table: the warning card leads the
    results, in the API's words."""
    api = api_as("alice")
    train_id = upload(api, splits["train.csv"], "train.csv")
    job = api.post("/v1/jobs", json={
        "dataset_id": train_id, "target": "label", "validation": {"dataset_id": train_id},
        "seed": 0, "dvrl": {"iterations": 20}, "evaluations": []}).json()
    done = wait_for(api, job["id"])
    assert done["state"] == "SUCCEEDED", done["error"]
    warnings = done["summary"]["warnings"]
    # the copies, and the customer column of a value per row valued as a feature
    assert len(warnings) == 2 and warnings[0].startswith("400 of the 400 validation rows")
    assert warnings[1].startswith("column 'customer' has 400 distinct values")
    page = browser_context.new_page()
    sign_in(page, server, api.key)
    page.goto(f"{server}/ui/jobs/{job['id']}")
    page.wait_for_selector("#warnings", timeout=RESULTS_TIMEOUT_MS)
    assert page.locator("#warnings p.warning").all_inner_texts() == warnings
    page.close()


def test_a_job_for_a_shifted_target_says_its_values_were_weighted(server, api_as,
                                                                  browser_context):
    """Validation rows from one of the training rows' two sites: the trust card says that the
    prior's values were weighted for the covariate shift, with the API's AUROC."""
    from dvrl_core.datasets import make_sites

    train, valid, _ = make_sites(900, 300, random_state=2)
    api = api_as("alice")
    job = api.post("/v1/jobs", json={
        "dataset_id": upload(api, train), "target": "sales", "seed": 0,
        "validation": {"dataset_id": upload(api, valid, "valid.csv")},
        "evaluations": []}).json()
    done = wait_for(api, job["id"])
    assert done["state"] == "SUCCEEDED", done["error"]
    shift = done["summary"]["diagnostics"]["shift"]
    assert shift["applied"]
    page = browser_context.new_page()
    sign_in(page, server, api.key)
    page.goto(f"{server}/ui/jobs/{job['id']}")
    page.wait_for_selector("#trust-shift", timeout=RESULTS_TIMEOUT_MS)
    text = page.locator("#trust-shift").inner_text()
    assert text.startswith("Covariate shift: a classifier tells the validation rows from")
    assert f"(AUROC {shift['auroc']:.2f})" in text
    page.close()


def test_a_regression_job_speaks_of_moved_targets(server, api_as, browser_context):
    """On a regression table the self-check and the trust check move targets rather than flip
    labels: the page says so everywhere it names them, never "flipped"."""
    from dvrl_core.datasets import make_table

    api = api_as("alice")
    table = make_table(700, n_features=5, task="regression", random_state=4)
    job = api.post("/v1/jobs", json={
        "dataset_id": upload(api, table.iloc[:400]), "target": "label",
        "validation": {"dataset_id": upload(api, table.iloc[400:], "valid.csv")},
        "label_noise": 0.2, "seed": 0, "evaluations": ["weighted"]}).json()
    done = wait_for(api, job["id"])
    assert done["state"] == "SUCCEEDED", done["error"]
    page = browser_context.new_page()
    sign_in(page, server, api.key)
    page.goto(f"{server}/ui/jobs/{job['id']}")
    page.wait_for_selector('[data-figure="discovery"] path.line', timeout=RESULTS_TIMEOUT_MS)
    # the evaluation's MSE as the API gives it: an error, lower is better (it read "-MSE")
    weighted = done["summary"]["weighted_training"]
    caption = page.locator('[data-figure="weighted"]').inner_text()
    assert "Test MSE (lower is better)" in caption and "−MSE" not in caption
    assert f"{weighted['unweighted']:.4f} → {weighted['weighted']:.4f}" in caption
    assert page.locator('[data-metric="found_at_20"] .tile-label').inner_text() == \
        "Moved targets in lowest 20%"
    assert "planted moved targets AUROC" in page.locator("#trust").inner_text()
    assert "Discovery of moved targets" in page.locator('[data-figure="discovery"]').inner_text()
    assert "target moved by the self-check" in \
        page.locator('[data-figure="histogram"]').inner_text()
    lowest = api.get(f"/v1/jobs/{job['id']}/values",
                     params={"order": "rank", "page_size": 20}).json()["items"]
    moved = sum(item["noise_injected"] for item in lowest)
    assert page.locator("#lowest .flip").all_inner_texts() == ["moved"] * moved
    # targets to six significant digits (-0.16705381043585213 filled the column), in full on
    # hover
    pills = page.locator("#lowest .label-pill")
    assert pills.all_inner_texts() == [f"{float(item['label']):.6g}".replace("e-0", "e-")
                                       for item in lowest]
    assert pills.first.get_attribute("title") == lowest[0]["label"]
    assert "flip" not in page.locator("#results").inner_text().lower()
    page.goto(f"{server}/ui")  # the jobs list
    row = page.locator(f'#jobs-table tr[data-job-id="{job["id"]}"]')
    row.wait_for()
    assert "of moved targets in lowest 20%" in row.inner_text()
    page.close()


def test_an_ensemble_job_shows_how_alike_its_runs_rank(server, api_as, browser_context, splits):
    """The header says it is an ensemble; a card gives the API's rank stability and the spread
    of the per-row standard errors (the page showed none of it)."""
    api = api_as("alice")
    job = api.post("/v1/jobs", json={
        "dataset_id": upload(api, splits["train.csv"], "train.csv"), "target": "label",
        "validation": {"dataset_id": upload(api, splits["valid.csv"], "valid.csv")},
        "seed": 0, "ensemble": 2, "dvrl": {"iterations": 20}, "evaluations": []}).json()
    done = wait_for(api, job["id"])
    assert done["state"] == "SUCCEEDED", done["error"]
    ensemble = done["summary"]["ensemble"]
    page = browser_context.new_page()
    sign_in(page, server, api.key)
    page.goto(f"{server}/ui/jobs/{job['id']}")
    page.wait_for_selector("#ensemble", timeout=RESULTS_TIMEOUT_MS)
    text = page.locator("#ensemble").inner_text()
    assert "The values are the mean of 2 runs with different seeds" in text
    assert f"mean Spearman correlation of {ensemble['rank_stability']['mean_spearman']:.3f}" \
        in text
    assert f"median {ensemble['std_error']['median']:.4f}" in text
    assert "ensemble of 2 runs" in page.locator(".lead").inner_text()
    # each run's own trust check, and the runs' mean AUROC on their planted rows
    trust = done["summary"]["trust"]
    members = page.locator("#trust-members tbody tr")
    assert members.count() == 3
    for row, member in zip(members.all()[:2], trust["members"], strict=True):
        cells = row.locator("td").all_inner_texts()
        assert cells[:2] == [str(member["seed"]), member["verdict"]]
        assert cells[3:] == [f"{member['planted_auroc'][k]:.3f}" for k in trust["planted_auroc"]]
    assert members.nth(2).locator("td").all_inner_texts()[3:] == \
        [f"{v:.3f}" for v in trust["planted_auroc"].values()]
    # why the prior came back: from the runs' own records (a generic reason was shown always)
    early = [m["iterations_used"] == 0 for m in ensemble["per_member"]]
    said = page.locator("#trust p.sub").first.inner_text()
    if trust["returned"] == "prior" and any(early):
        which = "every one" if all(early) else "1 of them"
        assert f"Each of the 2 runs returned the prior; {which} ended before training" in said
    elif trust["returned"] == "prior":
        assert "did not find the planted" in said
    # the iterations the runs used, not their full length (an ensemble that never trained
    # read "40 / 40" beside a trust card saying every run ended before training)
    used = sum(m["iterations_used"] for m in ensemble["per_member"])
    shown = page.locator("#live dl.facts div", has_text="Iteration").locator("dd").inner_text()
    assert shown == ("40 / 40" if used == 40 else
                     "0 of 40: every run returned the prior before training" if used == 0 else
                     f"{used} of 40 used by the 2 runs")
    page.close()


def test_names_from_the_data_cannot_reorder_the_page(server, api_as, browser_context,
                                                    splits):
    """A file name with a right-to-left override is isolated (<bdi>) wherever it is shown, so
    it cannot reverse the job's facts after it; a job address that is not valid
    percent-encoding says there is no such job rather than leaving the page blank."""
    api = api_as("alice")
    name = "\u0645\u0644\u0641\u202evsc.exe.csv"
    train_id = upload(api, splits["train.csv"], name)
    job = api.post("/v1/jobs", json={
        "dataset_id": train_id, "target": "label",
        "validation": {"dataset_id": upload(api, splits["valid.csv"], "valid.csv")},
        "seed": 0, "dvrl": {"iterations": 20}, "evaluations": []}).json()
    page = browser_context.new_page()
    sign_in(page, server, api.key)
    page.goto(f"{server}/ui/jobs/{job['id']}")
    page.locator(".lead bdi.name", has_text="vsc.exe").wait_for()
    assert page.locator(".lead bdi.name").inner_text() == name
    assert page.locator(".lead bdi.name").get_attribute("title") == name
    page.goto(f"{server}/ui")
    row = page.locator(f'#jobs-table tr[data-job-id="{job["id"]}"]')
    row.locator("bdi.name", has_text="vsc.exe").wait_for()
    assert row.locator("bdi.name").inner_text() == name
    page.goto(f"{server}/ui/jobs/%E0%A4%A")
    page.locator("#main", has_text=re.compile("not found", re.IGNORECASE)).wait_for()
    page.close()


def test_another_owner_sees_nothing(server, api_as, browser_context, artifacts, splits):
    alice = api_as("alice")
    train = upload(alice, splits["train.csv"], "alice-train.csv")
    job = alice.post("/v1/jobs", json={"dataset_id": train, "target": "label",
                                       "validation": {"fraction": 0.3},
                                       "dvrl": {"iterations": 5}}).json()
    page = browser_context.new_page()  # a new tab: its own sessionStorage, no key yet

    page.goto(f"{server}/ui")
    page.wait_for_selector("#key-form")
    page.fill("#api-key", "dvrl_0000_not-a-key")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("text=does not know that key")

    # a key copied from the chip ("dvrl_<id>_…") or in curly quotes: said, and nothing kept
    # (fetch refused the header before sending it, the key was kept and every page failed)
    bob = api_as("bob").key
    page.fill("#api-key", f"{bob}…")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("text=letters, digits, _ and - only")
    assert page.evaluate("sessionStorage.length") == 0
    assert page.locator("#forget-key").count() == 0

    page.fill("#api-key", bob)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#jobs-table td.empty")
    assert page.locator("#jobs-table tr[data-job-id]").count() == 0
    assert job["id"][:8] not in page.locator("main").inner_text()

    page.goto(f"{server}/ui/jobs/{job['id']}")
    page.wait_for_selector("text=Job not found")
    page.goto(f"{server}/ui/new")
    page.wait_for_selector("#datasets-table td.empty")
    assert "alice-train.csv" not in page.locator("main").inner_text()
    save_screenshot(page, artifacts, "other-owner")
    page.close()
    alice.post(f"/v1/jobs/{job['id']}:cancel")


def test_docs_render_swagger_ui_from_the_server_alone(server, browser_context, artifacts):
    page = browser_context.new_page()
    requests = RequestLog(page, server)
    page.goto(f"{server}/docs")
    page.wait_for_selector(".swagger-ui .opblock")
    operations = page.locator(".swagger-ui .opblock")
    assert operations.count() >= 15
    assert "/v1/jobs/{job_id}/values" in page.locator(".swagger-ui").inner_text()
    page.wait_for_load_state("networkidle")
    save_screenshot(page, artifacts, "docs")
    assert f"{server}/openapi.json" in requests.urls
    assert any(url.endswith("/swagger-ui-bundle.js") for url in requests.urls)
    assert requests.external() == []
    assert httpx.get(f"{server}/redoc").status_code == 404  # not served, rather than from a CDN
    docs = httpx.get(f"{server}/docs")  # its key box cannot be framed by another site
    assert docs.headers["x-frame-options"] == "DENY"
    assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"
    asset = httpx.get(f"{server}/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert asset.status_code == 200 and asset.headers["x-content-type-options"] == "nosniff"
    page.close()
