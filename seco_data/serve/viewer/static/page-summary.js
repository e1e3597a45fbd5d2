/* seco viewer, summary page: the collection's counts, rejection statistics and histograms
 * (seco_data.info.catalog_info, carried in data/meta.js), drawn as plain HTML bars. */
"use strict";

(async function () {
  const { el, fmt, startPage } = window.seco;
  const $ = (id) => document.getElementById(id);
  const meta = await startPage("summary");
  if (!meta) return;
  const info = meta.info, c = meta.counts;

  $("sum-title").textContent = meta.title;
  $("sum-description").textContent = meta.description;

  const tile = (label, value, note, key) =>
    el("div", { class: "tile", dataset: { key } }, el("div", { class: "tile-value", text: value }),
      el("div", { class: "tile-label", text: label }), note ? el("div", { class: "tile-note", text: note }) : null);
  const rate = c.candidates ? (100 * c.locations) / c.candidates : null;
  $("tiles").append(
    tile("locations kept", fmt.int(c.locations), c.requested ? "of " + fmt.int(c.requested) + " requested" : null, "locations"),
    tile("patches", fmt.int(c.patches), "a location in one season; " + fmt.plural(meta.seasons.count, "season") + " per location", "patches"),
    tile("STAC items", fmt.int(c.items), meta.layout === "compact" ? "one per location (compact layout)"
      : "one per patch (per-patch layout)", "items"),
    tile("candidates drawn", fmt.int(c.candidates), rate === null ? null : fmt.pct(rate, 1) + " kept", "candidates"),
    tile("candidates rejected", fmt.int(c.rejected), null, "rejected"),
    tile("quicklooks", fmt.int(meta.thumbnails), !meta.thumbnails ? "run seco-data catalog thumbnails"
      : meta.layout === "compact" ? "one strip of the seasons per location" : "one per patch", "thumbnails"));

  function bars(box, rows, opts = {}) {
    box.replaceChildren();
    const total = rows.reduce((a, r) => a + r.n, 0);
    const top = Math.max(1, ...rows.map((r) => r.n));
    if (!rows.length || !total) {
      box.append(el("p", { class: "empty", text: opts.empty || "none" }));
      return;
    }
    for (const r of rows) {
      const share = opts.of ? (100 * r.n) / opts.of : (100 * r.n) / total;
      box.append(el("div", { class: "bar-row", dataset: { key: r.key, count: r.n }, title: r.label + ": " + fmt.int(r.n) },
        el("span", { class: "bar-label", text: r.label }),
        el("span", { class: "bar-track" }, el("span", { class: "bar", style: "width:" + ((100 * r.n) / top).toFixed(2) + "%" + (opts.colour ? ";background:" + opts.colour : "") })),
        el("span", { class: "bar-n", text: fmt.int(r.n) }),
        el("span", { class: "bar-share", text: fmt.pct(share, 1) })));
    }
    if (opts.foot) box.append(el("p", { class: "card-note", text: opts.foot }));
  }
  const reasonRows = (obj) => Object.entries(obj || {}).sort((a, b) => b[1] - a[1])
    .map(([k, n]) => ({ key: k, label: k.replace(/_/g, " "), n }));
  const hist = (h) => (h || []).map((b) => ({ key: b.bin, label: b.bin, n: b.count }));

  bars($("chart-rejections"), reasonRows(info.rejections), { colour: "#d97706", of: c.candidates || null,
    empty: "no candidate was rejected", foot: c.candidates ? "share of the " + fmt.int(c.candidates) + " candidates drawn" : null });
  bars($("chart-skipped"), reasonRows(info.skipped_scenes), { colour: "#64748b", empty: "no scene was skipped" });
  bars($("chart-scene-cloud"), hist(info.scene_cloud_histogram), { colour: "#2563eb" });
  bars($("chart-patch-cloud"), hist(info.patch_cloud_histogram), { colour: "#7c3aed" });
  bars($("chart-coverage"), hist(info.coverage_histogram), { colour: "#0891b2" });
  bars($("chart-seasons"), Object.entries(info.items_per_season || {}).map(([s, n]) => ({ key: s, label: fmt.season(+s), n })),
    { colour: "#0f766e" });

  // months: one column per month from the first to the last, empty months included
  (function months() {
    const box = $("chart-months");
    const entries = Object.entries(info.dates_by_month || {});
    if (!entries.length) { box.append(el("p", { class: "empty", text: "no patches" })); return; }
    const counts = Object.fromEntries(entries);
    const [y0, m0] = entries[0][0].split("-").map(Number), [y1, m1] = entries[entries.length - 1][0].split("-").map(Number);
    const all = [];
    for (let y = y0, m = m0; y < y1 || (y === y1 && m <= m1); m === 12 ? (y++, m = 1) : m++) {
      const key = y + "-" + String(m).padStart(2, "0");
      all.push([key, counts[key] || 0]);
    }
    const top = Math.max(1, ...all.map((e) => e[1]));
    const every = Math.ceil(all.length / 12);
    all.forEach(([key, n], i) => {
      box.append(el("div", { class: "col", dataset: { key, count: n }, title: key + ": " + fmt.plural(n, "patch", "patches") },
        el("span", { class: "col-n", text: n ? fmt.int(n) : "" }),
        el("span", { class: "col-bar", style: "height:" + ((100 * n) / top).toFixed(2) + "%" }),
        el("span", { class: "col-label", text: i % every === 0 ? key : "" })));
    });
  })();

  const facts = $("facts");
  const fact = (label, value) => { if (value !== null && value !== undefined && value !== "") facts.append(el("dt", { text: label }), el("dd", { text: value })); };
  const src = meta.source || {};
  const f = meta.filters || {};
  fact("collection id", meta.collection);
  fact("recipe", meta.recipe);
  fact("source", [src.name, src.product].filter(Boolean).join(" ") + (src.synthetic ? " (synthetic pixels from the simulator)" : ""));
  fact("seasons", meta.seasons.count + (meta.seasons.anchors.length ? " · anchors " + meta.seasons.anchors.join(", ") : "") +
    (meta.seasons.window_days ? " · window " + meta.seasons.window_days + " d" : "") +
    (meta.seasons.shift_days ? " · random shift up to " + meta.seasons.shift_days + " d per location" : ""));
  fact("filters", [
    f.scene_cloud_max !== undefined ? "scene cloud ≤ " + fmt.pct(f.scene_cloud_max, 1) : null,
    f.patch_cloud_max !== undefined ? "patch cloud ≤ " + fmt.frac(f.patch_cloud_max, 1) : null,
    f.coverage_min !== undefined ? "valid pixels ≥ " + fmt.frac(f.coverage_min, 1) : null].filter(Boolean).join(" · "));
  fact("acquired", (info.start ? fmt.date(info.start) : "–") + " – " + (info.end ? fmt.date(info.end) : "–") + " (UTC)");
  if (info.bbox) {
    const [w, s, e, n] = info.bbox;
    fact("extent", fmt.lon(w) + " to " + fmt.lon(e) + ", " + fmt.lat(s) + " to " + fmt.lat(n));
  }
  fact("license", meta.license);
  fact("providers", (meta.providers || []).map((p) => p.name + (p.roles.length ? " (" + p.roles.join(", ") + ")" : "")).join("; "));
  fact("asset files", meta.assets.map((a) => a.key + (a.title ? ": " + a.title : "")).join(" · "));

  window.__secoReady = performance.now();
  document.body.dataset.ready = "1";
})();
