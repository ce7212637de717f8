// The Models view: what `locallama list`, `show` and `ps` give, with unload, delete
// (after a confirmation) and pull by name with a progress bar.
//
// mount(element, api) renders into element and returns an unmount function.  `api`
// is the shell's (api.js): api.get(path) and api.post(path, body) resolve to the
// parsed JSON answer and reject with an Error whose message is the server's error;
// api.stream(path, body, onLine, signal) calls onLine with each NDJSON line.
//
// Everything a model carries (its name, SYSTEM, LICENSE, template, an error message)
// is a stranger's text: it is only ever rendered as text (Preact's text nodes and
// attributes), never as HTML.

import { h, render } from "./vendor/preact.js";
import { useCallback, useEffect, useRef, useState } from "./vendor/preact-hooks.js";
import htm from "./vendor/htm.js";

const html = htm.bind(h);

export function mount(element, api) {
  addStyles();
  render(html`<${ModelsView} api=${api} />`, element);
  return () => render(null, element);
}

// models.css, beside this module, once per page (the shell's index.html need not know it)
export function addStyles() {
  const href = new URL("./models.css", import.meta.url).href;
  if (document.querySelector(`link[data-view-css="models"]`)) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = href;
  link.dataset.viewCss = "models";
  document.head.appendChild(link);
}

// DELETE /api/delete (Ollama's method): through api.del (the shell's api.js), else a
// fetch carrying the same key as the shell's calls.
async function deleteModel(api, name) {
  if (typeof api.del === "function") return api.del("/api/delete", { model: name });
  const headers = { "Content-Type": "application/json" };
  if (api.key) headers.Authorization = `Bearer ${api.key}`;
  const answer = await fetch("/api/delete", {
    method: "DELETE", headers, body: JSON.stringify({ model: name }),
  });
  if (!answer.ok) {
    let message = "";
    try { message = (await answer.json()).error; } catch { /* not JSON */ }
    throw new Error(message || `HTTP ${answer.status}`);
  }
  return null;
}

// ---- formatting ---------------------------------------------------------------

export function formatBytes(n) {
  if (typeof n !== "number" || !isFinite(n) || n < 0) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

function formatUntil(iso) {
  if (!iso) return "-";
  const t = Date.parse(iso);
  if (isNaN(t)) return "-";
  const seconds = Math.round((t - Date.now()) / 1000);
  if (seconds > 100 * 365 * 86400) return "forever";
  if (seconds <= 0) return "now";
  if (seconds < 90) return `in ${seconds} s`;
  if (seconds < 90 * 60) return `in ${Math.round(seconds / 60)} min`;
  if (seconds < 48 * 3600) return `in ${Math.round(seconds / 3600)} h`;
  return new Date(t).toLocaleString();
}

function contextOf(show) {
  const info = (show && show.model_info) || {};
  const key = Object.keys(info).find((k) => k.endsWith(".context_length"));
  return key ? info[key] : null;
}

function errorText(err) {
  return String((err && err.message) || err || "error");
}

// ---- the view -----------------------------------------------------------------

function ModelsView({ api }) {
  const [models, setModels] = useState(null);  // /api/tags' models
  const [loaded, setLoaded] = useState([]);    // /api/ps' models
  const [error, setError] = useState("");
  const [selected, setSelected] = useState(null);  // a name whose details show
  const [confirming, setConfirming] = useState(null);  // a name about to be deleted
  const [busy, setBusy] = useState(null);  // a name an action is running on

  const refresh = useCallback(async () => {
    try {
      const [tags, ps] = await Promise.all([api.get("/api/tags"), api.get("/api/ps")]);
      setModels((tags && tags.models) || []);
      setLoaded((ps && ps.models) || []);
      setError("");
    } catch (err) {
      setError(errorText(err));
      if (models === null) setModels([]);
    }
  }, [api]);

  useEffect(() => {
    refresh();
    const timer = setInterval(refresh, 10000);  // loaded-until moves on its own
    return () => clearInterval(timer);
  }, [refresh]);

  const act = async (name, work) => {
    setBusy(name);
    setError("");
    try {
      await work();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(null);
      await refresh();
    }
  };

  const unload = (name) => act(name, () =>
    api.post("/api/generate", { model: name, prompt: "", keep_alive: 0, stream: false }));

  const remove = (name) => act(name, async () => {
    setConfirming(null);
    await deleteModel(api, name);
    if (selected === name) setSelected(null);
  });

  const loadedBy = new Map(loaded.map((m) => [m.name, m]));

  return html`
    <section class="models-view" aria-labelledby="models-title">
      <h2 id="models-title">Models</h2>
      ${error && html`<p class="models-error" role="alert">${error}</p>`}
      <${PullForm} api=${api} onDone=${refresh} />
      <h3>Loaded</h3>
      ${loaded.length === 0
        ? html`<p class="models-empty" data-testid="no-loaded">No model is loaded.</p>`
        : html`
          <table class="models-table" data-testid="loaded-table">
            <thead><tr><th>Name</th><th>Size</th><th class="wide-only">Context</th><th>Until</th><th></th></tr></thead>
            <tbody>
              ${loaded.map((m) => html`
                <tr key=${m.name} data-model=${m.name}>
                  <td class="model-name">${m.name}</td>
                  <td>${formatBytes(m.size)}</td>
                  <td class="wide-only">${m.context_length || "-"}</td>
                  <td title=${m.expires_at || ""}>${formatUntil(m.expires_at)}</td>
                  <td><button type="button" class="unload" disabled=${busy === m.name}
                        onClick=${() => unload(m.name)}>Unload</button></td>
                </tr>`)}
            </tbody>
          </table>`}
      <h3>In the store</h3>
      ${models === null
        ? html`<p class="models-empty">Loading…</p>`
        : models.length === 0
          ? html`<p class="models-empty">No models yet: pull one above.</p>`
          : html`
          <table class="models-table" data-testid="models-table">
            <thead><tr>
              <th>Name</th><th>Size</th><th>Quantization</th><th class="wide-only">Parameters</th><th class="wide-only">Family</th>
              <th>Loaded until</th><th></th>
            </tr></thead>
            <tbody>
              ${models.map((m) => {
                const d = m.details || {};
                const live = loadedBy.get(m.name);
                return html`
                <tr key=${m.name} data-model=${m.name}
                    class=${selected === m.name ? "selected" : ""}>
                  <td class="model-name">${m.name}</td>
                  <td class="model-size">${formatBytes(m.size)}</td>
                  <td class="model-quant">${d.quantization_level || "-"}</td>
                  <td class="wide-only">${d.parameter_size || "-"}</td>
                  <td class="wide-only">${d.family || "-"}</td>
                  <td>${live ? formatUntil(live.expires_at) : "-"}</td>
                  <td class="model-actions">
                    <button type="button" class="details" aria-expanded=${selected === m.name}
                      onClick=${() => setSelected(selected === m.name ? null : m.name)}>Details</button>
                    ${live && html`<button type="button" class="unload" disabled=${busy === m.name}
                      onClick=${() => unload(m.name)}>Unload</button>`}
                    ${confirming === m.name
                      ? html`<span class="confirm" role="alertdialog" aria-label="Confirm delete">
                          <span>Delete ${m.name}?</span>
                          <button type="button" class="confirm-delete danger"
                            onClick=${() => remove(m.name)}>Delete</button>
                          <button type="button" class="cancel-delete"
                            onClick=${() => setConfirming(null)}>Cancel</button>
                        </span>`
                      : html`<button type="button" class="delete" disabled=${busy === m.name}
                          onClick=${() => setConfirming(m.name)}>Delete…</button>`}
                  </td>
                </tr>`;
              })}
            </tbody>
          </table>`}
      ${selected && html`<${Details} key=${selected} api=${api} name=${selected}
                          onClose=${() => setSelected(null)} />`}
    </section>`;
}

// ---- details (show) -----------------------------------------------------------

function Details({ api, name, onClose }) {
  const [show, setShow] = useState(null);
  const [error, setError] = useState("");

  useEffect(() => {
    let live = true;
    api.post("/api/show", { model: name })
      .then((s) => live && setShow(s))
      .catch((err) => live && setError(errorText(err)));
    return () => { live = false; };
  }, [api, name]);

  const d = (show && show.details) || {};
  return html`
    <section class="model-details" data-testid="model-details" aria-label="Model details">
      <header>
        <h3 class="details-name">${name}</h3>
        <button type="button" class="close" onClick=${onClose} aria-label="Close details">×</button>
      </header>
      ${error && html`<p class="models-error" role="alert">${error}</p>`}
      ${!show && !error && html`<p>Loading…</p>`}
      ${show && html`
        <dl class="details-grid">
          <dt>Family</dt><dd>${d.family || "-"}</dd>
          <dt>Parameters</dt><dd>${d.parameter_size || "-"}</dd>
          <dt>Quantization</dt><dd class="details-quant">${d.quantization_level || "-"}</dd>
          <dt>Format</dt><dd>${d.format || "-"}</dd>
          <dt>Context length</dt><dd class="details-context">${contextOf(show) ?? "-"}</dd>
          <dt>Capabilities</dt>
          <dd class="details-capabilities">${(show.capabilities || []).join(", ") || "-"}</dd>
          <dt>Modified</dt><dd>${show.modified_at ? new Date(show.modified_at).toLocaleString() : "-"}</dd>
        </dl>
        ${show.parameters && html`<h4>Parameters</h4><pre class="details-parameters">${show.parameters}</pre>`}
        ${show.system && html`<h4>System</h4><pre class="details-system">${show.system}</pre>`}
        ${show.template && html`<details><summary>Template</summary>
          <pre class="details-template">${show.template}</pre></details>`}
        ${show.license && html`<details open><summary>License</summary>
          <pre class="details-license">${show.license}</pre></details>`}`}
    </section>`;
}

// ---- pull ---------------------------------------------------------------------

// Ollama's pull stream: {"status": "pulling manifest"}, then per layer
// {"status": "pulling sha256:…", "digest", "total", "completed"}, then
// "verifying sha256 digest", "writing manifest", "success"; an {"error"} line ends
// it early.  The bar shows bytes over all layers seen so far.
export function pullTotals(layers) {
  let total = 0, completed = 0;
  for (const { total: t, completed: c } of layers.values()) {
    total += t || 0;
    completed += Math.min(c || 0, t || 0);
  }
  return { total, completed };
}

function PullForm({ api, onDone }) {
  const [name, setName] = useState("");
  const [state, setState] = useState(null);  // {name, status, total, completed, done, error}
  const abort = useRef(null);

  const start = async (event) => {
    event.preventDefault();
    const model = name.trim();
    if (!model || (state && !state.done)) return;
    const layers = new Map();
    const controller = new AbortController();
    abort.current = controller;
    let last = { name: model, status: "starting", total: 0, completed: 0, done: false, error: "" };
    setState(last);
    const update = (patch) => { last = { ...last, ...patch }; setState(last); };
    try {
      await api.stream("/api/pull", { model, stream: true }, (line) => {
        if (line.error) { update({ error: String(line.error), done: true }); return; }
        if (line.digest && typeof line.total === "number") {
          layers.set(line.digest, { total: line.total, completed: line.completed || 0 });
        }
        const sums = pullTotals(layers);
        update({ status: String(line.status || ""), ...sums });
        if (line.status === "success") update({ done: true, completed: sums.total });
      }, controller.signal);
      if (!last.done) update({ done: true, error: last.error || "the pull ended without success" });
    } catch (err) {
      update({ done: true, error: controller.signal.aborted ? "cancelled" : errorText(err) });
    } finally {
      abort.current = null;
      onDone();
    }
  };

  const percent = state && state.total > 0
    ? Math.floor((100 * state.completed) / state.total)
    : state && state.done && !state.error ? 100 : 0;
  const running = state && !state.done;

  return html`
    <form class="pull-form" onSubmit=${start} aria-label="Pull a model">
      <label for="pull-name">Pull a model</label>
      <input id="pull-name" name="model" placeholder="llama3.2:1b, hf.co/owner/repo:Q4_K_M"
             autocomplete="off" spellcheck="false" value=${name}
             onInput=${(e) => setName(e.currentTarget.value)} />
      <button type="submit" class="pull" disabled=${running || !name.trim()}>Pull</button>
      ${running && html`<button type="button" class="cancel-pull"
                          onClick=${() => abort.current && abort.current.abort()}>Cancel</button>`}
      ${state && html`
        <div class="pull-progress" data-testid="pull-progress" aria-live="polite">
          <progress max="100" value=${percent} aria-label=${"Pulling " + state.name}></progress>
          <span class="pull-percent">${percent}%</span>
          <span class="pull-status">${state.error ? "" : state.status}
            ${state.total > 0 && ` (${formatBytes(state.completed)} of ${formatBytes(state.total)})`}</span>
          ${state.error && html`<span class="models-error pull-error" role="alert">${state.error}</span>`}
        </div>`}
    </form>`;
}
