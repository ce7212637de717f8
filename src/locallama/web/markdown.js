/**
 * Model output -> safe HTML: marked (markdown) + a math extension, then DOMPurify.
 * Everything a model writes is untrusted: nothing reaches the DOM unsanitized.
 * `enhance(element)` then adds, on the sanitized DOM: highlight.js on code blocks,
 * a copy button per block, KaTeX for math (its output sanitized too).  highlight.js
 * and KaTeX are imported on first use, so a page without code or math never loads
 * them.
 */
import { Marked } from "./vendor/marked.js";
import DOMPurify from "./vendor/purify.js";

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

const mathSpan = (tex, display) =>
  `<${display ? "div" : "span"} class="math${display ? " display" : ""}" data-tex="${escapeHtml(tex)}">` +
  `${escapeHtml(tex)}</${display ? "div" : "span"}>`;

// $$...$$ and \[...\] (blocks), $...$ and \(...\) (inline; "$5 and $6" stays text:
// no space after the opening $, none before the closing one, no digit after it)
const mathExtensions = [
  {
    name: "mathBlock", level: "block",
    start: (src) => src.match(/\$\$|\\\[/)?.index,
    tokenizer(src) {
      const m = /^\$\$([\s\S]+?)\$\$/.exec(src) || /^\\\[([\s\S]+?)\\\]/.exec(src);
      if (m) return { type: "mathBlock", raw: m[0], tex: m[1].trim() };
    },
    renderer: (token) => mathSpan(token.tex, true),
  },
  {
    name: "mathInline", level: "inline",
    start: (src) => src.match(/\$|\\\(/)?.index,
    tokenizer(src) {
      const m = /^\$\$([^$]+?)\$\$/.exec(src) || /^\$(?!\s)((?:\\\$|[^$\n])+?)(?<!\s)\$(?!\d)/.exec(src)
        || /^\\\((.+?)\\\)/.exec(src);
      if (m) return { type: "mathInline", raw: m[0], tex: m[1], display: m[0].startsWith("$$") };
    },
    renderer: (token) => mathSpan(token.tex, token.display),
  },
];

const marked = new Marked({ gfm: true, breaks: false, extensions: mathExtensions });

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/** Markdown text -> sanitized HTML (a string safe for innerHTML). */
export function renderMarkdown(text) {
  return DOMPurify.sanitize(marked.parse(String(text ?? "")));
}

/** Sanitize any HTML string (KaTeX's output goes through here too). */
export const sanitize = (html) => DOMPurify.sanitize(html);

let hljs = null;
let katex = null;

/** Highlight code, add copy buttons, typeset math inside a rendered element. */
export async function enhance(element) {
  const blocks = [...element.querySelectorAll("pre > code")];
  const maths = [...element.querySelectorAll(".math[data-tex]")];
  for (const code of blocks) addCopyButton(code.parentElement);
  if (blocks.length) {
    hljs ??= (await import("./vendor/highlight.js")).default;
    for (const code of blocks) {
      if (!code.isConnected || code.dataset.highlighted) continue;
      const lang = /language-([\w+#.-]+)/.exec(code.className)?.[1];
      if (lang && !hljs.getLanguage(lang)) code.className = "";
      hljs.highlightElement(code); // reads textContent: escaped again by highlight.js
    }
  }
  if (maths.length) {
    if (!katex) {
      const css = document.createElement("link");
      css.rel = "stylesheet";
      css.href = new URL("./vendor/katex.css", import.meta.url).href;
      document.head.appendChild(css);
      katex = (await import("./vendor/katex.js")).default;
    }
    for (const el of maths) {
      if (!el.isConnected) continue;
      const html = katex.renderToString(el.dataset.tex, {
        displayMode: el.classList.contains("display"), throwOnError: false, trust: false,
      });
      el.innerHTML = sanitize(html);
      el.removeAttribute("data-tex");
    }
  }
}

function addCopyButton(pre) {
  if (pre.querySelector(":scope > button.copy")) return;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.setAttribute("aria-label", "Copy the code");
  button.addEventListener("click", async () => {
    const text = pre.querySelector("code")?.textContent ?? "";
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  pre.appendChild(button);
}
