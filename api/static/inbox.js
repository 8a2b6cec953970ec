// The approver's inbox, over the public API: GET /v1/approvals, GET /v1/runs/{id},
// POST /v1/runs/{id}/approvals, and GET /v1/events to reload the list when something changes.
//
// Everything the server sends is data: the DOM is built with textContent and append(), never
// innerHTML. The token, when one is pasted, lives in sessionStorage only (gone with the tab, never
// in localStorage or the URL). Without one, requests carry no Authorization header, so an
// organisation's proxy can add its own.
(() => {
  "use strict";

  const TOKEN_KEY = "steward.inbox.token";
  const PAGE_SIZE = 50;
  // The inbox pages through runs and keeps those the caller may decide, so a page can be empty
  // while later ones are not; follow a few before saying "nothing is waiting".
  const MAX_EMPTY_PAGES = 5;

  // The events after which the list may read differently (GET /v1/events/types describes them).
  const LIST_EVENTS = [
    "approval.requested", "approval.escalated", "approval.voted", "approval.decided", "approval.withdrawn",
    "run.completed", "run.failed", "run.cancelled", "run.timed_out",
  ];
  // One decision brings several events at once (voted, decided, completed): one reload for them all.
  const BURST_MS = 200;
  // The list is served from Temporal's visibility, which can trail an event by a moment: look once more.
  const SETTLE_MS = 2_000;
  const RETRY_FIRST_MS = 1_000;
  const RETRY_MAX_MS = 30_000;

  const MESSAGES = {
    unauthenticated: "Your token is missing or expired — paste a new one.",
    alreadyVoted: "You have already voted on this approval.",
    notPending: "This approval has already been decided or the run has ended.",
    unreachable: "Steward is not reachable. Check your connection and try again.",
    notFound: "This run no longer exists, or it is not visible to you.",
    engineDown: "Steward cannot reach its workflow engine right now. Try again shortly.",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    session: $("session"),
    forgetToken: $("forget-token"),
    tokenForm: $("token-form"),
    token: $("token"),
    receipt: $("receipt"),
    receiptHeading: $("receipt-heading"),
    receiptFields: $("receipt-fields"),
    receiptClose: $("receipt-close"),
    listView: $("list-view"),
    listHeading: $("list-heading"),
    refresh: $("refresh"),
    empty: $("empty"),
    items: $("items"),
    more: $("more"),
    detail: $("detail"),
    detailClose: $("detail-close"),
    detailTitle: $("detail-title"),
    detailMeta: $("detail-meta"),
    detailSummary: $("detail-summary"),
    detailShown: $("detail-shown"),
    detailLlm: $("detail-llm"),
    detailDigest: $("detail-digest"),
    decideForm: $("decide-form"),
    comment: $("comment"),
    decideError: $("decide-error"),
  };

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    items: new Map(), // "run_id/approval_key" → inbox item, in the server's order
    decided: new Set(), // keys decided (or found decided) here: a lagging list must not bring them back
    nextPageToken: null,
    pagesLoaded: 0,
    listLoaded: false, // the list stays hidden until the API has answered once
    loading: false,
    current: null, // the item open in the detail view
    drafts: new Map(), // key → comment typed, so Escape does not throw a half-written comment away
    blobUrls: [],
    queuedReload: null, // a reload asked for while another ran: {announce, focusList}
  };

  const live = {
    controller: null, // the open stream's: aborting it ends the stream
    retryTimer: null,
    retryMs: RETRY_FIRST_MS,
    lastEventId: null, // position in the tenant's log: a reconnect resumes after it
    stale: false, // something happened that the list on screen may not show yet
    burstTimer: null,
    settleTimer: null,
  };

  // --- talking to the API ------------------------------------------------------------------

  class Refusal extends Error {
    constructor(status, code, message, details) {
      super(message || `HTTP ${status}`);
      this.status = status;
      this.code = code;
      this.details = details;
    }
  }

  async function api(path, { method = "GET", body, raw = false } = {}) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch {
      throw new Refusal(0, "unreachable", MESSAGES.unreachable);
    }
    if (response.ok) return raw ? response : response.json();
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // Not Steward's error shape (a proxy's page, say): the status alone must do.
    }
    throw new Refusal(response.status, error.code, error.message, error.details);
  }

  function sentence(text) {
    const trimmed = String(text || "").trim();
    if (!trimmed) return "";
    const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(capital) ? capital : `${capital}.`;
  }

  // A refusal in the words an approver would use; codes stay out of sight.
  function plainWords(refusal) {
    if (!(refusal instanceof Refusal)) return "Something went wrong in this page. Reload it and try again.";
    switch (refusal.status) {
      case 0:
        return MESSAGES.unreachable;
      case 401:
        return MESSAGES.unauthenticated;
      case 403:
        return sentence(refusal.message) || "You are not allowed to decide this approval.";
      case 404:
        return MESSAGES.notFound;
      case 409:
        if (refusal.code === "already_voted") return MESSAGES.alreadyVoted;
        if (refusal.code === "not_pending") return MESSAGES.notPending;
        return sentence(refusal.message);
      case 422:
        return `Steward did not accept this: ${sentence(refusal.message)}`;
      case 503:
        return MESSAGES.engineDown;
      default:
        return refusal.status >= 500
          ? `Steward had a problem (HTTP ${refusal.status}). Try again; if it persists, tell your administrator.`
          : sentence(refusal.message) || `Steward refused the request (HTTP ${refusal.status}).`;
    }
  }

  // --- small DOM helpers ---------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child); // strings become text nodes
    }
    return node;
  }

  function field(dl, label, ...value) {
    dl.append(el("dt", {}, label), el("dd", {}, ...value));
  }

  function setStatus(text, kind = "") {
    ui.status.textContent = text;
    ui.status.className = kind ? `status ${kind}` : "status";
  }

  const keyOf = (item) => `${item.run_id}/${item.approval_key}`;

  // --- time -----------------------------------------------------------------------------------

  function exactUtc(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
  }

  const plural = (n, unit) => `${n} ${unit}${n === 1 ? "" : "s"}`;

  function duration(iso) {
    const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (seconds < 60) return "less than a minute";
    if (seconds < 3600) return plural(Math.floor(seconds / 60), "minute");
    if (seconds < 86400) return plural(Math.floor(seconds / 3600), "hour");
    return plural(Math.floor(seconds / 86400), "day");
  }

  function timeElement(iso) {
    return el("time", { datetime: String(iso) }, exactUtc(iso));
  }

  function quorumText(item) {
    return `${item.approvals} of ${item.quorum} approval${item.quorum === 1 ? "" : "s"}`;
  }

  // --- the token ------------------------------------------------------------------------------

  function showSession() {
    ui.session.hidden = !state.token;
  }

  function needToken(message) {
    forgetStream();
    if (state.token) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
    }
    showSession();
    ui.tokenForm.hidden = false;
    setStatus(message, "error");
  }

  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = ui.token.value.trim().replace(/^Bearer\s+/i, "");
    if (!token) return;
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    ui.token.value = "";
    ui.tokenForm.hidden = true;
    showSession();
    forgetStream();
    // The field just went away with its form; put the keyboard user at the top of the list.
    loadList({ announce: true, focusList: true });
  });

  ui.forgetToken.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    forgetStream();
    state.items.clear();
    renderList();
    closeDetail({ restoreFocus: false });
    showSession();
    state.listLoaded = false;
    ui.listView.hidden = true;
    loadList({ announce: true });
  });

  // --- the list -------------------------------------------------------------------------------

  async function loadList({ append = false, announce = false, focusList = false } = {}) {
    if (state.loading) {
      // The load under way may have read the list before the click or the event that asks again.
      if (!append) {
        const queued = state.queuedReload || {};
        state.queuedReload = { announce: announce || queued.announce, focusList: focusList || queued.focusList };
      }
      return;
    }
    state.loading = true;
    if (!append) live.stale = false;
    if (announce) setStatus("Loading your approvals…");
    try {
      let pageToken = append ? state.nextPageToken : null;
      const found = append ? new Map(state.items) : new Map();
      let pages = 0;
      let fetched = 0;
      do {
        const params = new URLSearchParams({ page_size: String(PAGE_SIZE) });
        if (pageToken) params.set("next_page_token", pageToken);
        const page = await api(`/v1/approvals?${params}`);
        for (const item of page.approvals) {
          if (!state.decided.has(keyOf(item))) found.set(keyOf(item), item);
        }
        fetched += page.approvals.length;
        pageToken = page.next_page_token;
        pages += 1;
      } while (pageToken && fetched === 0 && pages < MAX_EMPTY_PAGES);
      state.items = found;
      state.nextPageToken = pageToken;
      state.pagesLoaded = append ? state.pagesLoaded + pages : pages;
      ui.tokenForm.hidden = true;
      state.listLoaded = true;
      if (ui.detail.hidden) ui.listView.hidden = false;
      renderList();
      if (focusList && ui.detail.hidden) ui.listHeading.focus();
      if (announce || ui.status.classList.contains("error")) {
        const n = state.items.size;
        setStatus(n === 0 ? "Nothing is waiting for your decision."
          : `${plural(n, "approval")} waiting for your decision.`);
      }
    } catch (error) {
      if (error.status === 401) needToken(plainWords(error));
      else setStatus(plainWords(error), "error");
    } finally {
      state.loading = false;
    }
    // Also after a failure other than 401: the stream's reconnecting brings the list back with it.
    if (ui.tokenForm.hidden) startStream();
    const queued = state.queuedReload;
    state.queuedReload = null;
    if (queued && ui.tokenForm.hidden) loadList(queued);
  }

  function renderList() {
    // Re-rendering must not throw the keyboard user's place away.
    const focused = document.activeElement;
    const focusedKey = focused && focused.dataset ? focused.dataset.key : null;
    const rows = [];
    for (const [key, item] of state.items) {
      const button = el(
        "button",
        { type: "button", class: "item", "data-key": key },
        el("span", { class: "item-title" }, item.title),
        el(
          "span",
          { class: "item-line" },
          item.workflow,
          el("span", { class: "sep", "aria-hidden": "true" }, "·"),
          `requested by ${item.requested_by}`,
          el("span", { class: "quorum" }, quorumText(item)),
        ),
        el(
          "span",
          { class: "item-line" },
          `Waiting for ${duration(item.waiting_since)}, since `,
          timeElement(item.waiting_since),
        ),
      );
      button.addEventListener("click", () => openDetail(key));
      rows.push(el("li", {}, button));
    }
    ui.items.replaceChildren(...rows);
    ui.empty.hidden = state.items.size > 0;
    ui.more.hidden = !state.nextPageToken;
    if (focusedKey) {
      const again = ui.items.querySelector(`button[data-key="${CSS.escape(focusedKey)}"]`);
      if (again) again.focus();
    }
  }

  ui.refresh.addEventListener("click", () => loadList({ announce: true }));
  ui.more.addEventListener("click", () => loadList({ append: true, announce: true }));

  // --- following the tenant's events -----------------------------------------------------------

  // Keep a first page fresh while the approver looks at the list; never while they decide.
  function listIsIdle() {
    return document.visibilityState === "visible" && ui.detail.hidden && ui.tokenForm.hidden && state.pagesLoaded <= 1;
  }

  // A busy approver's list stays stale until they come back to it (closeDetail, visibilitychange).
  function refreshIfStale() {
    if (live.stale && listIsIdle()) loadList();
  }

  function listChanged() {
    live.stale = true;
    // Counted from the burst's first event, so a busy tenant's steady flow cannot put it off forever.
    live.burstTimer ??= setTimeout(() => {
      live.burstTimer = null;
      refreshIfStale();
    }, BURST_MS);
    clearTimeout(live.settleTimer);
    live.settleTimer = setTimeout(() => {
      live.stale = true;
      refreshIfStale();
    }, SETTLE_MS);
  }

  // One stream at most: a second call while one is open, or waiting to reconnect, does nothing.
  function startStream() {
    if (live.controller || live.retryTimer || document.visibilityState !== "visible" || !ui.tokenForm.hidden) return;
    live.controller = new AbortController();
    follow(live.controller);
  }

  function stopStream() {
    clearTimeout(live.retryTimer);
    live.retryTimer = null;
    if (live.controller) live.controller.abort();
    live.controller = null;
  }

  // Another token may be another tenant's, whose log positions mean nothing here.
  function forgetStream() {
    stopStream();
    live.lastEventId = null;
    live.stale = false;
  }

  async function follow(controller) {
    // EventSource cannot send the Authorization header, so the stream is a fetch read by hand.
    const headers = { Accept: "text/event-stream" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const resuming = live.lastEventId !== null;
    if (resuming) headers["Last-Event-ID"] = live.lastEventId;
    const query = new URLSearchParams(LIST_EVENTS.map((type) => ["type", type]));
    let retryAfterMs = 0;
    try {
      const response = await fetch(`/v1/events?${query}`, { headers, cache: "no-store", signal: controller.signal });
      if (controller.signal.aborted) return;
      if (response.status === 401) {
        needToken(MESSAGES.unauthenticated);
        return;
      }
      if (response.status === 429) {
        retryAfterMs = 1000 * Number(response.headers.get("Retry-After")) || 0;
      } else if (response.status >= 400 && response.status < 500) {
        // Refused for good (no runs:read, say): the Refresh button still works, and the next list
        // load tries the stream again.
        live.controller = null;
        return;
      } else if (response.ok) {
        // Without a position to resume from, what happened before the stream opened is not in it.
        if (!resuming) {
          live.stale = true;
          refreshIfStale();
        }
        await readEvents(response.body, controller);
      }
    } catch {
      // The connection failed or dropped: reconnect below, unless this page ended it on purpose.
    }
    if (controller.signal.aborted) return;
    live.controller = null;
    const waitMs = Math.max(live.retryMs, retryAfterMs);
    live.retryMs = Math.min(live.retryMs * 2, RETRY_MAX_MS);
    live.retryTimer = setTimeout(() => {
      live.retryTimer = null;
      startStream();
    }, waitMs);
  }

  // Server-Sent Events as far as the inbox needs them: `event`, `id` and `data` fields, comment
  // lines (the server's keep-alive) ignored, a blank line ending each message.
  async function readEvents(body, controller) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let message = {};
    for (;;) {
      const { value, done } = await reader.read();
      if (done || controller.signal.aborted) return;
      live.retryMs = RETRY_FIRST_MS; // the server answers: the next drop starts the backoff afresh
      buffer += decoder.decode(value, { stream: true });
      // A CR that ends the chunk may be the first half of a CRLF: it waits for the next chunk.
      const lines = buffer.split(/\r\n|\r(?!$)|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if ("id" in message) live.lastEventId = message.id || null;
          if (message.hasData && LIST_EVENTS.includes(message.event)) listChanged();
          message = {};
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon === -1 ? line : line.slice(0, colon);
        const fieldValue = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "event") message.event = fieldValue;
        else if (name === "data") message.hasData = true;
        else if (name === "id" && !fieldValue.includes("\0")) message.id = fieldValue;
      }
    }
  }

  // A hidden page holds no stream open; shown again, it resumes from the last id it saw.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") {
      stopStream();
      return;
    }
    startStream();
    refreshIfStale();
  });

  // --- the decision record --------------------------------------------------------------------

  const LABELS = { risk_level: "Risk level", reasons: "Reasons", explanation: "Explanation", report: "Report" };
  const KNOWN_ORDER = ["risk_level", "reasons", "explanation", "report"];
  const RISK_CLASSES = new Set(["low", "medium", "high", "critical"]);

  function humanize(key) {
    const words = String(key).replace(/[_-]+/g, " ").trim();
    return words ? words[0].toUpperCase() + words.slice(1) : String(key);
  }

  const isScalar = (value) => value === null || ["string", "number", "boolean"].includes(typeof value);

  function genericValue(value) {
    if (isScalar(value)) return el("span", {}, value === null ? "—" : String(value));
    if (Array.isArray(value) && value.every(isScalar)) {
      return el("ul", {}, ...value.map((v) => el("li", {}, String(v))));
    }
    return el("pre", {}, JSON.stringify(value, null, 2));
  }

  function riskValue(value) {
    if (typeof value !== "string") return genericValue(value);
    const level = value.toLowerCase();
    return el("span", { class: RISK_CLASSES.has(level) ? `risk risk-${level}` : "risk" }, value);
  }

  function reasonsValue(value) {
    if (!Array.isArray(value)) return genericValue(value);
    const items = value.map((r) => el("li", {}, isScalar(r) ? String(r) : JSON.stringify(r)));
    return el("ul", { class: "reasons" }, ...items);
  }

  function explanationValue(value) {
    return typeof value === "string" ? el("p", { class: "explanation" }, value) : genericValue(value);
  }

  function isPdf(report) {
    const type = report.content_type || report.media_type || "";
    return type === "application/pdf" || /\.pdf$/i.test(report.name);
  }

  function reportValue(value, item) {
    if (!value || typeof value !== "object" || typeof value.name !== "string") return genericValue(value);
    const box = el("div", { class: "report" }, el("span", {}, value.name));
    if (value.sha256) {
      box.append(el("span", { class: "muted" }, "SHA-256 ", el("code", { class: "digest" }, String(value.sha256))));
    }
    const { sha256, name, ...rest } = value;
    const parts = [box];
    if (isPdf(value)) {
      const href = `/v1/runs/${encodeURIComponent(item.run_id)}/artifacts/${encodeURIComponent(value.name)}`;
      const note = el("span", { class: "muted", role: "status" });
      const link = el("a", { href, class: "report-link" }, `Open ${value.name}`);
      link.addEventListener("click", (event) => openReport(event, href, note));
      parts.push(el("p", {}, link, " ", note));
    }
    if (Object.keys(rest).length) parts.push(genericValue(rest));
    return el("div", {}, ...parts);
  }

  // Downloading needs the Authorization header a plain link cannot carry: fetch, then open a blob.
  async function openReport(event, href, note) {
    event.preventDefault();
    note.textContent = "Downloading…";
    try {
      const response = await api(href, { raw: true });
      const blob = await response.blob();
      const url = URL.createObjectURL(new Blob([blob], { type: "application/pdf" }));
      state.blobUrls.push(url);
      const opened = window.open(url, "_blank");
      note.replaceChildren();
      if (!opened) {
        const fallback = el("a", { href: url, target: "_blank", rel: "noopener" }, "open the report");
        note.append("Your browser blocked the new tab: ", fallback, ".");
      }
    } catch (error) {
      if (error.status === 404) note.textContent = "Steward does not have this report.";
      else if (error.code === "artifact_corrupted") {
        note.textContent =
          "This report failed Steward's integrity check: do not rely on it, and tell your administrator.";
      } else note.textContent = plainWords(error);
      if (error.status === 401) needToken(plainWords(error));
    }
  }

  function renderShown(item) {
    const shown = item.shown && typeof item.shown === "object" ? item.shown : {};
    const others = Object.keys(shown).filter((k) => !KNOWN_ORDER.includes(k));
    const keys = [...KNOWN_ORDER.filter((k) => k in shown), ...others];
    if (!keys.length) {
      ui.detailShown.replaceChildren();
      return;
    }
    const dl = el("dl", { class: "fields shown" });
    for (const key of keys) {
      const value = shown[key];
      const render = {
        risk_level: riskValue,
        reasons: reasonsValue,
        explanation: explanationValue,
        report: (v) => reportValue(v, item),
      }[key] || genericValue;
      field(dl, LABELS[key] || humanize(key), render(value));
    }
    ui.detailShown.replaceChildren(el("h3", {}, "Records"), dl);
  }

  function percent(value) {
    return typeof value === "number" ? `${Math.round(value * 100)}%` : "—";
  }

  async function renderRunDetails(item) {
    ui.detailLlm.replaceChildren(el("p", { class: "muted" }, "Loading the run's details…"));
    let run;
    try {
      run = await api(`/v1/runs/${encodeURIComponent(item.run_id)}`);
    } catch (error) {
      if (state.current !== item) return;
      const why = `The run's details could not be loaded: ${plainWords(error)}`;
      ui.detailLlm.replaceChildren(el("p", { class: "muted" }, why));
      return;
    }
    if (state.current !== item) return; // the approver moved on meanwhile
    const parts = [];
    const records = (run.llm && run.llm.records) || [];
    if (records.length) {
      parts.push(el("h3", {}, "The model's assessment"));
      for (const record of records) {
        const dl = el("dl", { class: "fields" });
        field(dl, "Step", record.step || "—");
        field(dl, "Model", record.model_requested || "—");
        field(dl, "Model version", record.model_version || "—");
        field(dl, "Decision", record.decision || "—");
        field(dl, "Confidence", percent(record.confidence));
        field(dl, "Explanation", record.explanation ? el("p", { class: "explanation" }, record.explanation) : "—");
        parts.push(el("div", { class: "llm-record" }, dl));
      }
    }
    const approval = (run.approvals || []).find((a) => a.key === item.approval_key);
    if (approval && approval.receipts && approval.receipts.length) {
      parts.push(el("h3", {}, "Votes so far"));
      parts.push(
        el(
          "ul",
          {},
          ...approval.receipts.map((r) =>
            el("li", {}, `${r.approver}: ${r.decision} at `, timeElement(r.decided_at),
              r.comment ? ` — “${r.comment}”` : ""),
          ),
        ),
      );
    }
    ui.detailLlm.replaceChildren(...parts);
  }

  function openDetail(key) {
    const item = state.items.get(key);
    if (!item) return;
    revokeBlobs();
    state.current = item;
    ui.detailTitle.textContent = item.title;
    const meta = el("dl", { class: "fields meta" });
    ui.detailMeta.replaceWith(meta);
    ui.detailMeta = meta;
    meta.id = "detail-meta";
    field(meta, "Workflow", item.workflow);
    field(meta, "Run", el("code", {}, item.run_id));
    field(meta, "Requested by", item.requested_by);
    field(meta, "Waiting", `for ${duration(item.waiting_since)}, since `, timeElement(item.waiting_since));
    field(meta, "Progress", quorumText(item));
    field(meta, "Who may decide", item.roles.join(" or ") + (item.group ? ` in the group ${item.group}` : ""));
    ui.detailSummary.textContent = item.summary;
    renderShown(item);
    ui.detailDigest.textContent = item.shown_sha256;
    ui.comment.value = state.drafts.get(key) || "";
    ui.decideError.hidden = true;
    ui.decideError.textContent = "";
    setDecisionButtons(true);
    setStatus("");
    ui.receipt.hidden = true;
    ui.listView.hidden = true;
    ui.detail.hidden = false;
    ui.detailTitle.focus();
    renderRunDetails(item);
  }

  function closeDetail({ restoreFocus = true } = {}) {
    if (ui.detail.hidden) return;
    const key = state.current ? keyOf(state.current) : null;
    if (key && state.items.has(key)) state.drafts.set(key, ui.comment.value);
    state.current = null;
    ui.detail.hidden = true;
    ui.listView.hidden = !state.listLoaded;
    if (restoreFocus) {
      const opener = key && ui.items.querySelector(`button[data-key="${CSS.escape(key)}"]`);
      (opener || ui.listHeading).focus();
    }
    refreshIfStale(); // what changed while the approver was deciding
  }

  function revokeBlobs() {
    for (const url of state.blobUrls) URL.revokeObjectURL(url);
    state.blobUrls = [];
  }

  function setDecisionButtons(enabled) {
    for (const button of ui.decideForm.querySelectorAll("button")) button.disabled = !enabled;
  }

  ui.detailClose.addEventListener("click", () => closeDetail());

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.detail.hidden) {
      event.preventDefault();
      closeDetail();
    }
  });

  // --- deciding -------------------------------------------------------------------------------

  function forget(item) {
    state.drafts.delete(keyOf(item));
    state.decided.add(keyOf(item));
    state.items.delete(keyOf(item));
    renderList();
  }

  ui.decideForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const item = state.current;
    const decision = event.submitter && event.submitter.value;
    if (!item || (decision !== "approve" && decision !== "reject")) return;
    setDecisionButtons(false);
    ui.decideError.hidden = true;
    setStatus(decision === "approve" ? "Sending your approval…" : "Sending your rejection…");
    let receipt;
    try {
      receipt = await api(item.links.decide, {
        method: "POST",
        body: { decision, comment: ui.comment.value, approval_key: item.approval_key },
      });
    } catch (error) {
      const message = plainWords(error);
      ui.decideError.textContent = message;
      ui.decideError.hidden = false;
      setStatus("");
      if (error.status === 409) {
        forget(item); // nothing left for this approver to do here
        return;
      }
      setDecisionButtons(true);
      if (error.status === 401) {
        needToken(message);
        ui.token.focus();
      }
      return;
    }
    forget(item);
    closeDetail({ restoreFocus: false });
    showReceipt(receipt, item);
  });

  const OUTCOMES = {
    approved: "Approved — the run continues.",
    rejected: "Rejected — the run continues without approval.",
    expired: "Decided by policy.",
  };

  function showReceipt(receipt, item) {
    const fields = el("dl", { class: "fields", id: "receipt-fields" });
    field(fields, "Approval", item.title);
    field(fields, "Approver", receipt.approver);
    field(fields, "Decision", receipt.decision === "approve" ? "Approve" : "Reject");
    if (receipt.comment) field(fields, "Comment", receipt.comment);
    field(fields, "Time", timeElement(receipt.decided_at));
    field(
      fields,
      "Outcome",
      OUTCOMES[receipt.outcome] || `Still waiting for more votes (${plural(item.quorum, "approval")} needed).`,
    );
    field(fields, "Shown SHA-256", el("code", { class: "digest" }, receipt.shown_sha256));
    ui.receiptFields.replaceWith(fields);
    ui.receiptFields = fields;
    ui.receipt.hidden = false;
    ui.listView.hidden = false;
    setStatus(`Your decision on “${item.title}” was recorded.`);
    ui.receiptHeading.focus();
  }

  ui.receiptClose.addEventListener("click", () => {
    ui.receipt.hidden = true;
    ui.listHeading.focus();
  });

  window.addEventListener("pagehide", revokeBlobs);

  showSession();
  loadList({ announce: true });
})();
