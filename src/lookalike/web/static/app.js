// lookalike web UI: vanilla JS, no build step. Text from the server (file names above all)
// only ever goes into the page through textContent and attribute setters, never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
const cfg = document.body.dataset;
const PAGE = 60;
const known = new Map(); // image id -> {path, thumb}, for trail labels and pictures
const uploads = new Map(); // upload key -> its (signed) thumbnail URL, for the trail
const answers = new Map(); // hop key + k -> API answer already fetched (uploads, back/forward)
const unticked = new Set(); // duplicate review: ids the user chose not to move (kept across renders)
const seen = new Set(); // duplicate review: ids shown once (an unverified one starts unticked once)

// ---------------------------------------------------------------- access
// The token arrives once in the URL (?token=, from the printed URL or a copied link) and is
// kept in this origin's localStorage: an origin includes the port, so no other server on
// 127.0.0.1 ever receives it (a cookie would go to all of them). API calls send it as a
// header; images come as signed URLs from the API, so an <img> needs no token.
const TOKEN_KEY = "lookalike-token";
let memoryToken = ""; // when the browser refuses storage
const ACCESS = "This page needs its access token: open the full URL that lookalike serve printed (it ends in ?token=...), or a link made with Copy link.";

function token() {
  try {
    return localStorage.getItem(TOKEN_KEY) || memoryToken;
  } catch (e) {
    return memoryToken;
  }
}

function keepToken(value) {
  memoryToken = value;
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    // storage refused (private mode settings): the token lives as long as this page
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const basename = (p) => p.split(/[\\/]/).pop() || p;
const fmtScore = (s) => Number(s).toFixed(3);

// ---------------------------------------------------------------- state in the URL

function readState() {
  const qs = new URLSearchParams(location.search);
  return {
    hops: qs.getAll("q").filter((h) => /^(id|upload|text):/.test(h)),
    view: qs.get("view") || "gallery",
    page: Math.max(0, parseInt(qs.get("page") || "0", 10) || 0),
    k: Math.min(200, Math.max(1, parseInt(qs.get("k") || "10", 10) || 10)),
    threshold: qs.get("threshold") || "",
  };
}

function urlFor(state) {
  const qs = new URLSearchParams();
  if (state.hops && state.hops.length) {
    for (const h of state.hops) qs.append("q", h);
    if (state.k && state.k !== 10) qs.set("k", String(state.k));
  } else {
    qs.set("view", state.view || "gallery");
    if (state.view === "gallery" && state.page) qs.set("page", String(state.page));
    if (state.view === "duplicates" && state.threshold) qs.set("threshold", state.threshold);
  }
  return "/?" + qs.toString();
}

function go(state, replace = false) {
  const url = urlFor(state);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

function hop(key) {
  const state = readState();
  scrollToTrail = true;
  go({ hops: [...state.hops, key], k: state.k });
}

// ---------------------------------------------------------------- fetching

async function api(url, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(url, { credentials: "omit", ...options, headers });
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (response.status === 401) {
    keepToken(""); // wrong or from an earlier start of the server
    throw new Error(ACCESS);
  }
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function status(message, kind = "") {
  const node = $("#status");
  node.textContent = message || "";
  node.className = "status " + kind;
}

async function queryAnswer(key, k) {
  const cacheKey = `${key}|${k}`;
  if (answers.has(cacheKey)) return answers.get(cacheKey);
  const [kind, ...rest] = key.split(":");
  const value = rest.join(":");
  let url;
  if (kind === "id") url = `/api/similar/${encodeURIComponent(value)}?k=${k}`;
  else if (kind === "upload") url = `/api/search?upload=${encodeURIComponent(value)}&k=${k}`;
  else url = `/api/search?text=${encodeURIComponent(value)}&k=${k}`;
  const answer = await api(url);
  answers.set(cacheKey, answer);
  if (kind === "upload" && answer.query && answer.query.thumb) uploads.set(value, answer.query.thumb);
  return answer;
}

// ---------------------------------------------------------------- tiles

function hopLink(id, children, cls = "hop") {
  return el("a", { class: cls, href: urlFor({ hops: [...readState().hops, `id:${id}`] }), "data-hop": id }, ...children);
}

function thumb(item) {
  return el("img", {
    src: item.thumb || `/thumb/${item.id}`,
    loading: "lazy",
    decoding: "async",
    width: 256,
    height: 256,
    alt: basename(item.path),
  });
}

function humanSize(n) {
  // The same units as `lookalike duplicates --html`.
  if (n === undefined || n === null || n < 0) return "?";
  let value = n;
  for (const unit of ["B", "KB", "MB", "GB"]) {
    if (value < 1024 || unit === "GB") return unit === "B" ? `${value.toFixed(0)} B` : `${value.toFixed(1)} ${unit}`;
    value /= 1024;
  }
  return `${n} B`;
}

const resolution = (w, h) => (w && h ? `${w}x${h}` : "?");

function tile(item, opts = {}) {
  if (item.id !== null && item.id !== undefined) known.set(String(item.id), { path: item.path, thumb: item.thumb });
  const attrs = { class: "tile" + (opts.keep ? " keep" : ""), "data-id": item.id };
  if (opts.rank !== undefined) {
    attrs["data-rank"] = opts.rank;
    attrs["data-score"] = item.score;
  }
  const fig = el("figure", attrs);
  fig.append(item.id === null ? thumb(item) : hopLink(item.id, [thumb(item)], "hop picture"));
  const caption = el("figcaption");
  if (opts.rank !== undefined) {
    const meter = el("span", { class: "meter" }, el("span", { class: "fill" }));
    meter.firstChild.style.width = `${Math.max(0, Math.min(1, item.score)) * 100}%`;
    caption.append(
      el("span", { class: "rank", text: opts.keep ? "keep" : `#${opts.rank}` }),
      el("span", { class: "score", text: fmtScore(item.score), title: "cosine similarity" }),
      meter,
    );
  }
  caption.append(el("span", { class: "name", text: basename(item.path), title: item.path }));
  if (item.id !== null && item.image) {
    caption.append(el("a", { class: "open", href: item.image, target: "_blank", rel: "noopener noreferrer", title: "Open the original", text: "↗" }));
  }
  if (opts.facts) {
    caption.append(el("span", { class: "facts-line", text: `${resolution(item.width, item.height)}, ${humanSize(item.size)}` }));
  }
  if (opts.select) caption.append(opts.select);
  fig.append(caption);
  return fig;
}

// ---------------------------------------------------------------- views

async function renderGallery(state) {
  const view = $("#view");
  const answer = await api(`/api/images?offset=${state.page * PAGE}&limit=${PAGE}`);
  const pages = Math.max(1, Math.ceil(answer.total / PAGE));
  view.replaceChildren(
    el("h2", { text: answer.total ? "All images" : "The index is empty" },
      answer.total ? el("small", { text: ` ${answer.total} · page ${state.page + 1} of ${pages}` }) : null),
    el("div", { class: "grid gallery" }, ...answer.images.map((item) => tile(item))),
    pager(state, pages),
  );
  if (!answer.total) view.append(el("p", { class: "hint", text: "Index a folder first: lookalike index FOLDER" }));
}

function pager(state, pages) {
  const link = (page, label) =>
    page < 0 || page >= pages
      ? el("span", { class: "button disabled", text: label })
      : el("a", { class: "button", href: urlFor({ view: "gallery", page }), "data-page": page, text: label });
  return el("nav", { class: "pager" }, link(state.page - 1, "← Previous"), link(state.page + 1, "Next →"));
}

function renderQuery(answer, key) {
  const panel = $("#query");
  const q = answer.query || {};
  const kind = key.split(":")[0];
  let picture = null;
  let title = "";
  if (kind === "id") {
    picture = el("img", { src: q.thumb, width: 256, height: 256, alt: basename(q.path || "") });
    title = q.path || "";
    known.set(String(q.id), { path: q.path, thumb: q.thumb });
  } else if (kind === "upload") {
    picture = q.thumb ? el("img", { src: q.thumb, width: 256, height: 256, alt: "uploaded image" }) : null;
    title = "Uploaded image";
  } else {
    picture = el("div", { class: "textquery", text: `“${q.text}”` });
    title = "Search by words";
  }
  const state = readState();
  const kSelect = el("select", { "aria-label": "results", onchange: (e) => go({ hops: state.hops, k: parseInt(e.target.value, 10) }) },
    ...[10, 20, 50, 100].map((n) => el("option", { value: n, selected: n === state.k, text: `${n} results` })));
  panel.replaceChildren(
    el("div", { class: "qpic" }, picture),
    el("div", { class: "qtext" },
      el("div", { class: "label", text: "Lookalikes of" }),
      el("div", { class: "qname", text: kind === "id" ? basename(title) : title, title }),
      kind === "id" ? el("div", { class: "qpath", text: title }) : null,
      el("div", { class: "controls" }, kSelect,
        kind === "id" && q.image ? el("a", { class: "button", href: q.image, target: "_blank", rel: "noopener noreferrer", text: "Open original" }) : null)),
  );
  panel.hidden = false;
}

async function renderResults(state) {
  const key = state.hops[state.hops.length - 1];
  const answer = await queryAnswer(key, state.k);
  renderQuery(answer, key);
  const results = answer.results || [];
  $("#view").replaceChildren(
    el("h2", { text: results.length ? "Most similar" : "No results" },
      el("small", { text: ` ${results.length} · click any image to see its lookalikes` })),
    el("div", { class: "grid results" }, ...results.map((r) => tile(r, { rank: r.rank }))),
  );
}

async function renderTrail(state) {
  const trail = $("#trail");
  if (!state.hops.length) {
    trail.replaceChildren();
    trail.hidden = true;
    return;
  }
  trail.hidden = false;
  const missing = state.hops.filter((h) => h.startsWith("id:") && !known.has(h.slice(3)));
  const missingUploads = state.hops.slice(0, -1)
    .filter((h) => h.startsWith("upload:") && !uploads.has(h.slice(7)));
  await Promise.all([
    ...missing.map(async (h) => {
      try {
        const info = await api(`/api/images/${encodeURIComponent(h.slice(3))}`);
        known.set(h.slice(3), { path: info.path, thumb: info.thumb });
      } catch (e) {
        known.set(h.slice(3), { path: `#${h.slice(3)}`, thumb: null });
      }
    }),
    ...missingUploads.map(async (h) => {
      try {
        const answer = await api(`/api/search?upload=${encodeURIComponent(h.slice(7))}&k=1`);
        uploads.set(h.slice(7), answer.query.thumb);
      } catch (e) {
        uploads.set(h.slice(7), null);
      }
    }),
  ]);
  const items = [el("a", { class: "crumb home", href: urlFor({ view: "gallery" }), text: "Gallery" })];
  state.hops.forEach((h, i) => {
    const [kind, ...rest] = h.split(":");
    const value = rest.join(":");
    let label = value;
    let src = null;
    if (kind === "id") {
      const item = known.get(value) || { path: `#${value}`, thumb: null };
      label = basename(item.path);
      src = item.thumb;
    } else if (kind === "upload") {
      label = "uploaded image";
      src = uploads.get(value) || null;
    } else {
      label = `“${value}”`;
    }
    const pic = src ? el("img", { src, width: 28, height: 28, alt: "" }) : null;
    const current = i === state.hops.length - 1;
    const href = urlFor({ hops: state.hops.slice(0, i + 1), k: state.k });
    items.push(el("span", { class: "sep", text: "›" }));
    items.push(current
      ? el("span", { class: "crumb current", "aria-current": "page" }, pic, el("span", { text: label }))
      : el("a", { class: "crumb", href }, pic, el("span", { text: label })));
  });
  trail.replaceChildren(...items);
}

async function renderInfo() {
  const info = await api("/api/info");
  showCounts(info);
  const pre = info.preprocessing || {};
  const rows = [
    ["Index", info.db], ["Images", info.images], ["Model", info.model || "(none yet)"],
    ["Weights", info.weights || "-"], ["Pooling", info.pooling || "-"],
    ["Preprocessing", pre.mode ? `${pre.mode} to ${pre.size}, ${pre.interpolation}` : "-"],
    ["Dimension", info.dim || "-"], ["Space", info.space || "image"],
  ];
  const failed = info.failed || [];
  $("#view").replaceChildren(
    el("h2", { text: "About this index" }),
    el("dl", { class: "facts" }, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })])),
    el("h3", { text: `Folders (${info.folders.length})` }),
    el("ul", { class: "folders" }, ...info.folders.map((f) => el("li", { text: f }))),
    el("h3", { text: `Files that could not be indexed (${info.failed_count})` }),
    failed.length
      ? el("table", { class: "failed" },
        el("thead", {}, el("tr", {}, el("th", { text: "File" }), el("th", { text: "Reason" }), el("th", { text: "Detail" }))),
        el("tbody", {}, ...failed.map((f) => el("tr", {}, el("td", { text: f.path }), el("td", { text: f.reason }), el("td", { text: f.detail || "" })))))
      : el("p", { class: "hint", text: "None." }),
  );
}

async function renderDuplicates(state) {
  const view = $("#view");
  const qs = state.threshold ? `?threshold=${encodeURIComponent(state.threshold)}` : "";
  status("Looking for duplicates…");
  const answer = await api(`/api/duplicates${qs}`);
  status("");
  const used = Number(answer.threshold);
  const slider = el("input", { type: "range", min: "0.5", max: "1", step: "0.005", value: String(used), "aria-label": "threshold" });
  const shownValue = el("output", { text: used.toFixed(3) });
  slider.addEventListener("input", () => { shownValue.textContent = Number(slider.value).toFixed(3); });
  slider.addEventListener("change", () => go({ view: "duplicates", threshold: slider.value }));
  const moves = cfg.moves === "true" && answer.allow_moves;
  const boxes = [];
  const groups = answer.groups.map((g, gi) => el("section", { class: "group", "data-group": gi },
    el("h3", { text: `${g.members.length} files`, },
      el("small", { text: ` · lowest similarity ${fmtScore(g.min_score)} · keeping ${basename(g.keep)}` })),
    el("div", { class: "grid dups" }, ...g.members.map((m, mi) => {
      let select = null;
      if (moves && !m.keep && m.id !== null) {
        // A box the user unticked stays unticked when the review is drawn again (after a
        // move, or at another threshold); a member the second look did not confirm (#19)
        // starts unticked, and stays as the user sets it.
        const sure = m.verified !== false;
        if (!sure && !seen.has(m.id)) unticked.add(m.id);
        seen.add(m.id);
        const box = el("input", { type: "checkbox", checked: !unticked.has(m.id), "data-move": m.id, "data-verified": sure ? "1" : "0", "aria-label": `move ${basename(m.path)}` });
        box.addEventListener("change", () => {
          if (box.checked) unticked.delete(m.id);
          else unticked.add(m.id);
        });
        boxes.push(box);
        select = el("label", { class: "pick", title: sure ? "Move to the trash" : "Not confirmed by the second look: check before moving" }, box, sure ? "move" : "move (unverified)");
      }
      return tile(m, { rank: mi + 1, keep: m.keep, select, facts: true });
    }))));
  const controls = el("div", { class: "controls dupbar" },
    el("label", {}, "Threshold ", slider, " ", shownValue),
    el("span", { class: "hint", text: answer.threshold_source ? `(${answer.threshold_source})` : "" }),
    el("span", { text: `${answer.groups.length} groups` }));
  if (moves && boxes.length) {
    controls.append(el("button", { class: "button danger", id: "move", text: "Move selected to trash…", onclick: () => moveSelected(boxes, used) }));
  }
  view.replaceChildren(el("h2", { text: "Duplicate review" }), controls,
    ...(groups.length ? groups : [el("p", { class: "hint", text: "No duplicates at this threshold." })]));
}

async function moveSelected(boxes, threshold) {
  const ids = boxes.filter((b) => b.checked).map((b) => parseInt(b.dataset.move, 10));
  if (!ids.length) return;
  if (!confirm(`Move ${ids.length} file(s) into the trash folder beside the index? An undo manifest is written.`)) return;
  try {
    const report = await api("/api/duplicates/move", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids, threshold, confirm: true }),
    });
    status(`Moved ${report.moved.length} file(s) to ${report.trash}; ${report.skipped.length} skipped. Undo manifest: ${report.manifest || "-"}`, "ok");
    answers.clear();
    await renderDuplicates(readState());
    status(`Moved ${report.moved.length} file(s) to ${report.trash}; ${report.skipped.length} skipped. Undo manifest: ${report.manifest || "-"}`, "ok");
  } catch (e) {
    status(e.message, "error");
  }
}

let renderCount = 0;
let scrollToTrail = false; // set by a click on a tile: show the new trail below the header

function showCounts(info) {
  document.body.dataset.total = String(info.images);
  $("#foot-images").textContent = `${info.images} images`;
  $("#foot-model").textContent = info.model || "no model yet";
}

async function render() {
  const state = readState();
  const mine = ++renderCount;
  document.querySelectorAll(".tabs a").forEach((a) => {
    const active = !state.hops.length && a.dataset.view === state.view;
    a.classList.toggle("active", active);
    if (!active && document.activeElement === a) a.blur(); // a tab that no longer applies
  });
  $("#query").hidden = true;
  status("");
  try {
    await renderTrail(state);
    if (mine !== renderCount) return;
    if (state.hops.length) await renderResults(state);
    else if (state.view === "info") await renderInfo();
    else if (state.view === "duplicates" && cfg.duplicates === "true") await renderDuplicates(state);
    else await renderGallery(state);
    if (scrollToTrail && state.hops.length) {
      // Below the sticky header, not under it (the header wraps on narrow windows).
      const trail = $("#trail");
      trail.style.scrollMarginTop = `${$("header.bar").offsetHeight + 8}px`;
      trail.scrollIntoView({ block: "start" });
    }
    scrollToTrail = false;
    document.body.dataset.ready = String(mine);
  } catch (e) {
    if (mine === renderCount) {
      $("#view").replaceChildren();
      status(e.message, "error");
    }
  }
}

// ---------------------------------------------------------------- queries by upload

async function upload(file) {
  if (!file) return;
  const limit = parseInt(cfg.maxUploadMb, 10) * 1024 * 1024;
  if (file.size > limit) {
    status(`That file is over the ${cfg.maxUploadMb} MB upload limit.`, "error");
    return;
  }
  const k = readState().k;
  const form = new FormData();
  form.append("image", file, file.name || "pasted.png");
  status("Searching…");
  try {
    const answer = await api(`/api/search?k=${k}`, { method: "POST", body: form });
    const key = `upload:${answer.query.upload}`;
    answers.set(`${key}|${k}`, answer);
    if (answer.query.thumb) uploads.set(answer.query.upload, answer.query.thumb);
    go({ hops: [key], k });
  } catch (e) {
    status(e.message, "error");
  }
}

function firstImageFile(list) {
  for (const item of list || []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file && (file.type.startsWith("image/") || !file.type)) return file;
  }
  return null;
}

// ---------------------------------------------------------------- wiring

async function copyLink() {
  const t = token();
  if (!t) {
    status(ACCESS, "error");
    return;
  }
  const url = new URL(location.href);
  url.searchParams.set("token", t);
  const link = url.toString();
  let copied = false;
  try {
    await navigator.clipboard.writeText(link);
    copied = true;
  } catch (e) {
    copied = false; // no clipboard access: the link is shown to copy by hand
  }
  const field = el("input", { id: "share-link", type: "text", readonly: true, value: link, size: 48, "aria-label": "Link to this view" });
  const node = $("#status");
  node.className = "status ok";
  node.replaceChildren(
    el("span", { text: copied ? "Link copied: " : "Copy this link: " }), field,
    el("span", { class: "hint", text: " it opens this view in any browser that can reach this server while it runs. It carries the access token: whoever has it sees every indexed image." }),
  );
  field.select();
}

function wire() {
  const qs = new URLSearchParams(location.search);
  if (qs.has("token")) {
    // Kept in this origin's storage; out of the address bar, history and bookmarks.
    keepToken(qs.get("token"));
    qs.delete("token");
    history.replaceState(null, "", "/?" + qs.toString());
  }
  const share = $("#share");
  if (share) share.addEventListener("click", copyLink);
  api("/api/info").then(showCounts, () => {}); // the page itself shows no counts before
  document.addEventListener("click", (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target.closest("a");
    if (!a || a.target === "_blank") return;
    if (a.dataset.hop) {
      e.preventDefault();
      hop(`id:${a.dataset.hop}`);
    } else if (a.getAttribute("href") && a.getAttribute("href").startsWith("/?")) {
      e.preventDefault();
      history.pushState(null, "", a.getAttribute("href"));
      render();
    }
  });
  window.addEventListener("popstate", render);
  $("#file").addEventListener("change", (e) => { upload(e.target.files[0]); e.target.value = ""; });
  const textForm = $("#text-form");
  if (textForm) {
    textForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = $("#text").value.trim();
      if (text) go({ hops: [`text:${text}`], k: readState().k });
    });
  }
  const drop = $("#drop");
  let depth = 0;
  document.addEventListener("dragenter", (e) => {
    if (![...(e.dataTransfer.types || [])].includes("Files")) return;
    depth += 1;
    drop.hidden = false;
  });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) drop.hidden = true; });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    drop.hidden = true;
    const file = firstImageFile(e.dataTransfer.files);
    if (file) upload(file);
    else status("Drop an image file (links are not fetched).", "error");
  });
  document.addEventListener("paste", (e) => {
    if (e.target instanceof HTMLInputElement && e.target.type !== "file") return;
    const file = firstImageFile(e.clipboardData && e.clipboardData.items);
    if (file) {
      e.preventDefault();
      upload(file);
    }
  });
  render();
}

wire();
