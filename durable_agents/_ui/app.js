// The browser app of durable_agents: approval inbox, runs and conversations, run page.
// Plain JavaScript, no framework, no build step, nothing fetched from elsewhere (README "The inbox (browser)").
// It only calls the HTTP API of the same function app (same origin, credentials included).
"use strict";

(function () {
  // ---------------------------------------------------------------------------------------------------------
  // Where the API is, and who the caller is

  // The page is served at <prefix>/ui/; the API lives at <prefix>/.
  const API = location.pathname.replace(/\/ui(\/.*)?$/, "");
  const LOOPBACK = ["localhost", "127.0.0.1", "[::1]", "::1"].includes(location.hostname);
  const POLL_MS = 2000;

  function actingAs() {
    return LOOPBACK ? (localStorage.getItem("durableAgents.actingAs") || "") : "";
  }

  function functionKey() {
    return LOOPBACK ? "" : (sessionStorage.getItem("durableAgents.functionKey") || "");
  }

  // The caller's headers on every API request: the local runtime's developer identity (loopback only) or the
  // function key pasted for this tab (Azure).
  function withIdentity(headers) {
    if (actingAs()) headers["X-Dev-User"] = actingAs();
    if (functionKey()) headers["x-functions-key"] = functionKey();
    return headers;
  }

  class ApiError extends Error {
    constructor(status, detail, problem) {
      super(detail);
      this.status = status;
      this.problem = problem;
    }
  }

  // One call to the API: JSON in, JSON out; a problem+json answer becomes an ApiError carrying its detail.
  async function api(path, options) {
    const opts = options || {};
    const headers = { Accept: "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    withIdentity(headers);
    const response = await fetch(path.startsWith("/") ? path : API + "/" + path, {
      method: opts.method || "GET",
      headers: headers,
      credentials: "same-origin", // App Service authentication's session cookie in Azure
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail ? data.detail : "HTTP " + response.status + " " + response.statusText;
      if (response.status === 401 && !LOOPBACK) signIn();
      throw new ApiError(response.status, detail, data);
    }
    return data;
  }

  // In Azure a 401 means no App Service authentication session (the platform's own answer, not problem+json):
  // offer Microsoft Entra ID sign-in, which comes back to this page (README "The inbox (browser)").
  function signIn() {
    const box = document.getElementById("signin");
    if (!box || !box.hidden) return;
    const back = location.pathname.replace(/[^/]*$/, "");
    box.querySelector("a").href = "/.auth/login/aad?post_login_redirect_uri=" + encodeURIComponent(back + location.hash);
    box.hidden = false;
  }

  // Live data for a page: calls load() now and every POLL_MS, hands each result to onData (or the error to
  // onError), and returns a function that stops it. The Server-Sent Events version replaces only this function.
  function live(load, onData, onError) {
    let stopped = false;
    let timer = null;
    async function tick() {
      try {
        const data = await load();
        if (!stopped) onData(data);
      } catch (error) {
        if (!stopped) onError(error);
      }
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    }
    tick();
    return function stop() { stopped = true; if (timer) clearTimeout(timer); };
  }

  // Live data from GET <runs|conversations>/{id}/events (Server-Sent Events; docs/internals.md "Timeline and
  // events"). The stream is read with fetch, not EventSource, so that the developer identity or function key
  // headers go along; like EventSource it reconnects after the server's retry: with Last-Event-ID, and stops on
  // 204 (the run ended and every entry arrived). onEvents(entries, status) gets each answer's new entries and its
  // status event; onEnd() is called once on 204. Returns a function that stops it.
  function follow(path, lastEventId, onEvents, onEnd, onError) {
    let stopped = false;
    let last = lastEventId || "";
    let controller = null;
    let retry = 1000;
    async function loop() {
      while (!stopped) {
        controller = new AbortController();
        const headers = { Accept: "text/event-stream" };
        if (last) headers["Last-Event-ID"] = last;
        withIdentity(headers);
        try {
          const response = await fetch(API + "/" + path + "/events?wait=20", { headers: headers,
            credentials: "same-origin", signal: controller.signal });
          if (response.status === 204) { if (!stopped) onEnd(); return; }
          const text = await response.text();
          if (!response.ok) {
            let detail = "HTTP " + response.status;
            try { detail = JSON.parse(text).detail || detail; } catch (e) { /* not problem+json */ }
            throw new ApiError(response.status, detail, null);
          }
          const parsed = parseEventStream(text);
          if (parsed.retry) retry = parsed.retry;
          const entries = parsed.events.filter((e) => e.id).map((e) => JSON.parse(e.data));
          const status = parsed.events.filter((e) => e.event === "status").map((e) => JSON.parse(e.data)).pop();
          if (entries.length) last = entries[entries.length - 1].id;
          if (!stopped) onEvents(entries, status || null);
        } catch (error) {
          if (stopped) return;
          onError(error);
          if (error instanceof ApiError && error.status >= 400 && error.status < 500) return; // a caller problem
        }
        if (!stopped) await new Promise((resolve) => setTimeout(resolve, retry));
      }
    }
    loop();
    return function stop() { stopped = true; if (controller) controller.abort(); };
  }

  // The events of a text/event-stream body (the WHATWG "event stream interpretation": id, event, data, retry;
  // lines starting with ":" are comments).
  function parseEventStream(text) {
    const events = [];
    let retry = 0;
    for (const block of text.replace(/\r\n?/g, "\n").split("\n\n")) {
      const event = { id: "", event: "message", data: [] };
      let any = false;
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (name === "data") { event.data.push(value); any = true; }
        else if (name === "id") event.id = value;
        else if (name === "event") event.event = value;
        else if (name === "retry" && /^[0-9]+$/.test(value)) retry = Number(value);
      }
      if (any) events.push({ id: event.id, event: event.event, data: event.data.join("\n") });
    }
    return { events: events, retry: retry };
  }

  // ---------------------------------------------------------------------------------------------------------
  // DOM helpers (text only: data from the API never becomes HTML)

  function el(tag, attrs) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, String(value));
    }
    for (let i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function append(node, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) { child.forEach((c) => append(node, c)); return; }
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }

  // node.replaceChildren without the null/false children (replaceChildren would write them as text).
  function fill(node) {
    node.replaceChildren();
    for (let i = 1; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function who(principal) {
    if (!principal) return "nobody (no identity)";
    return principal.name && principal.name !== principal.id ? principal.name + " (" + principal.id + ")" : principal.id;
  }

  function when(text) {
    if (!text) return "–";
    const date = new Date(text);
    if (isNaN(date.getTime())) return text;
    return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  function time(text) {
    return text ? el("time", { datetime: text, title: text }, when(text)) : "–";
  }

  function pretty(value) {
    return el("pre", { class: "json", tabindex: "0" }, JSON.stringify(value, null, 2));
  }

  function badge(status) {
    const label = String(status || "unknown").replace(/_/g, " ");
    return el("span", { class: "badge badge-" + String(status || "unknown").replace(/_/g, "-") }, label);
  }

  function field(label, value) {
    return [el("dt", null, label), el("dd", null, value)];
  }

  const view = () => document.getElementById("view");

  function notice(text, kind) {
    const node = document.getElementById("notice");
    node.textContent = text || "";
    node.className = "notice" + (kind ? " notice-" + kind : "");
  }

  function problemBox(error) {
    return el("p", { class: "error", role: "alert" }, error instanceof ApiError ? error.message : String(error));
  }

  // ---------------------------------------------------------------------------------------------------------
  // Approvals (inbox and run page)

  const drafts = {}; // comment being typed per approval, kept across re-renders

  function isExpired(item) {
    return item.state === "expired" ||
      (item.state === "pending" && item.expiresAt && new Date(item.expiresAt).getTime() <= Date.now());
  }

  async function decide(item, approved, button) {
    const comment = (drafts[item.runId + "/" + item.id] || "").trim();
    const form = button.form;
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    notice((approved ? "Approving " : "Rejecting ") + item.tool + "…");
    try {
      const body = { approved: approved, comment: comment || null };
      if (item.argumentsHash) body.argumentsHash = item.argumentsHash;
      const answer = await api(item.links.decide, { method: "POST", body: body });
      delete drafts[item.runId + "/" + item.id];
      notice((answer.decision === "approved" ? "Approved " : "Rejected ") + item.tool + " on " + item.runId +
        (answer.recorded ? "." : " (queued: the run has not recorded it yet)."), "ok");
      refresh();
    } catch (error) {
      notice(error instanceof ApiError ? error.message : String(error), "error");
      form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  }

  function approvalCard(item, options) {
    const key = item.runId + "/" + item.id;
    const expired = isExpired(item);
    const state = expired ? "expired" : item.state;
    const runHref = item.source === "conversation" ? "#/conversations/" + item.runId : "#/runs/" + item.runId;
    const card = el("article", { class: "card approval approval-" + state, "data-approval": item.id,
      "aria-labelledby": "ap-" + item.id },
      el("header", { class: "card-head" },
        el("h3", { id: "ap-" + item.id }, item.kind === "workflow" ? "Step " : "Tool ", el("code", null, item.tool)),
        badge(state)),
      item.summary ? el("p", { class: "summary" }, item.summary) : null,
      el("dl", { class: "facts" },
        field("Asked by", who(item.startedBy)),
        field("Agent", item.agent),
        item.customer ? field("Customer", item.customer) : null,
        options && options.hideRun ? null : field(item.source === "conversation" ? "Conversation" : "Run",
          el("a", { href: runHref }, item.runId)),
        item.requestedAt ? field("Requested", time(item.requestedAt)) : null,
        item.expiresAt ? field(expired ? "Expired" : "Expires", time(item.expiresAt)) : null,
        item.decidedAt ? field(item.state === "expired" ? "Expired" : "Decided", time(item.decidedAt)) : null,
        item.state !== "pending" && item.state !== "expired" ? field("Decided by", who(item.decidedBy)) : null,
        item.comment ? field("Comment", item.comment) : null));
    if (item.arguments !== null && item.arguments !== undefined) {
      card.appendChild(el("h4", null, item.kind === "workflow" ? "Plan" : "Arguments",
        item.truncated ? " (shortened; the audit has them whole)" : ""));
      card.appendChild(pretty(item.arguments));
    }
    if (item.state === "pending" && !expired) {
      if (item.mayDecide) {
        const id = "comment-" + item.runId + "-" + item.id;
        const textarea = el("textarea", { id: id, name: "comment", rows: "2", maxlength: "2000",
          oninput: (event) => { drafts[key] = event.target.value; } });
        textarea.value = drafts[key] || "";
        const form = el("form", { class: "decide", onsubmit: (event) => event.preventDefault() },
          el("label", { for: id }, "Comment (optional)"), textarea,
          el("div", { class: "buttons" },
            el("button", { type: "button", class: "approve", onclick: (e) => decide(item, true, e.currentTarget) },
              "Approve"),
            el("button", { type: "button", class: "reject", onclick: (e) => decide(item, false, e.currentTarget) },
              "Reject")));
        card.appendChild(form);
      } else {
        card.appendChild(el("p", { class: "muted" },
          "You may not decide this one (an approver role is needed, and not on a run you started or that acts for you)."));
      }
    } else if (expired && item.state === "pending") {
      card.appendChild(el("p", { class: "muted" }, "Nobody decided in time; the run records it as expired."));
    }
    return card;
  }

  // Re-render only when the data changed, keeping the focused element's place (a reviewer typing a comment).
  function renderIfChanged(state, data, render) {
    const json = JSON.stringify(data);
    if (state.last === json) return;
    state.last = json;
    const active = document.activeElement;
    const activeId = active && active.id;
    render(data);
    if (activeId) {
      const again = document.getElementById(activeId);
      if (again && again !== active) {
        again.focus();
        if (active.selectionStart !== undefined && again.setSelectionRange) {
          try { again.setSelectionRange(active.selectionStart, active.selectionEnd); } catch (e) { /* not text */ }
        }
      }
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Pages

  function inboxPage() {
    const root = view();
    fill(root, el("h2", null, "Inbox"),
      el("p", { class: "muted" }, "Approvals waiting for a person, newest first, across runs and conversations."),
      el("section", { id: "pending", "aria-labelledby": "pending-h" },
        el("h3", { id: "pending-h", class: "section" }, "Pending"), el("p", null, "Loading…")),
      el("section", { id: "decided", "aria-labelledby": "decided-h" },
        el("h3", { id: "decided-h", class: "section" }, "Recently decided"), el("p", null, "Loading…")));
    const state = {};
    return live(
      async () => {
        const [pending, decided] = await Promise.all([
          api("approvals?state=pending&top=100"), api("approvals?state=decided&top=20")]);
        return { pending: pending.approvals, decided: decided.approvals };
      },
      (data) => renderIfChanged(state, data, (d) => {
        const pending = document.getElementById("pending");
        fill(pending, el("h3", { id: "pending-h", class: "section" }, "Pending (" + d.pending.length + ")"),
          d.pending.length ? el("div", { class: "cards" }, d.pending.map((item) => approvalCard(item)))
            : el("p", { class: "empty" }, "Nothing waits for a decision."));
        const decided = document.getElementById("decided");
        fill(decided, el("h3", { id: "decided-h", class: "section" }, "Recently decided"),
          d.decided.length ? el("div", { class: "cards" }, d.decided.map((item) => approvalCard(item)))
            : el("p", { class: "empty" }, "No decisions yet."));
      }),
      (error) => { state.last = null; fill(view(), el("h2", null, "Inbox"), problemBox(error)); });
  }

  const RUN_STATUSES = ["pending", "running", "awaiting_approval", "completed", "failed", "cancelled"];
  const CONVERSATION_STATUSES = ["idle", "answering", "awaiting_approval", "closed", "failed"];

  function runsPage(params) {
    const kind = params.get("kind") === "conversations" ? "conversations" : "runs";
    const agent = params.get("agent") || "";
    const status = params.get("status") || "";
    const token = params.get("token") || "";
    const top = /^[1-9][0-9]?$|^100$/.test(params.get("top") || "") ? params.get("top") : "25";
    const statuses = kind === "runs" ? RUN_STATUSES : CONVERSATION_STATUSES;
    const agentSelect = el("select", { id: "f-agent", name: "agent" }, el("option", { value: "" }, "All agents"));
    if (agent) agentSelect.appendChild(el("option", { value: agent, selected: true }, agent));
    api("agents").then((answer) => {
      answer.agents.forEach((a) => {
        if (a.name !== agent) agentSelect.appendChild(el("option", { value: a.name }, a.name));
      });
    }).catch(() => { /* the filter still works with what is typed in the URL */ });
    const form = el("form", { class: "filters", onsubmit: (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      const data = new FormData(event.target);
      for (const [k, v] of data.entries()) if (v) next.set(k, v);
      location.hash = "#/runs" + (next.toString() ? "?" + next.toString() : "");
    } },
      el("div", null, el("label", { for: "f-kind" }, "Show"),
        el("select", { id: "f-kind", name: "kind" },
          el("option", { value: "runs", selected: kind === "runs" }, "Runs"),
          el("option", { value: "conversations", selected: kind === "conversations" }, "Conversations"))),
      el("div", null, el("label", { for: "f-agent" }, "Agent"), agentSelect),
      el("div", null, el("label", { for: "f-status" }, "Status"),
        el("select", { id: "f-status", name: "status" }, el("option", { value: "" }, "Any status"),
          statuses.map((s) => el("option", { value: s, selected: s === status }, s.replace(/_/g, " "))))),
      el("div", null, el("button", { type: "submit" }, "Filter")));
    const list = el("div", { id: "list" }, el("p", null, "Loading…"));
    fill(view(), el("h2", null, "Runs and conversations"), form, list);
    const query = new URLSearchParams({ top: top });
    if (agent) query.set("agent", agent);
    if (status) query.set("status", status);
    if (token) query.set("continuationToken", token);
    const state = {};
    return live(() => api(kind + "?" + query.toString()), (data) => renderIfChanged(state, data, (d) => {
      const rows = d[kind] || [];
      const table = el("table", { class: "runs" },
        el("caption", { class: "visually-hidden" }, kind === "runs" ? "Runs, newest first" : "Conversations, newest first"),
        el("thead", null, el("tr", null, ["Id", "Agent", "Status", "Customer", "Started by", "Created", "Updated"]
          .map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", null, rows.map((r) => el("tr", null,
          el("td", { "data-label": "Id" }, el("a", { href: (kind === "runs" ? "#/runs/" : "#/conversations/") + r.id },
            r.id)),
          el("td", { "data-label": "Agent" }, r.agent),
          el("td", { "data-label": "Status" }, badge(r.status)),
          el("td", { "data-label": "Customer" }, r.customer || "–"),
          el("td", { "data-label": "Started by" }, r.startedBy ? who(r.startedBy) : "–"),
          el("td", { "data-label": "Created" }, time(r.createdAt)),
          el("td", { "data-label": "Updated" }, time(r.updatedAt))))));
      const base = new URLSearchParams();
      if (kind !== "runs") base.set("kind", kind);
      if (agent) base.set("agent", agent);
      if (status) base.set("status", status);
      if (top !== "25") base.set("top", top);
      const pager = el("nav", { class: "pager", "aria-label": "Pages" },
        token ? el("a", { href: "#/runs" + (base.toString() ? "?" + base : "") }, "First page") : null,
        d.continuationToken ? el("a", { href: "#/runs?" + new URLSearchParams([...base, ["token", d.continuationToken]]),
          rel: "next" }, "Next page") : null);
      fill(list, rows.length ? table : el("p", { class: "empty" }, "No " + kind + " match."), pager);
    }), (error) => { state.last = null; fill(list, problemBox(error)); });
  }

  function usageText(usage) {
    if (!usage) return "–";
    const parts = [];
    for (const [k, v] of Object.entries(usage)) if (typeof v === "number") parts.push(k.replace(/_/g, " ") + ": " + v);
    return parts.length ? parts.join(", ") : JSON.stringify(usage);
  }

  // The timeline until the history-based one exists: what GET runs/{id} tells (start, approvals, end).
  function timelineFromRun(run) {
    const events = [];
    events.push({ rank: 0, at: run.createdAt, text: "Started by " + who(run.startedBy) + " (agent " + run.agent + ")" });
    (run.approvals || []).forEach((a) => events.push({ rank: 1, at: a.decidedAt,
      text: a.tool + ": " + a.decision + (a.decision === "expired" ? "" : " by " + who(a.decidedBy)) +
        (a.comment ? " (“" + a.comment + "”)" : "") }));
    (run.pendingApprovals || []).forEach((p) => events.push({ rank: 1, at: p.requestedAt,
      text: p.tool + ": waiting for approval until " + when(p.expiresAt) }));
    if (["completed", "failed", "cancelled", "closed"].includes(run.status)) {
      events.push({ rank: 2, at: run.updatedAt, text: "Finished: " + run.status.replace(/_/g, " ") });
    }
    events.sort((a, b) => a.rank - b.rank || String(a.at || "").localeCompare(String(b.at || "")));
    return el("ol", { class: "timeline" }, events.map((e) => el("li", null, time(e.at), " ", e.text)));
  }

  // One line per entry of GET <runs|conversations>/{id}/timeline (docs/internals.md "Timeline and events").
  function entryText(e) {
    const args = (v) => (v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v));
    switch (e.kind) {
      case "status": return "Status: " + String(e.status || "").replace(/_/g, " ") + (e.agent ? " (agent " + e.agent + ")" : "");
      case "model_turn":
        if (e.ok === false) return "Model call failed: " + (e.error || "") + (e.retryable ? " (retried)" : "");
        return "Model turn" + (e.agent ? " of " + e.agent : "") +
          ((e.toolCalls || []).length ? ": calls " + e.toolCalls.map((c) => c.name).join(", ") : ": answered") +
          (e.usage ? " · " + e.usage.totalTokens + " tokens" : "");
      case "tool_call":
        return "Tool " + e.name + (e.arguments ? " " + args(e.arguments) : "") + " → " +
          (e.ok === false ? "failed: " + (e.error || "") : args(e.result)) + (e.retries ? " (after " + e.retries + " retries)" : "");
      case "handoff": return "Handoff to " + (e.to || e.tool);
      case "approval_requested":
        return "Approval requested: " + (e.approvals || []).map((a) => a.tool + " " + args(a.arguments)).join("; ") +
          " (expires " + when(e.expiresAt) + ")";
      case "approval_decided":
        return "Approval " + e.decision + " by " + who(e.decidedBy) + (e.comment ? " (“" + e.comment + "”)" : "");
      case "timer": return e.fired ? "Timer fired" : "Timer set for " + when(e.fireAt);
      case "sub_orchestration": return "Sub-orchestration " + e.name + (e.ok === false ? " failed: " + e.error : " finished");
      case "message": return e.role === "user" ? "Message " + e.seq + ": " + args(e.content) : "Answer (" + (e.agent || e.role || e.event) + ")";
      case "output": return "Output: " + args(e.output && e.output.finalOutput !== undefined ? e.output.finalOutput : e.output);
      case "error": return "Error: " + args(e.error);
      default: return e.kind;
    }
  }

  function timelineFromEntries(entries) {
    return el("ol", { class: "timeline" }, entries.map((e) =>
      el("li", { "data-kind": e.kind, "data-id": e.id }, time(e.at), " ", entryText(e))));
  }

  function runPage(kind, id) {
    const root = view();
    fill(root, el("h2", null, (kind === "runs" ? "Run " : "Conversation ") , el("code", null, id)),
      el("p", null, "Loading…"));
    const state = {};
    const path = kind + "/" + encodeURIComponent(id);
    const load = async () => {
      const [run, timeline] = await Promise.all([api(path), api(path + "/timeline").catch(() => null)]);
      return { ...run, timelineEntries: timeline ? timeline.entries : null };
    };
    const render = (run) => {
      const pending = (run.pendingApprovals || []).map((p) => ({
        ...p, runId: id, instanceId: p.runId || id, source: kind === "runs" ? "run" : "conversation",
        agent: run.agent, customer: run.customer, startedBy: run.startedBy, state: "pending", mayDecide: true,
        links: { decide: API + "/runs/" + id + "/approvals/" + p.id } }));
      const decided = (run.approvals || []).map((a) => ({ ...a, runId: id, source: "run", agent: run.agent,
        startedBy: run.startedBy, state: a.decision, links: {} }));
      fill(root, 
        el("h2", null, (kind === "runs" ? "Run " : "Conversation "), el("code", null, id), " ", badge(run.status)),
        el("dl", { class: "facts wide" },
          field("Agent", run.agent), field("Customer", run.customer || "–"), field("Started by", who(run.startedBy)),
          field("Created", time(run.createdAt)), field("Updated", time(run.updatedAt)),
          field("Last agent", run.lastAgent || "–"), field("Turns", run.turns === undefined || run.turns === null ? "–" : run.turns),
          field("Usage", usageText(run.usage))),
        run.output !== null && run.output !== undefined ? el("section", { "aria-labelledby": "out-h" },
          el("h3", { id: "out-h", class: "section" }, "Output"),
          typeof run.output === "string" ? el("p", { class: "output" }, run.output) : pretty(run.output)) : null,
        run.error ? el("section", { "aria-labelledby": "err-h" }, el("h3", { id: "err-h", class: "section" }, "Error"),
          el("p", { class: "error" }, run.error)) : null,
        pending.length ? el("section", { "aria-labelledby": "pa-h" },
          el("h3", { id: "pa-h", class: "section" }, "Waiting for approval"),
          el("div", { class: "cards" }, pending.map((p) => approvalCard(p, { hideRun: true })))) : null,
        decided.length ? el("section", { "aria-labelledby": "da-h" },
          el("h3", { id: "da-h", class: "section" }, "Approvals"),
          el("div", { class: "cards" }, decided.map((a) => approvalCard(a, { hideRun: true })))) : null,
        run.messages ? el("section", { "aria-labelledby": "msg-h" },
          el("h3", { id: "msg-h", class: "section" }, "Messages"),
          el("ol", { class: "messages" }, run.messages.map((m) => el("li", { class: "message message-" + m.role },
            el("strong", null, m.role), " ", time(m.at || m.createdAt), el("p", null,
              typeof m.content === "string" ? m.content : JSON.stringify(m.content)))))) : null,
        el("section", { "aria-labelledby": "tl-h" },
          el("h3", { id: "tl-h", class: "section" }, "Timeline"),
          run.timelineEntries ? timelineFromEntries(run.timelineEntries) : timelineFromRun(run)),
        el("p", { class: "muted live", id: "live-state" }, run.live || ""));
    };
    const show = (data) => renderIfChanged(state, data, render);
    const failed = (error) => { state.last = null; fill(root, el("h2", null, id), problemBox(error)); };
    // First the run and its whole timeline, then only what changes: the event stream's new entries (each one
    // re-reads the run's summary: status, approvals, output) until it ends with 204.
    let stopFollowing = null;
    let stopped = false;
    let current = null;
    load().then((data) => {
      if (stopped) return;
      current = data;
      if (!data.timelineEntries) { stopFollowing = live(load, show, failed); return; } // no timeline route
      const ended = ["completed", "failed", "cancelled", "closed"].includes(data.status);
      current.live = ended ? "" : "Live: updates as the run goes.";
      show(current);
      if (ended) return;
      const lastId = data.timelineEntries.length ? data.timelineEntries[data.timelineEntries.length - 1].id : "";
      let lastStatus = null;
      stopFollowing = follow(path, lastId, async (entries, status) => {
        const statusText = JSON.stringify(status);
        if (!entries.length && statusText === lastStatus) return; // a heartbeat: nothing changed
        lastStatus = statusText;
        const run = await api(path);
        current = { ...run, timelineEntries: current.timelineEntries.concat(entries), live: current.live };
        if (!stopped) show(current);
      }, async () => {
        const run = await api(path).catch(() => current);
        current = { ...run, timelineEntries: current.timelineEntries, live: "" };
        if (!stopped) show(current);
      }, (error) => {
        current = { ...current, live: "Reconnecting: " + (error instanceof ApiError ? error.message : String(error)) };
        if (!stopped) show(current);
      });
    }).catch(failed);
    return function stop() { stopped = true; if (stopFollowing) stopFollowing(); };
  }

  // ---------------------------------------------------------------------------------------------------------
  // Router (hash routes) and the identity fields

  let stop = null;
  let rendered = "";

  function route(keepNotice) {
    const hash = location.hash || "#/inbox";
    const [path, search] = hash.slice(1).split("?");
    const params = new URLSearchParams(search || "");
    if (stop) stop();
    stop = null;
    if (keepNotice !== true) notice("");
    const parts = path.split("/").filter(Boolean);
    let page = "inbox";
    if (parts[0] === "runs" && parts[1]) { page = "runs"; stop = runPage("runs", decodeURIComponent(parts[1])); }
    else if (parts[0] === "conversations" && parts[1]) {
      page = "runs"; stop = runPage("conversations", decodeURIComponent(parts[1]));
    } else if (parts[0] === "runs") { page = "runs"; stop = runsPage(params); }
    else { stop = inboxPage(); }
    document.querySelectorAll("[data-nav]").forEach((a) => {
      if (a.dataset.nav === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    document.title = "Durable agents: " + (page === "inbox" ? "inbox" : parts[1] ? parts[1] : "runs");
    if (rendered && keepNotice !== true) view().focus({ preventScroll: true });
    rendered = hash;
  }

  function refresh() { route(true); }

  function setupIdentity() {
    if (LOOPBACK) {
      const form = document.getElementById("identity");
      const input = document.getElementById("acting-as");
      form.hidden = false;
      input.value = actingAs();
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (value) localStorage.setItem("durableAgents.actingAs", value);
        else localStorage.removeItem("durableAgents.actingAs");
        notice(value ? "Acting as " + value + "." : "No developer identity.", "ok");
        route();
      });
    } else {
      const form = document.getElementById("keyform");
      const input = document.getElementById("function-key");
      form.hidden = false;
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (value) sessionStorage.setItem("durableAgents.functionKey", value);
        else sessionStorage.removeItem("durableAgents.functionKey");
        input.value = "";
        notice(value ? "Function key set for this tab." : "Function key cleared.", "ok");
        route();
      });
    }
  }

  window.addEventListener("hashchange", () => route());
  document.addEventListener("DOMContentLoaded", () => { setupIdentity(); route(); });
})();
