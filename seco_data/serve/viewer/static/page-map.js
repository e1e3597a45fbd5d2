/* seco viewer, map page: every location on a canvas world map, filters, colours, a paged list.
 * Everything here comes from data/map.js (columnar arrays built from items.parquet): one pass over the
 * items per filter change, one canvas path per colour, so 100,000 items stay interactive. */
"use strict";

(async function () {
  const { loadData, el, fmt, header, showError, ramp, CATEGORICAL } = window.seco;
  const $ = (id) => document.getElementById(id);
  const PAGE = 100; // locations per page of the list
  const SEA = "#dce9f2"; // the basemap's sea (seco_data/viewer/basemap.py)
  const ACCEPTED = "#0f766e";
  const REJECT_COLOURS = { scene_cloud: "#f59e0b", patch_cloud: "#ea580c", coverage: "#a855f7", not_land: "#94a3b8",
    no_scene: "#e11d48", error: "#dc2626" };
  const EXTRA_REJECT = ["#be185d", "#854d0e", "#64748b", "#b91c1c"];

  let meta, data;
  try {
    [meta, data] = await Promise.all([loadData("meta"), loadData("map")]);
  } catch (e) {
    showError(e.message + ": is the site complete, and does the catalog still hold items.parquet?");
    return;
  }
  const tLoaded = performance.now();
  header(meta);

  // ---- columnar data as typed arrays ---------------------------------------------------------
  const NL = data.loc.length;
  const NI = data.season.length;
  const num = (a) => Float64Array.from(a, (v) => (v === null ? NaN : v));
  const lon = num(data.lon), lat = num(data.lat);
  const season = Int16Array.from(data.season), day = Int32Array.from(data.day), source = Int16Array.from(data.source);
  const cloud = num(data.cloud), pcloud = num(data.pcloud);
  const start = new Int32Array(NL + 1);
  for (let i = 0; i < NL; i++) start[i + 1] = start[i] + data.n[i];
  const NS = Math.max(meta.seasons.count, 1);
  let minDay = Infinity, maxDay = -Infinity;
  for (let j = 0; j < NI; j++) { if (day[j] < minDay) minDay = day[j]; if (day[j] > maxDay) maxDay = day[j]; }
  const rej = data.rejected;
  const NR = rej ? rej.lon.length : 0;
  const rlon = rej ? num(rej.lon) : new Float64Array(0), rlat = rej ? num(rej.lat) : new Float64Array(0);
  const rejColour = rej ? rej.reasons.map((r, i) => REJECT_COLOURS[r] || EXTRA_REJECT[i % EXTRA_REJECT.length]) : [];
  const rejCount = rej ? rej.reasons.map(() => 0) : [];
  if (rej) for (const r of rej.reason) rejCount[r]++;

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
    const src = data.sources.indexOf(p.get("source"));
    state.source = src;
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

  // ---- filtering: one pass over the items --------------------------------------------------------
  const shown = new Int32Array(NL); // indices of the locations with at least one matching item
  let nShown = 0, nItems = 0;
  const maxCloud = new Float32Array(NL), maxP = new Float32Array(NL), nSeas = new Uint8Array(NL);
  const firstDay = new Int32Array(NL), lastDay = new Int32Array(NL), locSeasons = new Int32Array(NL);
  const locSource = new Int16Array(NL), locItems = new Int32Array(NL);
  function applyFilters() {
    nShown = 0; nItems = 0;
    const { from, to, seasons, source: src } = state;
    const cmax = state.cloud === null ? Infinity : state.cloud, pmax = state.pcloud === null ? Infinity : state.pcloud;
    for (let i = 0; i < NL; i++) {
      let mask = 0, n = 0, mc = -Infinity, mp = -Infinity, d0 = 1e9, d1 = -1e9, s0 = -1;
      for (let j = start[i]; j < start[i + 1]; j++) {
        if (!(seasons & (1 << season[j]))) continue;
        if (from !== null && day[j] < from) continue;
        if (to !== null && day[j] > to) continue;
        if (cloud[j] > cmax || pcloud[j] > pmax) continue; // NaN (unknown) passes
        if (src >= 0 && source[j] !== src) continue;
        n++; mask |= 1 << season[j];
        if (cloud[j] > mc) mc = cloud[j];
        if (pcloud[j] > mp) mp = pcloud[j];
        if (day[j] < d0) d0 = day[j];
        if (day[j] > d1) d1 = day[j];
        if (s0 < 0) s0 = source[j];
      }
      if (!n) continue;
      shown[nShown++] = i; nItems += n;
      let k = 0;
      for (let m = mask; m; m &= m - 1) k++;
      maxCloud[i] = mc; maxP[i] = mp; nSeas[i] = k; locSeasons[i] = mask; firstDay[i] = d0; lastDay[i] = d1;
      locSource[i] = s0; locItems[i] = n;
    }
  }
  const filtered = () => state.from !== null || state.to !== null || state.seasons !== allSeasons ||
    state.cloud !== null || state.pcloud !== null || state.source >= 0;

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
      hi = hi > 0 ? hi : 1;
    }
    return hi;
  }
  function colourOf() {
    /* -> [colours[], group(i) -> index into colours, legend rows] */
    const mode = state.color;
    if (mode === "cloud" || mode === "pcloud") {
      const hi = domain(mode), a = mode === "cloud" ? maxCloud : maxP;
      const colours = [...Array(BINS).keys()].map((b) => ramp(b / (BINS - 1)));
      /* square-root scale: most items are nearly clear, so the low end gets most of the colours */
      return { colours, group: (i) => (isNaN(a[i]) ? 0 : Math.min(BINS - 1, Math.floor(Math.sqrt(Math.max(0, a[i]) / hi) * (BINS - 1) + 0.5))),
        ramp: { lo: 0, hi, label: mode === "cloud" ? "max scene cloud (eo:cloud_cover) of the shown items"
          : "max patch cloud + shadow of the shown items" } };
    }
    if (mode === "seasons") {
      const colours = [...Array(NS + 1).keys()].map((k) => (k === NS ? ACCEPTED : ramp(0.25 + (0.75 * k) / NS)));
      const counts = new Array(NS + 1).fill(0);
      for (let k = 0; k < nShown; k++) counts[nSeas[shown[k]]]++;
      const rows = [];
      for (let k = NS; k >= 1; k--) if (counts[k]) rows.push({ colour: colours[k], label: k + " of " + NS + " seasons", n: counts[k] });
      return { colours, group: (i) => nSeas[i], rows,
        note: "seasons with a shown item, per location" };
    }
    if (mode === "source") {
      const colours = data.sources.map((_, s) => CATEGORICAL[(s + 1) % CATEGORICAL.length]);
      const counts = data.sources.map(() => 0);
      for (let k = 0; k < nShown; k++) counts[locSource[shown[k]]]++;
      return { colours, group: (i) => locSource[i],
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

  let colouring = null;
  function draw() {
    if (!W) return;
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

    const total = nShown + (state.color === "status" && state.rejected ? NR : 0);
    const big = total <= 5000;
    const r = (total <= 500 ? 4.5 : big ? 3.2 : total <= 30000 ? 2 : 1.4) * Math.min(2.5, Math.sqrt(view.k));
    // rejected candidates under the accepted ones, as rings
    if (rej && state.color === "status" && state.rejected) {
      ctx.lineWidth = big ? 1.4 : 1;
      for (let g = 0; g < rej.reasons.length; g++) {
        ctx.strokeStyle = rejColour[g];
        ctx.beginPath();
        for (let k = 0; k < NR; k++) {
          if (rej.reason[k] !== g) continue;
          const x = px(rlon[k]), y = py(rlat[k]);
          if (x < -5 || y < -5 || x > W + 5 || y > H + 5) continue;
          if (big) { ctx.moveTo(x + r * 0.8, y); ctx.arc(x, y, r * 0.8, 0, 2 * Math.PI); } else ctx.rect(x - r / 2, y - r / 2, r, r);
        }
        ctx.stroke();
      }
    }
    const groups = colouring.colours.map(() => []);
    for (let k = 0; k < nShown; k++) { const i = shown[k]; groups[colouring.group(i)].push(i); }
    let drawn = 0;
    groups.forEach((idx, g) => {
      if (!idx.length) return;
      ctx.fillStyle = colouring.colours[g];
      ctx.beginPath();
      for (const i of idx) {
        drawn++;
        const x = px(lon[i]), y = py(lat[i]);
        if (x < -5 || y < -5 || x > W + 5 || y > H + 5) continue;
        if (big) { ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI); } else ctx.rect(x - r, y - r, 2 * r, 2 * r);
      }
      ctx.fill();
      if (big) { ctx.strokeStyle = "rgba(255,255,255,0.9)"; ctx.lineWidth = 1; ctx.stroke(); }
    });
    const st = $("status");
    st.dataset.drawn = drawn;
    window.__secoDrawn = drawn;
    window.__secoDrawMs = performance.now() - t0;
  }

  function status() {
    const st = $("status");
    const c = meta.counts;
    let text = fmt.plural(nShown, "location") + ", " + fmt.plural(nItems, "item");
    if (filtered()) text += " shown (of " + fmt.plural(c.locations, "location") + ", " + fmt.plural(c.items, "item") + ")";
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
    const names = data.origins;
    for (let k = state.page * PAGE; k < Math.min(nShown, (state.page + 1) * PAGE); k++) {
      const i = shown[k], id = data.loc[i];
      const chips = el("span", { class: "chips small" });
      for (let s = 0; s < NS; s++) {
        chips.append(el("span", { class: "chip" + (locSeasons[i] & (1 << s) ? " on" : ""), text: fmt.season(s),
          title: locSeasons[i] & (1 << s) ? "season " + s + ": shown" : "season " + s + ": no shown item" }));
      }
      const href = "location.html#" + id;
      body.append(el("tr", { dataset: { loc: id }, onclick: (e) => { if (e.target.tagName !== "A") location.href = href; } },
        el("td", {}, el("a", { class: "loc-link", href, text: "#" + id })),
        el("td", { text: data.origin[i] === null || data.origin[i] === undefined ? "–" : names[data.origin[i]] }),
        el("td", { class: "mono", text: fmt.lat(lat[i]) + ", " + fmt.lon(lon[i]) }),
        el("td", {}, chips),
        el("td", { class: "mono", text: fmt.day(firstDay[i]) + " – " + fmt.day(lastDay[i]) }),
        el("td", { class: "num", text: fmt.pct(maxCloud[i], 1) }),
        el("td", { class: "num", text: fmt.pct(maxP[i], 2) })));
    }
    if (!nShown) body.append(el("tr", {}, el("td", { colspan: 7, class: "empty", text: "no location matches the filters" })));
    $("page").textContent = "page " + (state.page + 1) + " of " + pages + " · " + fmt.int(PAGE) + " per page";
    $("page").dataset.page = state.page + 1;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  // ---- wiring ---------------------------------------------------------------------------------
  function update(keepPage) {
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
    if (NI) {
      input.title = "acquisitions run from " + fmt.day(minDay) + " to " + fmt.day(maxDay) + " (YYYY-MM-DD, UTC)";
      input.placeholder = fmt.day(key === "from" ? minDay : maxDay);
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
  function nearest(x, y) {
    let best = -1, bestD = 64; // within 8 px
    for (let k = 0; k < nShown; k++) {
      const i = shown[k], dx = px(lon[i]) - x, dy = py(lat[i]) - y, d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = i; }
    }
    if (best >= 0) return { kind: "loc", i: best };
    if (rej && state.color === "status" && state.rejected) {
      for (let k = 0; k < NR; k++) {
        const dx = px(rlon[k]) - x, dy = py(rlat[k]) - y, d = dx * dx + dy * dy;
        if (d < bestD) { bestD = d; best = k; }
      }
      if (best >= 0) return { kind: "rejected", i: best };
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
      const i = hit.i, o = data.origin[i];
      tip.append(el("strong", { text: "#" + data.loc[i] + (o === null || o === undefined ? "" : " · " + data.origins[o]) }),
        el("div", { text: fmt.plural(locItems[i], "item") + " · seasons " +
          [...Array(NS).keys()].filter((s) => locSeasons[i] & (1 << s)).map(fmt.season).join(" ") }),
        el("div", { text: fmt.day(firstDay[i]) + " – " + fmt.day(lastDay[i]) }),
        el("div", { text: "max scene cloud " + fmt.pct(maxCloud[i]) + " · max patch cloud " + fmt.pct(maxP[i], 2) }));
    } else {
      const k = hit.i;
      tip.append(el("strong", { text: "rejected candidate" }),
        el("div", { text: "reason: " + rej.reasons[rej.reason[k]].replace(/_/g, " ") }),
        el("div", { text: fmt.lat(rlat[k]) + ", " + fmt.lon(rlon[k]) }));
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
    if (hit && hit.kind === "loc") location.href = "location.html#" + data.loc[hit.i];
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
  window.__secoPointOf = (id) => { const i = data.loc.indexOf(id); return i < 0 ? null : [px(lon[i]), py(lat[i])]; };

  update(true);
  resize();
  const ready = () => {
    draw();
    window.__secoReady = performance.now();
    window.__secoTimings = { data_ms: tLoaded, ready_ms: window.__secoReady, draw_ms: window.__secoDrawMs };
    document.body.dataset.ready = "1";
  };
  land.onload = () => { landReady = true; ready(); };
  land.onerror = () => { showError("cannot load the basemap data/land.png"); ready(); };
  land.src = "data/land.png";
})();
