/*
 * The live dashboard's script (src/roles/dashboard/index.html), served as
 * GET /dashboard.js: the page's Content-Security-Policy runs only scripts of
 * its own origin, never inline ones.
 */
"use strict";
var hist = [], prev = null, HISTORY = 120;
function $(id) { return document.getElementById(id); }
function fmt(n) { return n == null || isNaN(n) ? "-" : Math.round(n).toLocaleString("en-US"); }
function ms(v) { return v == null || isNaN(v) ? "-" : (v < 10 ? v.toFixed(2) : v.toFixed(1)); }
function text(id, v) { var e = $(id); if (e) { e.textContent = v; } }
function get(url) {
  return fetch(url, {cache: "no-store"}).then(function (r) {
    if (!r.ok) { throw new Error(url + " " + r.status); }
    return r.json();
  });
}
function stats(st, role) { return st && st[role] && st[role].stats ? st[role].stats : null; }

function roleRow(name, healthy, detail) {
  var tr = document.createElement("tr");
  var cls = healthy === null ? "unk" : (healthy ? "ok" : "bad");
  var word = healthy === null ? "unknown" : (healthy ? "healthy" : "down");
  tr.innerHTML = "<td></td><td><span class='dot " + cls + "'></span>" + word +
    "</td><td class='err'></td>";
  tr.children[0].textContent = name;
  tr.children[2].textContent = detail || "";
  return tr;
}

function renderRoles(st, ok) {
  var t = $("roles");
  while (t.rows.length > 1) { t.deleteRow(1); }
  t.appendChild(roleRow("gateway", ok, ok ? "serving this page" : "unreachable"));
  ["ingest", "processor", "analytics"].forEach(function (r) {
    var e = st && st[r];
    t.appendChild(roleRow(r, e ? !!e.healthy : null, e ? (e.error || "") : ""));
  });
}

function typeEntries(an) {
  if (!an) { return null; }
  var m = an.events_by_type || an.by_type || an.event_types;
  if (!m) { return null; }
  var out = [];
  if (Array.isArray(m)) {
    m.forEach(function (x) {
      out.push([x.type || x.key || x.name || "?", +(x.count || x.value || 0)]);
    });
  } else {
    Object.keys(m).forEach(function (k) {
      out.push([k, typeof m[k] === "object" ? +(m[k].count || 0) : +m[k]]);
    });
  }
  out.sort(function (a, b) { return b[1] - a[1]; });
  return out;
}

function renderTypes(st, ing) {
  var t = $("types"), rows = typeEntries(stats(st, "analytics")), src = "analytics";
  if (!rows && ing && ing.typed) {
    src = "ingest typed routes";
    rows = Object.keys(ing.typed).map(function (k) { return [k, +ing.typed[k]]; });
  }
  while (t.rows.length) { t.deleteRow(0); }
  if (!rows || !rows.length) {
    t.insertRow().innerHTML = "<td class='err'>no events by type yet (analytics role not reachable or empty)</td>";
    return;
  }
  var max = Math.max.apply(null, rows.map(function (r) { return r[1]; })) || 1;
  t.insertRow().innerHTML = "<th>type</th><th class='num'>events</th><th class='w45'></th>";
  rows.slice(0, 10).forEach(function (r) {
    var tr = t.insertRow();
    tr.innerHTML = "<td></td><td class='num'></td><td><div class='typebar'></div></td>";
    tr.children[0].textContent = r[0];
    tr.children[1].textContent = fmt(r[1]);
    tr.children[2].firstChild.style.width = (100 * r[1] / max).toFixed(1) + "%";
  });
  var note = t.insertRow();
  note.innerHTML = "<td colspan='3' class='err'></td>";
  note.children[0].textContent = "source: " + src;
}

function drawChart() {
  var c = $("chart"), w = c.clientWidth, h = c.clientHeight, dpr = window.devicePixelRatio || 1;
  c.width = w * dpr; c.height = h * dpr;
  var g = c.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  var max = 10;
  hist.forEach(function (p) { max = Math.max(max, p[0], p[1]); });
  g.strokeStyle = "#2a3744"; g.lineWidth = 1; g.fillStyle = "#8b98a5"; g.font = "11px sans-serif";
  for (var i = 0; i <= 2; i++) {
    var y = 6 + (h - 12) * i / 2;
    g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke();
    g.fillText(fmt(max * (2 - i) / 2), 4, i === 2 ? y - 3 : y + 11);
  }
  ["#58a6ff", "#3fb950"].forEach(function (color, k) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    hist.forEach(function (p, j) {
      var x = w - (hist.length - 1 - j) * (w / (HISTORY - 1));
      var y = h - 6 - (h - 12) * p[k] / max;
      if (j === 0) { g.moveTo(x, y); } else { g.lineTo(x, y); }
    });
    g.stroke();
  });
}

function update(st, dash) {
  var ing = stats(st, "ingest"), pr = stats(st, "processor");
  var q = pr && pr.queue, pool = pr && pr.pool;
  var sent = ing ? +ing.TotalSent : null, done = pool ? +pool.processed : null;
  text("ingested", fmt(sent));
  text("failed", fmt(ing ? +ing.TotalFailed : 0));
  text("rejected", fmt(ing ? +ing.TotalRejected : 0));
  text("processed", fmt(done));
  text("proc_errors", fmt(pool ? +pool.errors : 0));
  var now = Date.now(), ri = 0, rp = 0;
  if (prev && now > prev.t) {
    var dt = (now - prev.t) / 1000;
    ri = sent != null && prev.sent != null ? Math.max(0, (sent - prev.sent) / dt) : 0;
    rp = done != null && prev.done != null ? Math.max(0, (done - prev.done) / dt) : 0;
  }
  prev = {t: now, sent: sent, done: done};
  hist.push([ri, rp]);
  if (hist.length > HISTORY) { hist.shift(); }
  text("ingest_rate", fmt(ri));
  text("process_rate", fmt(rp));
  if (q) {
    text("queue_size", fmt(q.size));
    text("queue_cap", q.capacity > 0 ? fmt(q.capacity) : "unbounded");
    text("queue_type", q.type || "-");
    $("queue_bar").style.width = (q.capacity > 0 ? Math.min(100, 100 * q.size / q.capacity) : 0) + "%";
  }
  if (pool) { text("pool_active", fmt(pool.active)); text("pool_workers", fmt(pool.workers)); }
  var li = dash && dash.ingest_latency_ms, lp = dash && dash.processing_latency_ms;
  ["p50", "p95", "p99"].forEach(function (k) {
    text("in_" + k, ms(li ? li[k] : null));
    text("pr_" + k, ms(lp ? lp[k] : null));
  });
  text("lat_note", lp ? "" : (pool ? "end to end: average " + ms(pool.avg_latency_us / 1000) +
       " ms (the processor runs in another process)" : ""));
  renderRoles(st, true);
  renderTypes(st, ing);
  drawChart();
}

function poll() {
  Promise.all([get("/api/v1/status"), get("/api/v1/dashboard").catch(function () { return null; })])
    .then(function (r) {
      update(r[0], r[1]);
      var c = $("conn");
      c.textContent = "updated " + new Date().toLocaleTimeString();
      c.style.color = "";
    })
    .catch(function (e) {
      var c = $("conn");
      c.textContent = "gateway unreachable: " + e.message;
      c.style.color = "#f85149";
      renderRoles(null, false);
    });
}
poll();
setInterval(poll, 1000);
