// The cellcount page: a plain client of the public API (/count, /segment, /model).
// No framework and no build step, so the service ships it as-is and it works offline.
"use strict";

const CONCURRENCY = 4; // images in flight at once: enough to fill the server's batches
const MAX_RETRIES = 3; // 503 "overloaded" answers carry Retry-After; honour it a few times
const TIFF_NAME = /\.(tiff?|czi|nd2|lif)$/i; // files a browser cannot show

const $ = (id) => document.getElementById(id);

/** A FIFO semaphore: at most `size` tasks run; the rest wait their turn in order. */
class Limiter {
  constructor(size) {
    this.free = size;
    this.waiting = [];
  }

  async run(task) {
    if (this.free > 0) this.free -= 1;
    else await new Promise((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free += 1;
    }
  }
}

const jobs = new Limiter(CONCURRENCY);
const extras = new Limiter(2); // masks asked for on demand should not wait behind a big batch

const state = {
  items: [],
  nextId: 1,
  model: null,
};

/* ---------- talking to the API ---------- */

class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorFrom(response) {
  let message = `${response.status} ${response.statusText || "error"}`;
  let code = "";
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code || "";
    }
  } catch {
    // not JSON (a proxy's page, say): keep the status line
  }
  return new ApiError(message, response.status, code);
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("aborted", "AbortError"));
    });
  });

/** fetch with the API key, the server's error message as the exception, and 503 retries. */
async function api(path, init = {}) {
  for (let attempt = 0; ; attempt += 1) {
    let response;
    try {
      response = await fetch(path, {
        ...init,
        headers: { ...authHeaders(), ...(init.headers || {}) },
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(`the server could not be reached (${error.message})`, 0, "network");
    }
    if (response.ok) return response;
    const retryAfter = Number(response.headers.get("Retry-After"));
    if (response.status === 503 && attempt < MAX_RETRIES && retryAfter > 0) {
      await sleep(Math.min(retryAfter, 10) * 1000, init.signal);
      continue;
    }
    throw await errorFrom(response);
  }
}

/** The options as query parameters; empty fields are left out, so the model's values apply. */
function readOptions() {
  const params = new URLSearchParams();
  const threshold = $("threshold").value.trim();
  if (threshold !== "") {
    const value = Number(threshold);
    if (!(value > 0 && value < 1)) throw new Error("Threshold must be between 0 and 1.");
    params.set("threshold", String(value));
  }
  const minArea = $("min-area").value.trim();
  if (minArea !== "") {
    const value = Number(minArea);
    if (!Number.isInteger(value) || value < 0) {
      throw new Error("Minimum area must be a whole number of pixels, 0 or more.");
    }
    params.set("min_area", String(value));
  }
  const channel = $("channel").value.trim();
  if (channel !== "") params.set("channel", channel);
  const z = $("z-plane").value.trim().toLowerCase();
  if (z !== "") {
    if (z !== "max" && !/^\d+$/.test(z)) throw new Error("Z must be a plane index or max.");
    params.set("z", z);
  }
  const t = $("t-point").value.trim();
  if (t !== "") {
    if (!/^\d+$/.test(t)) throw new Error("T must be a time-point index, 0 or more.");
    params.set("t", t);
  }
  const position = $("position").value.trim();
  if (position !== "") {
    if (!/^\d+$/.test(position)) throw new Error("Position must be an index, 0 or more.");
    params.set("position", position);
  }
  const pixelSize = $("pixel-size").value.trim();
  if (pixelSize !== "") {
    const value = Number(pixelSize);
    if (!(value > 0)) throw new Error("Pixel size must be a positive number of micrometres.");
    params.set("pixel_size_um", String(value));
  }
  if ($("split-touching").checked) params.set("split_touching", "true");
  if ($("exclude-border").checked) params.set("exclude_border", "true");
  return params;
}

function withParams(path, params, extra) {
  const query = new URLSearchParams(params);
  for (const [key, value] of Object.entries(extra)) query.set(key, value);
  return `${path}?${query}`;
}

/* ---------- the model ---------- */

async function loadModel() {
  const id = $("model-id");
  const device = $("model-device");
  try {
    const info = await (await api("/model")).json();
    state.model = info;
    id.textContent = info.id;
    id.title = info.path || info.id;
    device.textContent = `${info.device} · ${info.precision}`;
    $("model-info").classList.remove("is-error");
    const record = info.record || {};
    if (typeof record.threshold === "number") {
      $("threshold-default").textContent = record.threshold.toFixed(2);
      $("threshold").placeholder = record.threshold.toFixed(2);
      if ($("threshold").value === "") $("threshold-range").value = String(record.threshold);
    }
    if (typeof record.min_area === "number") {
      $("min-area-default").textContent = String(record.min_area);
      $("min-area").placeholder = String(record.min_area);
    }
  } catch (error) {
    device.textContent = "";
    if (error.status === 503) {
      id.textContent = "loading…";
      setTimeout(loadModel, 2000);
      return;
    }
    // A 401 means this service wants a key: say where it goes; the server's words in the tooltip.
    id.textContent = error.status === 401 ? "needs an API key (field on the left)" : error.message;
    id.title = error.message;
    $("model-info").classList.add("is-error");
  }
}

/* ---------- images and their cards ---------- */

const STATUS_TEXT = {
  queued: "queued",
  counting: "counting…",
  outlining: "outlining…",
  done: "done",
  error: "refused",
};

function createItem(file) {
  const id = state.nextId++;
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  const part = (role) => card.querySelector(`[data-role="${role}"]`);
  const item = {
    id,
    file,
    name: file.name || `image-${id}`,
    isTiff: file.type === "image/tiff" || TIFF_NAME.test(file.name || ""),
    originalUrl: URL.createObjectURL(file),
    originalBroken: false,
    urls: {}, // overlay / mask object URLs
    blobs: {},
    pending: {}, // in-flight PNG requests, so a click never asks twice
    problems: {}, // why an overlay or mask is missing, shown in place of the picture
    status: "queued",
    result: null,
    error: null,
    view: currentGlobalView(),
    controller: null,
    card,
    el: {
      status: part("status"),
      count: part("count"),
      image: part("image"),
      imageBox: part("image-box"),
      note: part("image-note"),
      highlight: part("highlight"),
      view: part("view"),
      error: part("error"),
      meta: part("meta"),
      rows: part("rows"),
      tableBox: part("table-box"),
      maskDownload: part("mask-download"),
      overlayDownload: part("overlay-download"),
    },
  };

  card.dataset.id = String(id);
  card.querySelector(".filename").textContent = item.name;
  card.querySelector(".filename").title = item.name;
  card.querySelector(".dims").textContent = formatBytes(file.size);
  card.querySelector("caption").textContent = `Cells found in ${item.name}`;
  item.el.tableBox.setAttribute("aria-label", `Cells of ${item.name}`);
  item.el.view.querySelector("legend").textContent = `Show for ${item.name}`;
  for (const radio of item.el.view.querySelectorAll("input")) {
    radio.name = `view-${id}`;
    radio.checked = radio.value === item.view;
    radio.addEventListener("change", () => setView(item, radio.value));
  }
  item.el.image.loading = "lazy";
  item.el.image.addEventListener("load", () => onImageLoad(item));
  item.el.image.addEventListener("error", () => onImageError(item));
  item.el.maskDownload.addEventListener("click", () => download(item, "mask"));
  item.el.overlayDownload.addEventListener("click", () => download(item, "overlay"));
  item.el.rows.addEventListener("mouseover", (event) => highlightRow(item, event));
  item.el.rows.addEventListener("mouseleave", () => (item.el.highlight.hidden = true));
  showImage(item);
  return item;
}

/** A count, or a dimmed dash while there is none yet. */
function setNumber(element, value) {
  element.textContent = value === null ? "–" : String(value);
  element.classList.toggle("is-empty", value === null);
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A 4xx is the server saying no to this file; anything else (5xx, network) is a failure. */
function isRefusal(error) {
  return Boolean(error) && error.status >= 400 && error.status < 500;
}

function setStatus(item, status) {
  item.status = status;
  item.card.dataset.status = status;
  const failed = status === "error" && !isRefusal(item.error);
  item.el.status.textContent = failed ? "failed" : STATUS_TEXT[status];
  showImage(item);
  updateSummary();
}

/** The current options, or null after showing why they are invalid. */
function optionsOrReport() {
  try {
    const params = readOptions();
    $("options-error").textContent = "";
    return params;
  } catch (error) {
    $("options-error").textContent = error.message;
    return null;
  }
}

function addFiles(fileList) {
  const files = Array.from(fileList || []);
  if (files.length === 0) return;
  const params = optionsOrReport();
  if (params === null) return;
  const fragment = document.createDocumentFragment();
  const added = files.map(createItem);
  for (const item of added) fragment.append(item.card);
  $("results").append(fragment);
  state.items.push(...added);
  for (const item of added) enqueue(item, params);
  updateSummary();
}

function enqueue(item, params) {
  const controller = new AbortController();
  item.controller = controller;
  item.params = params;
  jobs
    .run(() => (controller.signal.aborted ? null : process(item, controller.signal)))
    .catch((error) => {
      if (error.name !== "AbortError") console.error(error);
    });
}

/** Count (with the cell table) first, so the number shows early; then fetch the overlay. */
async function process(item, signal) {
  setStatus(item, "counting");
  const form = new FormData();
  form.append("files", item.file, item.name);
  let result;
  try {
    const response = await api(withParams("/count", item.params, { include_cells: "true" }), {
      method: "POST",
      body: form,
      signal,
    });
    result = (await response.json()).results[0];
  } catch (error) {
    if (signal.aborted) return;
    item.error = error;
    showError(item);
    setStatus(item, "error");
    return;
  }
  if (signal.aborted) return;
  item.result = result;
  showResult(item);
  setStatus(item, "outlining");
  if (item.view === "mask") requestMask(item);
  try {
    await fetchPng(item, "overlay", signal);
  } catch (error) {
    if (signal.aborted) return;
    item.problems.overlay = `No overlay: ${error.message}`;
  }
  setStatus(item, "done");
  showImage(item);
}

/** One PNG from /segment (overlay or mask), cached as an object URL for display and download. */
function fetchPng(item, output, signal) {
  if (item.urls[output]) return Promise.resolve(item.urls[output]);
  if (!item.pending[output]) {
    const form = new FormData();
    form.append("file", item.file, item.name);
    const path = withParams("/segment", item.params, { output });
    const generation = item.controller;
    item.pending[output] = api(path, { method: "POST", body: form, signal })
      .then((response) => response.blob())
      .then((blob) => {
        if (item.controller !== generation) throw new DOMException("stale", "AbortError");
        item.blobs[output] = blob;
        item.urls[output] = URL.createObjectURL(blob);
        (output === "mask" ? item.el.maskDownload : item.el.overlayDownload).disabled = false;
        return item.urls[output];
      });
    const request = item.pending[output];
    request
      .finally(() => {
        if (item.pending[output] === request) delete item.pending[output];
      })
      .catch(() => {}); // the caller handles the failure; this branch only tidies up
  }
  return item.pending[output];
}

function showResult(item) {
  const { result, el } = item;
  setNumber(el.count, result.count);
  item.card.querySelector(".dims").textContent =
    `${result.width} × ${result.height} px · ${formatBytes(item.file.size)}`;
  const options = [`threshold ${result.threshold.toFixed(2)}`, `min area ${result.min_area}`];
  const plane = result.plane;
  if (plane && plane.channel_source !== "only") {
    options.unshift(`channel ${plane.channel_name ?? plane.channel}`);
  }
  if (plane && plane.z !== null) options.push(`z ${plane.z}`);
  if (plane && plane.t !== null) options.push(`t ${plane.t}`);
  if (plane && plane.position !== null) options.push(`position ${plane.position}`);
  if (result.density_per_mm2 !== null && result.density_per_mm2 !== undefined) {
    options.push(`${Math.round(result.density_per_mm2)} cells/mm²`);
  }
  if (result.split_touching) options.push("touching split");
  if (result.exclude_border) options.push("border cells excluded");
  el.meta.textContent = options.join(" · ");
  el.maskDownload.disabled = false;
  renderRows(item);
}

function renderRows(item) {
  const rows = document.createDocumentFragment();
  const cells = item.result.cells || [];
  cells.forEach((cell, index) => {
    const row = document.createElement("tr");
    row.dataset.index = String(index);
    const values = [
      cell.id,
      cell.area,
      cell.centroid[0].toFixed(1),
      cell.centroid[1].toFixed(1),
      ...cell.bbox,
    ];
    for (const value of values) {
      const td = document.createElement("td");
      td.textContent = String(value);
      row.append(td);
    }
    rows.append(row);
  });
  if (cells.length === 0) {
    const row = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 8;
    td.className = "no-cells";
    td.textContent = "No cells found with these options.";
    row.append(td);
    rows.append(row);
  }
  item.el.rows.replaceChildren(rows);
}

function showError(item) {
  const { error, el } = item;
  el.error.hidden = false;
  el.error.replaceChildren();
  const message = document.createElement("span");
  message.className = "error-message";
  message.textContent = error.message;
  el.error.append(message);
  if (error.code || error.status) {
    const code = document.createElement("span");
    code.className = "error-code";
    code.textContent = [error.status || "", error.code].filter(Boolean).join(" ");
    el.error.append(code);
  }
  el.tableBox.hidden = true;
  setNumber(el.count, null);
  showImage(item);
}

/* ---------- what the image box shows ---------- */

function currentGlobalView() {
  const checked = document.querySelector('input[name="global-view"]:checked');
  return checked ? checked.value : "overlay";
}

function setView(item, view) {
  item.view = view;
  for (const radio of item.el.view.querySelectorAll("input")) radio.checked = radio.value === view;
  if (view === "mask") requestMask(item);
  showImage(item);
}

/** Masks are fetched only when someone looks at one or downloads it. */
function requestMask(item) {
  if (!item.result || item.urls.mask || item.pending.mask || item.problems.mask) return;
  extras
    .run(() => fetchPng(item, "mask", item.controller?.signal))
    .catch((error) => {
      if (error.name !== "AbortError") item.problems.mask = `No mask: ${error.message}`;
    })
    .finally(() => showImage(item));
}

const WAITING_NOTE = { queued: "queued", counting: "counting…", outlining: "outlining…" };

/** Pick the picture for the chosen view, falling back to what exists (TIFF: no original). */
function showImage(item) {
  const { el, urls } = item;
  const canShowOriginal = !item.isTiff && !item.originalBroken;
  const want = item.view;
  let shown = "";
  if (want === "mask" && urls.mask) shown = "mask";
  else if (want === "original" && canShowOriginal) shown = "original";
  else if (urls.overlay) shown = "overlay";
  else if (canShowOriginal) shown = "original";
  const source = shown === "original" ? item.originalUrl : urls[shown];

  let note = "";
  if (item.status === "error") note = shown ? "" : "No preview";
  else if (want === "mask" && !urls.mask) {
    note = item.problems.mask || (item.result ? "loading mask…" : WAITING_NOTE[item.status]);
  } else if (want === "original" && !canShowOriginal) {
    note = item.isTiff
      ? "Browsers cannot show TIFF: showing the overlay"
      : "The browser cannot show this file: showing the overlay";
  } else if (shown !== want) note = item.problems.overlay || WAITING_NOTE[item.status] || "";

  el.image.dataset.view = shown;
  if (source) {
    if (el.image.getAttribute("src") !== source) el.image.src = source;
    el.image.hidden = false;
  } else {
    el.image.removeAttribute("src");
    el.image.hidden = true;
  }
  const alts = {
    original: `${item.name} as uploaded`,
    overlay: `${item.name} with ${item.result?.count} cells outlined`,
    mask: `Mask of ${item.name}`,
  };
  el.image.alt = alts[shown] || "";
  el.note.textContent = note;
  el.note.hidden = note === "";
  // The uploaded picture stands in, dimmed, until the overlay or mask asked for arrives.
  item.card.classList.toggle(
    "is-standin",
    shown === "original" && want !== "original" && item.status !== "error",
  );
  item.card.classList.toggle("has-preview", Boolean(source));
}

function onImageLoad(item) {
  const img = item.el.image;
  const box = item.el.imageBox;
  // Nearest-neighbour only when enlarging: it keeps one-pixel outlines crisp, whereas shrinking
  // that way could drop them.
  const enlarged = img.naturalWidth < box.clientWidth && img.naturalHeight < box.clientHeight;
  img.classList.toggle("pixelated", enlarged);
}

function onImageError(item) {
  if (item.el.image.getAttribute("src") === item.originalUrl) {
    item.originalBroken = true;
    showImage(item);
  }
}

/** Outline a cell's bounding box on the picture while its table row is under the pointer. */
function highlightRow(item, event) {
  const row = event.target.closest("tr[data-index]");
  const cells = item.result?.cells;
  if (!row || !cells) return;
  const [x, y, w, h] = cells[Number(row.dataset.index)].bbox;
  const box = item.el.imageBox;
  const { width, height } = item.result;
  const scale = Math.min(box.clientWidth / width, box.clientHeight / height);
  const left = (box.clientWidth - width * scale) / 2;
  const top = (box.clientHeight - height * scale) / 2;
  const mark = item.el.highlight;
  mark.style.left = `${left + x * scale - 3}px`;
  mark.style.top = `${top + y * scale - 3}px`;
  mark.style.width = `${w * scale + 6}px`;
  mark.style.height = `${h * scale + 6}px`;
  mark.hidden = false;
}

/* ---------- summary, downloads, clearing ---------- */

function updateSummary() {
  const items = state.items;
  const finished = items.filter((item) => item.status === "done" || item.status === "error");
  const errors = items.filter((item) => item.status === "error");
  const refused = errors.filter((item) => isRefusal(item.error)).length;
  const failed = errors.length - refused;
  const running = items.length - finished.length;
  const progress = $("progress");
  progress.max = Math.max(items.length, 1);
  progress.value = finished.length;
  let text = "No images yet";
  if (items.length > 0) {
    text = `${finished.length} / ${items.length} done`;
    if (refused) text += ` · ${refused} refused`;
    if (failed) text += ` · ${failed} failed`;
  }
  $("progress-text").textContent = text;
  const counted = items.filter((item) => item.result);
  setNumber(
    $("total-cells"),
    counted.length ? counted.reduce((sum, item) => sum + item.result.count, 0) : null,
  );
  $("csv-button").disabled = finished.length === 0;
  $("clear-button").disabled = items.length === 0;
  $("recount-button").disabled = items.length === 0;
  $("empty-state").hidden = items.length > 0;
  document.body.classList.toggle("is-busy", running > 0);
}

function csvField(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The CLI's columns, so both CSVs can be merged. */
const CSV_COLUMNS = [
  "filename", "count", "width", "height", "channel", "channel_name", "z", "t", "position",
  "pixel_size_um", "image_area_mm2", "density_per_mm2", "mean_cell_area_um2", "error",
];

function csvRow(item) {
  const r = item.result;
  const error = item.error ? item.error.message : r ? "" : "not counted yet";
  const values = { ...(r || {}), ...((r && r.plane) || {}), filename: item.name, error };
  return CSV_COLUMNS.map((column) => (r || column === "filename" || column === "error"
    ? values[column] : ""));
}

function countsCsv() {
  const lines = [CSV_COLUMNS.join(",")];
  for (const item of state.items) lines.push(csvRow(item).map(csvField).join(","));
  return `${lines.join("\n")}\n`;
}

function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function download(item, output) {
  const button = output === "mask" ? item.el.maskDownload : item.el.overlayDownload;
  const stem = item.name.replace(/\.[^.]+$/, "");
  button.disabled = true;
  try {
    await extras.run(() => fetchPng(item, output, item.controller?.signal));
    saveBlob(item.blobs[output], `${stem}_${output}.png`);
  } catch (error) {
    if (error.name !== "AbortError") {
      item.problems[output] = `No ${output}: ${error.message}`;
      showImage(item);
    }
  } finally {
    button.disabled = false;
  }
}

function forgetResults(item) {
  item.controller?.abort();
  for (const url of Object.values(item.urls)) URL.revokeObjectURL(url);
  item.urls = {};
  item.blobs = {};
  item.pending = {};
  item.problems = {};
  item.result = null;
  item.error = null;
}

function clearAll() {
  for (const item of state.items) {
    forgetResults(item);
    URL.revokeObjectURL(item.originalUrl);
  }
  state.items = [];
  $("results").replaceChildren();
  updateSummary();
}

function recountAll() {
  const params = optionsOrReport();
  if (params === null) return;
  for (const item of state.items) {
    forgetResults(item);
    item.el.error.hidden = true;
    item.el.tableBox.hidden = false;
    item.el.rows.replaceChildren();
    setNumber(item.el.count, null);
    item.el.meta.textContent = "";
    item.el.maskDownload.disabled = true;
    item.el.overlayDownload.disabled = true;
    setStatus(item, "queued");
    showImage(item);
    enqueue(item, params);
  }
}

/* ---------- wiring ---------- */

function wireThreshold() {
  const number = $("threshold");
  const range = $("threshold-range");
  range.addEventListener("input", () => {
    number.value = Number(range.value).toFixed(2);
    range.classList.remove("is-default");
  });
  number.addEventListener("input", () => {
    const value = Number(number.value);
    const empty = number.value.trim() === "";
    if (!empty && value > 0 && value < 1) range.value = String(value);
    range.classList.toggle("is-default", empty);
  });
  $("threshold-reset").addEventListener("click", () => {
    number.value = "";
    range.value = String(state.model?.record?.threshold ?? 0.5);
    range.classList.add("is-default");
  });
}

function wireDropZone() {
  const zone = $("drop-zone");
  const input = $("file-input");
  const openPicker = () => input.click();
  // A real <button>: Enter and Space click it, with the user activation the picker needs.
  zone.addEventListener("click", openPicker);
  $("choose-button").addEventListener("click", openPicker);
  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = ""; // choosing the same files again must fire "change" again
  });
  // Files dropped anywhere count (a near miss must not make the browser open the image instead).
  let depth = 0;
  window.addEventListener("dragenter", (event) => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    depth += 1;
    zone.classList.add("dragging");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(depth - 1, 0);
    if (depth === 0) zone.classList.remove("dragging");
  });
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    zone.classList.remove("dragging");
    addFiles(event.dataTransfer?.files);
  });
}

function init() {
  wireDropZone();
  wireThreshold();
  for (const radio of document.querySelectorAll('input[name="global-view"]')) {
    radio.addEventListener("change", () => {
      for (const item of state.items) setView(item, radio.value);
    });
  }
  $("csv-button").addEventListener("click", () =>
    saveBlob(new Blob([countsCsv()], { type: "text/csv" }), "cell-counts.csv"),
  );
  $("clear-button").addEventListener("click", clearAll);
  $("recount-button").addEventListener("click", recountAll);
  $("api-key").addEventListener("change", loadModel);
  updateSummary();
  loadModel();
}

init();
