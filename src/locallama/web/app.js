/**
 * The page's shell: a nav with three views (Chat, Models, Measurements), each a module
 * exporting `mount(element, api)`, mounted on first visit and kept (a view keeps its
 * state while another shows).  The view is in the URL's hash (#chat, #models,
 * #measure).  The API key dialog lives here (api.askKey).
 *
 * Preact + htm: components without a build step (htm is JSX in tagged templates,
 * read by the browser as is); the views that need no framework need not use it.
 */
import { createApi } from "./api.js";

const VIEWS = [
  { id: "chat", label: "Chat", module: "./chat.js" },
  { id: "models", label: "Models", module: "./models.js" },
  { id: "measure", label: "Measurements", module: "./measure.js" },
];

const api = createApi();
window.locallama = { api }; // for the console and the tests

/** Ask for the API key in a modal dialog; resolves to the key ("" on cancel). */
api.askKey = (message) => new Promise((resolve) => {
  const dialog = document.getElementById("key-dialog");
  const form = dialog.querySelector("form");
  const input = dialog.querySelector("input");
  dialog.querySelector("p").textContent = message;
  input.value = "";
  const done = (value) => {
    form.onsubmit = null;
    dialog.onclose = null;
    if (dialog.open) dialog.close();
    resolve(value);
  };
  form.onsubmit = (e) => {
    e.preventDefault();
    done(e.submitter?.value === "cancel" ? "" : input.value.trim());
  };
  dialog.onclose = () => done("");
  dialog.showModal();
  input.focus();
});

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

function keyDialog() {
  const input = el("input", { type: "password", autocomplete: "current-password",
    "aria-label": "API key", name: "key" });
  return el("dialog", { id: "key-dialog", "aria-labelledby": "key-title" },
    el("form", { method: "dialog" },
      el("h2", { id: "key-title" }, "API key"),
      el("p"),
      input,
      el("div", { class: "dialog-actions" },
        el("button", { type: "submit", value: "cancel" }, "Cancel"),
        el("button", { type: "submit", value: "ok", class: "primary" }, "Use this key"))));
}

function start() {
  const root = document.getElementById("app");
  root.textContent = "";
  const nav = el("nav", { class: "views", "aria-label": "Views" });
  const main = el("main");
  root.append(el("header", {}, el("span", { class: "brand" }, "locallama"), nav), main, keyDialog());
  const panes = {};
  for (const view of VIEWS) {
    const link = el("a", { href: `#${view.id}`, "data-view": view.id }, view.label);
    nav.append(link);
    panes[view.id] = el("div", { class: "view", id: `view-${view.id}`, hidden: "" });
    main.append(panes[view.id]);
  }
  const mounted = {};
  async function show() {
    const id = VIEWS.some((v) => `#${v.id}` === location.hash) ? location.hash.slice(1) : "chat";
    for (const view of VIEWS) {
      panes[view.id].hidden = view.id !== id;
      const link = nav.querySelector(`[data-view="${view.id}"]`);
      if (view.id === id) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (mounted[id]) return;
    mounted[id] = true;
    const view = VIEWS.find((v) => v.id === id);
    try {
      const module = await import(view.module);
      module.mount(panes[id], api);
    } catch (e) {
      panes[id].append(el("p", { class: "notice" }, `The ${view.label} view is not available: ${e.message}`));
    }
  }
  window.addEventListener("hashchange", show);
  show();
}

start();
