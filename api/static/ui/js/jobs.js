// The jobs list: newest first, filtered by state, refreshed every two seconds while a job is
// queued or running (live progress), every ten otherwise. The filter and the rows shown live in
// the address (?state=running&rows=50), so Back, a reload and a shared link show the same list.

import { api, datasetName } from "./api.js";
import { ACTIVE, GOING_ON, fill, fmt, h, progressBar, stateBadge, title } from "./dom.js";

const STATES = ["", "QUEUED", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"];
const PAGE = 25;
const MAX_ROWS = 500;
const POLL_MS = { active: 2000, idle: 10000 };

export function mount(main, { scrollY }) {
  const query = new URLSearchParams(location.search);
  let state = (query.get("state") || "").toUpperCase();
  if (!STATES.includes(state)) state = "";
  let limit = Math.min(Math.max(PAGE, PAGE * Math.ceil(Number(query.get("rows")) / PAGE) || PAGE),
    MAX_ROWS);
  let timer = null;
  let stopped = false;
  let busy = true;
  let drawn = false;
  const shown = new Map(); // job id -> [what its row shows, the row]

  // the job page's Delete lands here, saying which job is gone (once: not kept in the address)
  const deleted = query.get("deleted");
  title(deleted ? `Jobs · job ${fmt.shortId(deleted)} deleted` : "Jobs");
  const body = h("tbody");
  const more = h("button.button.secondary", { type: "button", hidden: true,
    onclick: () => { limit = Math.min(limit + PAGE, MAX_ROWS); remember(); refresh(); } },
  "Show more");
  const status = h("div.status-line");
  const notice = deleted ? h("div.notice", { id: "deleted-notice" },
    "Job ", h("code", fmt.shortId(deleted)), " and its values were deleted.") : null;
  const filters = h("div.chips", { role: "tablist" }, STATES.map((s) =>
    h("button.chip", { type: "button", role: "tab", dataset: { state: s },
      "aria-selected": String(s === state),
      onclick: () => {
        state = s;
        limit = PAGE;
        remember();
        for (const chip of filters.children) {
          chip.setAttribute("aria-selected", String(chip.dataset.state === state));
        }
        refresh();
      } }, s ? s.toLowerCase() : "all")));
  const table = h("table.table.jobs", { id: "jobs-table" },
    h("thead", h("tr", ["Job", "Data", "State", "Progress", "Result", "Created"]
      .map((t) => h("th", t)))), body);

  fill(main, 
    h("div.page-head", h("div", h("h1", "Jobs"),
      h("p.lead", "Valuation jobs of this API key's owner, newest first.")),
    h("a.button", { href: "/ui/new", "data-nav": true }, "New job")),
    notice,
    h("section.card.flush", h("div.card-toolbar", filters, status),
      h("div.table-scroll", table), h("div.card-foot", more)));

  /** The filter and the rows shown, in the address (no new history entry). */
  function remember() {
    const params = new URLSearchParams();
    if (state) params.set("state", state.toLowerCase());
    if (limit > PAGE) params.set("rows", String(limit));
    const search = params.toString();
    history.replaceState(history.state, "", search ? `/ui?${search}` : "/ui");
  }

  // a row count the list cannot show (?rows=100000, ?rows=7) is put right in the address
  if (deleted || (query.has("rows") && query.get("rows") !== String(limit))) remember();

  async function refresh() {
    clearTimeout(timer);
    try {
      const params = { page_size: String(limit) };
      if (state) params.state = state;
      const page = await api.jobs(params);
      if (stopped) return;
      render(page.items);
      if (!drawn && scrollY) window.scrollTo(0, scrollY); // back to where the reader was
      drawn = true;
      busy = page.items.some((job) => ACTIVE.has(job.state));
      // the list stops at MAX_ROWS: past it, the state filter narrows it (the button did nothing)
      const capped = Boolean(page.next_page_token) && limit >= MAX_ROWS;
      more.hidden = !page.next_page_token || capped;
      status.textContent = (capped ? `the newest ${MAX_ROWS} shown; filter by state for older `
        + "ones · " : "") + `updated ${new Date().toLocaleTimeString("en")}`;
      status.classList.remove("error");
    } catch (error) {
      if (stopped || error.status === 401) return;
      // an ApiError's message is the problem's detail (or its title when it has none)
      status.textContent = error.message && error.message !== error.title
        ? `${error.title}: ${error.message}` : error.title;
      status.classList.add("error");
      if (error.status >= 400 && error.status < 500) return;  // asking again will not help
    }
    if (!stopped) timer = setTimeout(refresh, busy ? POLL_MS.active : POLL_MS.idle);
  }

  /** Only the rows whose content changed are drawn again: a focused link or a selection in
   * any other row survives the refresh. */
  function render(jobs) {
    if (!jobs.length) {
      shown.clear();
      fill(body, h("tr", h("td.empty", { colSpan: 6 },
        state ? `No ${state.toLowerCase()} jobs.` : "No jobs yet. ",
        state ? "" : h("a", { href: "/ui/new", "data-nav": true }, "Upload a table and start one."))));
      return;
    }
    const before = [...body.children];
    const rows = jobs.map((job) => {
      const looks = JSON.stringify([job, fmt.ago(job.created_at)]);
      const known = shown.get(job.id);
      if (known && known[0] === looks) return known[1];
      const tr = row(job);
      shown.set(job.id, [looks, tr]);
      return tr;
    });
    const ids = new Set(jobs.map((job) => job.id));
    for (const id of [...shown.keys()]) if (!ids.has(id)) shown.delete(id);
    const sameJobs = before.length === rows.length
      && before.every((tr, i) => tr.dataset.jobId === rows[i].dataset.jobId);
    if (!sameJobs) {
      fill(body, rows);
      return;
    }
    rows.forEach((tr, i) => { if (before[i] !== tr) before[i].replaceWith(tr); });
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

function row(job) {
  const spec = job.spec;
  const data = h("bdi.muted.name", "…");  // a name in another script stays in its place
  datasetName(spec.dataset_id).then((name) => {
    data.textContent = name;
    data.title = name;
    data.classList.remove("muted");
  });
  return h("tr", { dataset: { jobId: job.id } },
    h("td", h("a.mono", { href: `/ui/jobs/${job.id}`, "data-nav": true }, fmt.shortId(job.id)),
      h("div.sub", [spec.method, spec.predictor].filter(Boolean).join(" · "))),
    h("td.data-cell", data, h("div.sub", "target ", h("bdi.target", { title: spec.target }, h("code", spec.target)))),
    h("td", stateBadge(job.state)),
    h("td.progress-cell", progressBar(job), h("div.sub", progressText(job))),
    h("td", resultText(job)),
    h("td.sub", { title: fmt.when(job.created_at) }, fmt.ago(job.created_at)));
}

export function progressText(job) {
  const p = job.progress || {};
  if (job.state === "SUCCEEDED") return `done in ${fmt.duration(p.elapsed_s)}`;
  if (job.state === "FAILED") return job.error ? job.error.title : "failed";
  if (job.state === "CANCELLED") {
    return p.total ? `cancelled at ${fmt.count(p.iteration || 0)} / ${fmt.count(p.total)}`
      : "cancelled";
  }
  if (job.state === "QUEUED") return "waiting for a worker";
  const parts = [p.phase];
  if (p.total) parts.push(`${fmt.count(p.iteration || 0)} / ${fmt.count(p.total)}`);
  if (p.eta_s !== null && p.eta_s !== undefined && GOING_ON.has(job.state)) {
    parts.push(`${fmt.duration(p.eta_s)} left`);
  }
  return parts.join(" · ");
}

function resultText(job) {
  const s = job.summary;
  if (job.state !== "SUCCEEDED" || !s) return h("span.muted", "–");
  const noise = s.label_noise;
  if (noise) {
    return h("span", h("strong", fmt.percent(noise.found_at_20)),
      h("span.sub", s.task === "regression" ? " of moved targets in lowest 20%"
        : " of flips in lowest 20%"));
  }
  return h("span", h("strong", fmt.count(s.flagged)), h("span.sub", ` of ${fmt.count(s.rows)} flagged`));
}
