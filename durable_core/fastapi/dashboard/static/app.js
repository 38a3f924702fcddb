/* durable_core dashboard: one page over the dashboard's JSON API (api/...).
 *
 * No framework, no build step, nothing loaded from elsewhere. Everything that comes from the
 * store (ids, names, payloads, failures) is put on the page with textContent, never as markup.
 * Live updates are long-polls (api/.../watch) that the server answers when something changed.
 */
"use strict";
(function () {
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  const KEY = "durable_core.dashboard.key";
  const ROW = 22;
  const EVENTS_PER_PAGE = 100;
  let config = { actions: false, title: "durable_core" };
  let generation = 0; // bumped on every navigation: loops of the previous page stop
  const listState = { statuses: [], name: "", prefix: "", from: "", to: "", pageSize: 25, tokens: [null] };

  // -- small helpers ------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "style") Object.assign(node.style, v); // CSSOM: allowed by the page's CSP
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function apiKey() { return sessionStorage.getItem(KEY) || ""; }

  async function api(path, opts) {
    opts = opts || {};
    const headers = { Accept: "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if (apiKey()) headers["X-API-Key"] = apiKey();
    const res = await fetch(path, {
      method: opts.method || "GET", headers, cache: "no-store", signal: opts.signal,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    let doc = null;
    try { doc = await res.json(); } catch (e) { doc = null; }
    if (!res.ok) {
      const why = doc && (doc.detail || doc.title) ? (doc.detail || doc.title) : res.statusText;
      const err = new Error(res.status === 401 ? "API key needed or wrong: " + why : why);
      err.status = res.status;
      throw err;
    }
    return doc;
  }

  function toast(text, isError) {
    const t = document.getElementById("toast");
    t.textContent = text;
    t.className = isError ? "err" : "";
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, isError ? 8000 : 3000);
  }

  function badge(status) { return el("span", { class: "badge s-" + status, text: status }); }

  function fmtTime(iso) {
    if (!iso) return "";
    return iso.replace("T", " ").replace(/\.\d+Z$/, "").replace(/Z$/, "");
  }

  function fmtDuration(us) {
    if (us === null || us === undefined || !isFinite(us)) return "";
    const ms = us / 1000;
    if (ms < 1) return us.toFixed(0) + " µs";
    if (ms < 1000) return ms.toFixed(ms < 10 ? 2 : 0) + " ms";
    const s = ms / 1000;
    if (s < 120) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = s / 60;
    if (m < 120) return m.toFixed(1) + " min";
    return (m / 60).toFixed(1) + " h";
  }

  function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

  function setLive(ok) { live.className = ok ? "" : "off"; live.textContent = ok ? "live" : "reconnecting…"; }

  function payloadBlock(view) {
    if (view === null || view === undefined) return el("pre", { class: "muted", text: "—" });
    if (view.error !== undefined) {
      return el("div", {},
        el("div", { class: "note undecodable", text: "cannot be decoded: " + view.error }),
        el("pre", { class: "muted", text: "raw (base64): " + view.raw + (view.truncated ? " …" : "") }));
    }
    return el("pre", { text: view.text + (view.truncated ? "\n… (" + view.size + " characters in all)" : "") });
  }

  function card(title, ...body) { return el("section", { class: "card" }, el("h2", { text: title }), ...body); }

  // -- the list --------------------------------------------------------------------------------

  const STATUSES = ["Pending", "Running", "Suspended", "Completed", "Failed", "Terminated", "ContinuedAsNew", "Canceled"];

  function listQuery() {
    const q = new URLSearchParams();
    for (const s of listState.statuses) q.append("status", s);
    if (listState.name) q.set("name", listState.name);
    if (listState.prefix) q.set("prefix", listState.prefix);
    if (listState.from) q.set("createdFrom", new Date(listState.from).toISOString());
    if (listState.to) q.set("createdTo", new Date(listState.to).toISOString());
    q.set("pageSize", String(listState.pageSize));
    const tok = listState.tokens[listState.tokens.length - 1];
    if (tok) q.set("token", tok);
    return q.toString();
  }

  async function renderList(gen) {
    document.title = config.title + " — instances";
    const counts = el("div", { class: "counts", id: "counts" });
    const f = el("form", { class: "filters", id: "filters" },
      el("label", {}, "Instance id starts with", el("input", { name: "prefix", value: listState.prefix, placeholder: "search by id" })),
      el("label", {}, "Orchestrator", el("input", { name: "name", value: listState.name, placeholder: "exact name" })),
      el("label", {}, "Created from", el("input", { name: "from", type: "datetime-local", step: "1", value: listState.from })),
      el("label", {}, "Created to", el("input", { name: "to", type: "datetime-local", step: "1", value: listState.to })),
      el("label", {}, "Per page", el("select", { name: "pageSize" },
        ...[10, 25, 50, 100, 200].map((n) => el("option", { value: n, selected: n === listState.pageSize, text: n })))),
      el("button", { type: "submit", id: "apply" }, "Filter"),
      el("button", { type: "button", id: "reset", onclick: () => {
        Object.assign(listState, { statuses: [], name: "", prefix: "", from: "", to: "", tokens: [null] });
        navigate();
      } }, "Reset"));
    f.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const d = new FormData(f);
      listState.prefix = String(d.get("prefix") || "").trim();
      listState.name = String(d.get("name") || "").trim();
      listState.from = String(d.get("from") || "");
      listState.to = String(d.get("to") || "");
      listState.pageSize = parseInt(String(d.get("pageSize")), 10) || 25;
      listState.tokens = [null];
      loadList(gen);
    });
    const body = el("tbody", { id: "rows" });
    const table = el("table", { class: "list", id: "instances" },
      el("thead", {}, el("tr", {}, ...["Instance id", "Orchestrator", "Status", "Created (UTC)", "Updated (UTC)", "Result / progress"].map((h) => el("th", { text: h })))),
      body);
    const pager = el("div", { class: "pager", id: "pager" });
    main.replaceChildren(el("h1", { text: "Instances" }), counts, f, table, pager);
    await loadList(gen);
    watchList(gen);
  }

  let listVersions = {};

  async function loadList(gen) {
    let doc;
    try {
      doc = await api("api/instances?" + listQuery());
    } catch (e) {
      if (gen === generation) toast(e.message, true);
      return;
    }
    if (gen !== generation) return;
    const counts = document.getElementById("counts");
    counts.replaceChildren(...STATUSES.filter((s) => doc.counts[s] || listState.statuses.includes(s)).map((s) =>
      el("button", {
        type: "button", class: "count" + (listState.statuses.includes(s) ? " on" : ""), dataset: { status: s },
        title: "show only " + s + " (click again to clear)",
        onclick: () => {
          const i = listState.statuses.indexOf(s);
          if (i >= 0) listState.statuses.splice(i, 1); else listState.statuses.push(s);
          listState.tokens = [null];
          loadList(gen);
        },
      }, badge(s), el("b", { text: doc.counts[s] || 0 }))));
    const total = Object.values(doc.counts).reduce((a, b) => a + b, 0);
    counts.append(el("span", { class: "muted", text: total + " in all" }));
    const rows = document.getElementById("rows");
    listVersions = {};
    rows.replaceChildren(...doc.instances.map((it) => {
      if (!it.terminal) listVersions[it.instanceId] = it.version;
      return el("tr", { dataset: { id: it.instanceId, status: it.runtimeStatus } },
        el("td", { class: "id" }, el("a", { href: "#/i/" + encodeURIComponent(it.instanceId), text: it.instanceId })),
        el("td", { text: it.name }),
        el("td", {}, badge(it.runtimeStatus)),
        el("td", { text: fmtTime(it.createdAt), title: it.createdAt }),
        el("td", { text: fmtTime(it.lastUpdatedAt), title: it.lastUpdatedAt }),
        el("td", { class: "summary", text: it.summary, title: it.summary }));
    }));
    if (!doc.instances.length) rows.append(el("tr", {}, el("td", { colspan: 6, class: "muted", text: "No instances match." })));
    const pager = document.getElementById("pager");
    const pageNo = listState.tokens.length;
    pager.replaceChildren(
      el("button", { type: "button", id: "prev", disabled: pageNo <= 1, onclick: () => { listState.tokens.pop(); loadList(gen); } }, "← Previous"),
      el("span", { class: "muted", text: "page " + pageNo }),
      el("button", { type: "button", id: "next", disabled: !doc.continuationToken, onclick: () => { listState.tokens.push(doc.continuationToken); loadList(gen); } }, "Next →"));
  }

  async function watchList(gen) {
    // Answers when a running instance on this page changes, or after 10 s (new instances).
    while (gen === generation) {
      try {
        await api("api/watch", { method: "POST", body: { versions: listVersions, timeout: 10 } });
        setLive(true);
        if (gen !== generation) return;
        if (!document.hidden) await loadList(gen);
        else await sleep(2000);
      } catch (e) {
        setLive(false);
        await sleep(3000);
      }
    }
  }

  // -- one instance ----------------------------------------------------------------------------

  const inst = { id: null, doc: null, timeline: null, eventsOffset: 0 };

  async function renderInstance(id, gen) {
    inst.id = id;
    inst.eventsOffset = 0;
    document.title = config.title + " — " + id;
    main.replaceChildren(el("p", { class: "muted", text: "Loading " + id + "…" }));
    const ok = await loadInstance(gen, true);
    if (ok) watchInstance(gen);
  }

  async function loadInstance(gen, first) {
    let doc;
    try {
      doc = await api("api/instances/" + encodeURIComponent(inst.id));
    } catch (e) {
      if (gen !== generation) return false;
      main.replaceChildren(el("h1", { text: inst.id }), el("p", { class: "note", text: e.message }),
        el("p", {}, el("a", { href: "#/", text: "← all instances" })));
      return false;
    }
    if (gen !== generation) return false;
    inst.doc = doc;
    const [tl, ev] = await Promise.all([
      api("api/instances/" + encodeURIComponent(inst.id) + "/timeline").catch((e) => ({ spans: [], error: e.message })),
      api(eventsPath(inst.eventsOffset, false)).catch((e) => ({ events: [], total: 0, offset: 0, error: e.message })),
    ]);
    if (gen !== generation) return false;
    inst.timeline = tl;
    const scroll = document.querySelector(".tl-scroll");
    const keepScroll = scroll ? scroll.scrollTop : 0;
    const detail = document.getElementById("detail");
    const keepDetail = detail && !first ? detail : null;
    main.replaceChildren(...[
      el("p", {}, el("a", { href: "#/", text: "← all instances" })),
      el("h1", {}, el("span", { id: "iid", text: doc.instanceId }), " ", badge(doc.runtimeStatus)),
      actionsBar(doc),
      card("State", facts(doc)),
      el("div", { class: "payloads" },
        el("section", { class: "card", id: "input" }, el("h2", { text: "Input" }), payloadBlock(doc.input)),
        el("section", { class: "card", id: "output" }, el("h2", { text: "Output" }), payloadBlock(doc.output)),
        el("section", { class: "card", id: "custom-status" }, el("h2", { text: "Custom status" }), payloadBlock(doc.customStatus))),
      doc.failure ? failureCard(doc.failure) : null,
      timelineCard(tl),
      keepDetail || el("section", { class: "card", id: "detail", hidden: true }),
      eventsCard(ev)].filter(Boolean));
    const sc = document.querySelector(".tl-scroll");
    if (sc) { sc.scrollTop = keepScroll; drawRows(); }
    return true;
  }

  function facts(doc) {
    const dl = el("dl", { class: "facts" });
    const add = (k, v) => dl.append(el("dt", { text: k }), el("dd", {}, v));
    add("Orchestrator", doc.name);
    add("Status", doc.runtimeStatus);
    add("Created", doc.createdAt);
    add("Last updated", doc.lastUpdatedAt);
    if (doc.executionId) add("Execution", doc.executionId);
    if (doc.parentInstanceId) {
      add("Parent", el("a", { id: "parent", href: "#/i/" + encodeURIComponent(doc.parentInstanceId), text: doc.parentInstanceId }));
    }
    if (doc.children && doc.children.length) {
      add("Children", el("span", { id: "children" }, ...doc.children.map((c, i) => [
        i ? ", " : "",
        el("a", { href: "#/i/" + encodeURIComponent(c.instanceId), text: c.instanceId }), " ", badge(c.runtimeStatus)])));
    }
    return dl;
  }

  function failureCard(fd) {
    const parts = [el("p", {}, el("b", { text: fd.errorType + ": " }), fd.message)];
    let inner = fd.innerFailure;
    while (inner) {
      parts.push(el("p", { class: "muted" }, "caused by ", el("b", { text: inner.errorType + ": " }), inner.message));
      inner = inner.innerFailure;
    }
    if (fd.stackTrace) parts.push(el("pre", { id: "stack", text: fd.stackTrace }));
    return el("section", { class: "card", id: "failure" }, el("h2", { text: "Failure" }), ...parts);
  }

  // -- actions ---------------------------------------------------------------------------------

  function actionsBar(doc) {
    if (!config.actions) return null;
    const s = doc.runtimeStatus;
    const terminal = doc.terminal;
    const bar = el("div", { class: "actions", id: "actions" });
    const btn = (label, action, body, danger, confirmText) => el("button", {
      type: "button", class: danger ? "danger" : "", dataset: { action },
      onclick: async (ev) => {
        if (confirmText && !window.confirm(confirmText)) return;
        ev.target.disabled = true;
        try {
          const out = await api("api/instances/" + encodeURIComponent(doc.instanceId) + "/" + action,
            { method: "POST", body: typeof body === "function" ? body() : body || {} });
          toast(label + ": done");
          if (action === "purge") { location.hash = "#/"; return; }
          if (action === "restart" && out && out.instanceId !== doc.instanceId) {
            location.hash = "#/i/" + encodeURIComponent(out.instanceId);
            return;
          }
        } catch (e) {
          toast(label + " failed: " + e.message, true);
        } finally {
          ev.target.disabled = false;
        }
      },
    }, label);
    if (!terminal) bar.append(btn("Terminate", "terminate", { reason: "terminated from the dashboard" }, true, "Terminate " + doc.instanceId + "?"));
    if (s === "Running" || s === "Pending") bar.append(btn("Suspend", "suspend", {}));
    if (s === "Suspended") bar.append(btn("Resume", "resume", {}));
    if (!terminal) bar.append(el("button", { type: "button", dataset: { action: "raise-event" }, onclick: () => eventDialog(doc) }, "Raise event…"));
    if (terminal) {
      bar.append(btn("Restart", "restart", { newInstanceId: false }));
      bar.append(btn("Restart as new", "restart", { newInstanceId: true }));
      bar.append(btn("Purge", "purge", {}, true, "Delete " + doc.instanceId + " and its history?"));
    }
    return bar;
  }

  function eventDialog(doc) {
    const name = el("input", { name: "event", required: true, placeholder: "event name" });
    const data = el("textarea", { name: "data", rows: 6, placeholder: "JSON data (optional)" });
    const err = el("p", { class: "note", hidden: true });
    const dlg = el("dialog", { id: "event-dialog" },
      el("form", { method: "dialog" },
        el("h2", { text: "Raise an event on " + doc.instanceId }),
        el("label", {}, "Name", name), el("label", {}, "Data (JSON)", data), err,
        el("div", { class: "actions" },
          el("button", { type: "submit", value: "send", id: "send-event" }, "Send"),
          el("button", { type: "button", onclick: () => dlg.close() }, "Cancel"))));
    dlg.querySelector("form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      let value = null;
      if (data.value.trim()) {
        try { value = JSON.parse(data.value); } catch (e) {
          err.textContent = "not JSON: " + e.message; err.hidden = false; return;
        }
      }
      try {
        await api("api/instances/" + encodeURIComponent(doc.instanceId) + "/raise-event",
          { method: "POST", body: { name: name.value.trim(), data: value } });
        dlg.close();
        toast("event " + name.value.trim() + " sent");
      } catch (e) {
        err.textContent = e.message; err.hidden = false;
      }
    });
    dlg.addEventListener("close", () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
  }

  // -- the timeline ----------------------------------------------------------------------------

  const KIND_LABEL = { orchestration: "orchestration", activity: "activity", timer: "timer", event: "event",
    suborchestration: "sub-orch.", suspended: "suspended" };

  function spanEnd(sp, tl) {
    if (sp.end !== null && sp.end !== undefined) return sp.end;
    if (sp.kind === "timer" && sp.due) return Math.max(sp.due, sp.start);
    return tl.end || sp.start;
  }

  function timelineCard(tl) {
    const spans = tl.spans || [];
    const parts = [el("h2", { text: "Timeline (" + spans.length + " spans, " + (tl.events || 0) + " events)" })];
    if (tl.error) parts.push(el("p", { class: "note", id: "history-error", text: tl.error }));
    parts.push(el("div", { class: "legend" },
      ...[["completed", "var(--green)"], ["failed", "var(--red)"], ["running", "var(--blue)"], ["timer fired", "var(--violet)"],
        ["pending", "var(--cyan)"], ["abandoned / terminated", "var(--yellow)"]].map(([t, c]) =>
        el("span", {}, el("i", { style: { background: c } }), t))));
    if (!spans.length) {
      parts.push(el("p", { class: "muted", text: "No history yet." }));
      return el("section", { class: "card", id: "timeline-card" }, ...parts);
    }
    const t0 = tl.start;
    let t1 = tl.end || t0;
    for (const sp of spans) t1 = Math.max(t1, spanEnd(sp, tl));
    tl.t0 = t0; tl.t1 = Math.max(t1, t0 + 1);
    const axis = el("div", { class: "tl-axis" });
    for (let i = 0; i <= 5; i++) {
      axis.append(el("span", { style: { left: (i * 20) + "%" }, text: "+" + fmtDuration((tl.t1 - tl.t0) * i / 5) }));
    }
    const scroll = el("div", { class: "tl-scroll", id: "timeline" });
    scroll.style.height = Math.min(360, spans.length * ROW + 4) + "px";
    const inner = el("div", { class: "tl-inner" });
    inner.style.height = spans.length * ROW + "px";
    inner.style.position = "relative";
    scroll.append(inner);
    scroll.addEventListener("scroll", () => requestAnimationFrame(drawRows));
    parts.push(el("div", { class: "timeline" }, axis, scroll));
    return el("section", { class: "card", id: "timeline-card" }, ...parts);
  }

  function drawRows() {
    // Only the rows in view (and a margin) exist: a 10,000-event history stays fast.
    const scroll = document.querySelector(".tl-scroll");
    const tl = inst.timeline;
    if (!scroll || !tl || !tl.spans) return;
    const inner = scroll.firstChild;
    const first = Math.max(0, Math.floor(scroll.scrollTop / ROW) - 10);
    const last = Math.min(tl.spans.length, first + Math.ceil(scroll.clientHeight / ROW) + 20);
    const width = tl.t1 - tl.t0;
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const sp = tl.spans[i];
      const end = spanEnd(sp, tl);
      const left = ((sp.start - tl.t0) / width) * 100;
      const w = Math.max(0.25, ((end - sp.start) / width) * 100);
      const label = (sp.kind === "orchestration" ? "" : sp.name) + (sp.attempt > 1 ? " (attempt " + sp.attempt + ")" : "");
      const title = KIND_LABEL[sp.kind] + " " + sp.name + ": " + sp.outcome + ", " + fmtDuration(end - sp.start) +
        (sp.attempt > 1 ? ", retry " + (sp.attempt - 1) : "") + (sp.approximate ? " (wait start approximate)" : "");
      const bar = el("button", {
        type: "button", class: "bar k-" + sp.kind + " o-" + sp.outcome + (sp.approximate ? " approx" : ""),
        title, "aria-label": title,
        dataset: { span: sp.id, kind: sp.kind, outcome: sp.outcome, name: sp.name, attempt: sp.attempt },
        onclick: () => showSpan(sp),
      });
      bar.style.left = Math.min(left, 99.5) + "%";
      bar.style.width = Math.min(w, 100 - Math.min(left, 99.5)) + "%";
      const row = el("div", { class: "tl-row", dataset: { row: i } },
        el("div", { class: "tl-label", title: label || sp.name },
          el("span", { class: "kind", text: KIND_LABEL[sp.kind] }), label || sp.name),
        el("div", { class: "tl-track" }, bar));
      row.style.top = i * ROW + "px";
      frag.append(row);
    }
    inner.replaceChildren(frag);
  }

  async function fetchEvent(seq) {
    if (seq === null || seq === undefined) return null;
    const doc = await api(eventsPath(seq, true, 1));
    return doc.events[0] || null;
  }

  function eventBlock(title, ev) {
    const box = el("section", { class: "card" }, el("h2", { text: title }));
    if (!ev) { box.append(el("p", { class: "muted", text: "not yet" })); return box; }
    box.append(el("p", { class: "muted", text: ev.eventType + " at " + ev.timestamp }));
    for (const key of ev.payloads || []) {
      box.append(el("h3", { text: key }), payloadBlock(ev[key]));
    }
    if (ev.failureDetails) {
      box.append(el("h3", { text: "failure" }), el("pre", { class: "undecodable",
        text: ev.failureDetails.errorType + ": " + ev.failureDetails.message + (ev.failureDetails.stackTrace ? "\n" + ev.failureDetails.stackTrace : "") }));
    }
    if (ev.instanceId && ev.eventType === "SubOrchestrationInstanceCreated") {
      box.append(el("p", {}, "child: ", el("a", { href: "#/i/" + encodeURIComponent(ev.instanceId), text: ev.instanceId })));
    }
    return box;
  }

  async function showSpan(sp) {
    const detail = document.getElementById("detail");
    detail.hidden = false;
    detail.replaceChildren(el("h2", { text: "Loading…" }));
    try {
      const [a, b] = await Promise.all([fetchEvent(sp.startSeq), sp.endSeq === sp.startSeq ? null : fetchEvent(sp.endSeq)]);
      const end = spanEnd(sp, inst.timeline);
      const head = el("h2", { id: "detail-title", text: KIND_LABEL[sp.kind] + " " + sp.name + (sp.attempt > 1 ? " — attempt " + sp.attempt : "") });
      const meta = el("p", { class: "muted", text: sp.outcome + ", " + fmtDuration(end - sp.start) +
        (sp.approximate ? " (an event wait is recorded only when the event arrives: its start is the end of the episode before)" : "") +
        (sp.retryOf !== undefined ? " — retry of span #" + sp.retryOf : "") });
      const ends = el("div", { class: "ends" }, eventBlock(sp.endSeq === sp.startSeq ? "Event" : "Scheduled", a));
      if (sp.endSeq !== sp.startSeq) ends.append(eventBlock("Ended", b));
      detail.replaceChildren(head, meta, ends);
      if (sp.instanceId) detail.append(el("p", {}, "sub-orchestration: ", el("a", { href: "#/i/" + encodeURIComponent(sp.instanceId), text: sp.instanceId })));
    } catch (e) {
      detail.replaceChildren(el("p", { class: "note", text: e.message }));
    }
  }

  // -- the raw event list ----------------------------------------------------------------------

  function eventsPath(offset, full, limit) {
    return "api/instances/" + encodeURIComponent(inst.id) + "/history?offset=" + offset +
      "&limit=" + (limit || EVENTS_PER_PAGE) + (full ? "&full=true" : "");
  }

  function eventsCard(doc) {
    const box = el("section", { class: "card", id: "events" }, el("h2", { text: "Events (" + doc.total + ")" }));
    if (doc.error) box.append(el("p", { class: "note", text: doc.error }));
    const rows = doc.events.map((ev) => {
      const details = [];
      for (const [k, v] of Object.entries(ev)) {
        if (["eventType", "seq", "timestamp", "payloads"].includes(k) || v === null || v === -1 || v === false) continue;
        if ((ev.payloads || []).includes(k)) continue;
        details.push(k + "=" + (typeof v === "object" ? JSON.stringify(v) : String(v)));
      }
      const cell = el("td", {}, details.join("  "));
      for (const k of ev.payloads || []) if (ev[k]) cell.append(el("div", { class: "muted", text: k + ":" }), payloadBlock(ev[k]));
      return el("tr", { dataset: { seq: ev.seq } }, el("td", { class: "seq", text: ev.seq }),
        el("td", { class: "time", text: fmtTime(ev.timestamp) }), el("td", { text: ev.eventType }), cell);
    });
    box.append(el("table", { class: "events" },
      el("thead", {}, el("tr", {}, ...["#", "Time (UTC)", "Event", "Details"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows)));
    const pages = Math.max(1, Math.ceil(doc.total / EVENTS_PER_PAGE));
    const page = Math.floor(doc.offset / EVENTS_PER_PAGE) + 1;
    const go = async (offset) => {
      inst.eventsOffset = offset;
      try {
        const next = await api(eventsPath(offset, false));
        document.getElementById("events").replaceWith(eventsCard(next));
      } catch (e) { toast(e.message, true); }
    };
    box.append(el("div", { class: "pager" },
      el("button", { type: "button", id: "events-prev", disabled: page <= 1, onclick: () => go(doc.offset - EVENTS_PER_PAGE) }, "← Previous"),
      el("span", { class: "muted", id: "events-page", text: "page " + page + " of " + pages }),
      el("button", { type: "button", id: "events-next", disabled: page >= pages, onclick: () => go(doc.offset + EVENTS_PER_PAGE) }, "Next →")));
    return box;
  }

  async function watchInstance(gen) {
    // The server answers when the instance changes (or after 25 s with nothing new).
    while (gen === generation && inst.doc && !inst.doc.terminal) {
      try {
        const w = await api("api/instances/" + encodeURIComponent(inst.id) + "/watch?timeout=25&version=" + encodeURIComponent(inst.doc.version));
        setLive(true);
        if (gen !== generation) return;
        if (w.changed) await loadInstance(gen, false);
      } catch (e) {
        setLive(false);
        await sleep(3000);
      }
    }
  }

  // -- routing ---------------------------------------------------------------------------------

  function navigate() {
    generation += 1;
    const gen = generation;
    const h = location.hash || "#/";
    const m = h.match(/^#\/i\/(.+)$/);
    if (m) renderInstance(decodeURIComponent(m[1]), gen);
    else renderList(gen);
  }

  async function start() {
    const h = location.hash;
    const km = h.match(/^#key=(.+)$/);
    if (km) {
      sessionStorage.setItem(KEY, decodeURIComponent(km[1]));
      history.replaceState(null, "", location.pathname + location.search + "#/");
    }
    try { config = await api("api/config"); } catch (e) { toast(e.message, true); }
    document.getElementById("home").textContent = config.title;
    if (config.actions) {
      const box = document.getElementById("keybox");
      const input = document.getElementById("apikey");
      box.hidden = false;
      input.value = apiKey();
      input.addEventListener("change", () => sessionStorage.setItem(KEY, input.value.trim()));
      box.addEventListener("submit", (ev) => { ev.preventDefault(); sessionStorage.setItem(KEY, input.value.trim()); });
    }
    window.addEventListener("hashchange", navigate);
    navigate();
  }

  start();
})();
