// statspout fleet page: the latest sample of every container of every host, live from the REST
// sink's /events stream (server-sent events, about once a second). No framework, no build step.
"use strict";

(() => {
  const WINDOW_MS = 5 * 60 * 1000;      // the charts show at most the last five minutes
  const MIN_WINDOW_MS = 20 * 1000;      // and at least 20 s, so that a fresh page's lines show
  const HISTORY_POINTS = 330;           // a little more than five minutes at one sample a second
  const GONE_KEEP_MS = 60 * 1000;       // a container the sink dropped stays marked this long
  const MIN_STALE_MS = 5000;            // never call a container stale sooner than this
  const TIMINGS_KEPT = 120;
  // Rows drawn at most, the first of the current order: the page's cost stays bounded however
  // large the fleet (every container is still counted, charted and filterable).
  const ROW_LIMIT = 300;
  const COMPACT_HOSTS = 8;  // more hosts than this: their cards shrink to one line
  let showAll = false;

  const $ = (id) => document.getElementById(id);
  const els = {
    rows: $("rows"), hosts: $("hosts"), summary: $("summary"), filter: $("filter"),
    status: $("status"), statusText: $("status-text"), shown: $("shown"), timing: $("timing"),
    empty: $("empty"), auth: $("auth"), authForm: $("auth-form"), authToken: $("auth-token"),
    authMessage: $("auth-message"), window: $("window"), table: $("fleet"),
    showAll: $("show-all"),
  };
  els.showAll.addEventListener("click", () => { showAll = !showAll; render(); });
  const pageStart = performance.now();
  // The charts' time span: grows with the page's age from MIN_WINDOW_MS to WINDOW_MS.
  const chartSpan = (now) => Math.min(WINDOW_MS, Math.max(MIN_WINDOW_MS, now - pageStart));
  const spanText = (ms) => (ms < 60000 ? `${Math.round(ms / 1000)} s` : `${(ms / 60000).toFixed(ms < 120000 ? 1 : 0)} min`);

  // ---- the token: taken from ?token= once, kept for this tab only, never left in the URL ----
  const params = new URLSearchParams(location.search);
  let token = params.get("token") ?? sessionStorage.getItem("statspout.token") ?? "";
  if (params.has("token")) {
    sessionStorage.setItem("statspout.token", token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }

  // ---- formatting, as docker stats shows it ----
  const trim = (text) => String(parseFloat(text));
  function binarySize(bytes) {  // docker's units.BytesSize: 4 significant digits, KiB/MiB/GiB
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return trim(value.toPrecision(4)) + units[unit];
  }
  function decimalSize(bytes) {  // docker's units.HumanSizeWithPrecision(n, 3): kB/MB/GB
    const units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let value = bytes, unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return trim(value.toPrecision(3)) + units[unit];
  }
  const percent = (value) => (value === null || value === undefined ? "--" : `${value.toFixed(2)}%`);
  function age(ms) {
    const s = Math.round(ms / 1000);
    return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
      : `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  }

  // ---- state: one entry per (host, container id) ----
  const entries = new Map();
  let fields = null;  // field name → index in a snapshot row
  let sortKey = "cpu", sortAscending = false;
  let filterTerms = [];
  let lastOrder = [];
  // Milliseconds per snapshot: `script` from its arrival to the end of our code (parse, update,
  // DOM changes), `paint` to the frame that shows it (style, layout and paint included).
  // Read by the scale benchmark (bench/web_scale.py).
  const timings = { script: [], paint: [] };
  window.statspoutTimings = timings;
  const keep = (list, value) => { list.push(value); if (list.length > TIMINGS_KEPT) list.shift(); };
  const median = (list) => [...list].sort((a, b) => a - b)[list.length >> 1];

  class Entry {
    constructor(key) {
      this.key = key;
      this.row = null;
      this.times = []; this.cpu = []; this.mem = [];
      this.lastTimestamp = null; this.lastChange = 0; this.interval = 0;
      this.gone = null; this.haystack = ""; this.visible = false; this.chartDirty = true;
      this.tr = null; this.cells = null; this.shown = {};
    }
    get(name) { return this.row[fields[name]]; }
    take(row, now) {
      const renamed = !this.row || this.get("name") !== row[fields.name];
      this.row = row;
      this.gone = null;
      const timestamp = this.get("timestamp");
      if (timestamp !== this.lastTimestamp) {
        if (this.lastTimestamp !== null) this.interval = now - this.lastChange;
        this.lastTimestamp = timestamp;
        this.lastChange = now;
        this.times.push(now);
        this.cpu.push(this.get("cpu_percent"));  // null on a container's first sample
        this.mem.push(this.get("mem_usage"));
        if (this.times.length > HISTORY_POINTS) {
          this.times.shift(); this.cpu.shift(); this.mem.shift();
        }
        this.chartDirty = true;
      }
      if (renamed) this.indexForFilter();
    }
    indexForFilter() {
      const labels = this.get("labels") || {};
      this.labelText = Object.entries(labels).map(([k, v]) => `${k}=${v}`).join("\n").toLowerCase();
      this.haystack = [this.get("host"), this.get("name"), this.get("image"), this.labelText]
        .join("\n").toLowerCase();
    }
    stale(now) {
      return this.gone === null && now - this.lastChange > Math.max(MIN_STALE_MS, 3 * this.interval);
    }
  }

  // ---- filtering: every term must match; host:, name:, image:, label: narrow a term ----
  function parseFilter(text) {
    return text.toLowerCase().split(/\s+/).filter(Boolean).map((term) => {
      const match = /^(host|name|image|label):(.*)$/.exec(term);
      return match ? { field: match[1], text: match[2] } : { field: null, text: term };
    });
  }
  function matches(entry) {
    for (const term of filterTerms) {
      let where;
      if (term.field === null) where = entry.haystack;
      else if (term.field === "label") where = entry.labelText;
      else where = String(entry.get(term.field)).toLowerCase();
      if (!where.includes(term.text)) return false;
    }
    return true;
  }

  // ---- sorting ----
  const sortValue = {
    host: (e) => e.get("host"), name: (e) => e.get("name"),
    cpu: (e) => e.get("cpu_percent") ?? -1, mem: (e) => e.get("mem_usage") ?? -1,
    memp: (e) => e.get("mem_percent") ?? -1,
    net: (e) => (e.get("rx_bytes") ?? -1) + (e.get("tx_bytes") ?? 0),
    blk: (e) => (e.get("blk_read_bytes") ?? -1) + (e.get("blk_write_bytes") ?? 0),
    pids: (e) => e.get("pids") ?? -1,
    status: (e) => e.get("status_text") ?? "", restarts: (e) => e.get("restart_count") ?? -1,
  };
  function compare(a, b) {
    const get = sortValue[sortKey];
    const x = get(a), y = get(b);
    let order = x < y ? -1 : x > y ? 1 : 0;
    if (!sortAscending) order = -order;
    if (order !== 0) return order;
    const hosts = a.get("host") < b.get("host") ? -1 : a.get("host") > b.get("host") ? 1 : 0;
    return hosts || (a.get("name") < b.get("name") ? -1 : a.get("name") > b.get("name") ? 1 : 0);
  }
  function showSort() {
    for (const th of els.table.querySelectorAll("th[data-key]")) {
      th.classList.toggle("sorted", th.dataset.key === sortKey);
      th.classList.toggle("asc", th.dataset.key === sortKey && sortAscending);
    }
  }
  els.table.querySelector("thead").addEventListener("click", (event) => {
    const th = event.target.closest("th[data-key]");
    if (!th) return;
    if (th.dataset.key === sortKey) sortAscending = !sortAscending;
    else { sortKey = th.dataset.key; sortAscending = sortKey === "host" || sortKey === "name"; }
    showSort();
    render();
  });
  els.filter.addEventListener("input", () => { filterTerms = parseFilter(els.filter.value); render(); });

  // ---- rows ----
  const visibility = new IntersectionObserver((seen) => {
    for (const item of seen) {
      const entry = item.target.entry;
      entry.visible = item.isIntersecting;
      if (entry.visible && entry.chartDirty) drawChart(entry, performance.now());
    }
  }, { rootMargin: "200px" });

  function makeRow(entry) {
    const tr = document.createElement("tr");
    const cell = (cls) => { const td = document.createElement("td"); td.className = cls; tr.appendChild(td); return td; };
    // A meter is a bar and a figure; its width is set through the CSSOM (no inline style
    // attribute, which the page's Content-Security-Policy forbids).
    const meterCell = (cls, kind) => {
      const td = cell(cls), bar = document.createElement("span"), fill = document.createElement("i");
      const text = document.createElement("span");
      bar.className = `meter ${kind}`; bar.appendChild(fill); td.append(bar, text);
      return { td, fill, text };
    };
    const host = cell("host-cell");
    const name = cell("name-cell");
    const cpu = meterCell("num cpu-cell", "cpu");
    const mem = cell("num");
    const memp = meterCell("num", "mem");
    const net = cell("num");
    const blk = cell("num");
    const pids = cell("num");
    const status = cell("status-cell");
    const restarts = cell("num");
    const chart = cell("chart");
    const canvas = document.createElement("canvas");
    canvas.className = "spark";
    canvas.width = 160 * devicePixelRatio; canvas.height = 28 * devicePixelRatio;
    canvas.entry = entry;
    chart.appendChild(canvas);
    entry.tr = tr;
    entry.cells = { host, name, cpu, mem, memp, net, blk, pids, status, restarts, canvas };
    visibility.observe(canvas);
  }

  function setCell(entry, cell, html) {
    if (entry.shown[cell] !== html) { entry.shown[cell] = html; entry.cells[cell].innerHTML = html; }
  }
  function setMeter(entry, cell, value, cls) {
    const text = percent(value), shown = `${text}|${cls}`;
    if (entry.shown[cell] === shown) return;
    entry.shown[cell] = shown;
    const meter = entry.cells[cell];
    meter.fill.style.width = `${Math.min(100, Math.max(0, value || 0)).toFixed(1)}%`;
    meter.text.textContent = text;
    meter.text.className = cls;
  }
  const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  function fillRow(entry, now) {
    const cpu = entry.get("cpu_percent");
    const heat = cpu === null ? "" : cpu >= 80 ? "hot" : cpu >= 40 ? "warm" : "";
    const badge = entry.gone !== null ? `<span class="badge gone">gone ${age(now - entry.gone)}</span>`
      : entry.stale(now) ? `<span class="badge stale">no samples ${age(now - entry.lastChange)}</span>` : "";
    const state = entry.gone !== null ? "gone" : badge ? "stale" : "live";
    if (entry.tr.dataset.state !== state) {
      entry.tr.dataset.state = state;
      entry.tr.classList.toggle("stale", state !== "live");
    }
    entry.tr.dataset.host = entry.get("host");
    entry.tr.dataset.name = entry.get("name");
    entry.cells.cpu.td.dataset.value = cpu ?? "";
    setCell(entry, "host", escape(entry.get("host")));
    setCell(entry, "name", `<span title="${escape(entry.get("id"))}">${escape(entry.get("name"))}</span>`
      + `<span class="image">${escape(entry.get("image"))}</span>${badge}`);
    setMeter(entry, "cpu", cpu, heat);
    // A stopped container has a state but no sample: its figures are unknown.
    const sampled = entry.get("mem_usage") !== null;
    const pair = (size, a, b) => (sampled ? `${size(entry.get(a))} / ${size(entry.get(b))}` : "--");
    setCell(entry, "mem", pair(binarySize, "mem_usage", "mem_limit"));
    setMeter(entry, "memp", entry.get("mem_percent"), "");
    setCell(entry, "net", pair(decimalSize, "rx_bytes", "tx_bytes"));
    setCell(entry, "blk", pair(decimalSize, "blk_read_bytes", "blk_write_bytes"));
    setCell(entry, "pids", sampled ? String(entry.get("pids")) : "--");
    setCell(entry, "status", statusHtml(entry));
    const restarts = entry.get("restart_count");
    setCell(entry, "restarts", restarts === null ? "--"
      : `<span class="${restarts > 0 ? "warm" : ""}">${restarts}</span>`);
  }

  // The STATUS cell (docker ps's wording, from the sink): red when the container is down or
  // failing, amber while it is starting or paused.
  function statusHtml(entry) {
    const text = entry.get("status_text");
    if (text === null) return "--";
    const status = entry.get("status"), health = entry.get("health");
    const down = status === "restarting" || status === "dead" || health === "unhealthy"
      || (status === "exited" && entry.get("exit_code") !== 0);
    const waiting = status === "paused" || status === "created" || health === "starting";
    const cls = down ? "hot" : waiting || status === "exited" ? "warm" : "";
    return `<span class="${cls}" data-status="${escape(status)}">${escape(text)}</span>`;
  }

  // ---- the chart: memory as a shaded area (scaled to its own peak), CPU as a line ----
  const colors = getComputedStyle(document.documentElement);
  const cpuColor = colors.getPropertyValue("--cpu").trim(), memColor = colors.getPropertyValue("--mem").trim();
  function drawChart(entry, now) {
    const canvas = entry.cells.canvas, ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 2 * devicePixelRatio;
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "rgba(127,143,163,0.18)"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(0, h - 0.5); ctx.lineTo(w, h - 0.5); ctx.stroke();
    const n = entry.times.length;
    canvas.dataset.points = n;
    entry.chartDirty = false;
    if (n === 0) return;
    const span = chartSpan(now);
    const x = (t) => Math.max(0, w - ((now - t) / span) * w);
    // Memory is scaled to its own peak (its shape matters, not its share of the limit), with
    // head room so that a flat line sits mid-chart; CPU to at least one core.
    const memPeak = Math.max(...entry.mem) * 1.6 || 1;
    const cpuPeak = Math.max(100, ...entry.cpu.filter((v) => v !== null)) * 1.05;
    const y = (value, peak) => h - pad - (value / peak) * (h - 2 * pad);
    ctx.beginPath();
    ctx.moveTo(x(entry.times[0]), h);
    for (let i = 0; i < n; i++) ctx.lineTo(x(entry.times[i]), y(entry.mem[i], memPeak));
    ctx.lineTo(x(entry.times[n - 1]), h);
    ctx.closePath();
    ctx.fillStyle = memColor + "26"; ctx.fill();
    ctx.beginPath();
    for (let i = 0; i < n; i++) ctx.lineTo(x(entry.times[i]), y(entry.mem[i], memPeak));
    ctx.strokeStyle = memColor + "cc"; ctx.lineWidth = devicePixelRatio; ctx.stroke();
    ctx.beginPath();
    for (let i = 0; i < n; i++) {
      if (entry.cpu[i] === null) continue;
      const px = x(entry.times[i]), py = y(entry.cpu[i], cpuPeak);
      if (i === 0 || entry.cpu[i - 1] === null) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    }
    ctx.strokeStyle = cpuColor; ctx.lineWidth = 1.5 * devicePixelRatio; ctx.lineJoin = "round"; ctx.stroke();
    canvas.title = `CPU 0–${Math.round(cpuPeak)} %, memory 0–${binarySize(memPeak)}, last ${spanText(span)}`;
  }

  // ---- host cards and the summary ----
  function renderHosts(now) {
    const hosts = new Map();
    for (const entry of entries.values()) {
      if (entry.gone !== null) continue;
      const name = entry.get("host");
      let h = hosts.get(name);
      if (!h) hosts.set(name, h = { name, count: 0, cpu: 0, mem: 0, rx: 0, tx: 0, stale: 0, newest: 0 });
      h.count += 1; h.cpu += entry.get("cpu_percent") ?? 0; h.mem += entry.get("mem_usage");
      h.rx += entry.get("rx_bytes"); h.tx += entry.get("tx_bytes");
      h.stale += entry.stale(now) ? 1 : 0; h.newest = Math.max(h.newest, entry.lastChange);
    }
    const sorted = [...hosts.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    // Many hosts: one line each, so that the cards do not push the table off the screen.
    const compact = sorted.length > COMPACT_HOSTS;
    els.hosts.classList.toggle("compact", compact);
    els.hosts.innerHTML = sorted.map((h) => {
      const late = now - h.newest > MIN_STALE_MS;
      const tail = h.stale ? `<b class="warm">${h.stale} silent</b>` : `last <b>${age(now - h.newest)}</b>`;
      if (compact) {
        return `<div class="host${late ? " stale" : ""}" data-host="${escape(h.name)}">`
          + `<span class="h-name">${escape(h.name)}</span> <span class="h-figs"><span>${h.count}</span>`
          + `<span>CPU <b>${h.cpu.toFixed(0)}%</b></span><span><b>${binarySize(h.mem)}</b></span>`
          + `<span>${tail}</span></span></div>`;
      }
      return `<div class="host${late ? " stale" : ""}" data-host="${escape(h.name)}">`
        + `<div class="h-name"><span>${escape(h.name)}</span><span class="dim">${h.count} ctr</span></div>`
        + `<div class="h-figs"><span>CPU <b>${h.cpu.toFixed(1)}%</b></span><span>mem <b>${binarySize(h.mem)}</b></span>`
        + `<span>net <b>${decimalSize(h.rx)}</b> / <b>${decimalSize(h.tx)}</b></span>`
        + `<span>${tail}</span></div></div>`;
    }).join("");
    let cpu = 0, mem = 0, live = 0;
    for (const h of sorted) { cpu += h.cpu; mem += h.mem; live += h.count; }
    els.summary.innerHTML = `<span><b>${sorted.length}</b> hosts</span><span><b>${live}</b> containers</span>`
      + `<span>CPU <b>${cpu.toFixed(1)}%</b></span><span>mem <b>${binarySize(mem)}</b></span>`;
  }
  els.hosts.addEventListener("click", (event) => {
    const card = event.target.closest(".host");
    if (!card) return;
    const term = `host:${card.dataset.host}`;
    els.filter.value = els.filter.value === term ? "" : term;
    filterTerms = parseFilter(els.filter.value);
    render();
  });

  // ---- one render: filter, sort, move only what moved, update only what changed ----
  function render() {
    const now = performance.now();
    const chosen = [];
    for (const entry of entries.values()) {
      if (matches(entry)) chosen.push(entry);
      else if (entry.tr && entry.tr.parentNode) entry.tr.remove();
    }
    chosen.sort(compare);
    const limited = !showAll && chosen.length > ROW_LIMIT;
    const drawn = limited ? chosen.slice(0, ROW_LIMIT) : chosen;
    for (const entry of chosen.slice(drawn.length)) if (entry.tr && entry.tr.parentNode) entry.tr.remove();
    for (const entry of drawn) {
      if (!entry.tr) makeRow(entry);
      fillRow(entry, now);
      if (entry.visible && entry.chartDirty) drawChart(entry, now);
    }
    const same = drawn.length === lastOrder.length && drawn.every((e, i) => e === lastOrder[i]);
    if (!same) {
      const fragment = document.createDocumentFragment();
      for (const entry of drawn) fragment.appendChild(entry.tr);
      els.rows.appendChild(fragment);
      lastOrder = drawn;
    }
    renderHosts(now);
    els.window.textContent = `· last ${spanText(chartSpan(now))}`;
    els.empty.hidden = entries.size > 0;
    els.shown.textContent = limited
      ? `first ${drawn.length} of ${chosen.length} matching (${entries.size} containers): filter or sort to see others`
      : `${chosen.length} of ${entries.size} containers shown`;
    els.showAll.hidden = !limited && !showAll;
    els.showAll.textContent = showAll ? `show the first ${ROW_LIMIT}` : `show all ${chosen.length}`;
  }

  function take(data, arrived) {
    const snapshot = JSON.parse(data);
    if (!fields) {
      fields = {};
      snapshot.fields.forEach((name, i) => { fields[name] = i; });
    }
    const now = performance.now();
    const seen = new Set();
    for (const row of snapshot.rows) {
      const key = `${row[fields.host]}\u0000${row[fields.id]}`;
      let entry = entries.get(key);
      if (!entry) entries.set(key, entry = new Entry(key));
      entry.take(row, now);
      seen.add(key);
    }
    for (const [key, entry] of entries) {
      if (seen.has(key)) continue;
      if (entry.gone === null) entry.gone = now;
      else if (now - entry.gone > GONE_KEEP_MS) {
        if (entry.tr) { visibility.unobserve(entry.cells.canvas); entry.tr.remove(); }
        entries.delete(key);
      }
    }
    render();
    keep(timings.script, performance.now() - arrived);
    // A rAF callback runs just before the frame is painted; a task queued from it runs after.
    requestAnimationFrame(() => setTimeout(() => {
      keep(timings.paint, performance.now() - arrived);
      els.timing.textContent = `update ${median(timings.script).toFixed(1)} ms`
        + ` · to screen ${median(timings.paint).toFixed(1)} ms (median)`;
    }, 0));
  }

  // ---- connection ----
  function setStatus(kind, text) {
    els.status.className = `status ${kind}`;
    els.statusText.textContent = text;
  }
  function askForToken(message) {
    setStatus("down", "token needed");
    els.authMessage.textContent = message;
    els.auth.hidden = false;
    els.authToken.focus();
  }
  els.authForm.addEventListener("submit", (event) => {
    event.preventDefault();
    token = els.authToken.value;
    sessionStorage.setItem("statspout.token", token);
    els.authToken.value = "";
    els.auth.hidden = true;
    connect();
  });

  let source = null;
  async function connect() {
    if (source) { source.close(); source = null; }
    setStatus("", "connecting…");
    let answer;
    try {  // the token is checked here, with a header, before it goes into the stream's URL
      answer = await fetch("/stats?host=", { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    } catch (error) {
      setStatus("down", "sink unreachable, retrying");
      setTimeout(connect, 3000);
      return;
    }
    if (answer.status === 401) {
      askForToken(token ? "The sink refused this token." : "This sink needs a token.");
      return;
    }
    source = new EventSource(token ? `/events?token=${encodeURIComponent(token)}` : "/events");
    source.onopen = () => setStatus("live", "live");
    source.onmessage = (event) => take(event.data, performance.now());
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) { setStatus("down", "disconnected"); setTimeout(connect, 3000); }
      else setStatus("down", "reconnecting…");
    };
  }

  showSort();
  connect();
})();
