// The page: sign in with an API key, build an export, watch it, cancel it, download it, and see
// the history. It uses the public API only; what it does, any client can do.

import { ApiError, NetworkError, api, keyStore, serverNow, toJson } from "./api.js";
import { clear, el, formatBytes, formatCount, formatDuration, formatTime } from "./dom.js";
import { ExportForm, FieldError } from "./form.js";

const POLL_MS = 1000; // a status poll costs the API about a millisecond
const RATE_WINDOW_MS = 10_000; // rows/s over the last ten seconds of polls
const LINK_MARGIN_MS = 5_000; // a download link this close to its expiry is signed again first

const $ = (id) => document.getElementById(id);

const state = {
  form: null,
  exports: new Map(), // id → the export's latest JSON
  order: [], // the history's ids, newest first
  cursor: null, // the next page of the history
  watched: new Set(), // unfinished exports, polled
  samples: new Map(), // id → [{t, rows}] for rows/s
  currentId: null,
  inline: null, // the last inline answer: {filename, rows, bytes}
  pollTimer: null,
  tick: null,
  pending: null, // {body, key}: the Idempotency-Key of a submission until the API answers it
};

// ---- signing in and out ------------------------------------------------------------------

async function start() {
  state.form = new ExportForm($("export-form"));
  $("signin-form").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("export-form").addEventListener("submit", onSubmit);
  $("current-cancel").addEventListener("click", () => cancel(state.currentId));
  $("current-download").addEventListener("click", onDownloadLink);
  $("history-more").addEventListener("click", () => loadHistory(state.cursor));
  $("history-refresh").addEventListener("click", () => loadHistory(null));
  if (keyStore.get()) await openWorkspace();
  else showSignIn();
}

function showSignIn(message = "") {
  $("workspace").hidden = true;
  $("signin").hidden = false;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("signin-error").textContent = message;
  $("signin-key").focus();
}

async function onSignIn(event) {
  event.preventDefault();
  const key = $("signin-key").value.trim();
  if (!key) {
    $("signin-error").textContent = "Paste an API key (make key OWNER=<name> prints one).";
    return;
  }
  keyStore.set(key);
  $("signin-key").value = "";
  await openWorkspace();
}

async function openWorkspace() {
  let catalogue;
  try {
    catalogue = await api.datasets();
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) {
      keyStore.clear();
      showSignIn("This key was refused: it is unknown or revoked.");
    } else {
      showSignIn(`Could not reach the API: ${exc.message}`);
      if (!(exc instanceof ApiError)) keyStore.clear();
    }
    return;
  }
  $("signin").hidden = true;
  $("workspace").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = "Signed in";
  state.form.load(catalogue);
  state.tick = setInterval(renderCurrent, 1000); // the elapsed time moves between polls too
  await loadHistory(null);
  const running = state.order.find((id) => !state.exports.get(id).finished);
  if (running) {
    state.currentId = running; // resume watching after a reload
    renderCurrent();
  }
  $("dataset").focus();
}

function signOut(message = "Signed out.") {
  keyStore.clear();
  clearTimeout(state.pollTimer);
  clearInterval(state.tick);
  Object.assign(state, {
    exports: new Map(), order: [], cursor: null, watched: new Set(), samples: new Map(),
    currentId: null, inline: null, pollTimer: null, tick: null, pending: null,
  });
  clear($("history-rows"));
  clear($("filters"));
  $("current").hidden = true;
  $("submit-status").textContent = "";
  $("form-error").textContent = "";
  showSignIn(message);
}

/** What every failed request does first: a refused key ends the session. */
function handleAuth(exc) {
  if (exc instanceof ApiError && exc.status === 401) {
    signOut("Your key was refused (revoked or unknown): sign in again.");
    return true;
  }
  return false;
}

// ---- creating an export ------------------------------------------------------------------

function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function onSubmit(event) {
  event.preventDefault();
  const button = $("submit");
  if (button.disabled) return; // a second click while the first is on its way
  state.form.clearErrors();
  $("form-error").textContent = "";
  let spec;
  try {
    spec = state.form.toSpec();
  } catch (exc) {
    if (!(exc instanceof FieldError)) throw exc;
    showFormError(exc.field, exc.message);
    return;
  }
  // The same request keeps its key until the API answers it: a retry after a lost answer
  // finds the export the first attempt created instead of running the query again.
  const body = toJson(spec);
  if (state.pending?.body !== body) state.pending = { body, key: newIdempotencyKey() };
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  $("submit-status").textContent = "Sending…";
  try {
    const response = await api.create(spec, state.pending.key);
    state.pending = null;
    if (response.status === 202) {
      const exported = await response.json();
      $("submit-status").textContent = `Export ${exported.id} accepted.`;
      state.inline = null;
      track(exported, true);
    } else {
      await saveInline(response, spec);
    }
  } catch (exc) {
    $("submit-status").textContent = "";
    if (exc instanceof NetworkError) {
      $("form-error").textContent = `${exc.message}. Press Export again: a retry does not run the export twice.`;
    } else if (exc instanceof ApiError) {
      state.pending = null;
      if (!handleAuth(exc)) {
        const wait = exc.retryAfter ? ` (retry in ${exc.retryAfter} s)` : "";
        showFormError(exc.field, exc.message + wait);
      }
    } else {
      throw exc;
    }
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function showFormError(field, message) {
  if (!state.form.showError(field, message)) {
    $("form-error").textContent = message;
    $("form-error").focus?.();
  }
}

function dispositionName(header) {
  if (!header) return null;
  const star = /filename\*=UTF-8''([^;]+)/i.exec(header);
  if (star) return decodeURIComponent(star[1]);
  const plain = /filename="([^"]*)"/i.exec(header);
  return plain ? plain[1] : null;
}

/** An inline answer is the file itself: save it at once. */
async function saveInline(response, spec) {
  const blob = await response.blob();
  const filename = dispositionName(response.headers.get("Content-Disposition")) || spec.filename || "export";
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  const rows = Number(response.headers.get("X-Spillway-Rows"));
  state.inline = { filename, rows: Number.isFinite(rows) ? rows : null, bytes: blob.size };
  state.currentId = null;
  $("submit-status").textContent = `${filename} downloaded.`;
  renderCurrent();
}

// ---- watching ----------------------------------------------------------------------------

function remember(exported) {
  state.exports.set(exported.id, exported);
  const samples = state.samples.get(exported.id) || [];
  const now = Date.now();
  samples.push({ t: now, rows: exported.progress.rows_done });
  while (samples.length > 2 && now - samples[0].t > RATE_WINDOW_MS) samples.shift();
  state.samples.set(exported.id, samples);
  if (exported.finished) state.watched.delete(exported.id);
  else state.watched.add(exported.id);
}

function track(exported, makeCurrent = false) {
  remember(exported);
  if (!state.order.includes(exported.id)) state.order.unshift(exported.id);
  if (makeCurrent) state.currentId = exported.id;
  render();
  schedulePoll();
}

function schedulePoll() {
  if (state.pollTimer === null && state.watched.size && keyStore.get()) {
    state.pollTimer = setTimeout(poll, POLL_MS);
  }
}

async function poll() {
  state.pollTimer = null;
  await Promise.all(
    [...state.watched].map(async (id) => {
      try {
        remember(await api.export(id));
      } catch (exc) {
        if (handleAuth(exc)) return;
        if (exc instanceof ApiError && exc.status === 404) state.watched.delete(id);
        // anything else (the API restarting, a network blip): the next poll tries again
      }
    }),
  );
  if (!keyStore.get()) return;
  render();
  schedulePoll();
}

function rowsPerSecond(exported) {
  const samples = state.samples.get(exported.id) || [];
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (!exported.finished && first && last.t - first.t >= 1500 && last.rows > first.rows) {
    return (last.rows - first.rows) / ((last.t - first.t) / 1000);
  }
  const started = Date.parse(exported.started_at || "");
  if (Number.isNaN(started)) return null;
  const end = exported.finished_at ? Date.parse(exported.finished_at) : serverNow();
  const seconds = (end - started) / 1000;
  return seconds > 0 && exported.progress.rows_done ? exported.progress.rows_done / seconds : null;
}

function elapsedSeconds(exported) {
  const begun = Date.parse(exported.started_at || exported.created_at);
  const end = exported.finished_at ? Date.parse(exported.finished_at) : serverNow();
  return Math.max(0, (end - begun) / 1000);
}

const STATUS_TEXT = {
  queued: "Queued",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
  expired: "Expired",
};

function statusBadge(node, status) {
  node.textContent = STATUS_TEXT[status] || status;
  node.className = `status status-${status}`;
}

// ---- the current export ------------------------------------------------------------------

function render() {
  renderCurrent();
  renderHistory();
}

function renderCurrent() {
  const panel = $("current");
  const exported = state.exports.get(state.currentId);
  if (!exported) {
    panel.hidden = !state.inline;
    delete panel.dataset.exportId;
    if (state.inline) renderInline(state.inline);
    return;
  }
  panel.hidden = false;
  panel.dataset.exportId = exported.id;
  $("current-progress-area").hidden = false;
  $("current-filename").textContent = exported.filename;
  statusBadge($("current-status"), exported.status);
  const p = exported.progress;
  const progress = $("current-progress");
  progress.value = p.percent;
  progress.setAttribute("aria-valuetext", `${p.percent} percent`);
  $("current-percent").textContent = `${p.percent} %`;
  $("current-rows").textContent =
    p.total_rows === null ? formatCount(p.rows_done) : `${formatCount(p.rows_done)} of ${formatCount(p.total_rows)}`;
  const rate = rowsPerSecond(exported);
  $("current-rate").textContent = rate ? `${formatCount(Math.round(rate))} rows/s` : "—";
  const remaining = p.total_rows === null ? null : Math.max(0, p.total_rows - p.rows_done);
  $("current-eta").textContent =
    exported.finished ? "—" : rate && remaining !== null ? formatDuration(remaining / rate) : "—";
  $("current-parts").textContent = p.parts_total === null ? "—" : `${p.parts_done} of ${p.parts_total}`;
  $("current-elapsed").textContent = formatDuration(elapsedSeconds(exported));
  $("current-size").textContent = formatBytes(exported.status === "completed" ? exported.object_bytes : p.bytes_done);
  $("current-message").textContent = currentMessage(exported);
  $("current-cancel").hidden = exported.finished;
  const link = $("current-download");
  const download = exported.status === "completed" ? exported.download : null;
  link.hidden = !download;
  if (download) {
    link.href = download.url;
    link.setAttribute("download", exported.filename);
    $("current-expiry").textContent = `Link valid until ${formatTime(download.expires_at)}`;
  } else {
    link.removeAttribute("href");
    $("current-expiry").textContent = "";
  }
}

function currentMessage(exported) {
  switch (exported.status) {
    case "queued":
      return "Waiting for a worker…";
    case "failed":
      return `The export failed: ${exported.error || "no reason was recorded"}`;
    case "cancelled":
      return "Cancelled.";
    case "expired":
      return "Expired: its file was deleted. Create a new export.";
    case "completed":
      return exported.download_error ? exported.download_error.message : "Ready to download.";
    default:
      return "";
  }
}

function renderInline(inline) {
  $("current-filename").textContent = inline.filename;
  statusBadge($("current-status"), "completed");
  $("current-progress-area").hidden = true;
  const rows = inline.rows === null ? "" : `${formatCount(inline.rows)} rows, `;
  $("current-message").textContent = `Answered at once and saved by your browser: ${rows}${formatBytes(inline.bytes)}.`;
  $("current-cancel").hidden = true;
  $("current-download").hidden = true;
  $("current-expiry").textContent = "";
}

async function onDownloadLink(event) {
  const exported = state.exports.get(state.currentId);
  const expires = Date.parse(exported?.download?.expires_at || "");
  if (!Number.isNaN(expires) && expires - serverNow() > LINK_MARGIN_MS) return; // the link is fresh
  event.preventDefault();
  await download(state.currentId);
}

/** Sign a fresh link (GET /exports/<id> checks the object) and let the browser fetch the file. */
async function download(id) {
  try {
    const exported = await api.export(id);
    remember(exported);
    render();
    if (exported.download) window.location.assign(exported.download.url);
    else $("history-error").textContent = exported.download_error?.message || `${exported.filename} is not ready`;
  } catch (exc) {
    if (!handleAuth(exc)) $("history-error").textContent = `Could not download: ${exc.message}`;
  }
}

async function cancel(id) {
  const exported = state.exports.get(id);
  if (!exported || exported.finished) return;
  try {
    remember(await api.cancel(id));
  } catch (exc) {
    if (handleAuth(exc)) return;
    if (exc instanceof ApiError && exc.status === 409) remember(await api.export(id)); // it finished first
    else $("history-error").textContent = `Could not cancel ${exported.filename}: ${exc.message}`;
  }
  render();
}

// ---- history -----------------------------------------------------------------------------

async function loadHistory(cursor) {
  $("history-error").textContent = "";
  let page;
  try {
    page = await api.exports(cursor);
  } catch (exc) {
    if (!handleAuth(exc)) $("history-error").textContent = `Could not load your exports: ${exc.message}`;
    return;
  }
  const ids = page.exports.map((e) => e.id);
  for (const exported of page.exports) remember(exported);
  if (cursor) {
    state.order.push(...ids.filter((id) => !state.order.includes(id)));
  } else {
    // the newest page again: new exports go on top, older pages already shown stay
    state.order = [...ids, ...state.order.filter((id) => !ids.includes(id))];
  }
  if (cursor || state.cursor === null) state.cursor = page.next_cursor;
  $("history-more").hidden = !state.cursor;
  render();
  schedulePoll();
}

function renderHistory() {
  const body = $("history-rows");
  $("history-empty").hidden = state.order.length > 0;
  $("history-table").hidden = state.order.length === 0;
  const rows = new Map([...body.children].map((tr) => [tr.dataset.id, tr]));
  let previous = null;
  for (const id of state.order) {
    const tr = rows.get(id) || historyRow(id);
    updateRow(tr, state.exports.get(id));
    if (previous ? previous.nextElementSibling !== tr : body.firstElementChild !== tr) {
      if (previous) previous.after(tr);
      else body.prepend(tr);
    }
    previous = tr;
  }
}

function historyRow(id) {
  const cell = (label, name) => el("td", { "data-label": label, "data-cell": name });
  const watch = el("button", { type: "button", class: "secondary small", "data-action": "watch" }, "Show");
  const get = el("button", { type: "button", class: "small", "data-action": "download" }, "Download");
  const stop = el("button", { type: "button", class: "danger small", "data-action": "cancel" }, "Cancel");
  watch.addEventListener("click", () => {
    state.currentId = id;
    state.inline = null;
    renderCurrent();
    $("current").scrollIntoView({ block: "nearest" });
  });
  get.addEventListener("click", () => download(id));
  stop.addEventListener("click", () => cancel(id));
  const actions = el("td", { "data-label": "", class: "row-actions" }, watch, get, stop);
  return el(
    "tr",
    { "data-id": id },
    cell("Created", "created"),
    cell("File", "file"),
    cell("Status", "status"),
    cell("Rows", "rows"),
    cell("Size", "size"),
    cell("Finished", "finished"),
    actions,
  );
}

function updateRow(tr, exported) {
  const set = (name, text) => {
    const td = tr.querySelector(`[data-cell=${name}]`);
    if (td.textContent !== text) td.textContent = text;
  };
  const p = exported.progress;
  set("created", formatTime(exported.created_at));
  set("file", `${exported.filename} (${exported.dataset})`);
  const status = STATUS_TEXT[exported.status] || exported.status;
  set("status", exported.finished ? status : `${status} ${p.percent} %`);
  tr.querySelector("[data-cell=status]").className = `status-cell status-${exported.status}`;
  const ofTotal = p.total_rows === null ? "" : ` of ${formatCount(p.total_rows)}`; // null while a plan is streamed
  set("rows", exported.status === "completed" ? formatCount(p.total_rows) : `${formatCount(p.rows_done)}${ofTotal}`);
  set("size", formatBytes(exported.object_bytes));
  set("finished", formatTime(exported.finished_at));
  const labels = `${exported.filename}, ${formatTime(exported.created_at)}`;
  for (const button of tr.querySelectorAll("button")) {
    const action = button.dataset.action;
    button.hidden =
      (action === "download" && exported.status !== "completed") ||
      (action === "cancel" && exported.finished) ||
      (action === "watch" && exported.id === state.currentId);
    button.setAttribute("aria-label", `${button.textContent} ${labels}`);
  }
}

start();
