/**
 * Conversations in the browser's IndexedDB (database "locallama", store
 * "conversations", one record per conversation, keyed by id), and their JSON export.
 *
 * A conversation: {id, title, model, created, updated (ms since epoch),
 *   settings: {system, temperature, top_p, num_ctx, seed, num_predict} ("" = the
 *   model's own), messages: [{role: "user"|"assistant", content, thinking?,
 *   attachments?: [{name, text}], stats?, stopped?, error?, model?}]}
 */

const DB = "locallama";
const STORE = "conversations";
export const EXPORT_FORMAT = "locallama-conversations";
export const SETTINGS = ["system", "temperature", "top_p", "num_ctx", "seed", "num_predict"];

let opened = null;

function db() {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opened;
}

async function tx(mode, work) {
  const store = (await db()).transaction(STORE, mode).objectStore(STORE);
  return new Promise((resolve, reject) => {
    const request = work(store);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export const allConversations = async () =>
  (await tx("readonly", (s) => s.getAll())).sort((a, b) => b.updated - a.updated);
export const saveConversation = (conv) =>
  tx("readwrite", (s) => s.put(JSON.parse(JSON.stringify(conv))));
export const deleteConversation = (id) => tx("readwrite", (s) => s.delete(id));

export const newId = () =>
  (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);

export function newConversation(model) {
  const now = Date.now();
  return {
    id: newId(), title: "New chat", model: model || "", created: now, updated: now,
    settings: Object.fromEntries(SETTINGS.map((k) => [k, ""])), messages: [],
  };
}

export const exportJson = (convs) =>
  JSON.stringify({ format: EXPORT_FORMAT, version: 1, conversations: convs }, null, 2);

const str = (v) => (typeof v === "string" ? v : v == null ? "" : String(v));

/** Conversations from an export (or a bare list), checked and normalized: only the
 *  known fields, as strings and numbers; throws Error on anything else. */
export function parseImport(text) {
  const data = JSON.parse(text);
  const list = Array.isArray(data) ? data : data?.conversations;
  if (!Array.isArray(list)) throw new Error("not a conversations export (no list)");
  return list.map((c) => {
    if (!c || !Array.isArray(c.messages)) throw new Error("a conversation without messages");
    const now = Date.now();
    const settings = Object.fromEntries(SETTINGS.map((k) => [k, str(c.settings?.[k])]));
    const messages = c.messages.filter((m) => m && (m.role === "user" || m.role === "assistant"))
      .map((m) => ({
        role: m.role, content: str(m.content),
        ...(m.thinking ? { thinking: str(m.thinking) } : {}),
        ...(Array.isArray(m.attachments) ? {
          attachments: m.attachments.map((a) => ({ name: str(a?.name), text: str(a?.text) })) } : {}),
        ...(m.stats && typeof m.stats === "object" ? { stats: sanitizeStats(m.stats) } : {}),
        ...(m.model ? { model: str(m.model) } : {}),
        ...(m.stopped ? { stopped: true } : {}),
      }));
    return {
      id: str(c.id) || newId(), title: str(c.title) || "Imported chat", model: str(c.model),
      created: Number(c.created) || now, updated: Number(c.updated) || now, settings, messages,
    };
  });
}

function sanitizeStats(s) {
  const out = {};
  for (const k of ["tps", "ttft_ms", "eval_count", "prompt_eval_count", "eval_duration"]) {
    if (Number.isFinite(Number(s[k]))) out[k] = Number(s[k]);
  }
  return out;
}
