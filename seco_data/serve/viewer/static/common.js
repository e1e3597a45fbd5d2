/* seco viewer: what every page shares (data loading, formatting, the header). Vanilla JS, no build. */
"use strict";

(function () {
  const store = {};
  const waiting = {};
  const arrived = {}; // when each data file had run (ms since navigation start)

  /* Data files are scripts that call secoData(name, payload): they load from file:// too. */
  window.secoData = function (name, payload) {
    store[name] = payload;
    arrived[name] = performance.now();
    (waiting[name] || []).forEach((w) => w.resolve(payload));
    delete waiting[name];
  };

  function loadData(name) {
    if (name in store) return Promise.resolve(store[name]);
    return new Promise((resolve, reject) => {
      const first = !waiting[name];
      (waiting[name] = waiting[name] || []).push({ resolve, reject });
      if (!first) return;
      const s = document.createElement("script");
      s.src = "data/" + name + ".js";
      s.async = true;
      s.onerror = () => {
        (waiting[name] || []).forEach((w) => w.reject(new Error("cannot load data/" + name + ".js")));
        delete waiting[name];
      };
      s.onload = () => {
        if (!(name in store)) s.onerror();
      };
      document.head.appendChild(s);
    });
  }

  /* Packed typed arrays (seco_data/serve/viewer/pack.py): one deflate stream of byte-shuffled
     columns, in base64. Inflated by the browser (DecompressionStream), nothing fetched: file:// works. */
  const TYPED = { u8: Uint8Array, i8: Int8Array, u16: Uint16Array, i16: Int16Array, u32: Uint32Array,
    i32: Int32Array, f32: Float32Array, f64: Float64Array };
  function fromBase64(text) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const bin = atob(text), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  async function unpack(payload) {
    if (!payload || payload.packed !== 1 || payload.encoding !== "deflate") throw new Error("unknown data format");
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser cannot inflate the data (no DecompressionStream): use a current Chrome, Firefox or Safari");
    }
    const t0 = performance.now();
    const z = fromBase64(payload.data);
    const t1 = performance.now();
    const stream = new Blob([z]).stream().pipeThrough(new DecompressionStream("deflate"));
    const raw = new Uint8Array(await new Response(stream).arrayBuffer());
    const t2 = performance.now();
    if (raw.length !== payload.bytes) throw new Error("the data are truncated (" + raw.length + " of " + payload.bytes + " bytes)");
    const out = {};
    for (const [name, c] of Object.entries(payload.columns)) {
      const T = TYPED[c.type], k = T.BYTES_PER_ELEMENT, n = c.length;
      let a;
      if (c.shuffle) {
        const bytes = new Uint8Array(n * k);
        for (let b = 0; b < k; b++) {
          const src = raw.subarray(c.offset + b * n, c.offset + (b + 1) * n);
          for (let i = 0, j = b; i < n; i++, j += k) bytes[j] = src[i];
        }
        a = new T(bytes.buffer, 0, n);
      } else {
        a = new T(raw.buffer, c.offset, n); // offsets are multiples of 8
      }
      if (c.delta) for (let i = 1; i < n; i++) a[i] += a[i - 1]; // wraps around like the Python side
      out[name] = a;
    }
    unpack.timings = { base64_ms: t1 - t0, inflate_ms: t2 - t1, columns_ms: performance.now() - t2 };
    return out;
  }
  /* the largest value of an unsigned typed array's type: "none" in the packed columns */
  const noneOf = (a) => 2 ** (8 * a.BYTES_PER_ELEMENT) - 1;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  const nf = new Intl.NumberFormat("en-US");
  const fmt = {
    int: (n) => (n === null || n === undefined ? "–" : nf.format(n)),
    /* a percentage with its unit; value already in percent */
    pct: (v, digits = 1) => (v === null || v === undefined ? "–" : v.toFixed(digits) + " %"),
    /* a fraction (0..1) shown as a percentage */
    frac: (v, digits = 1) => (v === null || v === undefined ? "–" : (100 * v).toFixed(digits) + " %"),
    day: (d) => new Date(d * 86400000).toISOString().slice(0, 10),
    date: (iso) => (iso ? iso.slice(0, 10) : "–"),
    time: (iso) => (iso && iso.length >= 19 ? iso.slice(11, 19) + " UTC" : ""),
    lat: (v) => (v === null ? "–" : Math.abs(v).toFixed(4) + "° " + (v >= 0 ? "N" : "S")),
    lon: (v) => (v === null ? "–" : Math.abs(v).toFixed(4) + "° " + (v >= 0 ? "E" : "W")),
    plural: (n, one, many) => fmt.int(n) + " " + (n === 1 ? one : many || one + "s"),
    season: (s) => "s" + s,
  };

  /* Link to a catalog file: hrefs in the index are relative to the catalog root ("./0000/..."). */
  function assetUrl(meta, href) {
    if (!href) return null;
    if (/^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith("/")) return href;
    return meta.asset_base + href.replace(/^\.\//, "");
  }

  function header(meta, page) {
    document.title = meta.collection + " · seco viewer" + (page ? " · " + page : "");
    const title = document.getElementById("collection");
    if (title) {
      title.textContent = meta.collection;
      title.title = meta.title;
    }
    const counts = document.getElementById("headcounts");
    if (counts) {
      const c = meta.counts;
      const parts = [fmt.plural(c.locations, "location"), fmt.plural(c.patches, "patch", "patches"),
        fmt.plural(meta.seasons.count, "season")];
      if (meta.source && meta.source.synthetic) parts.push("synthetic pixels");
      counts.textContent = parts.join(" · ");
    }
  }

  function showError(message) {
    window.__secoError = message;
    const box = document.getElementById("error");
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
  }

  /* A page's start: data/meta.js, then the header; null (and the error shown) if the site is incomplete. */
  async function startPage(page) {
    let meta;
    try {
      meta = await loadData("meta");
    } catch (e) {
      showError(e.message + ": is the site complete?");
      return null;
    }
    header(meta, page);
    return meta;
  }

  function chunkOf(meta, loc) {
    return Math.floor(loc / meta.chunk);
  }

  /* Colour ramps: a perceptual blue-yellow (viridis-like) and categorical colours. */
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function ramp(t) {
    t = Math.max(0, Math.min(1, isFinite(t) ? t : 0)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(t));
    const f = t - i;
    const c = RAMP[i].map((a, k) => Math.round(a + f * (RAMP[i + 1][k] - a)));
    return "rgb(" + c.join(",") + ")";
  }
  const CATEGORICAL = ["#0f766e", "#2563eb", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#65a30d", "#db2777",
    "#4b5563", "#7c3aed"];

  window.seco = { loadData, arrived, unpack, noneOf, el, fmt, assetUrl, header, showError, startPage, chunkOf, ramp, CATEGORICAL };
})();
