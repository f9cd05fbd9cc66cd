// The dashboard's entry point: routes /ui, /ui/new and /ui/jobs/{id} to their pages (history API,
// no reload) and asks for an API key when the server answers 401.

import { api, auth } from "./api.js";
import { clear, fill, h, problemBox, title } from "./dom.js";
import * as jobPage from "./job.js";
import * as jobsPage from "./jobs.js";
import * as newPage from "./new.js";

const main = document.getElementById("main");
const keybox = document.getElementById("keybox");
let cleanup = () => {};

function route(path) {
  const job = path.match(/^\/ui\/jobs\/([^/]+)\/?$/);
  if (job) return [jobPage, { id: decoded(job[1]) }, "jobs"];
  if (/^\/ui\/new\/?$/.test(path)) return [newPage, {}, "new"];
  if (/^\/ui\/?$/.test(path)) return [jobsPage, {}, "jobs"];
  return [{ mount: notFound }, {}, null];
}

/** An address under /ui that names no page: say so, and where to go. */
function notFound(root) {
  title("Page not found");
  fill(root, h("div.page-head", h("h1", "Page not found")), h("section.card",
    h("p", "The dashboard has no page at ", h("code.wrap", location.pathname), "."),
    h("div.actions", h("a.button", { href: "/ui", "data-nav": true }, "All jobs"),
      h("a.button.secondary", { href: "/ui/new", "data-nav": true }, "New job"))));
}

/** A path segment decoded; as written when it is not valid percent-encoding (the job page then
 * says there is no such job, rather than staying blank). */
function decoded(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Draw the page the address names; ``scrollY``: where the reader was when they left it (Back). */
function render(scrollY = 0) {
  cleanup();
  const [page, params, section] = route(location.pathname);
  for (const link of document.querySelectorAll(".nav a[data-section]")) {
    link.classList.toggle("active", link.dataset.section === section);
  }
  renderKeybox();
  window.scrollTo(0, 0);
  cleanup = page.mount(main, { ...params, scrollY }, navigate) || (() => {});
}

/** Draw ``url``; ``replace``: in place of this page in the history (a deleted job's page,
 * which Back would only say is gone). */
export function navigate(url, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, "", url);
  } else {
    history.replaceState({ scrollY: window.scrollY }, ""); // for Back to this page
    history.pushState(null, "", url);
  }
  render();
}

function renderKeybox() {
  clear(keybox);
  if (auth.key) {
    const shown = auth.key.split("_").slice(0, 2).join("_");
    keybox.append(h("span.key-chip", { title: "the API key this tab uses" }, "key ",
      h("code", `${shown}_…`)), h("button.link", { type: "button", id: "forget-key",
      onclick: () => { auth.clear(); render(); } }, "forget"));
  }
}

/** The server wants a key (or refused the one given): ask for one, then draw the page again. */
function askForKey(refused) {
  if (document.getElementById("key-form")) return; // asked already (several requests failed)
  cleanup();
  cleanup = () => {};
  const input = h("input", { type: "password", name: "api-key", id: "api-key",
    autocomplete: "off", placeholder: "dvrl_…", required: true, "aria-label": "API key" });
  const status = h("div.form-status");
  const form = h("form.keyform", { id: "key-form", onsubmit: async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    // a key is dvrl_<id>_<secret> in letters, digits, _ and -: fetch() refused a header with
    // a curly quote or the "…" of a copied key chip before sending it, and the key was kept
    const odd = [...key].find((c) => !/[A-Za-z0-9_-]/.test(c));
    if (odd) {
      status.replaceChildren(problemBox({ title: "Not a key", message: "an API key is "
        + `letters, digits, _ and - only; this one holds ${JSON.stringify(odd)} (copied with a `
        + "quote or an ellipsis?)" }));
      return;
    }
    auth.set(key);
    try {
      await api.jobs({ page_size: "1" });
    } catch (error) {
      if (error.status === 401) auth.clear();
      status.replaceChildren(problemBox(error.status === 401
        ? { title: "Refused", message: "this server does not know that key (unknown or revoked)" }
        : error));
      renderKeybox();
      return;
    }
    render();
  } }, input, h("button.button", { type: "submit" }, "Use this key"));
  title("API key");
  fill(main, h("section.card.narrow",
    h("h1", "API key"),
    refused && auth.key
      ? problemBox({ title: "Refused", message: "this server does not know that key (unknown "
        + "or revoked)" })
      : h("p", "This server asks for an API key. It shows only the datasets and jobs of the "
        + "key's owner."),
    form, status,
    h("p.sub", "Create one with ", h("code", "dvrl keys create --owner NAME"), ". The key stays "
      + "in this browser tab (sessionStorage) and is sent as a Bearer token to this server only.")));
  renderKeybox();
  input.focus();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
      || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", (event) => render((event.state && event.state.scrollY) || 0));
window.addEventListener("dvrl:unauthorized", () => askForKey(true));
render();
