/* seco viewer, location page (location.html#<location id>): its seasons side by side, with their
 * quicklooks, dates, cloud and coverage, scene ids and links to the GeoTIFFs and the item JSON.
 * Loads data/meta.js and the one chunk data/loc/<id // chunk>.js that holds this location.
 * Compact layout: one item and one file per resolution for all the seasons, and one quicklook strip
 * (the seasons side by side, by season) shown cropped to each season's square. */
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
  let gallery = []; // [{url, caption, crop}] of the seasons with a quicklook, for the lightbox

  function assetLabel(a) {
    if (a.kind === "data") return "GeoTIFF " + (a.gsd ? a.gsd + " m" : a.key);
    return a.key;
  }

  /* a quicklook: the whole image, or one square of a strip (object-fit: cover shows a square of the
     image's height; object-position picks which) */
  function cropStyle(strip) {
    return strip.count > 1 ? "object-fit: cover; object-position: " + ((100 * strip.index) / (strip.count - 1)).toFixed(4) + "% 50%" : null;
  }
  const apiItem = (id) => (meta.api_base ? meta.api_base + "collections/" + encodeURIComponent(meta.collection) +
    "/items/" + encodeURIComponent(id) : null);
  const range = (list) => (list.length > 1 && list[list.length - 1] - list[0] === list.length - 1
    ? list[0] + "–" + list[list.length - 1] : list.join(", "));

  function card(item, s, locId, place) {
    if (!item) {
      return el("article", { class: "season-card missing", dataset: { season: s } },
        el("div", { class: "thumb-missing" }, el("span", { text: "no item for " + fmt.season(s) })),
        el("header", { class: "card-head" }, el("span", { class: "season-badge", text: fmt.season(s) })));
    }
    const files = item.assets || place.assets || {}; // per-patch: the item's; compact: the location's
    const id = item.id || place.id;
    const thumbHref = thumbKeys.map((k) => files[k]).find(Boolean);
    const url = assetUrl(meta, thumbHref);
    const crop = item.strip ? cropStyle(item.strip) : null;
    const caption = "#" + locId + " · " + fmt.season(s) + " · " + fmt.date(item.datetime) + " " +
      fmt.time(item.datetime) + " · " + (item.scene_id || id);
    let thumb;
    if (url) {
      const n = gallery.length;
      gallery.push({ url, caption, crop });
      const img = el("img", { class: "thumb-img", src: url, style: crop, alt: "true-colour quicklook of " + id + " " + fmt.season(s) });
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
    const json = item.href ? assetUrl(meta, item.href) : apiItem(id);
    if (json) links.push(el("a", { href: json, class: "item-link", text: item.href ? "item JSON" : "item (STAC API)", type: "application/geo+json" }));
    for (const a of dataAssets) {
      if (files[a.key]) {
        const bands = item.bands && item.bands[a.key];
        links.push(el("a", { href: assetUrl(meta, files[a.key]), class: "asset-link", dataset: { key: a.key },
          title: (a.title || a.key) + (bands ? ": " + fmt.season(s) + " is band " + range(bands) + " of the file" : ""),
          text: assetLabel(a) + (bands && bands.length ? " · bands " + range(bands) : "") }));
      }
    }
    if (thumbHref) {
      links.push(el("a", { href: url, class: "asset-link", dataset: { key: "thumbnail" },
        text: (/\.png$/i.test(thumbHref) ? "PNG" : "JPEG") + (item.strip && item.strip.count > 1 ? " (all seasons)" : "") }));
    }
    const win = item.window && item.window.length === 2 ? fmt.date(item.window[0]) + " – " + fmt.date(item.window[1]) : "–";
    return el("article", { class: "season-card", dataset: { season: s, item: id } },
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
        row("source", place.source || "–"),
        row("item", id, "item-id mono")),
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

  async function chunkFor(id) {
    try { return await loadData("loc/" + chunkOf(meta, id)); } catch (e) { return null; }
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
    const chunk = await chunkFor(id); // none: no location of this catalog near the id
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
      el("span", { text: fmt.plural(loc.items.length, "patch", "patches") }),
      el("span", { text: dates.length ? fmt.date(dates[0]) + " – " + fmt.date(dates[dates.length - 1]) : "" }));
    navLink($("loc-prev"), at > 0 ? chunk.locations[at - 1].loc : chunk.prev);
    navLink($("loc-next"), at < chunk.locations.length - 1 ? chunk.locations[at + 1].loc : chunk.next);
    const bySeason = new Map(loc.items.map((it) => [it.season, it]));
    const order = [...new Set([...Array(NS).keys(), ...bySeason.keys()])].sort((a, b) => a - b);
    for (const s of order) box.append(card(bySeason.get(s), s, id, loc));
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
    $("lightbox-img").style.cssText = g.crop || "";
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
