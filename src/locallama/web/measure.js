// The Measurements view: the results of `locallama eval`, `perplexity` and `bench`
// (the files their --output writes, in the server's results folder), grouped by
// model as `locallama report` groups them, drawn as charts so that choosing a
// quantization is looking, not reading.
//
// mount(element, api) renders into element and returns an unmount function; it
// reads GET /ui/api/results (server/web_results.py):
//   {dir, files: [{name, size, modified}], skipped: [{name, error}],
//    report: {models: [ModelRow], tasks: [name], notes: [text]} | null}
// where a ModelRow is locallama/results.py's: {digest, name, quantization, size,
// parameters, memory, pp, tg: {test, tokens_per_second, stddev, concurrency} | null,
// perplexity: {value, stderr, ctx, file} | null, tasks: {task: {metric, value, stderr}},
// sample, sources}.
//
// The charts are inline SVG built with Preact: a few bars and points need no chart
// library.  Model and file names are strangers' text: SVG <text> and HTML text nodes only.

import { h, render } from "./vendor/preact.js";
import { useCallback, useEffect, useState } from "./vendor/preact-hooks.js";
import htm from "./vendor/htm.js";
import { addStyles, formatBytes } from "./models.js";

const html = htm.bind(h);

export function mount(element, api) {
  addStyles();
  render(html`<${MeasureView} api=${api} />`, element);
  return () => render(null, element);
}

// a palette that reads on light and dark backgrounds; one colour per model, every chart
const COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
  "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"];

function errorText(err) {
  return String((err && err.message) || err || "error");
}

// eval's scores are fractions (0..1); charts show percent, as `locallama report` does
export function percent(value) {
  return value >= -1 && value <= 1 ? value * 100 : value;
}

function shortLabel(text, max = 26) {
  text = String(text);
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

function fmt(value, digits) {
  if (value === null || value === undefined || !isFinite(value)) return "n/a";
  return Number(value).toFixed(digits);
}

// ---- the view -----------------------------------------------------------------

function MeasureView({ api }) {
  const [data, setData] = useState(null);
  const [error, setError] = useState("");
  const [chosen, setChosen] = useState(null);  // null: every file; else a Set of names

  const load = useCallback(async (names) => {
    const query = names ? [...names].map((n) => "file=" + encodeURIComponent(n)).join("&") : "";
    try {
      setData(await api.get("/ui/api/results" + (query ? "?" + query : "")));
      setError("");
    } catch (err) {
      setError(errorText(err));
    }
  }, [api]);

  useEffect(() => { load(chosen); }, [load, chosen]);

  const toggle = (name) => {
    const all = data.files.map((f) => f.name);
    const next = new Set(chosen || all);
    if (next.has(name)) next.delete(name); else next.add(name);
    setChosen(next.size === all.length ? null : next);
  };

  const report = data && data.report;
  const rows = (report && report.models) || [];
  const nothingChosen = chosen && chosen.size === 0;
  return html`
    <section class="measure-view" aria-labelledby="measure-title">
      <header class="measure-head">
        <h2 id="measure-title">Measurements</h2>
        <button type="button" class="reload" onClick=${() => load(chosen)}>Reload</button>
      </header>
      ${error && html`<p class="models-error" role="alert">${error}</p>`}
      ${!data && !error && html`<p>Loading…</p>`}
      ${data && data.files.length === 0 && html`
        <div class="measure-empty" data-testid="measure-empty">
          <p>No result files in <code>${data.dir}</code> yet. Measure a model and write its
             result there, then reload:</p>
          <pre>locallama bench MODEL -o ${data.dir}/bench.json
locallama perplexity MODEL wiki.test.raw -o ${data.dir}/ppl-MODEL.json
locallama eval MODEL --tasks arc_challenge -o ${data.dir}/eval-MODEL.json</pre>
        </div>`}
      ${data && data.files.length > 0 && html`
        <details class="measure-files">
          <summary>${data.files.length} result file${data.files.length > 1 ? "s" : ""} in
            <code>${data.dir}</code></summary>
          <ul>
            ${data.files.map((f) => html`
              <li key=${f.name}><label>
                <input type="checkbox" checked=${!chosen || chosen.has(f.name)}
                       onChange=${() => toggle(f.name)} />
                <span class="file-name">${f.name}</span>
              </label></li>`)}
          </ul>
        </details>`}
      ${data && data.skipped.length > 0 && html`
        <ul class="measure-skipped" aria-label="Files not read">
          ${data.skipped.map((s) => html`<li key=${s.name}>${s.error}</li>`)}
        </ul>`}
      ${nothingChosen && html`<p>No file chosen.</p>`}
      ${rows.length > 0 && !nothingChosen && html`<${Charts} report=${report} />`}
    </section>`;
}

function Charts({ report }) {
  const rows = report.models;
  const color = (i) => COLORS[i % COLORS.length];
  const series = rows.map((r, i) => ({ label: r.name, color: color(i), row: r }));
  const charts = [];

  if (rows.some((r) => r.size || r.memory)) {
    charts.push(html`<${BarChart} key="size" id="size" title="Size and memory"
      unit="GB" better="lower" digits=${2}
      bars=${series.flatMap((s) => [
        { label: s.label, sub: "file", value: s.row.size ? s.row.size / 1e9 : null, color: s.color },
        ...(rows.some((r) => r.memory)
          ? [{ label: s.label, sub: "memory", value: s.row.memory ? s.row.memory / 1e9 : null,
               color: s.color, faint: true }]
          : []),
      ])} />`);
  }
  for (const [key, title] of [["pp", "Prompt processing"], ["tg", "Generation"]]) {
    if (!rows.some((r) => r[key])) continue;
    const tests = [...new Set(rows.filter((r) => r[key]).map((r) => r[key].test))];
    charts.push(html`<${BarChart} key=${key} id=${key}
      title=${`${title}${tests.length === 1 ? " " + tests[0] : ""}`}
      unit="tokens/s" better="higher" digits=${1}
      bars=${series.map((s) => ({
        label: s.label, color: s.color,
        value: s.row[key] ? s.row[key].tokens_per_second : null,
        err: s.row[key] ? s.row[key].stddev : null,
      }))} />`);
  }
  if (rows.some((r) => r.perplexity)) {
    charts.push(html`<${BarChart} key="ppl" id="perplexity" title="Perplexity"
      unit="" better="lower" digits=${2}
      bars=${series.map((s) => ({
        label: s.label, color: s.color,
        value: s.row.perplexity ? s.row.perplexity.value : null,
        err: s.row.perplexity ? s.row.perplexity.stderr : null,
      }))} />`);
  }
  for (const task of report.tasks) {
    charts.push(html`<${BarChart} key=${"task-" + task} id=${"task-" + task}
      title=${task} unit="%" better="higher" digits=${1} max=${100}
      bars=${series.map((s) => {
        const score = s.row.tasks[task];
        return { label: s.label, color: s.color,
                 value: score ? percent(score.value) : null,
                 err: score && score.stderr !== null ? percent(score.stderr) : null };
      })} />`);
  }
  const quality = qualityPoints(series, report.tasks);
  if (quality) charts.unshift(html`<${Scatter} key="tradeoff" ...${quality} />`);

  return html`
    <div class="measure-legend" aria-label="Models">
      ${series.map((s) => html`<span key=${s.row.digest} class="legend-item">
        <span class="swatch" style=${{ background: s.color }}></span>
        <span class="legend-name">${s.label}</span>
        ${s.row.quantization && html`<span class="legend-quant">${s.row.quantization}</span>`}
      </span>`)}
    </div>
    <div class="measure-charts">${charts}</div>
    ${report.notes.length > 0 && html`
      <ul class="measure-notes">${report.notes.map((n, i) => html`<li key=${i}>${n}</li>`)}</ul>`}
    <${Table} report=${report} />`;
}

// the trade-off a quantization is chosen on: quality (perplexity, else the mean task
// score) against file size, one point per model that has both
function qualityPoints(series, tasks) {
  const sized = series.filter((s) => s.row.size);
  const ppl = sized.filter((s) => s.row.perplexity);
  if (ppl.length >= 2) {
    return {
      id: "tradeoff", title: "Perplexity against size (lower left is better)",
      xLabel: "file size (GB)", yLabel: "perplexity",
      points: ppl.map((s) => ({ label: s.label, color: s.color, x: s.row.size / 1e9,
                                y: s.row.perplexity.value })),
    };
  }
  const scored = sized.filter((s) => tasks.length && tasks.every((t) => s.row.tasks[t]));
  if (scored.length >= 2) {
    return {
      id: "tradeoff", title: "Mean task score against size (upper left is better)",
      xLabel: "file size (GB)", yLabel: "mean score (%)",
      points: scored.map((s) => ({
        label: s.label, color: s.color, x: s.row.size / 1e9,
        y: tasks.reduce((a, t) => a + percent(s.row.tasks[t].value), 0) / tasks.length,
      })),
    };
  }
  return null;
}

// ---- charts -------------------------------------------------------------------

const WIDTH = 560;
const LABEL_W = 190;
const VALUE_W = 90;
const BAR_H = 18;
const GAP = 6;

// Horizontal bars, one per model (long names fit on the left), the value at the
// bar's end, ± an error bar when there is one.
function BarChart({ id, title, unit, better, digits, bars, max }) {
  const values = bars.map((b) => (b.value || 0) + (b.err || 0));
  const top = max || Math.max(...values, 0) * 1.05 || 1;
  const plotW = WIDTH - LABEL_W - VALUE_W;
  const x = (v) => Math.max(0, Math.min(plotW, (v / top) * plotW));
  const height = bars.length * (BAR_H + GAP) + GAP + 16;
  const hint = better === "higher" ? "higher is better" : "lower is better";
  return html`
    <figure class="chart" data-chart=${id}>
      <figcaption>${title}${unit ? ` (${unit}, ${hint})` : ` (${hint})`}</figcaption>
      <svg viewBox=${`0 0 ${WIDTH} ${height}`} width="100%" role="img"
           aria-label=${title}>
        ${bars.map((b, i) => {
          const y = GAP + i * (BAR_H + GAP);
          const name = b.sub ? `${shortLabel(b.label, 18)} · ${b.sub}` : shortLabel(b.label);
          return html`<g key=${i} class="bar" data-label=${b.label} data-value=${b.value ?? ""}>
            <title>${b.label}${b.sub ? " · " + b.sub : ""}: ${fmt(b.value, digits)}${b.err ? " ± " + fmt(b.err, digits) : ""} ${unit}</title>
            <text class="bar-label" x=${LABEL_W - 6} y=${y + BAR_H * 0.72} text-anchor="end">${name}</text>
            ${b.value !== null && b.value !== undefined
              ? html`<rect x=${LABEL_W} y=${y} width=${x(b.value)} height=${BAR_H} rx="2"
                      fill=${b.color} fill-opacity=${b.faint ? 0.45 : 1} />`
              : null}
            ${b.err ? html`<line class="err" x1=${LABEL_W + x(b.value - b.err)} x2=${LABEL_W + x(b.value + b.err)}
                           y1=${y + BAR_H / 2} y2=${y + BAR_H / 2} />` : null}
            <text class="bar-value" x=${LABEL_W + x((b.value || 0) + (b.err || 0)) + 4}
                  y=${y + BAR_H * 0.72}>${fmt(b.value, digits)}${b.err ? " ±" + fmt(b.err, digits) : ""}</text>
          </g>`;
        })}
        <line class="axis" x1=${LABEL_W} x2=${LABEL_W} y1="0" y2=${height - 16} />
        <text class="tick" x=${LABEL_W} y=${height - 3}>0</text>
        <text class="tick" x=${LABEL_W + plotW} y=${height - 3} text-anchor="end">${fmt(top, top < 10 ? 1 : 0)}</text>
      </svg>
    </figure>`;
}

function Scatter({ id, title, xLabel, yLabel, points }) {
  const W = WIDTH, H = 280, L = 56, R = 16, T = 12, B = 40;
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  const pad = (lo, hi) => { const d = (hi - lo) || Math.abs(hi) || 1; return [lo - d * 0.1, hi + d * 0.1]; };
  const [x0, x1] = pad(Math.min(...xs), Math.max(...xs));
  const [y0, y1] = pad(Math.min(...ys), Math.max(...ys));
  const px = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const py = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const ticks = (lo, hi) => [0, 0.25, 0.5, 0.75, 1].map((f) => lo + f * (hi - lo));
  const digits = (lo, hi) => (hi - lo < 1 ? 3 : hi - lo < 10 ? 2 : 1);
  return html`
    <figure class="chart chart-wide" data-chart=${id}>
      <figcaption>${title}</figcaption>
      <svg viewBox=${`0 0 ${W} ${H}`} width="100%" role="img" aria-label=${title}>
        <line class="axis" x1=${L} x2=${W - R} y1=${H - B} y2=${H - B} />
        <line class="axis" x1=${L} x2=${L} y1=${T} y2=${H - B} />
        ${ticks(x0, x1).map((v, i) => html`<text key=${"x" + i} class="tick" x=${px(v)} y=${H - B + 14}
            text-anchor="middle">${fmt(v, digits(x0, x1))}</text>`)}
        ${ticks(y0, y1).map((v, i) => html`<text key=${"y" + i} class="tick" x=${L - 4} y=${py(v) + 4}
            text-anchor="end">${fmt(v, digits(y0, y1))}</text>`)}
        <text class="axis-label" x=${(L + W - R) / 2} y=${H - 6} text-anchor="middle">${xLabel}</text>
        <text class="axis-label" transform=${`translate(12 ${(T + H - B) / 2}) rotate(-90)`}
              text-anchor="middle">${yLabel}</text>
        ${points.map((p, i) => html`<g key=${i} class="point" data-label=${p.label}>
          <title>${p.label}: ${fmt(p.x, 2)} GB, ${fmt(p.y, 3)}</title>
          <circle cx=${px(p.x)} cy=${py(p.y)} r="6" fill=${p.color} />
          <text class="point-label" x=${px(p.x) + 9} y=${py(p.y) + 4}>${shortLabel(p.label, 22)}</text>
        </g>`)}
      </svg>
    </figure>`;
}

// ---- the numbers, as `locallama report` prints them ----------------------------

function Table({ report }) {
  const rate = (r) => (r ? `${fmt(r.tokens_per_second, 2)} ± ${fmt(r.stddev, 2)}` : "-");
  return html`
    <details class="measure-table">
      <summary>Table</summary>
      <div class="table-scroll"><table class="models-table">
        <thead><tr>
          <th>Model</th><th>Quant</th><th>Size</th><th>Memory</th><th>pp t/s</th>
          <th>tg t/s</th><th>Perplexity</th>${report.tasks.map((t) => html`<th key=${t}>${t}</th>`)}
        </tr></thead>
        <tbody>
          ${report.models.map((r) => html`<tr key=${r.digest}>
            <td>${r.name}</td><td>${r.quantization || "-"}</td>
            <td>${r.size ? formatBytes(r.size) : "-"}</td>
            <td>${r.memory ? formatBytes(r.memory) : "-"}</td>
            <td>${rate(r.pp)}</td><td>${rate(r.tg)}</td>
            <td>${r.perplexity ? `${fmt(r.perplexity.value, 4)} ± ${fmt(r.perplexity.stderr, 4)}` : "-"}</td>
            ${report.tasks.map((t) => {
              const s = r.tasks[t];
              return html`<td key=${t}>${s ? fmt(percent(s.value), 1) +
                (s.stderr !== null ? ` ± ${fmt(percent(s.stderr), 1)}` : "") : "-"}</td>`;
            })}
          </tr>`)}
        </tbody>
      </table></div>
    </details>`;
}
