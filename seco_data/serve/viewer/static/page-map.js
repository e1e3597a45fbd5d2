/* seco viewer, map page: every location on a canvas world map, filters, colours, a paged list.
 * data/map.js: packed typed arrays per location (id, lon/lat, place, source, and over its patches:
 * seasons, max scene and patch cloud, first and last day), enough to draw, colour and list without
 * filters; data/patches.js (per patch: season, day, scene cloud, patch cloud) is loaded after the
 * page is ready, and filters pass over it once per change. Up to 30,000 points are drawn as vector
 * shapes, more as pixels into an image (a million in tens of milliseconds); hover through a 1-degree
 * grid index. */
"use strict";

(async function () {
  const { loadData, unpack, noneOf, el, fmt, header, showError, ramp, CATEGORICAL } = window.seco;
  const $ = (id) => document.getElementById(id);
  const PAGE = 100; // locations per page of the list
  const VECTOR_MAX = 30000; // more points than this are drawn as pixels
  const SEA = "#dce9f2"; // the basemap's sea (seco_data/serve/viewer/basemap.py)
  const ACCEPTED = "#0f766e";
  const REJECT_COLOURS = { scene_cloud: "#f59e0b", patch_cloud: "#ea580c", coverage: "#a855f7", not_land: "#94a3b8",
    no_scene: "#e11d48", error: "#dc2626", overlap: "#64748b" };
  const EXTRA_REJECT = ["#be185d", "#854d0e", "#64748b", "#b91c1c"];

  let meta, data, col;
  try {
    [meta, data] = await Promise.all([loadData("meta"), loadData("map")]);
    col = await unpack(data);
  } catch (e) {
    showError(e.message + ": is the site complete, and does the catalog still hold items.parquet?");
    return;
  }
  const unpacked = unpack.timings;
  const tLoaded = performance.now();
  header(meta);

  // ---- the columns --------------------------------------------------------------------------
  const NL = data.locations, NI = data.patches;
  const { loc, lon, lat, origin, source, n: nPatches, mask } = col;
  const ORIGIN_NONE = noneOf(origin), NONE = 0xffff; // NONE: unknown cloud / patch cloud / day
  const wideDays = col.first instanceof Int32Array; // days since 1970 (i32) rather than since day0 (u16)
  const DAY_NONE = wideDays ? -2147483648 : NONE;
  const day0 = data.day0;
  const NS = Math.max(meta.seasons.count, 1);
  let minDay = Infinity, maxDay = -Infinity; // stored units
  for (let i = 0; i < NL; i++) {
    if (col.first[i] !== DAY_NONE && col.first[i] < minDay) minDay = col.first[i];
    if (col.last[i] !== DAY_NONE && col.last[i] > maxDay) maxDay = col.last[i];
  }
  /* the patches (data/patches.js): needed by the filters only */
  let P = null, start = null, patchesLoading = null;
  function loadPatches() {
    if (!patchesLoading) {
      patchesLoading = loadData("patches").then(unpack).then((c) => {
        if (c.season.length !== NI) throw new Error("data/patches.js does not match data/map.js: is the site complete?");
        start = new Int32Array(NL + 1);
        for (let i = 0; i < NL; i++) start[i + 1] = start[i] + nPatches[i];
        P = c;
        window.__secoPatches = performance.now(); // ms since navigation start
      });
    }
    return patchesLoading;
  }
  const realDay = (d) => d + day0; // stored units -> days since 1970
  const rej = data.rejected;
  const NR = rej ? rej.count : 0;
  const rlon = new Float32Array(NR), rlat = new Float32Array(NR);
  for (let k = 0; k < NR; k++) { rlon[k] = (col.rlon[k] * 360) / 65535 - 180; rlat[k] = (col.rlat[k] * 180) / 65535 - 90; }
  const rreason = rej ? col.rreason : new Uint8Array(0);
  const rejColour = rej ? rej.reasons.map((r, i) => REJECT_COLOURS[r] || EXTRA_REJECT[i % EXTRA_REJECT.length]) : [];
  const rejCount = rej ? rej.reasons.map(() => 0) : [];
  for (let k = 0; k < NR; k++) rejCount[rreason[k]]++;

  // ---- state, kept in the URL hash ------------------------------------------------------------
  const allSeasons = (1 << NS) - 1;
  const state = { from: null, to: null, seasons: allSeasons, cloud: null, pcloud: null, source: -1,
    color: "status", rejected: true, page: 0 };
  const dayOf = (s) => (s ? Math.floor(Date.parse(s + "T00:00:00Z") / 86400000) : null);
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    Object.assign(state, { seasons: allSeasons, color: "status", rejected: true });
    const f = (k) => (p.has(k) && p.get(k) !== "" && isFinite(+p.get(k)) ? +p.get(k) : null);
    state.from = dayOf(p.get("from")); state.to = dayOf(p.get("to"));
    if (isNaN(state.from)) state.from = null;
    if (isNaN(state.to)) state.to = null;
    if (p.has("seasons")) {
      state.seasons = 0;
      for (const s of p.get("seasons").split(",")) if (s !== "" && +s >= 0 && +s < NS) state.seasons |= 1 << +s;
    }
    state.cloud = f("cloud"); state.pcloud = f("pcloud");
    state.source = data.sources.indexOf(p.get("source"));
    if (p.has("color")) state.color = p.get("color");
    if (p.get("rejected") === "0") state.rejected = false;
    state.page = Math.max(0, (f("page") || 1) - 1);
  }
  readHash();
  function writeHash() {
    const p = new URLSearchParams();
    if (state.color !== "status") p.set("color", state.color);
    if (state.from !== null) p.set("from", fmt.day(state.from));
    if (state.to !== null) p.set("to", fmt.day(state.to));
    if (state.seasons !== allSeasons) {
      p.set("seasons", [...Array(NS).keys()].filter((s) => state.seasons & (1 << s)).join(","));
    }
    if (state.cloud !== null) p.set("cloud", state.cloud);
    if (state.pcloud !== null) p.set("pcloud", state.pcloud);
    if (state.source >= 0) p.set("source", data.sources[state.source]);
    if (!state.rejected) p.set("rejected", "0");
    if (state.page) p.set("page", state.page + 1);
    const h = p.toString();
    history.replaceState(null, "", h ? "#" + h : location.pathname + location.search);
    try { sessionStorage.setItem("seco-map-hash", h ? "#" + h : ""); } catch (e) { /* storage disabled */ }
  }

  // ---- filtering: one pass over the patches -------------------------------------------------
  const shown = new Int32Array(NL); // indices of the locations with at least one matching patch
  const isShown = new Uint8Array(NL);
  let nShown = 0, nItems = 0;
  // per shown location: max scene / patch cloud (hundredths of a percent, -1 none known), seasons ...
  const maxCloud = new Int32Array(NL), maxP = new Int32Array(NL), nSeas = new Uint8Array(NL);
  const firstDay = new Int32Array(NL), lastDay = new Int32Array(NL), locSeasons = new Int32Array(NL);
  const locItems = new Int32Array(NL);
  const BIG = 2147483647;
  function applyFilters() {
    nShown = 0; nItems = 0;
    if (!filtered()) { // every patch: what map.js says of each location
      for (let i = 0; i < NL; i++) {
        shown[nShown++] = i; isShown[i] = 1; nItems += nPatches[i];
        const c = col.maxcloud[i], p = col.maxpcloud[i], f = col.first[i], l = col.last[i];
        maxCloud[i] = c === NONE ? -1 : c; maxP[i] = p === NONE ? -1 : p;
        firstDay[i] = f === DAY_NONE ? BIG : f; lastDay[i] = l === DAY_NONE ? -BIG : l;
        let k = 0;
        for (let m = mask[i]; m; m &= m - 1) k++;
        nSeas[i] = k; locSeasons[i] = mask[i]; locItems[i] = nPatches[i];
      }
      return;
    }
    isShown.fill(0);
    const { season, day, cloud, pcloud } = P;
    const { seasons, source: src } = state;
    const from = state.from === null ? null : state.from - day0, to = state.to === null ? null : state.to - day0;
    // q <= limit * 100 for integer q: q <= floor(limit * 100)
    const cmax = state.cloud === null ? Infinity : Math.floor(state.cloud * 100 + 1e-6);
    const pmax = state.pcloud === null ? Infinity : Math.floor(state.pcloud * 100 + 1e-6);
    for (let i = 0; i < NL; i++) {
      if (src >= 0 && source[i] !== src) continue;
      let bits = 0, n = 0, mc = -1, mp = -1, d0 = BIG, d1 = -BIG;
      for (let j = start[i]; j < start[i + 1]; j++) {
        const s = season[j], d = day[j], c = cloud[j], pc = pcloud[j];
        if (!(seasons & (1 << s))) continue;
        if (from !== null && (d === DAY_NONE || d < from)) continue;
        if (to !== null && (d === DAY_NONE || d > to)) continue;
        if ((c !== NONE && c > cmax) || (pc !== NONE && pc > pmax)) continue; // unknown passes
        n++; bits |= 1 << s;
        if (c !== NONE && c > mc) mc = c;
        if (pc !== NONE && pc > mp) mp = pc;
        if (d !== DAY_NONE) { if (d < d0) d0 = d; if (d > d1) d1 = d; }
      }
      if (!n) continue;
      shown[nShown++] = i; isShown[i] = 1; nItems += n;
      let k = 0;
      for (let m = bits; m; m &= m - 1) k++;
      maxCloud[i] = mc; maxP[i] = mp; nSeas[i] = k; locSeasons[i] = bits; firstDay[i] = d0; lastDay[i] = d1;
      locItems[i] = n;
    }
  }
  const filtered = () => state.from !== null || state.to !== null || state.seasons !== allSeasons ||
    state.cloud !== null || state.pcloud !== null || state.source >= 0;
  const pctOf = (q) => (q < 0 ? null : q / 100); // hundredths of a percent -> percent
  const dayText = (d) => (d === BIG || d === -BIG ? "–" : fmt.day(realDay(d)));

  // ---- colours and legend ------------------------------------------------------------------------
  const BINS = 32;
  function domain(kind) {
    const f = meta.filters || {};
    let hi = kind === "cloud" ? f.scene_cloud_max : (f.patch_cloud_max !== undefined && f.patch_cloud_max !== null
      ? 100 * f.patch_cloud_max : undefined);
    if (hi === undefined || hi === null || !(hi > 0)) {
      hi = 0;
      const a = kind === "cloud" ? maxCloud : maxP;
      for (let k = 0; k < nShown; k++) if (a[shown[k]] > hi) hi = a[shown[k]];
      hi = hi > 0 ? hi / 100 : 1;
    }
    return hi;
  }
  function colourOf() {
    /* -> {colours[], group(i) -> index into colours, legend rows} */
    const mode = state.color;
    if (mode === "cloud" || mode === "pcloud") {
      const hi = domain(mode), a = mode === "cloud" ? maxCloud : maxP;
      const colours = [...Array(BINS).keys()].map((b) => ramp(b / (BINS - 1)));
      /* square-root scale: most patches are nearly clear, so the low end gets most of the colours */
      return { colours, group: (i) => (a[i] < 0 ? 0 : Math.min(BINS - 1, Math.floor(Math.sqrt(a[i] / 100 / hi) * (BINS - 1) + 0.5))),
        ramp: { lo: 0, hi, label: mode === "cloud" ? "max scene cloud (eo:cloud_cover) of the shown patches"
          : "max patch cloud + shadow of the shown patches" } };
    }
    if (mode === "seasons") {
      const colours = [...Array(NS + 1).keys()].map((k) => (k === NS ? ACCEPTED : ramp(0.25 + (0.75 * k) / NS)));
      const counts = new Array(NS + 1).fill(0);
      for (let k = 0; k < nShown; k++) counts[nSeas[shown[k]]]++;
      const rows = [];
      for (let k = NS; k >= 1; k--) if (counts[k]) rows.push({ colour: colours[k], label: k + " of " + NS + " seasons", n: counts[k] });
      return { colours, group: (i) => nSeas[i], rows, note: "seasons with a shown patch, per location" };
    }
    if (mode === "source") {
      const colours = data.sources.map((_, s) => CATEGORICAL[(s + 1) % CATEGORICAL.length]);
      const counts = data.sources.map(() => 0);
      for (let k = 0; k < nShown; k++) counts[source[shown[k]]]++;
      return { colours, group: (i) => source[i],
        rows: data.sources.map((s, k) => ({ colour: colours[k], label: s, n: counts[k] })).filter((r) => r.n) };
    }
    /* status: the catalog holds the accepted locations; the ledger (when there is one) gives the
       positions of the rejected candidates and why they were rejected. */
    const rows = [{ colour: ACCEPTED, label: "accepted", n: nShown }];
    if (rej && state.rejected) {
      rej.reasons.forEach((r, k) => rows.push({ colour: rejColour[k], label: "rejected: " + r.replace(/_/g, " "),
        n: rejCount[k], hollow: true }));
    }
    return { colours: [ACCEPTED], group: () => 0, rows,
      note: rej ? (state.rejected ? "rejected candidates come from the ledger; filters do not apply to them" : "")
        : "no ledger in this catalog (e.g. an import): rejected candidates are unknown" };
  }
  function legend(c) {
    const box = $("legend");
    box.replaceChildren();
    box.dataset.mode = state.color;
    if (c.ramp) {
      const stops = [...Array(9).keys()].map((k) => ramp(k / 8)).join(",");
      box.append(el("div", { class: "legend-title", text: c.ramp.label }),
        el("div", { class: "ramp", style: "background: linear-gradient(to right," + stops + ")" }),
        el("div", { class: "ramp-ticks" }, el("span", { text: fmt.pct(c.ramp.lo, 0) }),
          el("span", { text: fmt.pct(c.ramp.hi / 4, 1) }), el("span", { text: "≥ " + fmt.pct(c.ramp.hi, 1) })),
        el("p", { class: "note", text: "square-root scale; the top is the recipe's filter where it has one" }));
    }
    for (const r of c.rows || []) {
      box.append(el("div", { class: "legend-item" },
        el("span", { class: "swatch" + (r.hollow ? " hollow" : ""), style: (r.hollow ? "border-color:" : "background:") + r.colour }),
        el("span", { class: "legend-label", text: r.label }), el("span", { class: "n", text: fmt.int(r.n) })));
    }
    if (c.note) box.append(el("p", { class: "note", text: c.note }));
  }

  // ---- the map ------------------------------------------------------------------------------------
  const canvas = $("map"), ctx = canvas.getContext("2d");
  const layer = document.createElement("canvas"), layerCtx = layer.getContext("2d"); // the pixels of many points
  const land = new Image();
  let landReady = false;
  const view = { lon: 0, lat: 0, k: 1 };
  let W = 0, H = 0, dpr = 1;
  const scale = () => (W / 360) * view.k;
  const px = (lo) => W / 2 + (lo - view.lon) * scale();
  const py = (la) => H / 2 - (la - view.lat) * scale();
  function clampView() {
    view.k = Math.max(1, Math.min(128, view.k));
    const hx = 180 / view.k, hy = 90 / view.k;
    view.lon = Math.max(-180 + hx, Math.min(180 - hx, view.lon));
    view.lat = Math.max(-90 + hy, Math.min(90 - hy, view.lat));
  }
  function resize() {
    dpr = window.devicePixelRatio || 1;
    W = canvas.parentElement.clientWidth;
    H = Math.round(W / 2);
    canvas.style.width = W + "px";
    canvas.style.height = H + "px";
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
    draw();
  }
  /* "#rrggbb" or "rgb(r,g,b)" -> a little-endian RGBA pixel (opaque) */
  function pixel(colour) {
    const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(colour);
    const [r, g, b] = m ? m.slice(1).map((h) => parseInt(h, 16)) : colour.match(/\d+/g).map(Number);
    return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
  }

  let colouring = null;
  function drawVector(total, rejShown) {
    const big = total <= 5000;
    const r = (total <= 500 ? 4.5 : big ? 3.2 : 2) * Math.min(2.5, Math.sqrt(view.k));
    // rejected candidates under the accepted ones, as rings
    if (rejShown) {
      ctx.lineWidth = big ? 1.4 : 1;
      for (let g = 0; g < rej.reasons.length; g++) {
        ctx.strokeStyle = rejColour[g];
        ctx.beginPath();
        for (let k = 0; k < NR; k++) {
          if (rreason[k] !== g) continue;
          const x = px(rlon[k]), y = py(rlat[k]);
          if (x < -5 || y < -5 || x > W + 5 || y > H + 5) continue;
          if (big) { ctx.moveTo(x + r * 0.8, y); ctx.arc(x, y, r * 0.8, 0, 2 * Math.PI); } else ctx.rect(x - r / 2, y - r / 2, r, r);
        }
        ctx.stroke();
      }
    }
    const groups = colouring.colours.map(() => []);
    for (let k = 0; k < nShown; k++) { const i = shown[k]; groups[colouring.group(i)].push(i); }
    groups.forEach((idx, g) => {
      if (!idx.length) return;
      ctx.fillStyle = colouring.colours[g];
      ctx.beginPath();
      for (const i of idx) {
        const x = px(lon[i]), y = py(lat[i]);
        if (x < -5 || y < -5 || x > W + 5 || y > H + 5) continue;
        if (big) { ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI); } else ctx.rect(x - r, y - r, 2 * r, 2 * r);
      }
      ctx.fill();
      if (big) { ctx.strokeStyle = "rgba(255,255,255,0.9)"; ctx.lineWidth = 1; ctx.stroke(); }
    });
  }
  /* many points: squares of pixels written straight into an image, put on the map in one go */
  function drawPixels(rejShown) {
    const cw = canvas.width, ch = canvas.height;
    if (layer.width !== cw || layer.height !== ch) { layer.width = cw; layer.height = ch; }
    const img = layerCtx.createImageData(cw, ch);
    const buf = new Uint32Array(img.data.buffer);
    const s = scale() * dpr, x0 = cw / 2 - view.lon * s, y0 = ch / 2 + view.lat * s;
    const side = Math.max(2, Math.round(1.6 * dpr * Math.min(2.5, Math.sqrt(view.k))));
    const x1 = x0 - (side >> 1) + 0.5, y1 = y0 - (side >> 1) + 0.5, xmax = cw - side, ymax = ch - side;
    const put = (xa, ya, c) => { // top-left corner, in device pixels
      if (!(xa >= 0 && ya >= 0 && xa <= xmax && ya <= ymax)) return; // NaN fails too
      for (let v = 0, o = ya * cw + xa; v < side; v++, o += cw) buf.fill(c, o, o + side);
    };
    if (rejShown) {
      const pix = rejColour.map(pixel);
      for (let k = 0; k < NR; k++) put(Math.floor(x1 + rlon[k] * s), Math.floor(y1 - rlat[k] * s), pix[rreason[k]]);
    }
    const pix = colouring.colours.map(pixel), group = colouring.group;
    for (let k = 0; k < nShown; k++) {
      const i = shown[k];
      put(Math.floor(x1 + lon[i] * s), Math.floor(y1 - lat[i] * s), pix[group(i)]);
    }
    layerCtx.putImageData(img, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(layer, 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }
  let drawing = false; // nothing is drawn before the basemap is in (or failed): one draw at the start
  function draw() {
    if (!W || !drawing) return;
    const t0 = performance.now();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = SEA;
    ctx.fillRect(0, 0, W, H);
    const s = scale();
    if (landReady) ctx.drawImage(land, px(-180), py(90), 360 * s, 180 * s);
    // graticule every 30 degrees
    ctx.strokeStyle = "rgba(71, 85, 105, 0.14)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let g = -150; g <= 150; g += 30) { const x = Math.round(px(g)) + 0.5; ctx.moveTo(x, py(90)); ctx.lineTo(x, py(-90)); }
    for (let g = -60; g <= 60; g += 30) { const y = Math.round(py(g)) + 0.5; ctx.moveTo(px(-180), y); ctx.lineTo(px(180), y); }
    ctx.stroke();
    const rejShown = !!rej && state.color === "status" && state.rejected;
    const total = nShown + (rejShown ? NR : 0);
    if (total <= VECTOR_MAX) drawVector(total, rejShown); else drawPixels(rejShown);
    $("status").dataset.drawn = nShown;
    window.__secoDrawn = nShown;
    window.__secoDrawMs = performance.now() - t0;
  }

  function status() {
    const st = $("status");
    const c = meta.counts;
    let text = fmt.plural(nShown, "location") + ", " + fmt.plural(nItems, "patch", "patches");
    if (filtered()) text += " shown (of " + fmt.plural(c.locations, "location") + ", " + fmt.plural(c.patches, "patch", "patches") + ")";
    if (rej && state.color === "status" && state.rejected) text += " · " + fmt.plural(NR, "rejected candidate");
    st.textContent = text;
    st.dataset.locations = nShown;
    st.dataset.items = nItems;
    st.dataset.rejected = rej && state.color === "status" && state.rejected ? NR : 0;
  }

  // ---- the paged list -------------------------------------------------------------------------
  function list() {
    const pages = Math.max(1, Math.ceil(nShown / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const body = $("loc-rows");
    body.replaceChildren();
    for (let k = state.page * PAGE; k < Math.min(nShown, (state.page + 1) * PAGE); k++) {
      const i = shown[k], id = loc[i];
      const chips = el("span", { class: "chips small" });
      for (let s = 0; s < NS; s++) {
        chips.append(el("span", { class: "chip" + (locSeasons[i] & (1 << s) ? " on" : ""), text: fmt.season(s),
          title: locSeasons[i] & (1 << s) ? "season " + s + ": shown" : "season " + s + ": no shown patch" }));
      }
      const href = "location.html#" + id;
      body.append(el("tr", { dataset: { loc: id }, onclick: (e) => { if (e.target.tagName !== "A") location.href = href; } },
        el("td", {}, el("a", { class: "loc-link", href, text: "#" + id })),
        el("td", { text: origin[i] === ORIGIN_NONE ? "–" : data.origins[origin[i]] }),
        el("td", { class: "mono", text: fmt.lat(lat[i]) + ", " + fmt.lon(lon[i]) }),
        el("td", {}, chips),
        el("td", { class: "mono", text: dayText(firstDay[i]) + " – " + dayText(lastDay[i]) }),
        el("td", { class: "num", text: fmt.pct(pctOf(maxCloud[i]), 1) }),
        el("td", { class: "num", text: fmt.pct(pctOf(maxP[i]), 2) })));
    }
    if (!nShown) body.append(el("tr", {}, el("td", { colspan: 7, class: "empty", text: "no location matches the filters" })));
    $("page").textContent = "page " + (state.page + 1) + " of " + fmt.int(pages) + " · " + fmt.int(PAGE) + " per page";
    $("page").dataset.page = state.page + 1;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  // ---- wiring ---------------------------------------------------------------------------------
  function update(keepPage) {
    if (filtered() && !P) { // the first filter: fetch the patches, then come back
      $("status").textContent = "loading the patches for the filters…";
      loadPatches().then(() => update(keepPage), (e) => showError(e.message));
      return;
    }
    if (!keepPage) state.page = 0;
    applyFilters();
    colouring = colourOf();
    legend(colouring);
    status();
    draw();
    list();
    writeHash();
  }

  const seasonsBox = $("f-seasons");
  for (let s = 0; s < NS; s++) {
    const box = el("input", { type: "checkbox", value: s, id: "f-season-" + s });
    box.checked = !!(state.seasons & (1 << s));
    box.addEventListener("change", () => {
      state.seasons = box.checked ? state.seasons | (1 << s) : state.seasons & ~(1 << s);
      update();
    });
    seasonsBox.append(el("label", { class: "chip-toggle", title: "season " + s }, box, fmt.season(s)));
  }
  for (const [k, name] of data.sources.entries()) $("f-source").append(el("option", { value: name, text: name, selected: k === state.source }));
  $("f-source").addEventListener("change", (e) => { state.source = data.sources.indexOf(e.target.value); update(); });
  for (const [id, key] of [["f-from", "from"], ["f-to", "to"]]) {
    const input = $(id);
    if (minDay <= maxDay) {
      input.title = "acquisitions run from " + fmt.day(realDay(minDay)) + " to " + fmt.day(realDay(maxDay)) + " (YYYY-MM-DD, UTC)";
      input.placeholder = fmt.day(realDay(key === "from" ? minDay : maxDay));
    }
    if (state[key] !== null) input.value = fmt.day(state[key]);
    input.addEventListener("change", () => {
      const v = input.value.trim(), d = /^\d{4}-\d{2}-\d{2}$/.test(v) ? dayOf(v) : NaN;
      input.setCustomValidity(v === "" || !isNaN(d) ? "" : "a date as YYYY-MM-DD");
      state[key] = v === "" || isNaN(d) ? null : d;
      update();
    });
  }
  for (const [id, key] of [["f-cloud", "cloud"], ["f-pcloud", "pcloud"]]) {
    const input = $(id);
    if (state[key] !== null) input.value = state[key];
    input.addEventListener("input", () => {
      state[key] = input.value === "" || !isFinite(+input.value) ? null : +input.value;
      update();
    });
  }
  $("f-reset").addEventListener("click", () => {
    Object.assign(state, { from: null, to: null, seasons: allSeasons, cloud: null, pcloud: null, source: -1 });
    for (const id of ["f-from", "f-to", "f-cloud", "f-pcloud"]) $(id).value = "";
    $("f-source").value = "";
    seasonsBox.querySelectorAll("input").forEach((b) => { b.checked = true; });
    update();
  });
  const colorby = $("colorby");
  if (![...colorby.options].some((o) => o.value === state.color)) state.color = "status";
  colorby.value = state.color;
  colorby.addEventListener("change", () => { state.color = colorby.value; toggleRejected(); update(true); });
  const showRej = $("show-rejected");
  showRej.checked = state.rejected;
  showRej.addEventListener("change", () => { state.rejected = showRej.checked; update(true); });
  function toggleRejected() { $("show-rejected-label").hidden = !rej || state.color !== "status"; }
  toggleRejected();
  $("prev").addEventListener("click", () => { state.page--; list(); writeHash(); });
  $("next").addEventListener("click", () => { state.page++; list(); writeHash(); });

  // pan, zoom, hover and click
  function zoomAt(f, cx, cy) {
    const lo = view.lon + (cx - W / 2) / scale(), la = view.lat - (cy - H / 2) / scale();
    view.k *= f;
    clampView();
    view.lon = lo - (cx - W / 2) / scale();
    view.lat = la + (cy - H / 2) / scale();
    clampView();
    draw();
  }
  $("zoom-in").addEventListener("click", () => zoomAt(2, W / 2, H / 2));
  $("zoom-out").addEventListener("click", () => zoomAt(0.5, W / 2, H / 2));
  $("zoom-reset").addEventListener("click", () => { Object.assign(view, { lon: 0, lat: 0, k: 1 }); draw(); });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const b = canvas.getBoundingClientRect();
    zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - b.left, e.clientY - b.top);
  }, { passive: false });

  /* points by 1-degree cell (a counting sort, built on the first hover): a hover looks at a few cells */
  function gridOf(xs, ys, n) {
    const cellOf = (k) => Math.min(179, Math.max(0, Math.floor(ys[k] + 90))) * 360 + Math.min(359, Math.max(0, Math.floor(xs[k] + 180)));
    const first = new Int32Array(64801), items = new Int32Array(n), cells = new Int32Array(n);
    for (let k = 0; k < n; k++) { cells[k] = ys[k] === ys[k] ? cellOf(k) : -1; if (cells[k] >= 0) first[cells[k] + 1]++; }
    for (let c = 0; c < 64800; c++) first[c + 1] += first[c];
    const fill = first.slice(0, 64800);
    for (let k = 0; k < n; k++) if (cells[k] >= 0) items[fill[cells[k]]++] = k;
    return { first, items };
  }
  let locGrid = null, rejGrid = null;
  function nearestIn(grid, xs, ys, x, y, accept) {
    const reach = 8 / scale(); // 8 px in degrees
    const lo = view.lon + (x - W / 2) / scale(), la = view.lat - (y - H / 2) / scale();
    let best = -1, bestD = 64;
    const r0 = Math.max(0, Math.floor(la - reach + 90)), r1 = Math.min(179, Math.floor(la + reach + 90));
    const c0 = Math.max(0, Math.floor(lo - reach + 180)), c1 = Math.min(359, Math.floor(lo + reach + 180));
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cell = r * 360 + c;
        for (let q = grid.first[cell]; q < grid.first[cell + 1]; q++) {
          const k = grid.items[q];
          if (!accept(k)) continue;
          const dx = px(xs[k]) - x, dy = py(ys[k]) - y, d = dx * dx + dy * dy;
          if (d < bestD) { bestD = d; best = k; }
        }
      }
    }
    return best;
  }
  function nearest(x, y) {
    if (!locGrid) locGrid = gridOf(lon, lat, NL);
    const i = nearestIn(locGrid, lon, lat, x, y, (k) => isShown[k] === 1);
    if (i >= 0) return { kind: "loc", i };
    if (rej && state.color === "status" && state.rejected) {
      if (!rejGrid) rejGrid = gridOf(rlon, rlat, NR);
      const k = nearestIn(rejGrid, rlon, rlat, x, y, () => true);
      if (k >= 0) return { kind: "rejected", i: k };
    }
    return null;
  }
  const tip = $("tooltip");
  function hover(x, y) {
    const hit = nearest(x, y);
    canvas.style.cursor = hit && hit.kind === "loc" ? "pointer" : drag ? "grabbing" : "grab";
    if (!hit) { tip.hidden = true; return; }
    tip.replaceChildren();
    if (hit.kind === "loc") {
      const i = hit.i, o = origin[i];
      tip.append(el("strong", { text: "#" + loc[i] + (o === ORIGIN_NONE ? "" : " · " + data.origins[o]) }),
        el("div", { text: fmt.plural(locItems[i], "patch", "patches") + " · seasons " +
          [...Array(NS).keys()].filter((s) => locSeasons[i] & (1 << s)).map(fmt.season).join(" ") }),
        el("div", { text: dayText(firstDay[i]) + " – " + dayText(lastDay[i]) }),
        el("div", { text: "max scene cloud " + fmt.pct(pctOf(maxCloud[i])) + " · max patch cloud " + fmt.pct(pctOf(maxP[i]), 2) }));
    } else {
      const k = hit.i;
      tip.append(el("strong", { text: "rejected candidate" }),
        el("div", { text: "reason: " + rej.reasons[rreason[k]].replace(/_/g, " ") }),
        el("div", { text: "about " + fmt.lat(rlat[k]).replace(/(\.\d\d)\d\d/, "$1") + ", " + fmt.lon(rlon[k]).replace(/(\.\d\d)\d\d/, "$1") }));
    }
    tip.hidden = false;
    tip.style.left = Math.min(x + 14, W - tip.offsetWidth - 4) + "px";
    tip.style.top = Math.max(4, y - tip.offsetHeight - 10) + "px";
  }
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, lon: view.lon, lat: view.lat, moved: false };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    const b = canvas.getBoundingClientRect();
    if (drag) {
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (drag.moved) {
        view.lon = drag.lon - dx / scale(); view.lat = drag.lat + dy / scale();
        clampView(); draw(); tip.hidden = true;
        return;
      }
    }
    hover(e.clientX - b.left, e.clientY - b.top);
  });
  canvas.addEventListener("pointerup", (e) => {
    const b = canvas.getBoundingClientRect();
    const wasDrag = drag && drag.moved;
    drag = null;
    if (wasDrag) return;
    const hit = nearest(e.clientX - b.left, e.clientY - b.top);
    if (hit && hit.kind === "loc") location.href = "location.html#" + loc[hit.i];
  });
  canvas.addEventListener("pointerleave", () => { tip.hidden = true; });
  window.addEventListener("resize", resize);
  /* a hash typed or pasted by hand: follow it (our own replaceState fires no hashchange) */
  window.addEventListener("hashchange", () => {
    readHash();
    $("f-from").value = state.from === null ? "" : fmt.day(state.from);
    $("f-to").value = state.to === null ? "" : fmt.day(state.to);
    $("f-cloud").value = state.cloud === null ? "" : state.cloud;
    $("f-pcloud").value = state.pcloud === null ? "" : state.pcloud;
    $("f-source").value = state.source >= 0 ? data.sources[state.source] : "";
    seasonsBox.querySelectorAll("input").forEach((b) => { b.checked = !!(state.seasons & (1 << +b.value)); });
    if (![...colorby.options].some((o) => o.value === state.color)) state.color = "status";
    colorby.value = state.color;
    showRej.checked = state.rejected;
    toggleRejected();
    update(true);
  });
  /* where a location is drawn, in CSS pixels from the canvas' top-left corner (for tests and tools) */
  window.__secoPointOf = (id) => {
    let a = 0, b = NL; // loc is sorted: binary search
    while (a < b) { const m = (a + b) >> 1; if (loc[m] < id) a = m + 1; else b = m; }
    return a < NL && loc[a] === id ? [px(lon[a]), py(lat[a])] : null;
  };

  if (filtered()) { // a link with filters: they need the patches first
    try { await loadPatches(); } catch (e) { showError(e.message); return; }
  }
  update(true);
  resize();
  const ready = () => {
    drawing = true;
    draw();
    window.__secoReady = performance.now();
    window.__secoTimings = { map_js_ms: window.seco.arrived.map, ...unpacked, data_ms: tLoaded,
      ready_ms: window.__secoReady, draw_ms: window.__secoDrawMs };
    document.body.dataset.ready = "1";
    setTimeout(() => loadPatches().catch(() => {}), 0); // ready for the first filter (an error shows then)
  };
  land.onload = () => { landReady = true; ready(); };
  land.onerror = () => { showError("cannot load the basemap data/land.png"); ready(); };
  land.src = "data/land.png";
})();
