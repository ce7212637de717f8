/**
 * The page's way to the server: JSON calls, NDJSON streams, the API key.
 *
 * The `api` object every view's `mount(element, api)` receives:
 *
 *   await api.get(path)                     GET, the JSON answer
 *   await api.post(path, body)              POST a JSON body, the JSON answer
 *   await api.del(path, body)               DELETE with a JSON body (Ollama's /api/delete)
 *   await api.upload(path, blob)            POST raw bytes (a file), the JSON answer
 *   await api.stream(path, body, onLine, signal)
 *                                           POST a JSON body, call onLine(object) for each
 *                                           NDJSON line as it arrives; resolves to the last
 *                                           object; rejects with ApiError on an HTTP error
 *                                           or a line holding {"error"}, with an AbortError
 *                                           when `signal` aborts (the server then stops the
 *                                           work: the connection closes)
 *   api.key                                 the API key in use ("" when none), kept in
 *                                           localStorage; set to change it
 *   api.askKey = async (message) => key     how the page asks for a key (app.js sets a
 *                                           dialog; default window.prompt)
 *
 * Paths are the server's own ("/api/tags"): the page is served by the same server.
 * When a call answers 401, the key is asked for once (concurrent calls share the one
 * question), stored, and the call retried with `Authorization: Bearer <key>`.
 * Errors are ApiError {status, message}: the server's {"error": ...} text.
 */

const KEY_STORAGE = "locallama.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

function storedKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
}

async function errorOf(response) {
  let text = "";
  try { text = await response.text(); } catch { /* the body is gone */ }
  let message = text || response.statusText || `HTTP ${response.status}`;
  try {
    const body = JSON.parse(text);
    const err = body && body.error;
    if (typeof err === "string") message = err;
    else if (err && typeof err.message === "string") message = err.message;
  } catch { /* not JSON: keep the text */ }
  return new ApiError(response.status, message);
}

export function createApi(base = "") {
  let asking = null; // the one pending key question

  const api = {
    get key() { return storedKey(); },
    set key(value) {
      try {
        if (value) localStorage.setItem(KEY_STORAGE, value);
        else localStorage.removeItem(KEY_STORAGE);
      } catch { /* storage refused: the key lives for this call only */ }
    },
    askKey: async (message) => window.prompt(message) || "",

    async fetch(path, init = {}) {
      for (let attempt = 0; ; attempt++) {
        const headers = new Headers(init.headers || {});
        const key = api.key;
        if (key) headers.set("Authorization", `Bearer ${key}`);
        const response = await fetch(base + path, { ...init, headers });
        if (response.status !== 401 || attempt > 0) {
          if (!response.ok) throw await errorOf(response);
          return response;
        }
        const refused = await errorOf(response);
        if (!asking) {
          const question = key ? "The API key was refused. Enter the server's API key:"
                               : "This server needs an API key (LOCALLAMA_API_KEY):";
          asking = api.askKey(question).finally(() => { setTimeout(() => { asking = null; }, 0); });
        }
        const entered = await asking;
        if (!entered) throw refused;
        api.key = entered;
      }
    },

    async get(path) {
      return (await api.fetch(path)).json();
    },

    async post(path, body) {
      const response = await api.fetch(path, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body ?? {}),
      });
      return response.json();
    },

    async del(path, body) {
      const response = await api.fetch(path, {
        method: "DELETE", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body ?? {}),
      });
      const text = await response.text();
      return text ? JSON.parse(text) : {};
    },

    async upload(path, blob) {
      const response = await api.fetch(path, {
        method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: blob,
      });
      return response.json();
    },

    async stream(path, body, onLine, signal) {
      const response = await api.fetch(path, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body ?? {}), signal,
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let last = null;
      const take = (line) => {
        if (!line.trim()) return;
        const object = JSON.parse(line);
        if (object && object.error !== undefined) {
          const err = object.error;
          throw new ApiError(response.status, typeof err === "string" ? err : (err.message || "error"));
        }
        last = object;
        onLine(object);
      };
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 1);
            take(line);
          }
        }
        buffer += decoder.decode();
        take(buffer);
      } finally {
        reader.releaseLock();
      }
      return last;
    },
  };
  return api;
}
