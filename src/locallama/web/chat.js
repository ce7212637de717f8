/**
 * The Chat view: conversations (sidebar), the streamed chat, per-conversation
 * settings beside the model's defaults, context and speed figures, attachments.
 * `mount(element, api)` (api: see api.js).
 *
 * Text from the model, the server (model names, SYSTEM, LICENSE) and files is
 * rendered as text by Preact (never as HTML), except the answer's markdown, which
 * goes through markdown.js (DOMPurify) only.
 */
import { h, render } from "./vendor/preact.js";
import { useEffect, useLayoutEffect, useReducer, useRef, useState } from "./vendor/preact-hooks.js";
import htm from "./vendor/htm.js";
import { enhance, renderMarkdown } from "./markdown.js";
import {
  allConversations, deleteConversation, exportJson, newConversation, parseImport,
  saveConversation, SETTINGS,
} from "./convstore.js";

const html = htm.bind(h);

const MODEL_KEY = "locallama.model";
const TEXT_FILE = /\.(txt|text|md|markdown|rst|csv|tsv|json|jsonl|ya?ml|toml|ini|cfg|log|xml|html?|css|js|mjs|ts|tsx|jsx|py|rb|go|rs|c|h|cc|cpp|hpp|java|kt|swift|sh|bash|zsh|sql|r|lua|php|pl|tex)$/i;
const MAX_ATTACHMENT_CHARS = 200_000;
const MAX_IMAGE_BYTES = 10 * 1024 * 1024; // in base64 still under the default 16 MiB body limit
//: Ollama's defaults where the model sets none
const BUILTIN = { temperature: "0.8", top_p: "0.9", num_ctx: "4096", seed: "random", num_predict: "no limit" };
const LABELS = { temperature: "Temperature", top_p: "top_p", num_ctx: "Context (num_ctx)",
  seed: "Seed", num_predict: "Max tokens" };

/** /api/show's "parameters" text -> {name: value} (repeated names joined). */
function parseParameters(text) {
  const out = {};
  for (const line of String(text || "").split("\n")) {
    const m = /^(\S+)\s+(.*)$/.exec(line.trim());
    if (m) out[m[1]] = out[m[1]] ? `${out[m[1]]}, ${m[2]}` : m[2];
  }
  return out;
}

function contextLength(show) {
  const info = show?.model_info || {};
  for (const [k, v] of Object.entries(info)) if (k.endsWith(".context_length")) return Number(v);
  return 0;
}

function options(settings) {
  const out = {};
  for (const k of ["temperature", "top_p", "num_ctx", "seed", "num_predict"]) {
    const v = String(settings[k] ?? "").trim();
    if (v !== "" && Number.isFinite(Number(v))) out[k] = Number(v);
  }
  return out;
}

/** A user message as the model reads it: text attachments first, then the text. */
function wireContent(m) {
  const texts = m.role === "user" ? (m.attachments || []).filter((a) => a.image === undefined) : [];
  if (!texts.length) return m.content;
  const files = texts.map((a) => `File ${a.name}:\n\`\`\`\n${a.text}\n\`\`\``).join("\n\n");
  return `${files}\n\n${m.content}`;
}

/** A message on the wire: its content, and its image attachments as Ollama's images. */
function wireMessage(m) {
  const images = m.role === "user" ? (m.attachments || []).filter((a) => a.image !== undefined) : [];
  const out = { role: m.role, content: wireContent(m) };
  if (images.length) out.images = images.map((a) => a.image);
  return out;
}

/** A file's bytes in base64 (what Ollama's images carry). */
async function base64Of(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

const fmtTime = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`);

function Markdown({ text }) {
  const ref = useRef(null);
  useLayoutEffect(() => {
    ref.current.innerHTML = renderMarkdown(text); // sanitized by DOMPurify
    enhance(ref.current);
  }, [text]);
  return html`<div class="md" ref=${ref}></div>`;
}

function Stats({ stats }) {
  if (!stats) return null;
  const parts = [];
  if (stats.tps) parts.push(`${stats.tps.toFixed(1)} tokens/s`);
  if (stats.ttft_ms != null) parts.push(`first token ${fmtTime(stats.ttft_ms)}`);
  if (stats.eval_count != null) parts.push(`${stats.eval_count} tokens`);
  if (stats.prompt_eval_count != null) parts.push(`prompt ${stats.prompt_eval_count}`);
  return html`<div class="stats" data-testid="stats">${parts.join(" · ")}</div>`;
}

function Message({ m, last, busy, onRegenerate, onEdit }) {
  const who = m.role === "user" ? "You" : (m.model || "assistant");
  return html`<article class=${`msg ${m.role}`} data-role=${m.role}>
    <div class="who">${who}</div>
    ${m.attachments?.length ? html`<ul class="files">${m.attachments.map((a) =>
      html`<li title=${a.image !== undefined ? "image" : `${a.text.length} characters`}>${a.name}</li>`)}</ul>` : null}
    ${m.thinking ? html`<details class="thinking"><summary>Thinking${last && busy ? "…" : ""}</summary>
      <div class="thinking-text">${m.thinking}</div></details>` : null}
    ${m.role === "assistant" ? html`<${Markdown} text=${m.content} />`
      : html`<div class="user-text">${m.content}</div>`}
    ${m.stopped ? html`<div class="note">Stopped.</div>` : null}
    ${m.error ? html`<div class="error" role="alert">${m.error}</div>` : null}
    <${Stats} stats=${m.stats} />
    ${last && !busy ? html`<div class="actions">
      ${m.role === "assistant" ? html`<button type="button" onClick=${onRegenerate}>Regenerate</button>` : null}
      <button type="button" onClick=${onEdit}>Edit last message</button></div>` : null}
  </article>`;
}

function Settings({ conv, show, onChange }) {
  const params = parseParameters(show?.parameters);
  const ctxLen = contextLength(show);
  const det = show?.details || {};
  return html`<details class="settings" data-testid="settings">
    <summary>Settings and model</summary>
    <label>System message
      <textarea rows="3" value=${conv.settings.system} placeholder="(the model's own, below)"
        onInput=${(e) => onChange("system", e.target.value)} /></label>
    <div class="model-system">Model's SYSTEM: <pre data-testid="model-system">${show?.system || "(none)"}</pre></div>
    <div class="grid">
      ${["temperature", "top_p", "num_ctx", "seed", "num_predict"].map((k) => html`
        <label>${LABELS[k]}
          <input type="number" step="any" value=${conv.settings[k]} placeholder=${params[k] ?? BUILTIN[k]}
            onInput=${(e) => onChange(k, e.target.value)} />
          <small>model: ${params[k] ?? `${BUILTIN[k]} (default)`}</small></label>`)}
    </div>
    ${show ? html`<div class="model-info" data-testid="model-info">
      <div>${[det.family, det.parameter_size, det.quantization_level].filter(Boolean).join(" · ")}
        ${ctxLen ? ` · trained context ${ctxLen}` : ""}
        ${show.capabilities?.length ? ` · ${show.capabilities.join(", ")}` : ""}</div>
      ${show.license ? html`<details><summary>License</summary>
        <pre data-testid="model-license">${show.license}</pre></details>` : null}
    </div>` : null}
  </details>`;
}

function Sidebar({ convs, current, onPick, onNew, onRename, onDelete, onExport, onImport, open }) {
  const fileRef = useRef(null);
  return html`<aside class=${`sidebar${open ? " open" : ""}`} aria-label="Conversations">
    <button type="button" class="primary" onClick=${onNew}>+ New chat</button>
    <ul class="convs" data-testid="conversations">
      ${convs.map((c) => html`<li class=${c.id === current ? "current" : ""} key=${c.id}>
        <button type="button" class="conv" aria-current=${c.id === current ? "true" : undefined}
          onClick=${() => onPick(c.id)}>${c.title}</button>
        <button type="button" class="icon" title="Rename" aria-label=${`Rename ${c.title}`}
          onClick=${() => onRename(c)}>✎</button>
        <button type="button" class="icon" title="Delete" aria-label=${`Delete ${c.title}`}
          onClick=${() => onDelete(c)}>✕</button></li>`)}
    </ul>
    <div class="io">
      <button type="button" onClick=${onExport}>Export</button>
      <button type="button" onClick=${() => fileRef.current.click()}>Import</button>
      <input type="file" accept="application/json,.json" hidden ref=${fileRef}
        data-testid="import-file" onChange=${(e) => { onImport(e.target.files[0]); e.target.value = ""; }} />
    </div>
  </aside>`;
}

function Chat({ api }) {
  const [, redraw] = useReducer((x) => x + 1, 0);
  const [convs, setConvs] = useState([]);
  const [currentId, setCurrentId] = useState(null);
  const [models, setModels] = useState([]);
  const [shows, setShows] = useState({});
  const [input, setInput] = useState("");
  const [pending, setPending] = useState([]); // attachments for the next message
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(null); // {id, controller}
  const [sidebarOpen, setSidebarOpen] = useState(false);
  const inputRef = useRef(null);
  const fileRef = useRef(null);
  const endRef = useRef(null);

  const conv = convs.find((c) => c.id === currentId) || null;
  const show = conv ? shows[conv.model] : null;

  async function loadModels() {
    try {
      const tags = await api.get("/api/tags");
      const names = (tags.models || []).map((m) => m.name || m.model).filter(Boolean);
      setModels(names);
      return names;
    } catch (e) {
      setNotice(`Cannot list the models: ${e.message}`);
      return [];
    }
  }

  useEffect(() => {
    (async () => {
      const [names, stored] = await Promise.all([loadModels(), allConversations().catch(() => [])]);
      let list = stored;
      if (!list.length) {
        const fresh = newConversation(preferredModel(names));
        list = [fresh];
      }
      setConvs(list);
      setCurrentId(list[0].id);
    })();
  }, []);

  function preferredModel(names) {
    const saved = localStorage.getItem(MODEL_KEY);
    return names.includes(saved) ? saved : (names[0] || "");
  }

  useEffect(() => {
    const name = conv?.model;  // conv is changed in place: an answer is filed under its own name
    if (name && !(name in shows)) {
      setShows((s) => ({ ...s, [name]: null }));
      api.post("/api/show", { model: name })
        .then((info) => setShows((s) => ({ ...s, [name]: info })))
        .catch(() => {});
    }
  }, [conv?.model]);

  useEffect(() => { endRef.current?.scrollIntoView({ block: "end" }); });

  function save(c) {
    c.updated = Date.now();
    saveConversation(c).catch((e) => setNotice(`Not saved: ${e.message}`));
    setConvs((list) => [c, ...list.filter((x) => x.id !== c.id)]);
  }

  function newChat() {
    const c = newConversation(conv?.model || preferredModel(models));
    setConvs((list) => [c, ...list]);
    setCurrentId(c.id);
    setNotice("");
    setSidebarOpen(false);
    inputRef.current?.focus();
  }

  function pickModel(name) {
    conv.model = name;
    localStorage.setItem(MODEL_KEY, name);
    if (conv.messages.length) save(conv); else redraw();
  }

  function changeSetting(k, v) {
    conv.settings[k] = v;
    save(conv);
  }

  async function fitHistory(c, wire) {
    // The context the server will give: the conversation's num_ctx, else the
    // Modelfile's, else the default; an answer needs room too.
    const params = parseParameters(shows[c.model]?.parameters);
    const numCtx = Number(c.settings.num_ctx) || Number(params.num_ctx) || 4096;
    const maxTokens = Number(c.settings.num_predict) || Number(params.num_predict) || 0;
    const reserve = Math.min(maxTokens > 0 ? maxTokens : 256, Math.floor(numCtx / 2));
    const count = async (messages) => {
      try {
        const response = await api.fetch("/tokenize", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ model: c.model, messages }), signal: AbortSignal.timeout(15000),
        });
        return (await response.json()).count;
      } catch {
        return Math.ceil(messages.reduce((n, m) => n + m.content.length, 0) / 3);
      }
    };
    const system = wire[0]?.role === "system" ? [wire[0]] : [];
    let turns = wire.slice(system.length);
    let dropped = 0;
    let used = await count(wire);
    while (used + reserve > numCtx && turns.length > 1) {
      const cut = turns.length > 2 && turns[1].role === "assistant" ? 2 : 1;
      turns = turns.slice(cut);
      dropped += cut;
      used = await count([...system, ...turns]);
    }
    return { messages: [...system, ...turns], dropped, numCtx, used };
  }

  async function run(c) {
    if (!c.model) { setNotice("Pick a model first."); return; }
    const controller = new AbortController();
    const answer = { role: "assistant", content: "", model: c.model };
    c.messages.push(answer);
    setBusy({ id: c.id, controller });
    setNotice("");
    save(c);
    const history = c.messages.slice(0, -1);
    const wire = [];
    if (c.settings.system.trim()) wire.push({ role: "system", content: c.settings.system });
    for (const m of history) wire.push(wireMessage(m));
    let started = 0;
    let first = null;
    try {
      const fit = await fitHistory(c, wire);
      c.dropped = fit.dropped;
      c.numCtx = fit.numCtx;
      if (fit.dropped) {
        setNotice(`The conversation no longer fits the context (num_ctx ${fit.numCtx}): ` +
          `the ${fit.dropped} oldest message${fit.dropped > 1 ? "s were" : " was"} left out of this answer.`);
      }
      const caps = shows[c.model]?.capabilities || [];
      const body = { model: c.model, messages: fit.messages, stream: true, options: options(c.settings) };
      if (caps.includes("thinking")) body.think = true;
      let frame = 0;
      started = performance.now(); // the time to the first token: from sending the chat
      const last = await api.stream("/api/chat", body, (line) => {
        const m = line.message || {};
        if ((m.content || m.thinking) && first === null) first = performance.now();
        if (m.content) answer.content += m.content;
        if (m.thinking) answer.thinking = (answer.thinking || "") + m.thinking;
        // at most one redraw per 30 ms (timers, not animation frames: those stop in a
        // hidden tab)
        if (!frame) frame = setTimeout(() => { frame = 0; redraw(); }, 30);
      }, controller.signal);
      if (last?.done) {
        const seconds = (last.eval_duration || 0) / 1e9;
        answer.stats = {
          eval_count: last.eval_count, prompt_eval_count: last.prompt_eval_count,
          eval_duration: last.eval_duration,
          tps: seconds > 0 ? last.eval_count / seconds : 0,
          ttft_ms: first === null ? null : first - started,
        };
        c.used = (last.prompt_eval_count || 0) + (last.eval_count || 0);
      }
    } catch (e) {
      if (e.name === "AbortError") answer.stopped = true;
      else answer.error = e.message || String(e);
    } finally {
      setBusy(null);
      save(c);
      if (c.title === "New chat" && c.messages[0]) {
        c.title = c.messages[0].content.trim().split("\n")[0].slice(0, 48) || "Chat";
        save(c);
      }
    }
  }

  function send() {
    const text = input.trim();
    if (!conv || busy || (!text && !pending.length)) return;
    conv.messages.push({ role: "user", content: text, ...(pending.length ? { attachments: pending } : {}) });
    setInput("");
    setPending([]);
    run(conv);
  }

  function regenerate() {
    if (conv.messages.at(-1)?.role === "assistant") conv.messages.pop();
    run(conv);
  }

  function editLast() {
    if (conv.messages.at(-1)?.role === "assistant") conv.messages.pop();
    const user = conv.messages.pop();
    if (user) {
      setInput(user.content);
      setPending(user.attachments || []);
    }
    save(conv);
    setTimeout(() => inputRef.current?.focus(), 0);
  }

  function stop() { busy?.controller.abort(); }

  function onKey(e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
    else if (e.key === "Escape" && busy) { e.preventDefault(); stop(); }
  }

  async function attach(files) {
    const added = [];
    for (const file of files) {
      try {
        if (file.type.startsWith("image/")) {
          if (!(show?.capabilities || []).includes("vision")) {
            throw new Error(`images are not supported by ${conv?.model || "this model"}: it has no vision projector`);
          }
          if (file.size > MAX_IMAGE_BYTES) throw new Error(`too large (${file.size} bytes; at most ${MAX_IMAGE_BYTES})`);
          added.push({ name: file.name, image: await base64Of(file) });
          continue;
        }
        let text;
        if (file.type === "application/pdf" || /\.pdf$/i.test(file.name)) {
          text = (await api.upload("/ui/api/extract", file)).text;
        } else if (file.type.startsWith("text/") || TEXT_FILE.test(file.name) || file.type === "application/json") {
          text = await file.text();
          if (text.includes("\u0000")) throw new Error("this is not a text file");
        } else {
          throw new Error("only text, Markdown and PDF files can be attached");
        }
        if (text.length > MAX_ATTACHMENT_CHARS) throw new Error(`too long (${text.length} characters; at most ${MAX_ATTACHMENT_CHARS})`);
        added.push({ name: file.name, text });
      } catch (e) {
        setNotice(`${file.name}: ${e.message}`);
      }
    }
    if (added.length) setPending((p) => [...p, ...added]);
  }

  function rename(c) {
    const title = window.prompt("Rename the conversation:", c.title);
    if (title && title.trim()) { c.title = title.trim(); save(c); }
  }

  async function remove(c) {
    if (!window.confirm(`Delete "${c.title}"?`)) return;
    await deleteConversation(c.id).catch(() => {});
    const rest = convs.filter((x) => x.id !== c.id);
    if (!rest.length) rest.push(newConversation(c.model));
    setConvs(rest);
    if (c.id === currentId) setCurrentId(rest[0].id);
  }

  function exportAll() {
    const blob = new Blob([exportJson(convs.filter((c) => c.messages.length))], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `locallama-conversations-${new Date().toISOString().slice(0, 10)}.json`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  async function importFile(file) {
    if (!file) return;
    try {
      const imported = parseImport(await file.text());
      const ids = new Set(convs.map((c) => c.id));
      for (const c of imported) {
        if (ids.has(c.id)) c.id = `${c.id}-${Date.now().toString(36)}`;
        await saveConversation(c);
      }
      setConvs(await allConversations());
      if (imported[0]) setCurrentId(imported[0].id);
      setNotice(`Imported ${imported.length} conversation${imported.length === 1 ? "" : "s"}.`);
    } catch (e) {
      setNotice(`Import failed: ${e.message}`);
    }
  }

  if (!conv) return html`<div class="loading">Loading…</div>`;
  const isBusy = busy?.id === conv.id;
  const numCtx = Number(conv.settings.num_ctx) || Number(parseParameters(show?.parameters).num_ctx) || 4096;
  const modelChoices = models.includes(conv.model) || !conv.model ? models : [conv.model, ...models];

  return html`<div class="chat-layout">
    <${Sidebar} convs=${convs} current=${currentId} open=${sidebarOpen}
      onPick=${(id) => { setCurrentId(id); setSidebarOpen(false); setNotice(""); }}
      onNew=${newChat} onRename=${rename} onDelete=${remove} onExport=${exportAll} onImport=${importFile} />
    <section class="chat" aria-label="Chat">
      <div class="toolbar">
        <button type="button" class="icon menu" aria-label="Conversations"
          onClick=${() => setSidebarOpen(!sidebarOpen)}>☰</button>
        <label class="model-pick">Model
          <select data-testid="model" value=${conv.model} onChange=${(e) => pickModel(e.target.value)}
            onFocus=${loadModels}>
            ${!conv.model ? html`<option value="">(pick a model)</option>` : null}
            ${modelChoices.map((n) => html`<option value=${n}>${n}</option>`)}
          </select></label>
        <span class="context" data-testid="context" title="tokens of the last exchange / num_ctx">
          ${conv.used ? `${conv.used} / ${numCtx} tokens` : `num_ctx ${numCtx}`}</span>
      </div>
      <${Settings} conv=${conv} show=${show} onChange=${changeSetting} />
      <div class="messages" data-testid="messages" aria-live="polite">
        ${conv.messages.length ? null : html`<p class="empty">Ask anything. Enter sends, Shift+Enter is a new line.</p>`}
        ${conv.messages.map((m, i) => html`<${Message} m=${m} last=${i === conv.messages.length - 1}
          busy=${isBusy} onRegenerate=${regenerate} onEdit=${editLast} />`)}
        <div ref=${endRef}></div>
      </div>
      ${notice ? html`<div class="notice" role="status" data-testid="notice">${notice}</div>` : null}
      <div class="composer">
        ${pending.length ? html`<ul class="files pending">${pending.map((a, i) => html`<li>${a.name}
          <button type="button" class="icon" aria-label=${`Remove ${a.name}`}
            onClick=${() => setPending(pending.filter((_, j) => j !== i))}>✕</button></li>`)}</ul>` : null}
        <textarea ref=${inputRef} rows="3" data-testid="input" aria-label="Message"
          placeholder="Message (Enter sends, Shift+Enter: new line)" value=${input}
          onInput=${(e) => setInput(e.target.value)} onKeyDown=${onKey} />
        <div class="composer-actions">
          <button type="button" onClick=${() => fileRef.current.click()} aria-label="Attach a file">Attach</button>
          <input type="file" multiple hidden ref=${fileRef} data-testid="attach"
            onChange=${(e) => { attach([...e.target.files]); e.target.value = ""; }} />
          ${isBusy ? html`<button type="button" class="stop" onClick=${stop}>Stop</button>`
            : html`<button type="button" class="primary" onClick=${send} disabled=${!!busy}>Send</button>`}
        </div>
      </div>
    </section>
  </div>`;
}

export function mount(element, api) {
  render(html`<${Chat} api=${api} />`, element);
}
