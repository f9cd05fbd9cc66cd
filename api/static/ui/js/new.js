// Upload a table, then start a job with the common fields of the job spec. The API validates
// the spec (the form does not second-guess it); its problem answers are shown by the fields.

import { api, newKey } from "./api.js";
import { fill, fmt, h, problemBox, title } from "./dom.js";

// a table's columns come with it, so the list of a wide table's owner grows fast: the newest
// MAX_TABLES are listed, and the form says so when there are more
const MAX_TABLES = 200;
// validation rows the trust check needs: it holds a quarter of them out, at least 40
// (dvrl_core.trust.MIN_CHECK_ROWS, DVRL.check_fraction)
const CHECK_ROWS = 160;
const METHODS = [
  ["dvrl", "DVRL (default)"],
  ["knn_shapley", "KNN-Shapley (baseline)"],
  ["data_oob", "Data-OOB (baseline)"],
  ["leave_one_out", "Leave-one-out (baseline)"],
];

export function mount(main, _params, navigate) {
  title("New job");
  let datasets = [];
  let starting = false;
  let attempt = { body: null, key: null }; // the last spec sent and its idempotency key

  // 1. upload
  const file = h("input", { type: "file", name: "file", id: "upload-file",
    accept: ".csv,.tsv,.txt,.parquet" });
  const uploadStatus = h("div.form-status", { id: "upload-status" });
  const uploadButton = h("button.button", { type: "submit" }, "Upload");
  const uploadForm = h("form.upload", { id: "upload-form", onsubmit: upload },
    h("label.drop", file, h("span.drop-text", "Choose a CSV or Parquet file with a header row")),
    uploadButton);
  const datasetRows = h("tbody");
  const datasetsCapped = h("p.sub", { id: "datasets-capped", hidden: true });

  // 2. the job
  const training = h("select", { name: "dataset_id", id: "field-dataset", onchange: fillTargets });
  const target = h("select", { name: "target", id: "field-target", onchange: fillIdColumns });
  const idColumn = h("select", { name: "id_column", id: "field-id-column" });
  const validationMode = h("div.segmented", { role: "radiogroup", "aria-label": "validation data" },
    radio("validation-mode", "fraction", "Hold out a fraction", true),
    radio("validation-mode", "dataset", "A validation table", false));
  const fraction = h("input", { type: "number", name: "validation.fraction", id: "field-fraction",
    value: "0.2", step: "0.05", "aria-label": "validation fraction" });
  fraction.addEventListener("input", () => sayHeldOut());
  const fractionHint = h("span.hint", { id: "fraction-hint" });
  const validation = h("select", { name: "validation.dataset_id", id: "field-validation",
    "aria-label": "validation table" });
  const test = h("select", { name: "test.dataset_id", id: "field-test" });
  const method = h("select", { name: "method", id: "field-method", onchange: syncMethod },
    METHODS.map(([value, text]) => h("option", { value }, text)));
  const iterations = h("input", { type: "number", name: "dvrl.iterations", id: "field-iterations",
    value: "2000", step: "100" });
  const seed = h("input", { type: "number", name: "seed", id: "field-seed", value: "0" });
  const noise = h("input", { type: "number", name: "label_noise", id: "field-noise", step: "0.05",
    placeholder: "e.g. 0.2" });
  const removal = h("input", { type: "checkbox", name: "evaluations", value: "removal",
    id: "field-removal", checked: true });
  const weighted = h("input", { type: "checkbox", name: "evaluations", value: "weighted",
    id: "field-weighted" });
  const choices = h("input", { type: "checkbox", name: "evaluations", value: "training_choices",
    id: "field-choices" });
  const jobStatus = h("div.form-status", { id: "job-status" });
  const startButton = h("button.button", { type: "submit", id: "start-job" }, "Start job");
  const jobForm = h("form.job-form", { id: "job-form", novalidate: true, onsubmit: start },
    field("Training table", training, "dataset_id"),
    field("Target column", target, "target", "the label to predict"),
    field("ID column", idColumn, "id_column",
      "optional: a column that names the rows in the results (not a feature)"),
    h("div.field.wide", h("span.field-label", "Validation data"), validationMode,
      h("div.validation-fraction", fraction, h("span.hint", "of the training rows, held out"),
        fractionHint),
      h("div.validation-dataset", { hidden: true }, validation),
      h("div.field-error", { dataset: { for: "validation" } })),
    field("Test table", test, "test.dataset_id", "optional: scores the removal curves"),
    field("Method", method, "method"),
    field("Iterations", iterations, "dvrl.iterations", "DVRL's training iterations"),
    field("Seed", seed, "seed", "same data, spec and seed: same values"),
    field("Label noise", noise, "label_noise",
      "optional self-check: flip this share of labels and see how many the values find"),
    h("div.field.wide", h("span.field-label", "Evaluations"),
      h("div.checks", { role: "group", "aria-label": "evaluations" },
      h("label.check", removal, " removal curves"),
      h("label.check", weighted, " weighted training"),
      h("label.check", choices, " ways of training (needs a test table)")),
      h("div.field-error", { dataset: { for: "evaluations" } })),
    h("div.form-foot", jobStatus, startButton));

  fill(main, 
    h("div.page-head", h("div", h("h1", "New job"),
      h("p.lead", "Upload the training table (and, if you have them, validation and test tables "
        + "from the target task), then start a valuation job."))),
    h("div.grid-new",
      h("section.card", h("h2", h("span.step", "1"), "Upload a table"), uploadForm, uploadStatus,
        h("div.table-scroll", h("table.table.compact.datasets", { id: "datasets-table" },
          h("thead", h("tr", ["File", "Rows", "Columns", "Uploaded"].map((t) => h("th", t)))),
          datasetRows)), datasetsCapped),
      h("section.card", h("h2", h("span.step", "2"), "Start a job"), jobForm)));

  for (const input of validationMode.querySelectorAll("input")) {
    input.addEventListener("change", () => {
      const byDataset = validationMode.querySelector("input:checked").value === "dataset";
      jobForm.querySelector(".validation-fraction").hidden = byDataset;
      jobForm.querySelector(".validation-dataset").hidden = !byDataset;
    });
  }

  async function loadDatasets(select) {
    try {
      const page = await api.datasets({ page_size: String(MAX_TABLES) });
      datasets = page.items;
      datasetsCapped.hidden = !page.next_page_token;
      datasetsCapped.textContent = `The newest ${fmt.count(MAX_TABLES)} tables can be chosen; `
        + "to use an older one, upload it again.";
    } catch (error) {
      if (error.status !== 401) uploadStatus.replaceChildren(problemBox(error));
      return;
    }
    fill(datasetRows, datasets.length ? datasets.map((d) => h("tr",
      h("td.name-cell", h("bdi.name", { title: d.filename }, d.filename)),
      h("td.num", fmt.count(d.rows)), h("td.num", String(d.n_columns)),
      h("td.sub", fmt.ago(d.created_at)))) : h("tr", h("td.empty", { colSpan: 4 },
      "No tables yet.")));
    // an option holds text only: the name isolated (U+2068 ... U+2069) so that a right-to-left
    // override in it cannot reorder the rows and id after it
    const options = (blank) => [blank ? h("option", { value: "" }, blank) : null,
      ...datasets.map((d) => h("option", { value: d.id },
        `\u2068${d.filename}\u2069 · ${fmt.count(d.rows)} rows · ${d.id.slice(0, 8)}`))];
    const keep = [training.value, validation.value, test.value];
    fill(training, options(datasets.length ? null : "upload a table first"));
    fill(validation, options("choose a table"));
    fill(test, options("none"));
    training.value = select || keep[0] || (datasets[0] && datasets[0].id) || "";
    validation.value = keep[1] || "";
    test.value = keep[2] || "";
    fillTargets();
  }

  function fillTargets() {
    const chosen = datasets.find((d) => d.id === training.value);
    const before = target.value;
    fill(target, (chosen ? chosen.columns : []).map((c) =>
      h("option", { value: c.name }, `${c.name} (${c.type})`)));
    const names = chosen ? chosen.columns.map((c) => c.name) : [];
    if (names.includes(before)) target.value = before;
    else if (chosen) target.value = names.find((n) => /^(label|target|y|class)$/i.test(n)) || names.at(-1);
    fillIdColumns();
    sayHeldOut();
  }

  /** How many rows the fraction holds out, and whether the trust check can use them (it
   * holds a quarter of them out, at least CHECK_ROWS). */
  function sayHeldOut() {
    const chosen = datasets.find((d) => d.id === training.value);
    const share = Number(fraction.value);
    if (!chosen || !(share > 0 && share < 1)) {
      fractionHint.textContent = "";
      return;
    }
    const held = Math.round(chosen.rows * share);
    fractionHint.textContent = `: about ${fmt.count(held)} rows` + (held < CHECK_ROWS
      ? `; the trust check needs ${fmt.count(CHECK_ROWS)} (a larger fraction, or a validation `
        + "table, lets the job check its values)" : "");
  }

  /** Any column but the target may name the rows; none by default (rows are numbered). */
  function fillIdColumns() {
    const chosen = datasets.find((d) => d.id === training.value);
    const before = idColumn.value;
    const names = (chosen ? chosen.columns : []).map((c) => c.name)
      .filter((n) => n !== target.value);
    fill(idColumn, h("option", { value: "" }, "none: rows are numbered"),
      names.map((n) => h("option", { value: n }, n)));
    idColumn.value = names.includes(before) ? before : "";
  }

  function syncMethod() {
    iterations.disabled = method.value !== "dvrl";
  }

  async function upload(event) {
    event.preventDefault();
    if (!file.files.length) {
      uploadStatus.replaceChildren(problemBox({ title: "No file", message: "choose a table first" }));
      return;
    }
    uploadButton.disabled = true;
    uploadStatus.replaceChildren(h("span.sub", `uploading ${file.files[0].name}…`));
    try {
      const dataset = await api.upload(file.files[0]);
      uploadStatus.replaceChildren(h("div.ok", { dataset: { datasetId: dataset.id } },
        h("strong", h("bdi.name", { title: dataset.filename }, dataset.filename)), ` uploaded: ${fmt.count(dataset.rows)} rows, `
        + `${dataset.n_columns} columns.`));
      file.value = "";
      await loadDatasets(datasets.length ? training.value : dataset.id);
    } catch (error) {
      uploadStatus.replaceChildren(problemBox(error));
    } finally {
      uploadButton.disabled = false;
    }
  }

  async function start(event) {
    event.preventDefault();
    if (starting) return; // a second click while the first is on its way
    for (const el of jobForm.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of jobForm.querySelectorAll(".invalid")) el.classList.remove("invalid");
    jobStatus.replaceChildren();
    // what the browser cannot send as written: a number box holding text reads as empty
    const unreadable = [fraction, iterations, seed, noise].filter((input) =>
      !input.disabled && input.validity.badInput);
    for (const input of unreadable) markField(input.name, "not a number");
    if (!training.value) markField("dataset_id", "upload a table first");
    const byDataset = validationMode.querySelector("input:checked").value === "dataset";
    const missing = [];
    if (byDataset && !validation.value) missing.push(["validation", "choose a validation table"]);
    if (!byDataset && fraction.value.trim() === "" && !fraction.validity.badInput) {
      missing.push(["validation.fraction", "give the share of rows to hold out, such as 0.2"]);
    }
    for (const [name, message] of missing) markField(name, message);
    if (unreadable.length || !training.value || missing.length) {
      jobStatus.replaceChildren(problemBox({ title: "Not sent", message: "see the marked fields" }));
      return;
    }
    const spec = {
      dataset_id: training.value,
      target: target.value,
      validation: byDataset ? { dataset_id: validation.value } : { fraction: number(fraction) },
      method: method.value,
      evaluations: [removal, weighted, choices].filter((c) => c.checked).map((c) => c.value),
    };
    // an empty box is the API's default (the seed 0, DVRL's iterations), not the text ""
    if (seed.value.trim() !== "") spec.seed = number(seed);
    if (test.value) spec.test = { dataset_id: test.value };
    if (idColumn.value) spec.id_column = idColumn.value;
    if (noise.value !== "") spec.label_noise = number(noise);
    if (method.value === "dvrl" && iterations.value.trim() !== "") {
      spec.dvrl = { iterations: number(iterations) };
    }
    // the same spec sent again (after a lost answer) keeps its key: the API answers with the
    // job the first request made instead of starting a second one
    const body = JSON.stringify(spec);
    if (body !== attempt.body) attempt = { body, key: newKey() };
    starting = true;
    startButton.disabled = true;
    jobStatus.replaceChildren(h("span.sub", "starting…"));
    try {
      const job = await api.createJob(spec, attempt.key);
      navigate(`/ui/jobs/${job.id}`);
    } catch (error) {
      jobStatus.replaceChildren(problemBox(error));
      for (const e of error.errors) markField(e.field, e.message);
    } finally {
      starting = false;
      startButton.disabled = false;
    }
  }

  function markField(name, message) {
    const key = name.startsWith("validation") ? "validation"
      : name === "test" ? "test.dataset_id" : name;
    const box = jobForm.querySelector(`.field-error[data-for="${CSS.escape(key)}"]`);
    if (box) box.append(h("div", message)); // every message the API gave for this field
    const input = jobForm.querySelector(`[name="${CSS.escape(name)}"]`);
    if (input) input.classList.add("invalid");
  }

  syncMethod();
  loadDatasets();
  return () => {};
}

/** A number input's value as a number; text that is not a number goes as text, for the API to
 * refuse with a message. */
function number(input) {
  const value = input.value.trim();
  return value !== "" && Number.isFinite(Number(value)) ? Number(value) : value;
}

function field(label, input, name, hint) {
  return h("label.field", h("span.field-label", label), input, hint ? h("span.hint", hint) : null,
    h("div.field-error", { dataset: { for: name } }));
}

function radio(name, value, text, checked) {
  return h("label.segment", h("input", { type: "radio", name, value, checked }), h("span", text));
}
