// The live page of one Shoal worker: plain JS, no build step, no third-party code.
// Data: GET /topology (polled each second: steps, counters, which panels this job feeds),
// GET /health and GET /status (polled), GET /state/... (on demand) and Server-Sent Events of step outputs
// (/streams/{job}/{step}?filter=...&sample=...), read with EventSource.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const nf = new Intl.NumberFormat("en-US");
  const num = (n) => (n == null || Number.isNaN(n) ? "–" : nf.format(Math.round(n)));
  const pct = (x, d = 2) => (x == null ? "–" : (100 * x).toFixed(d) + "%");
  const fix = (x, d = 0) => (x == null ? "–" : Number(x).toFixed(d));
  const esc = (s) =>
    String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const hms = (ms) => (ms == null ? "–" : new Date(ms).toISOString().slice(11, 19));
  const hm = (ms) => (ms == null ? "–" : new Date(ms).toISOString().slice(11, 16));
  const dur = (ms) => {
    const s = Math.max(0, Math.round(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
  };
  const short = (n) => (n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : num(n));
  const COLORS = ["#4fb3ff", "#ff9f43", "#3ecf8e", "#ff6b6b", "#c08bff", "#f2d14b", "#5ee7df", "#ff8ad8"];
  const SVG = "http://www.w3.org/2000/svg";

  const S = { job: null, panels: null, prev: null, started: false, topo: null };

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      const err = new Error(body.error || r.statusText);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  function setLive(panel, text, cls) {
    const el = document.querySelector(`#${panel} [data-live]`);
    if (!el) return;
    el.textContent = text;
    el.className = "live" + (cls ? " " + cls : "");
  }

  // One live tap: EventSource on a step's output. Returns the EventSource.
  function tap(step, params, { panel, onRecord, onDropped, onEnd }) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v) q.set(k, v);
    const qs = q.toString();
    const url = `/streams/${encodeURIComponent(S.job)}/${encodeURIComponent(step)}${qs ? "?" + qs : ""}`;
    const es = new EventSource(url);
    let replay = 0; // records of the step's recent history that come first
    es.addEventListener("open", (e) => {
      setLive(panel, "live", "on");
      if (e.data) replay = JSON.parse(e.data).replayed || 0;
    });
    es.onmessage = (e) => {
      const replayed = replay > 0;
      if (replayed) replay -= 1;
      try { onRecord(JSON.parse(e.data), replayed); } catch (err) { console.error(err); }
    };
    es.addEventListener("dropped", (e) => onDropped && onDropped(JSON.parse(e.data).dropped));
    es.addEventListener("end", () => { es.close(); setLive(panel, "ended"); if (onEnd) onEnd(); });
    es.onerror = () => setLive(panel, es.readyState === EventSource.CLOSED ? "closed" : "reconnecting…", "err");
    return es;
  }

  // Render at most every `ms` milliseconds.
  function throttle(fn, ms) {
    let due = false;
    return () => {
      if (due) return;
      due = true;
      setTimeout(() => { due = false; fn(); }, ms);
    };
  }

  function absent(sectionId, why) {
    const el = $(sectionId);
    el.classList.add("absent");
    el.dataset.absent = `not in this job — ${why}`;
    setLive(sectionId, "");
  }

  // ---- header, health ------------------------------------------------------------
  function renderHeader(t) {
    $("stat-records").textContent = num(t.records_read);
    $("stat-watermark").textContent = t.watermark_ms == null ? "–" : hms(t.watermark_ms);
    $("stat-watermark").title = t.watermark_ms == null ? "" : new Date(t.watermark_ms).toISOString();
    $("stat-lag").textContent = num(t.lag_records);
    $("stat-checkpoints").textContent = num(t.checkpoints);
    $("stat-tasks").textContent = num(t.tasks);
    if (S.prev) {
      const dt = (t.time_ms - S.prev.time_ms) / 1000;
      if (dt > 0) $("stat-rate").textContent = num((t.records_read - S.prev.records_read) / dt) + "/s";
    }
  }

  async function pollHealth() {
    const pill = $("health");
    try {
      const r = await fetch("/health", { cache: "no-store" });
      const h = await r.json();
      pill.textContent = h.status === "ok" ? "healthy" : "unhealthy";
      pill.className = "pill " + (h.status === "ok" ? "ok" : "bad");
      pill.title = (h.problems || []).join("; ") || `last checkpoint ${h.last_checkpoint_age_s ?? "–"}s ago`;
    } catch (err) {
      pill.textContent = "unreachable";
      pill.className = "pill bad";
    }
  }

  // ---- this worker's status, and the command for the whole job ---------------------
  async function pollStatus() {
    try {
      const st = await getJSON("/status");
      $("status-worker").textContent = st.worker || "–";
      $("status-group").textContent = st.group;
      $("status-checkpoint").textContent = st.last_checkpoint_age_s == null ? "none yet" : dur(st.last_checkpoint_age_s * 1000) + " ago";
      $("status-dead").textContent = num(st.dead_lettered);
      $("status-late").textContent = num(st.late);
      $("status-rewinds").textContent = num(st.rewinds);
      const marks = new Map(st.tasks.map((t) => [t.task, t.watermark_ms]));
      $("status-partitions").querySelector("tbody").innerHTML = st.partitions
        .map((p) => `<tr><td>${esc(p.topic)}[${p.partition}]</td><td>${p.task ?? "–"}</td><td>${num(p.lag)}</td><td>${hms(marks.get(p.task))}</td></tr>`)
        .join("");
      $("status-command").textContent = st.whole_job.command;
      $("status-command").title = `as JSON: ${st.whole_job.json}; every job on the cluster: ${st.whole_job.list}`;
      setLive("panel-status", st.responsive ? "live" : "not answering", st.responsive ? "on" : "err");
    } catch (err) {
      setLive("panel-status", err.status === 401 ? "needs a token" : "unreachable", "err");
    }
  }

  // ---- topology ----------------------------------------------------------------------
  const topo = { nodes: new Map(), edges: [], built: false };
  const NODE_W = 172, NODE_H = 48, GAP_X = 16, GAP_Y = 26;

  // Shorten in the middle: the ends of step names tell them apart (..._tumbling_1m).
  function squeeze(text, max) {
    if (text.length <= max) return text;
    const head = Math.ceil((max - 1) / 2), tail = Math.floor((max - 1) / 2);
    return text.slice(0, head) + "…" + text.slice(text.length - tail);
  }

  function kindColor(s) {
    if (s.kind === "source") return "var(--source)";
    if (s.kind === "sink") return "var(--sink)";
    if (s.stateful) return "var(--stateful)";
    return "var(--plain)";
  }

  function buildTopology(steps) {
    const by = new Map(steps.map((s) => [s.name, s]));
    const depth = new Map();
    const depthOf = (s) => {
      if (depth.has(s.name)) return depth.get(s.name);
      depth.set(s.name, 0);
      const d = s.parents.length ? 1 + Math.max(...s.parents.map((p) => (by.has(p) ? depthOf(by.get(p)) : 0))) : 0;
      depth.set(s.name, d);
      return d;
    };
    steps.forEach(depthOf);
    const layers = [];
    steps.forEach((s) => (layers[depth.get(s.name)] ||= []).push(s));
    const widest = Math.max(...layers.map((l) => l.length));
    const width = widest * (NODE_W + GAP_X) + GAP_X;
    const x = new Map();
    layers.forEach((layer, i) => {
      if (i > 0) {
        const bary = (s) => {
          const xs = s.parents.filter((p) => x.has(p)).map((p) => x.get(p));
          return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : width / 2;
        };
        layer.sort((a, b) => bary(a) - bary(b));
      }
      const span = layer.length * (NODE_W + GAP_X) - GAP_X;
      const left = (width - span) / 2;
      layer.forEach((s, j) => x.set(s.name, left + j * (NODE_W + GAP_X) + NODE_W / 2));
    });
    const height = layers.length * (NODE_H + GAP_Y) - GAP_Y + 8;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.style.maxHeight = Math.max(180, Math.min(height, 620)) + "px";
    const el = (name, attrs, parent) => {
      const e = document.createElementNS(SVG, name);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      parent.appendChild(e);
      return e;
    };
    const top = (s) => depth.get(s.name) * (NODE_H + GAP_Y) + 4;
    topo.edges = [];
    for (const s of steps) {
      for (const p of s.parents) {
        if (!by.has(p)) continue;
        const x1 = x.get(p), y1 = top(by.get(p)) + NODE_H, x2 = x.get(s.name), y2 = top(s);
        const my = (y1 + y2) / 2;
        const path = el("path", { d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`, class: "edge" }, svg);
        topo.edges.push({ path, child: s.name });
      }
    }
    for (const s of steps) {
      const g = el("g", { class: "node", transform: `translate(${x.get(s.name) - NODE_W / 2},${top(s)})` }, svg);
      el("rect", { width: NODE_W, height: NODE_H, rx: 7, fill: kindColor(s) }, g);
      const title = el("title", {}, g);
      title.textContent = `${s.name} (${s.kind})${s.schema ? " · " + s.schema : ""}`;
      const name = el("text", { x: 8, y: 16 }, g);
      name.textContent = squeeze(s.name, Math.floor((NODE_W - 24 - s.kind.length * 5.2) / 6.3));
      const kind = el("text", { x: NODE_W - 8, y: 16, "text-anchor": "end", class: "kind" }, g);
      kind.textContent = s.kind;
      const rate = el("text", { x: 8, y: 36, class: "rate", "data-step-rate": s.name }, g);
      rate.textContent = "–";
      const extra = el("text", { x: NODE_W - 8, y: 36, "text-anchor": "end", class: "badge" }, g);
      topo.nodes.set(s.name, { rate, extra });
    }
    const box = $("topology");
    box.innerHTML = "";
    box.appendChild(svg);
    topo.built = true;
  }

  function renderTopology(t) {
    if (!topo.built) buildTopology(t.steps);
    const prev = S.prev ? new Map(S.prev.steps.map((s) => [s.name, s])) : new Map();
    const dt = S.prev ? (t.time_ms - S.prev.time_ms) / 1000 : 0;
    const rates = new Map();
    for (const s of t.steps) {
      const node = topo.nodes.get(s.name);
      if (!node) continue;
      const p = prev.get(s.name);
      const rate = p && dt > 0 ? Math.max(0, (s.in - p.in) / dt) : null;
      rates.set(s.name, rate);
      node.rate.textContent = (rate == null ? "–" : num(rate) + "/s") + `  · ${short(s.in)}`;
      const bits = [];
      if (s.late) bits.push(`late ${short(s.late)}`);
      if (s.dead_lettered) bits.push(`dead ${short(s.dead_lettered)}`);
      if (!bits.length && s.stateful && s.state_entries != null) bits.push(`state ${short(s.state_entries)}`);
      if (!bits.length && s.tap_subscribers) bits.push(`tapped ×${s.tap_subscribers}`);
      node.extra.textContent = bits.join(" ");
      node.extra.setAttribute("class", "badge" + (s.dead_lettered ? " dead" : ""));
    }
    for (const e of topo.edges) e.path.setAttribute("class", "edge" + ((rates.get(e.child) || 0) > 0 ? " flowing" : ""));
  }

  // ---- QoE per CDN and per country ------------------------------------------------
  const qoe = { windows: new Map(), keep: 30 };

  function onQoe(rec) {
    const m = rec.value;
    if (!m || m.window_kind !== "tumbling_1m") return;
    let w = qoe.windows.get(m.window_end_ms);
    if (!w) {
      w = { end: m.window_end_ms, cdn: new Map(), country: new Map() };
      qoe.windows.set(m.window_end_ms, w);
      const ends = [...qoe.windows.keys()].sort((a, b) => a - b);
      while (ends.length > qoe.keep) qoe.windows.delete(ends.shift());
    }
    if (m.group_kind === "cdn") {
      w.cdn.set(m.cdn, m);
    } else if (m.country) {
      const c = w.country.get(m.country) || { plays: 0, watch: 0, rebuffer: 0, attempts: 0, failures: 0 };
      c.plays += m.plays_started || 0;
      c.watch += m.watch_time_ms || 0;
      c.rebuffer += m.rebuffer_time_ms || 0;
      c.attempts += m.play_attempts || 0;
      c.failures += m.play_failures || 0;
      w.country.set(m.country, c);
    }
    renderQoeSoon();
  }

  const renderQoeSoon = throttle(renderQoe, 250);

  function renderQoe() {
    const wins = [...qoe.windows.values()].sort((a, b) => a.end - b.end);
    const withCdn = wins.filter((w) => w.cdn.size);
    const metric = $("qoe-metric").value;
    const cdns = [...new Set(withCdn.flatMap((w) => [...w.cdn.keys()]))].sort();
    const latest = withCdn[withCdn.length - 1];
    if (latest) {
      $("qoe-window").textContent =
        `1-minute windows (event time, UTC); latest ends ${hm(latest.end)} · ${withCdn.length} windows shown`;
      const rows = cdns.map((cdn, i) => {
        const m = latest.cdn.get(cdn);
        if (!m) return "";
        const hot = m.rebuffer_ratio > 0.02 ? ' class="hot"' : "";
        return `<tr data-cdn="${esc(cdn)}"><td><span class="swatch" style="background:${COLORS[i % COLORS.length]}"></span>${esc(cdn)}</td>` +
          `<td>${num(m.plays_started)}</td><td${hot}>${pct(m.rebuffer_ratio)}</td><td>${pct(m.failure_rate)}</td>` +
          `<td>${m.avg_bitrate_kbps == null ? "–" : num(m.avg_bitrate_kbps) + " kbps"}</td>` +
          `<td>${m.startup_p50_ms == null ? "–" : num(m.startup_p50_ms) + " ms"}</td></tr>`;
      });
      $("qoe-table").tBodies[0].innerHTML = rows.join("");
      lineChart($("qoe-chart"), withCdn, cdns, metric);
    }
    const withCountry = wins.filter((w) => w.country.size);
    const lastC = withCountry[withCountry.length - 1];
    if (lastC) renderCountries(lastC);
  }

  // The smallest 1, 2, 2.5 or 5 times a power of ten at or above x (tidy axis labels).
  function niceCeil(x) {
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
    return 10 * p;
  }

  function lineChart(box, wins, series, metric) {
    const W = Math.max(300, box.clientWidth || 600), H = 190, L = 52, R = 10, T = 10, B = 22;
    const isRatio = metric === "rebuffer_ratio" || metric === "failure_rate";
    const val = (m) => (m && m[metric] != null ? Number(m[metric]) : null);
    let max = 0;
    for (const w of wins) for (const s of series) { const v = val(w.cdn.get(s)); if (v != null && v > max) max = v; }
    max = niceCeil(max > 0 ? max * 1.1 : isRatio ? 0.01 : 1);
    const xOf = (i) => L + (wins.length > 1 ? (i * (W - L - R)) / (wins.length - 1) : (W - L - R) / 2);
    const yOf = (v) => T + (H - T - B) * (1 - v / max);
    const label = (v) => (isRatio ? +(100 * v).toFixed(2) + "%" : short(v));
    let out = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(metric)} per CDN">`;
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4, y = yOf(v);
      out += `<line class="grid-line" x1="${L}" x2="${W - R}" y1="${y}" y2="${y}"/>`;
      out += `<text x="${L - 6}" y="${y + 3}" text-anchor="end">${label(v)}</text>`;
    }
    const ticks = wins.length > 1 ? [0, Math.floor((wins.length - 1) / 2), wins.length - 1] : [0];
    for (const i of ticks) {
      const anchor = wins.length > 1 && i === wins.length - 1 ? "end" : i === 0 && wins.length > 1 ? "start" : "middle";
      out += `<text x="${xOf(i)}" y="${H - 6}" text-anchor="${anchor}">${hm(wins[i].end)}</text>`;
    }
    series.forEach((s, si) => {
      const color = COLORS[si % COLORS.length];
      const pts = [];
      wins.forEach((w, i) => { const v = val(w.cdn.get(s)); if (v != null) pts.push([xOf(i), yOf(v)]); });
      if (!pts.length) return;
      out += `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => p.join(",")).join(" ")}"/>`;
      const [lx, ly] = pts[pts.length - 1];
      out += `<circle cx="${lx}" cy="${ly}" r="3" fill="${color}"/>`;
    });
    box.innerHTML = out + "</svg>";
  }

  function renderCountries(w) {
    const rows = [...w.country.entries()]
      .map(([country, c]) => ({ country, busy: c.watch + c.rebuffer, ratio: c.watch + c.rebuffer > 0 ? c.rebuffer / (c.watch + c.rebuffer) : 0 }))
      .sort((a, b) => b.busy - a.busy)
      .slice(0, 10);
    const max = Math.max(0.0001, ...rows.map((r) => r.ratio));
    $("country-window").textContent = `rebuffer ratio in the window ending ${hm(w.end)} (UTC); the ${rows.length} countries with the most viewing`;
    $("country-bars").innerHTML = rows
      .map((r) => `<div class="bar-row" data-country="${esc(r.country)}"><span>${esc(r.country)}</span>` +
        `<div class="track"><div class="fill${r.ratio > 0.02 ? " hot" : ""}" style="width:${((100 * r.ratio) / max).toFixed(1)}%"></div></div>` +
        `<span class="val">${pct(r.ratio)}<small>${dur(r.busy)}</small></span></div>`)
      .join("");
  }

  // ---- attribution -----------------------------------------------------------------------
  // AttributionMetric records: per impression window, one per (row, rank) and one per genre.
  const attribution = { windows: new Map(), keep: 12 };

  function onAttribution(rec) {
    const m = rec.value;
    if (!m || m.window_start_ms == null) return;
    let w = attribution.windows.get(m.window_start_ms);
    if (!w) {
      w = { start: m.window_start_ms, end: m.window_end_ms, rows: [], genres: [] };
      attribution.windows.set(m.window_start_ms, w);
      const starts = [...attribution.windows.keys()].sort((a, b) => a - b);
      while (starts.length > attribution.keep) attribution.windows.delete(starts.shift());
    }
    (m.group_kind === "genre" ? w.genres : w.rows).push(m);
    renderAttributionSoon();
  }

  const renderAttributionSoon = throttle(() => {
    const starts = [...attribution.windows.keys()].sort((a, b) => a - b);
    if (!starts.length) return;
    const w = attribution.windows.get(starts[starts.length - 1]);
    const total = w.genres.reduce((n, m) => n + m.impressions, 0);
    const plays = w.genres.reduce((n, m) => n + m.attributed_plays, 0);
    $("attribution-window").textContent =
      `impressions of ${hm(w.start)}–${hm(w.end)} (UTC): ${num(total)} impressions, ${num(plays)} attributed plays, CTR ${pct(total ? plays / total : null)}`;
    const rows = [...w.rows].sort((a, b) => b.impressions - a.impressions).slice(0, 10);
    $("attribution-rows").tBodies[0].innerHTML = rows
      .map((m) => `<tr><td>${esc(m.row_name)}</td><td>${esc(m.rank)}</td><td>${num(m.impressions)}</td>` +
        `<td>${num(m.attributed_plays)}</td><td>${pct(m.ctr)}</td></tr>`)
      .join("");
    const genres = [...w.genres].sort((a, b) => b.ctr - a.ctr);
    const max = Math.max(0.0001, ...genres.map((m) => m.ctr));
    $("attribution-genres").innerHTML = genres
      .map((m) => `<div class="bar-row" data-genre="${esc(m.genre)}"><span>${esc(m.genre)}</span>` +
        `<div class="track"><div class="fill" style="width:${((100 * m.ctr) / max).toFixed(1)}%"></div></div>` +
        `<span class="val">${pct(m.ctr)}<small>${num(m.impressions)}</small></span></div>`)
      .join("");
  }, 500);

  // ---- alerts --------------------------------------------------------------------------
  const alerts = { byId: new Map(), recent: [] };

  function onAlert(rec) {
    const a = rec.value;
    if (!a || !a.alert_id) return;
    alerts.byId.set(a.alert_id, a);
    alerts.recent.unshift(a);
    alerts.recent.length = Math.min(alerts.recent.length, 25);
    renderAlertsSoon();
  }
  const renderAlertsSoon = throttle(() => {
    const group = (a) => Object.entries(a.group || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    const item = (a) =>
      `<li><span class="what"><span class="tag ${esc(a.state)}">${esc(a.state)}</span> ${esc(a.rule)} · ${esc(group(a))} · ` +
      `${esc(a.metric)} ${fix(a.value, 4)} (threshold ${fix(a.threshold, 4)})</span><span class="when">${hm(a.window_end_ms)}</span></li>`;
    const active = [...alerts.byId.values()].filter((a) => a.state === "fired");
    $("alerts-active").innerHTML = active.length ? active.map(item).join("") : '<li class="sub">none</li>';
    $("alerts-active-count").textContent = active.length;
    $("alerts-active-count").className = "count" + (active.length ? " hot" : "");
    $("alerts-recent").innerHTML = alerts.recent.map(item).join("");
  }, 250);

  // ---- sessions --------------------------------------------------------------------------
  const sessions = { count: 0, recent: [], arrivals: [] };

  function onSession(rec, replayed) {
    const s = rec.value;
    if (!s || !s.user_id) return;
    sessions.count += 1;
    if (!replayed) sessions.arrivals.push(Date.now());
    sessions.recent.unshift(s);
    sessions.recent.length = Math.min(sessions.recent.length, 15);
    renderSessionsSoon();
  }
  const renderSessionsSoon = throttle(() => {
    $("sessions-count").textContent = num(sessions.count);
    $("sessions-list").innerHTML = sessions.recent
      .map((s) =>
        `<li><span class="what">${esc(s.user_id)} · ${esc(s.device_id)} · ${dur(s.session_end_ms - s.session_start_ms)} · ` +
        `${(s.titles || []).length} titles · watched ${dur(s.watch_time_ms || 0)} · ${s.rebuffer_count || 0} rebuffers · ${esc(s.end_reason || "")}</span>` +
        `<span class="when">${hms(s.session_end_ms)}</span></li>`)
      .join("");
  }, 300);
  function sessionRate() {
    const cutoff = Date.now() - 10000;
    while (sessions.arrivals.length && sessions.arrivals[0] < cutoff) sessions.arrivals.shift();
    $("sessions-rate").textContent = (sessions.arrivals.length / 10).toFixed(1);
  }

  // ---- top titles for a user ------------------------------------------------------------
  const scores = { es: null, seen: [], shown: false };

  function renderTitles(top, note) {
    $("user-note").textContent = note;
    $("user-titles").innerHTML = (top || [])
      .map((t) => {
        const [title, score, genre] = Array.isArray(t) ? t : [t.title_id, t.score, t.genre];
        return `<li><span>${esc(title)}</span>${genre ? `<span class="genre">${esc(genre)}</span>` : ""}<span class="score">${fix(score, 3)}</span></li>`;
      })
      .join("");
  }

  async function showUser(user) {
    user = user.trim();
    if (!user) return;
    $("user-id").value = user;
    const feed = S.panels.scores;
    if (scores.es) scores.es.close();
    if (!feed.state_step) {
      renderTitles([], "this job keeps no state to ask");
    } else {
      try {
        const st = await getJSON(`/state/${encodeURIComponent(S.job)}/${encodeURIComponent(feed.state_step)}/${encodeURIComponent(user)}`);
        const last = st.entries.find((e) => e.name === "last");
        if (last && Array.isArray(last.value) && Array.isArray(last.value[0])) {
          renderTitles(last.value[0], `${user}: current top titles (state of step ${feed.state_step})`);
        } else {
          renderTitles([], `${user}: state has ${st.entries.map((e) => e.name || "entry").join(", ")}, no top titles yet`);
        }
      } catch (err) {
        renderTitles([], err.status === 404 ? `no state for ${user} (yet)` : `could not read state: ${err.message}`);
      }
    }
    // Live updates of this user's scores: a filtered tap of the sink.
    scores.es = tap(feed.step, { filter: `user_id == ${JSON.stringify(user)}` }, {
      panel: "panel-scores",
      onRecord: (rec) => renderTitles(rec.value.top_titles, `${user}: updated at ${hms(rec.value.updated_ms)} (live)`),
    });
  }

  // Users whose scores just changed, offered as chips; the row changes at most every
  // 10 seconds so that a person can click one.
  function onScoreSample(rec) {
    const u = rec.value && rec.value.user_id;
    if (!u || scores.seen.includes(u)) return;
    scores.seen.unshift(u);
    scores.seen.length = Math.min(scores.seen.length, 8);
    if (!scores.shown) showChips();
  }
  function showChips() {
    scores.shown = scores.seen.length > 0;
    $("user-chips").innerHTML = scores.seen.map((x) => `<button type="button" data-user="${esc(x)}">${esc(x)}</button>`).join("");
  }

  // ---- live tap explorer ------------------------------------------------------------------
  const explorer = { es: null, lines: [], count: 0, dropped: 0 };

  function stopExplorer() {
    if (explorer.es) explorer.es.close();
    explorer.es = null;
    $("tap-toggle").textContent = "tap";
    setLive("panel-tap", "idle");
  }

  async function startExplorer() {
    const step = $("tap-step").value, filter = $("tap-filter").value.trim(), sample = $("tap-sample").value.trim();
    const q = new URLSearchParams();
    if (filter) q.set("filter", filter);
    if (sample) q.set("sample", sample);
    try {
      await getJSON("/filters?" + q);
    } catch (err) {
      $("tap-note").textContent = err.message;
      return;
    }
    explorer.lines = [];
    explorer.count = 0;
    explorer.dropped = 0;
    $("tap-records").textContent = "";
    $("tap-note").textContent = `tapping ${step}${filter ? " where " + filter : ""}${sample ? ", sample " + sample : ""}`;
    $("tap-toggle").textContent = "stop";
    const render = throttle(() => {
      $("tap-records").textContent = explorer.lines.join("\n");
      $("tap-note").textContent = `${num(explorer.count)} records from ${step}` + (explorer.dropped ? `, ${num(explorer.dropped)} dropped (too fast to show)` : "");
    }, 200);
    explorer.es = tap(step, { filter, sample }, {
      panel: "panel-tap",
      onRecord: (rec) => {
        explorer.count += 1;
        explorer.lines.unshift(`${hms(rec.event_time_ms)}  ${JSON.stringify(rec.value)}`);
        explorer.lines.length = Math.min(explorer.lines.length, 60);
        render();
      },
      onDropped: (n) => { explorer.dropped = n; render(); },
    });
  }

  // ---- set-up: panels this job feeds ---------------------------------------------------------
  function setUp(t) {
    S.job = t.job;
    S.panels = t.panels;
    $("job-name").textContent = t.job;
    document.title = `Shoal · ${t.job}`;
    const p = t.panels;
    if (p.qoe) {
      tap(p.qoe.step, { filter: 'window_kind == "tumbling_1m"', recent: "1000" }, { panel: "panel-qoe", onRecord: onQoe });
      setLive("panel-country", "via QoE tap", "on");
      $("qoe-metric").addEventListener("change", renderQoe);
    } else {
      absent("panel-qoe", "QoE charts need a sink of QoeMetric records (the qoe job)");
      absent("panel-country", "QoE per country needs a sink of QoeMetric records (the qoe job)");
    }
    if (p.alerts) tap(p.alerts.step, { recent: "500" }, { panel: "panel-alerts", onRecord: onAlert });
    else absent("panel-alerts", "alerts need a sink of QoeAlert records (the qoe alerts job)");
    if (p.sessions) {
      tap(p.sessions.step, { recent: "15" }, { panel: "panel-sessions", onRecord: onSession });
      setInterval(sessionRate, 1000);
    } else absent("panel-sessions", "sessions need a sink of SessionSummary records (the sessionization job)");
    if (p.scores) {
      tap(p.scores.step, { sample: "1/25" }, { panel: "panel-scores", onRecord: onScoreSample });
      setInterval(showChips, 10000);
      $("user-form").addEventListener("submit", (e) => { e.preventDefault(); showUser($("user-id").value); });
      $("user-chips").addEventListener("click", (e) => { const u = e.target.dataset && e.target.dataset.user; if (u) showUser(u); });
    } else absent("panel-scores", "top titles need a step that writes PersonalizationScore records (the personalization job)");

    if (p.attribution) tap(p.attribution.step, { recent: "400" }, { panel: "panel-attribution", onRecord: onAttribution });
    else absent("panel-attribution", "click-through rates need a sink of AttributionMetric records (the attribution job)");

    const select = $("tap-step");
    const ordered = [...t.steps.filter((s) => s.kind === "sink"), ...t.steps.filter((s) => s.kind !== "sink")];
    select.innerHTML = ordered.map((s) => `<option value="${esc(s.name)}">${esc(s.name)} (${esc(s.kind)})</option>`).join("");
    $("tap-form").addEventListener("submit", (e) => { e.preventDefault(); if (explorer.es) stopExplorer(); else startExplorer(); });
  }

  async function pollTopology() {
    try {
      const t = await getJSON("/topology");
      if (!S.started) { setUp(t); S.started = true; }
      renderHeader(t);
      renderTopology(t);
      S.prev = t;
    } catch (err) {
      $("health").textContent = err.status === 401 ? "needs a token: open /?token=…" : "unreachable";
      $("health").className = "pill bad";
    }
  }

  function tick() { $("clock").textContent = new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC"; }

  pollTopology();
  pollHealth();
  pollStatus();
  tick();
  setInterval(pollTopology, 1000);
  setInterval(pollHealth, 3000);
  setInterval(pollStatus, 3000);
  setInterval(tick, 1000);
  window.addEventListener("resize", throttle(renderQoe, 200));
})();
