/* seco viewer, location page (location.html#<location id>): its seasons side by side, with their
 * quicklooks, dates, cloud and coverage, scene ids and links to the GeoTIFFs and the item JSON.
 * Loads data/meta.js and the one chunk data/loc/<id // chunk>.js that holds this location. */
"use strict";

(async function () {
  const { loadData, el, fmt, showError, startPage, assetUrl, chunkOf } = window.seco;
  const $ = (id) => document.getElementById(id);
  const meta = await startPage("location");
  if (!meta) return;
  try {
    const back = sessionStorage.getItem("seco-map-hash");
    if (back) { $("back-to-map").href = "index.html" + back; $("crumb-map").href = "index.html" + back; }
  } catch (e) { /* storage disabled: plain links */ }

  const land = new Image();
  const landLoaded = new Promise((resolve) => { land.onload = () => resolve(true); land.onerror = () => resolve(false); });
  land.src = "data/land.png";
  const NS = Math.max(meta.seasons.count, 1);
  const dataAssets = meta.assets.filter((a) => a.kind !== "thumbnail");
  const thumbKeys = meta.assets.filter((a) => a.kind === "thumbnail").map((a) => a.key);
  let gallery = []; // [{url, caption}] of the seasons with a quicklook, for the lightbox

  function assetLabel(a) {
    if (a.kind === "data") return "GeoTIFF " + (a.gsd ? a.gsd + " m" : a.key);
    return a.key;
  }

  function card(item, s, locId) {
    if (!item) {
      return el("article", { class: "season-card missing", dataset: { season: s } },
        el("div", { class: "thumb-missing" }, el("span", { text: "no item for " + fmt.season(s) })),
        el("header", { class: "card-head" }, el("span", { class: "season-badge", text: fmt.season(s) })));
    }
    const thumbHref = thumbKeys.map((k) => item.assets[k]).find(Boolean);
    const url = assetUrl(meta, thumbHref);
    const caption = "#" + locId + " · " + fmt.season(s) + " · " + fmt.date(item.datetime) + " " +
      fmt.time(item.datetime) + " · " + (item.scene_id || item.id);
    let thumb;
    if (url) {
      const n = gallery.length;
      gallery.push({ url, caption });
      const img = el("img", { class: "thumb-img", src: url, alt: "true-colour quicklook of " + item.id });
      thumb = el("button", { type: "button", class: "thumb", title: "open large", onclick: () => openBox(n) }, img);
      img.addEventListener("error", () => {
        thumb.replaceWith(el("div", { class: "thumb-missing" }, el("span", { text: "quicklook not found" }),
          el("small", { text: thumbHref })));
      });
    } else {
      thumb = el("div", { class: "thumb-missing", title: "this item has no thumbnail asset" },
        el("span", { text: "no quicklook" }), el("small", {}, "make them with ", el("code", { text: "seco-data catalog thumbnails" })));
    }
    const row = (label, value, cls) => [el("dt", { text: label }), el("dd", { class: cls || null, text: value })];
    const links = [];
    if (item.href) links.push(el("a", { href: assetUrl(meta, item.href), class: "item-link", text: "item JSON", type: "application/geo+json" }));
    for (const a of dataAssets) {
      if (item.assets[a.key]) {
        links.push(el("a", { href: assetUrl(meta, item.assets[a.key]), class: "asset-link", title: a.title || a.key,
          dataset: { key: a.key }, text: assetLabel(a) }));
      }
    }
    if (thumbHref) links.push(el("a", { href: url, class: "asset-link", dataset: { key: "thumbnail" }, text: "PNG" }));
    const win = item.window && item.window.length === 2 ? fmt.date(item.window[0]) + " – " + fmt.date(item.window[1]) : "–";
    return el("article", { class: "season-card", dataset: { season: s, item: item.id } },
      el("div", { class: "thumb-wrap" }, thumb),
      el("header", { class: "card-head" },
        el("span", { class: "season-badge", text: fmt.season(s) }),
        el("time", { class: "date", datetime: item.datetime, text: fmt.date(item.datetime) }),
        el("span", { class: "time", text: fmt.time(item.datetime) })),
      el("dl", { class: "facts" },
        row("scene", item.scene_id || "–", "scene-id mono"),
        row("platform", item.platform || "–"),
        row("scene cloud", fmt.pct(item.cloud, 1), "cloud"),
        row("patch cloud", fmt.frac(item.pcloud, 2), "pcloud"),
        row("valid pixels", fmt.frac(item.valid, 1), "valid"),
        row("season window", win),
        row("source", item.source || "–"),
        row("item", item.id, "item-id mono")),
      el("div", { class: "links" }, links));
  }

  async function drawLocator(lon, lat) {
    const c = $("locator"), ctx = c.getContext("2d");
    const ok = await landLoaded;
    ctx.fillStyle = "#dce9f2";
    ctx.fillRect(0, 0, c.width, c.height);
    if (ok) ctx.drawImage(land, 0, 0, c.width, c.height);
    if (lon === null || lat === null) return;
    const x = ((lon + 180) / 360) * c.width, y = ((90 - lat) / 180) * c.height;
    ctx.strokeStyle = "rgba(15,118,110,0.5)";
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, c.height); ctx.moveTo(0, y); ctx.lineTo(c.width, y); ctx.stroke();
    ctx.fillStyle = "#0f766e"; ctx.strokeStyle = "#fff"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
  }

  function navLink(a, loc) {
    if (loc === null || loc === undefined) { a.hidden = true; return; }
    a.hidden = false;
    a.href = "location.html#" + loc;
    a.dataset.loc = loc;
  }

  async function render() {
    window.__secoReady = null;
    $("error").hidden = true;
    const id = parseInt(location.hash.slice(1), 10);
    const box = $("seasons");
    box.replaceChildren();
    gallery = [];
    if (!isFinite(id)) { showError("no location given: open this page as location.html#<location id>"); return; }
    const k = chunkOf(meta, id);
    const ci = meta.chunks.findIndex((c) => c.k === k);
    let chunk = null;
    if (ci >= 0) {
      try { chunk = await loadData("loc/" + k); } catch (e) { showError(e.message); return; }
    }
    const at = chunk ? chunk.locations.findIndex((l) => l.loc === id) : -1;
    if (at < 0) { showError("location " + id + " is not in this catalog"); $("loc-name").textContent = "Location #" + id; return; }
    const loc = chunk.locations[at];
    document.title = "#" + id + " · " + meta.collection + " · seco viewer";
    $("loc-name").textContent = "Location #" + id + (loc.origin ? " · " + loc.origin : "");
    const seasons = new Set(loc.items.map((it) => it.season));
    const dates = loc.items.map((it) => it.datetime).sort();
    $("loc-sub").replaceChildren(
      el("span", { class: "mono", text: fmt.lat(loc.lat) + ", " + fmt.lon(loc.lon) }),
      el("span", { text: seasons.size + " of " + NS + " seasons" }),
      el("span", { text: fmt.plural(loc.items.length, "item") }),
      el("span", { text: dates.length ? fmt.date(dates[0]) + " – " + fmt.date(dates[dates.length - 1]) : "" }));
    navLink($("loc-prev"), at > 0 ? chunk.locations[at - 1].loc : ci > 0 ? meta.chunks[ci - 1].last : null);
    navLink($("loc-next"), at < chunk.locations.length - 1 ? chunk.locations[at + 1].loc
      : ci < meta.chunks.length - 1 ? meta.chunks[ci + 1].first : null);
    const bySeason = new Map(loc.items.map((it) => [it.season, it]));
    const order = [...new Set([...Array(NS).keys(), ...bySeason.keys()])].sort((a, b) => a - b);
    for (const s of order) box.append(card(bySeason.get(s), s, id));
    await drawLocator(loc.lon, loc.lat);
    window.__secoReady = performance.now();
    document.body.dataset.ready = "1";
  }

  // ---- the lightbox -------------------------------------------------------------------------
  let current = -1;
  function openBox(n) {
    current = n;
    const g = gallery[n];
    $("lightbox-img").src = g.url;
    $("lightbox-img").alt = g.caption;
    $("lightbox-caption").textContent = g.caption + "  (← → other seasons, Esc closes)";
    $("lightbox").hidden = false;
  }
  function closeBox() { $("lightbox").hidden = true; current = -1; }
  $("lightbox-close").addEventListener("click", closeBox);
  $("lightbox").addEventListener("click", (e) => { if (e.target.id === "lightbox") closeBox(); });
  document.addEventListener("keydown", (e) => {
    if (current < 0) return;
    if (e.key === "Escape") closeBox();
    else if (e.key === "ArrowRight") openBox((current + 1) % gallery.length);
    else if (e.key === "ArrowLeft") openBox((current - 1 + gallery.length) % gallery.length);
  });

  window.addEventListener("hashchange", render);
  render();
})();
