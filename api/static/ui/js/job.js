// One job: live progress and reward while it runs; once it SUCCEEDED, what the API returns about
// its values: the trust verdict, the label-noise figures, the value histogram, the discovery,
// removal and reward curves, weighted training, the lowest-valued rows and the downloads.

import { allValues, api, datasetName, download } from "./api.js";
import { COLORS, bars, histogram, lineChart } from "./charts.js";
import { ACTIVE, GOING_ON, fill, fmt, h, names, problemBox, progressBar, stateBadge, title }
  from "./dom.js";
import { progressText } from "./jobs.js";

const POLL_MS = 1000;
const HISTOGRAM_ROWS = 50000;
const LOWEST_ROWS = 20;

export function mount(main, { id }, navigate) {
  let stopped = false;
  let timer = null;
  let shownState = null;
  let shownHead = null;
  let shownLive = null;
  const trace = []; // [iteration, recent reward] seen while polling

  title(`Job ${fmt.shortId(id)}`);
  const head = h("div.page-head");
  const live = h("section.card", { id: "live" });
  const results = h("div", { id: "results" });
  fill(main, head, live, results);

  async function poll() {
    clearTimeout(timer);
    let job;
    try {
      job = await api.job(id);
    } catch (error) {
      if (stopped || error.status === 401) return;
      if (error.status === 404) {
        title("Job not found");
        fill(main, h("div.page-head", h("h1", "Job not found")), h("section.card",
          h("p", "No job ", h("code.wrap", id), " for this API key."),
          h("a.button.secondary", { href: "/ui", "data-nav": true }, "All jobs")));
        return;
      }
      // the card says so until an answer comes, then is drawn again (even if the job has
      // not changed meanwhile: a queued job kept saying the server was down)
      fill(live, problemBox(error), h("p.sub", "Asking again every few seconds."));
      shownLive = null;
      timer = setTimeout(poll, 3 * POLL_MS);
      return;
    }
    if (stopped) return;
    const p = job.progress || {};
    if (p.iteration && p.reward !== null && p.reward !== undefined
        && (!trace.length || trace.at(-1)[0] !== p.iteration)) {
      trace.push([p.iteration, p.reward]);
    }
    renderHead(job);
    renderLive(job);
    if (job.state !== shownState) {
      shownState = job.state;
      if (job.state === "SUCCEEDED") renderResults(results, job).catch((error) => {
        if (!stopped) fill(results, problemBox(error));
      });
      if (job.state === "FAILED" && job.error) {
        fill(results, h("section.card", h("h2", "Why it failed"), problemBox(job.error)));
      }
    }
    if (ACTIVE.has(job.state)) timer = setTimeout(poll, POLL_MS);
  }

  // drawn again only when what they show changes: a focused Cancel button, or text being
  // selected, survives the polling, and the job's start (QUEUED to RUNNING) keeps the button
  let badge = null;
  let actions = null;
  let shownActions = null;

  function renderHead(job) {
    const looks = JSON.stringify([job.state, job.spec]);
    if (looks === shownHead) return;
    shownHead = looks;
    title(`Job ${fmt.shortId(job.id)} · ${job.state.toLowerCase()}`);
    if (!badge) drawHead(job);
    badge.replaceChildren(stateBadge(job.state));
    const kind = !ACTIVE.has(job.state) ? "delete"
      : job.state === "CANCELLING" ? "none" : "cancel";
    if (kind === shownActions) return;
    shownActions = kind;
    const hadFocus = actions.contains(document.activeElement);
    actions.replaceChildren(...(kind === "cancel" ? [cancelButton()]
      : kind === "delete" ? [deleteButton(job)] : []));
    if (hadFocus) head.querySelector("h1").focus(); // its button went (stopped in another tab)
  }

  function drawHead(job) {
    badge = h("span");
    actions = h("div.actions");
    const heading = h("h1", { tabindex: "-1" }, "Job ", h("span.mono", fmt.shortId(job.id)), " ",
      badge);
    // <bdi>: a name in a right-to-left script, or with direction marks, stays in its place
    // and cannot reorder the facts after it
    const data = h("bdi.name", "…");
    datasetName(job.spec.dataset_id).then((name) => { data.textContent = name; data.title = name; });
    const target = h("bdi.target", { title: job.spec.target }, h("code", job.spec.target));
    const runs = (job.spec.ensemble || 1) > 1 ? ` · ensemble of ${job.spec.ensemble} runs` : "";
    fill(head, h("div", heading, h("p.lead", data, " → ", target, " · ", job.spec.method, runs,
      " · seed ", String(job.spec.seed), " · created ", fmt.when(job.created_at))), actions);
  }

  function cancelButton() {
    return h("button.button.secondary", { type: "button", id: "cancel-job",
      onclick: async (event) => {
        const button = event.target;
        button.disabled = true;
        actions.querySelector(".alert")?.remove();
        try {
          await api.cancel(id);
          // the job stops, the button goes (a disabled button lost the focus already): the
          // focus goes to the heading, from where Tab reaches what comes next
          if ([document.body, button, null].includes(document.activeElement)) {
            head.querySelector("h1").focus();
          }
        } catch (error) { // said beside the button, which can be pressed again; the next
          // state (the job ended, say) draws the actions again without it
          button.after(problemBox(error));
          button.disabled = false;
          button.focus();
        }
        poll();
      } }, "Cancel job");
  }

  function renderLive(job) {
    const p = job.progress || {};
    const heartbeat = p.heartbeat ? fmt.ago(p.heartbeat) : "–";
    const looks = JSON.stringify([job.state, p, heartbeat, trace.length]);
    if (looks === shownLive) return;
    shownLive = looks;
    const facts = [
      ["Phase", p.phase || "–"],
      ["Iteration", iterationText(job)],
      ["Recent reward", p.reward === null || p.reward === undefined ? "–" : fmt.fixed(p.reward, 4)],
      ["Elapsed", fmt.duration(p.elapsed_s)],
      ["Time left", GOING_ON.has(job.state) ? fmt.duration(p.eta_s) : "–"],
      ["Heartbeat", heartbeat],
    ];
    const shown = live.querySelector("dl.facts");
    if (shown && shown.children.length === facts.length) { // the same boxes, new text
      facts.forEach(([, v], i) => {
        const dd = shown.children[i].querySelector("dd");
        if (dd.textContent !== v) dd.textContent = v;
      });
      live.querySelector(".live-head .sub").textContent = progressText(job);
      live.querySelector(".progress").replaceWith(progressBar(job));
    } else {
      fill(live,
        h("div.live-head", h("h2", "Progress"), h("span.sub", progressText(job))),
        progressBar(job),
        h("dl.facts", facts.map(([k, v]) => h("div", h("dt", k), h("dd", v)))));
    }
    const chart = live.querySelector("figure.chart");
    if (chart) chart.remove();
    if (ACTIVE.has(job.state) && trace.length > 1) {
      live.append(h("figure.chart", { dataset: { figure: "live-reward" } },
        h("figcaption", "Reward while training ", h("span.sub", "(mean of recent iterations)")),
        lineChart({ series: [{ name: "recent reward", points: trace, color: COLORS.ours }],
          xLabel: "iteration", yLabel: "reward", width: 1100, height: 240,
          label: "reward while training" })));
    }
  }

  /** A finished job can be deleted with its values: asked once more beside the button (the
   * focus moves to the answer, Keep first), then the list says it is gone. */
  function deleteButton(job) {
    const ask = h("button.button.secondary", { type: "button", id: "delete-job",
      onclick: () => {
        const keep = h("button.button.secondary", { type: "button", id: "keep-job",
          onclick: () => { confirm.replaceWith(ask); ask.focus(); } }, "Keep");
        const yes = h("button.button.danger", { type: "button", id: "confirm-delete",
          onclick: async () => {
            yes.disabled = true;
            confirm.querySelector(".alert")?.remove();
            try {
              await api.remove(job.id);
            } catch (error) {
              if (error.status !== 404) { // 404: deleted already (another tab): gone either way
                yes.disabled = false;
                confirm.append(problemBox(error));
                yes.focus();
                return;
              }
            }
            navigate(`/ui?deleted=${encodeURIComponent(job.id)}`, { replace: true });
          } }, "Delete");
        const confirm = h("div.actions.confirm", { role: "group", "aria-label": "delete job" },
          h("span", "Delete this job and its values for good?"), yes, keep);
        ask.replaceWith(confirm);
        keep.focus();
      } }, "Delete job");
    return ask;
  }

  poll();
  return () => { stopped = true; clearTimeout(timer); };
}

/** Where training got to. A finished DVRL job says how many iterations it used: it stops
 * early once its values have settled, or before the first when its check already decided
 * to return the prior (the progress then reads total / total). */
function iterationText(job) {
  const p = job.progress || {};
  if (!p.total) return "–";
  const done = `${fmt.count(p.iteration || 0)} / ${fmt.count(p.total)}`;
  const s = job.state === "SUCCEEDED" ? job.summary || {} : {};
  // an ensemble's runs each say what they used (its progress counts every run to the end)
  const runs = (s.ensemble || {}).per_member;
  if (runs && runs.every((m) => Number.isFinite(m.iterations_used))) {
    const sum = runs.reduce((total, m) => total + m.iterations_used, 0);
    if (sum >= p.total) return done;
    const of = `${fmt.count(sum)} of ${fmt.count(p.total)}`;
    return sum === 0 ? `${of}: every run returned the prior before training`
      : `${of} used by the ${runs.length} runs`;
  }
  const used = (s.diagnostics || {}).convergence;
  if (!used || used.iterations_used === undefined || used.iterations_used >= used.iterations_max) {
    return done;
  }
  const of = `${fmt.count(used.iterations_used)} of ${fmt.count(used.iterations_max)}`;
  if (used.iterations_used === 0) return `${of}: the prior was returned before training`;
  return `${of} used (${used.converged ? "values settled" : "the check decided"})`;
}

async function renderResults(root, job) {
  const id = job.id;
  const s = job.summary || {};
  fill(root, h("p.muted.loading", "Loading results…"));
  const [curves, lowest, values] = await Promise.all([
    api.curves(id),
    api.values(id, { order: "rank", page_size: String(LOWEST_ROWS) }),
    allValues(id, HISTOGRAM_ROWS),
  ]);
  const charts = h("div.grid-2");
  fill(root, 
    warningsCard(s.warnings), // what is wrong with the data as given comes first
    tiles(s),
    trustCard(s.trust, s.diagnostics || {}, noiseWords(s.task), s.ensemble),
    ensembleCard(s.ensemble),
    charts,
    lowestCard(id, lowest.items, s),
    h("details.card.spec", h("summary", "Job spec and summary (JSON)"),
      h("pre", JSON.stringify({ spec: job.spec, summary: s }, null, 2))));
  charts.append(valueHistogram(values, s));
  if (curves.discovery) {
    charts.append(discoveryChart(curves.discovery, s.label_noise, noiseWords(s.task)));
  }
  if (curves.removal) charts.append(removalChart(curves.removal));
  if (s.weighted_training) charts.append(weightedChart(s.weighted_training));
  if (s.training_choices) charts.append(choicesChart(s.training_choices));
  const reward = curves.reward_trace || {};
  if (reward.iteration && reward.iteration.length > 1) {
    charts.append(rewardChart(reward, (s.ensemble || {}).members));
  }
}

// what the job found wrong with the data as given (summary.warnings: validation rows that
// repeat training rows), above everything the values say
function warningsCard(warnings) {
  if (!warnings || !warnings.length) return null;
  return h("section.card.warnings", { id: "warnings" },
    h("h2", warnings.length > 1 ? "Warnings" : "Warning"),
    ...warnings.map((text) => h("p.warning", text)));
}

// an ensemble's agreement (summary.ensemble): how alike its runs rank the rows, and how far
// the mean value is from each row's runs
function ensembleCard(ensemble) {
  if (!ensemble || !ensemble.members) return null;
  const stability = ensemble.rank_stability || {};
  const errors = ensemble.std_error || {};
  return h("section.card.ensemble", { id: "ensemble" }, h("h2", "Ensemble"),
    h("p", `The values are the mean of ${ensemble.members} runs with different seeds. `,
      `Their rankings agree with a mean Spearman correlation of `,
      h("strong", fmt.fixed(stability.mean_spearman, 3)),
      ` (lowest pair ${fmt.fixed(stability.min_spearman, 3)}; 1 means they rank the rows alike). `,
      `Each row's standard error: median ${fmt.fixed(errors.median, 4)}, `,
      `largest ${fmt.fixed(errors.max, 4)} (in the values download as std_error).`));
}

// what the self-check and the trust check plant, in words: a classification job flips labels,
// a regression job moves targets (dvrl_core.noise)
function noiseWords(task) {
  return task === "regression"
    ? { rows: "moved targets", one: "moved", tile: "Moved targets", clean: "clean target",
      changed: "target moved by the self-check" }
    : { rows: "flipped labels", one: "flipped", tile: "Flips", clean: "clean label",
      changed: "label flipped by the self-check" };
}

function tile(label, value, note, key) {
  return h("div.tile", { dataset: { metric: key } }, h("div.tile-label", label),
    h("div.tile-value", value), note ? h("div.tile-note", note) : null);
}

function tiles(s) {
  const noise = s.label_noise;
  const items = [
    tile("Rows valued", fmt.count(s.rows), s.task, "rows"),
    tile("Flagged", fmt.count(s.flagged), "lowest-valued rows", "flagged"),
  ];
  if (noise) {
    items.push(
      tile(`${noiseWords(s.task).tile} in lowest 20%`, fmt.percent(noise.found_at_20, 1),
        `control ${fmt.percent(noise.marginal_control.found_at_20, 1)}`, "found_at_20"),
      tile("Detection AUROC", fmt.fixed(noise.auroc, 3),
        `control ${fmt.fixed(noise.marginal_control.auroc, 3)}`, "auroc"));
  }
  const total = s.timings && (s.timings.total_s ?? s.timings.fit_s);
  items.push(tile("Method", s.method || "–",
    [s.predictor && names.model(s.predictor), s.device].filter(Boolean).join(" · "),
    "method"));
  if (total !== undefined) items.push(tile("Valuation time", fmt.duration(total), null, "time"));
  return h("section.tiles", items);
}

function trustCard(trust, diagnostics, words, ensemble) {
  if (!trust) return null;
  const convergence = diagnostics.convergence;
  const decided = convergence && convergence.decided;
  // an ensemble's runs each decided for themselves (summary.ensemble.per_member)
  const runs = ensemble && ensemble.per_member;
  const early = runs ? runs.filter((m) => m.iterations_used === 0).length : 0;
  const why = `The learned values did not find the planted ${words.rows} clearly better (by `
    + "more than two standard errors of its AUROC) than the prior they started from, so the "
    + "prior was returned.";
  const verdict = trust.verdict || "";
  const tone = verdict.startsWith("confirmed") ? "good"
    : verdict.startsWith("not checked") ? "neutral" : "warn";
  const card = h("section.card.trust", { id: "trust" },
    h("div.trust-head", h("h2", "Trust check"),
      h(`span.verdict.${tone}`, { id: "trust-verdict" }, verdict)),
    h("p.sub", "Checks on validation rows held out of everything the values were learned from. ",
      trust.returned === "prior"
        ? (decided
          ? h("span", { id: "trust-decided" }, `The prior was returned; the run ended early: ${decided}.`)
          : runs && early
            ? h("span", { id: "trust-decided" }, `Each of the ${runs.length} runs returned the `
              + `prior; ${early === runs.length ? "every one" : `${early} of them`} ended before `
              + "training, its check having decided from the prior alone.")
            : why)
        : trust.returned ? "The learned values were returned." : ""));
  const shift = diagnostics.shift;
  if (shift && shift.applied) {
    card.append(h("p.sub", { id: "trust-shift" },
      `Covariate shift: a classifier tells the validation rows from the training rows (AUROC `
      + `${fmt.fixed(shift.auroc, 2)}), so the prior's values were weighted toward the training `
      + "rows that resemble the validation rows (spec: dvrl.shift)."));
  }
  if (trust.scores) {
    const candidates = { dvrl: "learned values", prior: "prior", control: "simple control" };
    const rows = [["Keep every row", trust.keep_all, null]];
    for (const [key, score] of Object.entries(trust.scores)) {
      rows.push([`Remove lowest ${fmt.percent(trust.removed)} by ${candidates[key] || key}`,
        score,
        trust.planted && trust.planted.auroc ? trust.planted.auroc[key] : null]);
    }
    rows.push([`Remove ${fmt.percent(trust.removed)} at random`, trust.random, null,
      trust.random_std]);
    card.append(h("table.table.compact",
      h("thead", h("tr", h("th", "Held-out check"),
        h("th.num", `held-out ${names.metric(trust.metric)} (higher is better)`),
        h("th.num", `planted ${words.rows} AUROC`))),
      h("tbody", rows.map(([name, score, auroc, std]) => h("tr", h("td", name),
        h("td.num", fmt.fixed(score, 4), std ? h("span.sub", ` ± ${fmt.fixed(std, 4)}`) : ""),
        h("td.num", auroc === null || auroc === undefined ? "–" : fmt.fixed(auroc, 3)))))));
    card.append(h("p.sub", `${fmt.count(trust.check_rows)} held-out rows scored the removal test`,
      trust.planted ? `; ${fmt.count(trust.planted.rows)} planted rows, ` +
        `${fmt.count(trust.planted.flipped)} of them ${words.one}.` : "."));
  }
  if (trust.members) card.append(membersTable(trust, words));
  return card;
}

// an ensemble's trust check: each member ran its own (its seed, verdict, what it returned and
// how well each valuation found its planted rows), and the members' mean AUROC
function membersTable(trust, words) {
  const kinds = Object.keys(trust.planted_auroc || {});
  const auroc = (figures, kind) => (figures && figures[kind] !== undefined
    ? fmt.fixed(figures[kind], 3) : "–");
  const returned = { dvrl: "learned values", prior: "prior" };
  return h("table.table.compact", { id: "trust-members" },
    h("thead", h("tr", h("th", "Run (seed)"), h("th", "Verdict"), h("th", "Returned"),
      kinds.map((kind) => h("th.num", `planted ${words.rows} AUROC: ${kind}`)))),
    h("tbody", trust.members.map((m) => h("tr", h("td.mono", String(m.seed)), h("td", m.verdict),
      h("td", returned[m.returned] || m.returned),
      kinds.map((kind) => h("td.num", auroc(m.planted_auroc, kind))))),
    kinds.length ? h("tr.total", h("td", "mean"), h("td"), h("td"),
      kinds.map((kind) => h("td.num", auroc(trust.planted_auroc, kind)))) : null));
}

function figure(key, title, note, plot) {
  return h("figure.card.chart", { dataset: { figure: key } },
    h("figcaption", h("h3", title), note ? h("p.sub", note) : null), plot);
}

function valueHistogram({ rows, complete }, s) {
  const noise = rows.length && rows[0].noise_injected !== null
    && rows[0].noise_injected !== undefined;
  const words = noiseWords(s.task);
  const groups = noise
    ? [{ name: words.clean, values: rows.filter((r) => !r.noise_injected).map((r) => r.value),
      color: COLORS.ours },
    { name: words.changed, values: rows.filter((r) => r.noise_injected)
      .map((r) => r.value), color: COLORS.alert }]
    : [{ name: "not flagged", values: rows.filter((r) => !r.flagged).map((r) => r.value),
      color: COLORS.ours },
    { name: "flagged", values: rows.filter((r) => r.flagged).map((r) => r.value),
      color: COLORS.alert }];
  const flagged = rows.filter((r) => r.flagged).map((r) => r.value);
  const marker = flagged.length ? { at: Math.max(...flagged), label: "flagged ≤" } : null;
  const note = complete ? `All ${fmt.count(rows.length)} rows.`
    : `The first ${fmt.count(rows.length)} of ${fmt.count(s.rows)} rows in input order.`;
  return figure("histogram", "Value histogram",
    // exact where a bin holds flagged and unflagged rows, and where values tie at the line
    `${note} ${marker ? `The ${fmt.count(flagged.length)} flagged rows are the lowest-valued; `
      + "the dashed line marks the highest value among them." : "No row is flagged."}`,
    histogram({ groups, xLabel: "value", label: "histogram of the values", marker }));
}

function discoveryChart(d, noise, words) {
  const pts = (key) => d.inspected.map((x, i) => [x, d[key][i]]);
  return figure("discovery", `Discovery of ${words.rows}`,
    `Share of the ${noise ? fmt.count(noise.flipped) : ""} ${words.one} rows found when inspecting the ` +
    "lowest-valued rows first.",
    lineChart({ series: [
      { name: "these values", points: pts("found"), color: COLORS.ours },
      { name: "best possible", points: pts("optimal"), color: COLORS.optimal, dash: true, dots: false },
      { name: "random order", points: pts("random"), color: COLORS.random, dash: true, dots: false },
    ], xLabel: "share of rows inspected", yLabel: `share of ${words.rows} found`, xFormat: fmt.percent,
    yFormat: fmt.percent, xDomain: [0, 1], yDomain: [0, 1], label: "discovery curve" }));
}

// scores that cannot pass 0 or 1: their axis and the random band stop there
const SHARES = new Set(["auc", "accuracy"]);

export function removalChart(r) {
  const pts = (key) => r.removed.map((x, i) => [x, r[key][i]]);
  const std = r.random_std || r.removed.map(() => 0);
  const [floor, ceiling] = SHARES.has(r.metric) ? [0, 1] : [-Infinity, Infinity];
  const within = (v) => Math.min(ceiling, Math.max(floor, v));
  const shown = ["remove_lowest", "remove_highest", "random"].flatMap((key) => r[key])
    .concat(r.random.map((v, i) => within(v + std[i])), r.random.map((v, i) => within(v - std[i])))
    .filter(Number.isFinite);
  const pad = (Math.max(...shown) - Math.min(...shown)) * 0.05 || 0.01;
  return figure("removal", "Removal curves",
    `Test ${names.score(r.metric)} (${names.better(r.metric)}) of a `
    + `${names.model(r.model || "lightgbm")} model retrained without a share of the training rows`
    + (r.rows ? ` (${fmt.count(r.rows)} rows).` : "."),
    lineChart({ series: [
      { name: "remove lowest-valued", points: pts("remove_lowest"), color: COLORS.ours },
      { name: "remove highest-valued", points: pts("remove_highest"), color: COLORS.high },
      { name: "remove at random", points: pts("random"), color: COLORS.random, dash: true },
    ], bands: [{ name: "random ± 1 sd", color: COLORS.random,
      upper: r.removed.map((x, i) => [x, within(r.random[i] + std[i])]),
      lower: r.removed.map((x, i) => [x, within(r.random[i] - std[i])]) }],
    xLabel: "share of training rows removed", yLabel: `test ${names.score(r.metric)}`,
    xFormat: fmt.percent, yDomain: [within(Math.min(...shown) - pad),
      within(Math.max(...shown) + pad)],
    label: "removal curves" }));
}

function weightedChart(w) {
  const delta = w.weighted - w.unweighted;
  return figure("weighted", "Weighted training",
    `Test ${names.score(w.metric)} (${names.better(w.metric)}) of a LightGBM model trained on `
    + `every row, without and with ${w.weights || "values"} as sample weights: `
    + `${fmt.fixed(w.unweighted, 4)} → ${fmt.fixed(w.weighted, 4)} `
    + `(${delta >= 0 ? "+" : ""}${fmt.fixed(delta, 4)}).`,
    bars({ items: [
      { name: "unweighted", value: w.unweighted, color: COLORS.random },
      { name: "weighted by value", value: w.weighted, color: COLORS.ours },
    ], xLabel: `test ${names.score(w.metric)}`, label: "weighted training", valueFormat: (v) => fmt.fixed(v, 4) }));
}

// summary.training_choices: the test score of each way of training the evaluation model, the
// one the validation rows recommend marked
const CHOICES = [
  ["uniform", "every training row alike"],
  ["weighted", "weighted by value"],
  ["without_lowest", "without the lowest-valued"],
  ["validation_only", "validation rows alone"],
  ["uniform_plus_validation", "training + validation rows"],
  ["tuned_uniform_plus_validation", "training + validation, tuned mix"],
  ["weighted_plus_validation", "weighted + validation rows"],
  ["top_valued_plus_validation", "top-valued + validation rows"],
];

function choicesChart(c) {
  const items = CHOICES.filter(([key]) => typeof c[key] === "number").map(([key, name]) => ({
    name: key === c.recommended ? `${name} (recommended)` : name, value: c[key],
    color: key === c.recommended ? COLORS.ours : COLORS.random }));
  return figure("choices", "Ways of training",
    `Test ${names.score(c.metric)} (${names.better(c.metric)}) of a `
    + `${{ lightgbm: "LightGBM", logistic_regression: "logistic regression" }[c.model]
      || c.model || "LightGBM"} `
    + "model trained each way a user could. The recommended way is the one the validation "
    + "rows score best of those that use the values (no test labels needed to choose it).",
    bars({ items, xLabel: `test ${names.score(c.metric)}`, label: "ways of training",
      valueFormat: (v) => fmt.fixed(v, 4) }));
}

/** An ensemble's trace is its runs' mean reward, iteration by iteration, as far as the
 * shortest run went (``runs``: how many). */
function rewardChart(t, runs) {
  const caption = runs > 1
    ? `The mean reward of the ${runs} runs at each training iteration (sampled), as far as `
      + "the shortest run trained."
    : "The reward of each training iteration (sampled).";
  return figure("reward", "Reward trace", caption,
    lineChart({ series: [{ name: "reward", points: t.iteration.map((x, i) => [x, t.reward[i]]),
      color: COLORS.ours, width: 1.6 }], xLabel: "iteration", yLabel: "reward",
    label: "reward trace" }));
}

/** A regression target to six significant digits (the full number is its tooltip); a class
 * as given. */
function shownLabel(label, task) {
  const number = Number(label);
  return task === "regression" && label !== "" && Number.isFinite(number)
    ? String(Number(number.toPrecision(6))) : label;
}

function lowestCard(id, items, s) {
  const noise = items.length && items[0].noise_injected !== null
    && items[0].noise_injected !== undefined;
  const status = h("span.sub");
  const get = (format) => async (event) => {
    event.target.disabled = true;
    status.textContent = `downloading ${format}…`;
    try {
      await download(id, format);
      status.textContent = "";
    } catch (error) {
      status.textContent = error.message;
    } finally {
      event.target.disabled = false;
      event.target.focus(); // a keyboard user's place (disabling the button dropped it)
    }
  };
  const shownFlagged = items.filter((item) => item.flagged).length;
  const lead = items.length <= s.flagged
    ? `The ${items.length} rows to review first, of ${fmt.count(s.flagged)} flagged.`
    : `The ${items.length} lowest-valued rows; the ${fmt.count(shownFlagged)} flagged are the `
      + "ones to review first.";
  return h("section.card", { id: "lowest" },
    h("div.card-title", h("div", h("h2", "Lowest-valued rows"),
      h("p.sub", lead)),
    h("div.actions", status,
      h("button.button.secondary", { type: "button", id: "download-csv", onclick: get("csv") },
        "Download CSV"),
      h("button.button.secondary", { type: "button", id: "download-parquet",
        onclick: get("parquet") }, "Download Parquet"))),
    h("div.table-scroll", h("table.table.compact.lowest",
      h("thead", h("tr", h("th.num", "rank"), h("th", "row"), h("th.num", "value"), h("th", "label"),
        noise ? h("th", "self-check") : null)),
      h("tbody", items.map((item) => h("tr", { dataset: { row: item.row } },
        h("td.num", String(item.rank)), h("td.mono", { title: item.row }, h("bdi", item.row)),
        h("td.num", fmt.fixed(item.value, 4)),
        h("td", h("bdi.label-pill", { title: item.label }, shownLabel(item.label, s.task))),
        noise ? h("td", item.noise_injected ? h("span.flip", noiseWords(s.task).one)
          : h("span.sub", "clean"))
          : null))))));
}
