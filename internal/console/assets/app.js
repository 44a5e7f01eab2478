// MDSA operator console. Everything that came from a request, a plugin or
// a tenant is put in the page as text (textContent), never as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { session: null, live: null, tab: "live", rows: 0, selected: "", charts: null };
  // Figures about the live view itself, read by the browser tests and the
  // console benchmark: frames received, requests listed, how late frames
  // arrived.
  const stats = window.__mdsa = { frames: 0, listed: 0, skipped: 0, lagMs: 0, maxLagMs: 0, renderMs: 0, maxRenderMs: 0 };
  const MAX_ROWS = 200;

  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    if (props) for (const k in props) {
      if (k === "class") e.className = props[k];
      else if (k === "style") Object.assign(e.style, props[k]);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), props[k]);
      else e.setAttribute(k, props[k]);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const fmt = (x, d = 1) => (x === undefined || x === null) ? "–" : Number(x).toFixed(d);
  const bytes = (n) => n >= 1 << 30 ? fmt(n / (1 << 30), 2) + " GiB" : n >= 1 << 20 ? fmt(n / (1 << 20), 1) + " MiB" : n >= 1024 ? fmt(n / 1024, 1) + " KiB" : n + " B";
  const fill = (tbody, rows) => tbody.replaceChildren(...rows);

  async function api(method, path, body, raw) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (state.session && method !== "GET") opts.headers["X-CSRF-Token"] = state.session.csrf;
    if (body !== undefined) {
      if (raw) { opts.body = body; opts.headers["Content-Type"] = "application/wasm"; }
      else { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    }
    const r = await fetch("api/" + path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (r.status === 401 && path !== "login") { showLogin(); }
    return { ok: r.ok, status: r.status, data };
  }
  const errMsg = (res) => (res.data && res.data.error && res.data.error.message) || ("HTTP " + res.status);

  // --- login ---
  function showLogin() {
    if (state.live) { state.live.close(); state.live = null; }
    state.session = null;
    // Nothing of the last session stays in the page for the next one.
    $("req-list").tBodies[0].replaceChildren();
    $("detail").replaceChildren(el("p", { class: "note" }, "No request selected."));
    for (const id of ["plugin-list", "model-list", "tenant-list", "table", "stages"]) $(id).tBodies[0].replaceChildren();
    $("pg-stages").replaceChildren(); $("pg-answer").textContent = ""; $("hw").textContent = "";
    stats.skipped = 0; state.total = undefined;
    $("tabs").hidden = true; $("logout").hidden = true; $("who").textContent = "";
    for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "login";
  }
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    const res = await api("POST", "login", { key: $("key").value });
    $("key").value = "";
    if (!res.ok) { $("login-error").textContent = errMsg(res); return; }
    start(res.data);
  });
  $("logout").addEventListener("click", async () => { await api("POST", "logout"); showLogin(); });

  function start(session) {
    state.session = session;
    $("who").textContent = session.admin ? "admin" : "tenant " + session.tenant;
    $("tabs").hidden = false; $("logout").hidden = false;
    $("plugin-upload").hidden = !session.admin;
    fill($("pg-tenant"), session.tenants.map((t) => el("option", { value: t }, t)));
    $("pg-tenant").disabled = session.open || !session.admin;
    show(state.tab);
    connect();
  }

  // --- tabs ---
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.tab));
  function show(tab) {
    state.tab = tab;
    for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.tab === tab);
    for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== tab;
    if (tab === "plugins") loadPlugins();
    if (tab === "models") loadModels();
    if (tab === "tenants") loadTenants();
    if (tab === "live" && state.charts) state.charts.resize();
  }

  // --- live ---
  function connect() {
    if (state.live) state.live.close();
    const es = new EventSource("api/live");
    state.live = es;
    es.onmessage = (m) => {
      const t0 = performance.now();
      const f = JSON.parse(m.data);
      stats.frames++;
      stats.lagMs = Math.max(0, Date.now() - f.now);
      stats.maxLagMs = Math.max(stats.maxLagMs, stats.lagMs);
      renderFrame(f);
      stats.renderMs = performance.now() - t0;
      stats.maxRenderMs = Math.max(stats.maxRenderMs, stats.renderMs);
    };
    es.onerror = () => {
      // The server closes the stream at shutdown or when the session ends;
      // EventSource reconnects by itself, and a 401 shows the login.
      if (es.readyState === EventSource.CLOSED) api("GET", "session").then((r) => { if (r.ok) setTimeout(connect, 1000); });
    };
  }

  function renderFrame(f) {
    $("k-rps").textContent = fmt(f.rps, 1);
    $("k-tps").textContent = fmt(f.tokens_per_second, 1);
    const total = f.stages.find((s) => s.stage === "total");
    $("k-p50").textContent = total && total.n ? fmt(total.p50_ms, 1) : "–";
    $("k-p99").textContent = total && total.n ? fmt(total.p99_ms, 1) : "–";
    let errs = 0, refused = 0;
    for (const p of f.series) { errs += p.errors; refused += p.refused; }
    $("k-err").textContent = errs; $("k-ref").textContent = refused;
    fill($("stages").tBodies[0], f.stages.map((s) => el("tr", null, el("td", null, s.stage),
      el("td", null, s.n ? fmt(s.p50_ms, 2) : "–"), el("td", null, s.n ? fmt(s.p95_ms, 2) : "–"),
      el("td", null, s.n ? fmt(s.p99_ms, 2) : "–"), el("td", null, s.n))));
    fill($("table").tBodies[0], f.table.map((r) => el("tr", null, el("td", null, r.tenant), el("td", null, r.domain || "–"),
      el("td", null, r.requests), el("td", null, r.ok), el("td", null, r.flagged), el("td", null, r.out_of_scope),
      el("td", { class: r.errors ? "error" : "" }, r.errors), el("td", null, r.refused), el("td", null, r.tokens_out))));
    drawCharts(f.series);
    // Requests that arrived too fast to list: the scope's count grew by
    // more than the frame lists.
    const skipped = state.total === undefined ? 0 : Math.max(0, f.total - state.total - f.requests.length);
    state.total = f.total;
    addRows(f.requests, skipped);
  }

  function drawCharts(series) {
    if (typeof uPlot === "undefined") { $("nocharts").hidden = false; return; }
    const xs = series.map((p) => p.t);
    const rps = [xs, series.map((p) => p.requests), series.map((p) => p.errors + p.refused), series.map((p) => p.tokens_out)];
    const lat = [xs, series.map((p) => p.requests ? p.p50_ms : null), series.map((p) => p.requests ? p.p99_ms : null)];
    if (!state.charts) {
      const w = Math.max(320, Math.min(620, (document.body.clientWidth - 80) / 2));
      const axes = [{}, { size: 50 }];
      const a = new uPlot({ title: "Requests and tokens per second", width: w, height: 220, axes,
        series: [{}, { label: "requests", stroke: "#2457c5" }, { label: "errors + refused", stroke: "#b3261e" },
          { label: "tokens out", stroke: "#6b4fd8", scale: "tok" }],
        scales: { tok: {} } }, rps, $("chart-rps"));
      const b = new uPlot({ title: "Latency (ms)", width: w, height: 220, axes,
        series: [{}, { label: "p50", stroke: "#1b7a3a", points: { show: true, size: 4 } }, { label: "p99", stroke: "#c77d00", points: { show: true, size: 4 } }] }, lat, $("chart-lat"));
      state.charts = { a, b, resize() { } };
    } else {
      state.charts.a.setData(rps);
      state.charts.b.setData(lat);
    }
  }

  // --- requests ---
  function addRows(reqs, skipped) {
    if (skipped) { stats.skipped += skipped; }
    if (!reqs.length) return;
    const tbody = $("req-list").tBodies[0];
    const frag = document.createDocumentFragment();
    for (let i = reqs.length - 1; i >= 0; i--) {
      const q = reqs[i];
      const tr = el("tr", { "data-id": q.id, onclick: () => openRequest(q.id, tr) },
        el("td", null, new Date(q.t).toLocaleTimeString()), el("td", null, q.tenant), el("td", null, q.domain || "–"),
        el("td", null, q.confidence ? fmt(q.confidence, 2) : "–"),
        el("td", { class: "s-" + q.status }, q.refused ? "refused: " + q.refused : q.status === "error" ? "error " + q.code : q.status),
        el("td", null, fmt(q.ms.total, 1)), el("td", null, q.tokens), el("td", { class: "q" }, q.snippet));
      frag.append(tr);
    }
    tbody.prepend(frag);
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
    stats.listed += reqs.length;
    $("req-count").textContent = tbody.rows.length;
    $("req-skipped").textContent = stats.skipped ? " (" + stats.skipped + " more arrived too fast to list)" : "";
  }

  async function openRequest(id, tr) {
    for (const r of document.querySelectorAll("#req-list tr.sel")) r.classList.remove("sel");
    if (tr) tr.classList.add("sel");
    state.selected = id;
    const res = await api("GET", "requests/" + encodeURIComponent(id));
    const d = $("detail");
    if (!res.ok) { d.replaceChildren(el("p", { class: "error" }, errMsg(res))); return; }
    renderDetail(d, res.data);
  }

  function waterfall(ms) {
    const total = Math.max(ms.total || 0, 0.001);
    const box = el("div", { class: "wf", id: "waterfall" });
    let at = 0;
    for (const st of ["route", "prompt", "generate", "validate"]) {
      const v = ms[st] || 0;
      const bar = el("div", { class: "bar " + st, style: { left: (100 * at / total) + "%", width: (100 * v / total) + "%" } });
      box.append(el("span", null, st), el("div", { class: "track" }, bar), el("span", null, fmt(v, 2) + " ms"));
      at += v;
    }
    box.append(el("span", null, "total"), el("div", { class: "track" }, el("div", { class: "bar", style: { left: "0", width: "100%", opacity: ".25" } })), el("span", null, fmt(ms.total, 2) + " ms"));
    return box;
  }

  function renderDetail(d, r) {
    const kids = [el("h3", null, "Request " + r.id),
      el("p", null, r.tenant + " · " + r.endpoint + " · " + (r.domain || "no domain") + " · ",
        el("span", { class: "s-" + r.status }, r.status), " · HTTP " + r.code +
        (r.confidence ? " · confidence " + fmt(r.confidence, 2) : "") + (r.cache ? " · cache " + r.cache : "") +
        (r.model ? " · model " + r.model : "")),
      el("h4", null, "Stages"), waterfall(r.ms)];
    if (r.error) kids.push(el("p", { class: "error" }, r.error));
    kids.push(el("h4", null, "Query"), el("pre", { class: "pre", id: "detail-query" }, r.query + (r.query_cut ? " …(cut)" : "")));
    if (r.forced) kids.push(el("p", { class: "note" }, "The request named its domain: no routing."));
    const cv = r.conversation;
    if (cv) {
      const why = { same_domain: "the query alone agrees with the conversation", follow_up: "a follow-up: kept in the conversation's domain",
        switched: "the query alone clearly belongs elsewhere: switched", no_context: "the earlier turns route nowhere: the query alone decided" }[cv.reason] || cv.reason;
      kids.push(el("h4", null, "Conversation"), el("p", null, "Earlier turns: " + (cv.prior || "no domain") + " (" + fmt(cv.prior_confidence, 2) +
        "); the query alone: " + (cv.alone || "out of scope") + " (" + fmt(cv.alone_confidence, 2) + ", switching needs " + fmt(cv.switch, 2) + "). " + why + "."));
    }
    if (r.history_dropped) kids.push(el("p", { class: "note" }, r.history_dropped + " of the oldest history messages were left out to fit the model's context."));
    if (r.citations && r.citations.length) {
      kids.push(el("h4", null, "Knowledge"), el("ol", { id: "detail-citations" }, ...r.citations.map(c =>
        el("li", null, c.title + " (" + c.kb + ", " + c.document + ", chunk " + c.chunk + ", score " + fmt(c.score, 4) + ")"))));
    }
    if (r.tool_steps && r.tool_steps.length) {
      kids.push(el("h4", null, "Tools run"), el("ol", { id: "detail-tools" }, ...r.tool_steps.map(s =>
        el("li", s.is_error ? { class: "error" } : null, "round " + s.round + ": " + s.name + " " + s.arguments + " → " + s.content))));
    }
    if (r.tool_calls && r.tool_calls.length) {
      kids.push(el("p", { class: "note" }, "The answer is calls of the client's tools: " + r.tool_calls.join(", ") + "."));
    }
    const ex = r.explanation;
    if (ex) {
      kids.push(el("h4", null, "Routing"), el("p", null, "Decision: " + (ex.decision.out_of_scope ? "out of scope" : ex.decision.domain) +
        " (" + ex.reason + "), confidence " + fmt(ex.decision.confidence, 3) + ", threshold " + fmt(ex.threshold, 2) +
        ", coverage " + fmt(100 * ex.coverage, 0) + "% of the query's features known" +
        (ex.background ? ", background score " + fmt(ex.background.score, 3) + (ex.background.won ? " (won)" : "") : "")));
      const rows = ex.alternatives.map((t, i) => el("tr", null,
        el("td", null, t.domain), el("td", null, fmt((ex.decision.alternatives[i] || {}).score, 3)),
        el("td", null, fmt(t.model, 3)), el("td", null, fmt(t.nearest, 3)),
        el("td", { class: "q" }, t.nearest_text ? (t.nearest_is_keyword ? "keyword " : "") + "“" + t.nearest_text + "” (" + fmt(t.similarity, 2) + ")" : "–"),
        el("td", null, fmt(t.keyword, 3), " ", ...(t.keywords || []).map((k) => el("span", { class: "chip" }, k))),
        el("td", null, fmt(t.embedding, 3)), el("td", null, fmt(t.total, 3))));
      kids.push(el("table", { id: "explain" }, el("thead", null, el("tr", null, ...["domain", "prob.", "model", "nearest", "nearest example", "keywords", "embedding", "total"].map((h) => el("th", null, h)))),
        el("tbody", null, ...rows)));
      if (ex.words && ex.words.length) kids.push(el("p", { class: "note" }, "Words: ", ...ex.words.map((w) => el("span", { class: "chip" }, w))));
    } else if (r.alternatives && r.alternatives.length) {
      kids.push(el("h4", null, "Routing"), el("p", null, r.alternatives.map((a) => a.domain + " " + fmt(a.score, 3)).join(" · ")));
    }
    const issues = (r.validation && r.validation.issues) || [];
    kids.push(el("h4", null, "Validation"), el("p", null, r.validation && r.validation.ok === false ? "failed" : "passed",
      r.validation && r.validation.score !== undefined ? ", score " + fmt(r.validation.score, 2) : ""));
    if (issues.length) kids.push(el("ul", null, ...issues.map((i) => el("li", { class: i.severity === "error" ? "error" : "" }, i.severity + " " + i.code + ": " + i.message))));
    kids.push(el("h4", null, "Answer"), el("pre", { class: "pre", id: "detail-answer" }, r.response + (r.response_cut ? " …(cut)" : "")));
    d.replaceChildren(...kids);
  }

  // --- plugins ---
  async function loadPlugins() {
    const res = await api("GET", "plugins");
    if (!res.ok) return;
    const admin = res.data.admin;
    fill($("plugin-list").tBodies[0], res.data.plugins.map((p) => {
      const acts = el("td");
      if (admin) {
        if (p.previous) acts.append(el("button", { class: "rollback", onclick: () => change("POST", "plugins/" + p.name + "/rollback", "Rolled back " + p.name) }, "Roll back"));
        acts.append(el("button", { class: "remove", onclick: () => { if (confirm("Remove " + p.name + "?")) change("DELETE", "plugins/" + p.name, "Removed " + p.name); } }, "Remove"));
      }
      return el("tr", { "data-plugin": p.name }, el("td", null, p.name), el("td", { class: "version" }, p.version), el("td", null, p.language || "?"),
        el("td", { title: p.sha256 }, p.sha256.slice(0, 12)), el("td", null, p.stats.calls), el("td", null, p.stats.errors),
        el("td", null, p.stats.traps), el("td", null, p.stats.timeouts), el("td", null, p.stats.throttled),
        el("td", null, fmt(p.stats.guest_ms, 1)), el("td", null, p.previous ? (p.previous.version || p.previous.sha256.slice(0, 12)) : "–"), acts);
    }));
  }
  async function change(method, path, done) {
    const res = await api(method, path);
    $("up-result").textContent = res.ok ? done + (res.data && res.data.version ? " (now " + res.data.version + ")" : "") : errMsg(res);
    $("up-result").className = res.ok ? "" : "error";
    loadPlugins();
  }
  $("up-go").addEventListener("click", async () => {
    const name = $("up-name").value.trim(), file = $("up-file").files[0];
    if (!name || !file) { $("up-result").textContent = "Name the plugin and choose a .wasm file."; return; }
    $("up-result").textContent = "Checking " + file.name + "…"; $("up-result").className = "";
    const res = await api("PUT", "plugins/" + encodeURIComponent(name), await file.arrayBuffer(), true);
    if (res.ok) { $("up-result").textContent = res.data.action + " " + res.data.name + " " + (res.data.old_version ? res.data.old_version + " → " : "") + res.data.version; }
    else { $("up-result").textContent = "Refused: " + errMsg(res); $("up-result").className = "error"; }
    loadPlugins();
  });

  // --- models ---
  async function loadModels() {
    const res = await api("GET", "models");
    if (!res.ok) return;
    const m = res.data, reg = m.registry;
    if (reg) {
      const pct = reg.budget_bytes ? fmt(100 * reg.resident_bytes / reg.budget_bytes, 0) + "% of " + bytes(reg.budget_bytes) : "no budget";
      $("budget").replaceChildren(el("span", null, "Resident: " + bytes(reg.resident_bytes) + " (" + pct + ") · loads " + reg.loads + " · evictions " + reg.evictions + " · hits " + reg.hits + " · misses " + reg.misses));
      const order = [...reg.loaded].sort((a, b) => (a.leases - b.leases) || (a.idle_since || "").localeCompare(b.idle_since || ""));
      fill($("model-list").tBodies[0], reg.loaded.map((x) => el("tr", null, el("td", null, x.name), el("td", null, x.tier), el("td", null, x.state),
        el("td", null, bytes(x.bytes)), el("td", null, x.leases), el("td", null, x.pinned ? "yes" : ""), el("td", null, x.hits),
        el("td", null, order.indexOf(x) + 1))));
    } else {
      $("budget").replaceChildren(el("span", null, "Models this tenant may use: " + m.models.map((x) => x.name).join(", ")));
      fill($("model-list").tBodies[0], []);
    }
    if (m.hardware) {
      const hw = m.hardware, rec = m.recommendation || {}, c = hw.cpu || {}, mem = hw.memory || {};
      const gpus = (hw.gpus || []).map((g) => (g.name || g.vendor) + " " + bytes(g.vram_total_bytes || g.vram_bytes || 0)).join(", ") || "none";
      $("hw-summary").replaceChildren(
        el("li", null, "CPU: " + (c.model || "?") + ", " + c.cores + " cores, " + c.threads + " threads" + (c.quota_cpus ? ", cgroup quota " + c.quota_cpus + " CPUs" : "")),
        el("li", null, "Memory: " + bytes(mem.available_bytes || 0) + " available of " + bytes(mem.total_bytes || 0)),
        el("li", null, "GPUs: " + gpus),
        el("li", null, "Recommended: " + (rec.threads || "?") + " decode threads, model memory budget " + bytes(rec.memory_budget_bytes || 0) +
          (rec.vram_budget_bytes ? ", VRAM budget " + bytes(rec.vram_budget_bytes) : "")));
      $("hw").textContent = JSON.stringify({ hardware: hw, recommendation: rec }, null, 2);
    } else {
      $("hw-summary").replaceChildren();
      $("hw").textContent = m.hardware_error || "Only an admin sees the hardware.";
    }
  }

  // --- tenants ---
  async function loadTenants() {
    const res = await api("GET", "tenants");
    if (!res.ok) return;
    const lim = (v) => v ? v : "∞";
    fill($("tenant-list").tBodies[0], res.data.tenants.map((t) => el("tr", null, el("td", null, t.name),
      el("td", null, t.in_flight + " / " + lim(t.concurrent)), el("td", null, t.tokens_last_minute + " / " + lim(t.tokens_per_minute)),
      el("td", null, t.requests_per_second ? t.requests_per_second + "/s (burst " + t.burst + ")" : "∞"), el("td", null, lim(t.max_tokens)),
      el("td", null, t.admitted), el("td", null, [t.refused_rate, t.refused_concurrent, t.refused_tokens, t.refused_max_tokens].join(", ")))));
  }

  // --- playground ---
  $("pg-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const stages = $("pg-stages"), answer = $("pg-answer");
    stages.replaceChildren(el("li", null, "sent")); answer.textContent = "";
    const body = { query: $("pg-query").value, generation: { max_tokens: Number($("pg-max").value) || 64 } };
    if ($("pg-domain").value.trim()) body.domain = $("pg-domain").value.trim();
    const r = await fetch("api/playground?tenant=" + encodeURIComponent($("pg-tenant").value), { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf }, body: JSON.stringify(body) });
    if (!r.ok || !(r.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      let msg = "HTTP " + r.status;
      try { const j = await r.json(); msg = j.error.message; } catch (e) { /* not JSON */ }
      stages.append(el("li", { class: "error" }, msg)); return;
    }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let at;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, at); buf = buf.slice(at + 2);
        let event = "message", data = "";
        for (const line of chunk.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        const v = JSON.parse(data);
        if (event === "route") stages.append(el("li", null, fmt(v.ms, 1) + " ms: routed to " + (v.decision.out_of_scope ? "nothing (out of scope)" : v.decision.domain) + ", confidence " + fmt(v.decision.confidence, 2)));
        else if (event === "token") { if (v.ms !== undefined) stages.append(el("li", null, fmt(v.ms, 1) + " ms: first token")); answer.textContent += v.text; }
        else if (event === "done") {
          const res = v.result, t = res.timings_ms;
          stages.append(el("li", null, fmt(v.ms, 1) + " ms: done, " + res.status + " (route " + fmt(t.route, 2) + ", prompt " + fmt(t.prompt, 2) + ", generate " + fmt(t.generate, 1) + ", validate " + fmt(t.validate, 2) + " ms)"));
          answer.textContent = res.response;
        } else if (event === "error") stages.append(el("li", { class: "error" }, v.error.message));
      }
    }
  });

  // --- boot: an existing session skips the login ---
  api("GET", "session").then((r) => { if (r.ok) start(r.data); else showLogin(); });
})();
