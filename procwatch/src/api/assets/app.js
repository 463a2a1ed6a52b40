// procwatch dashboard: plain JavaScript, no libraries (the page must work offline).
//
// Everything a process controls (its name, path, arguments, reasons) is untrusted: it is only
// ever put into the page as text (textContent / text nodes, through `el` below), never parsed
// as HTML, and control characters are shown as escapes so a name cannot fake a line or a colour.
'use strict';

(() => {
  const TOKEN_KEY = 'procwatch.token';
  const AUTO_KEY = 'procwatch.autoRefresh';
  const REFRESH_MS = 2000;
  const FEED_KEEP = 500;
  const FEED_SHOW = 150;
  const EPS_POINTS = 90;

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    processes: [],
    sort: { key: 'total_score', dir: 'desc' },
    selectedPid: null,
    alerts: new Map(), // id -> { alert, receivedMs }
    lastAlertId: 0,
    stats: null,
    epsHistory: [], // { t, total, kinds: {kind: rate} }
    alertThreshold: 3,
    timer: null,
    streamAbort: null,
    tokenWaiters: [],
  };

  const $ = (id) => document.getElementById(id);

  // ---- text and DOM helpers ------------------------------------------------------------

  /** Shows control characters, bidi overrides and stray surrogates as visible escapes. */
  function clean(value) {
    if (value === null || value === undefined) return '';
    const s = typeof value === 'string' ? value : String(value);
    // eslint-disable-next-line no-control-regex
    return s.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
      const code = c.charCodeAt(0);
      if (c === '\n') return '\\n';
      if (c === '\t') return '\\t';
      if (c === '\r') return '\\r';
      return code <= 0xff ? '\\x' + code.toString(16).padStart(2, '0') : '\\u{' + code.toString(16) + '}';
    });
  }

  /** Builds an element; strings among `children` become text nodes, never markup. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = clean(v);
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(clean(c)));
    }
    return node;
  }

  function num(v) {
    const n = typeof v === 'number' ? v : Number(v);
    return Number.isFinite(n) ? n : null;
  }

  function fmt(v, digits = 1) {
    const n = num(v);
    if (n === null) return '–';
    return Number.isInteger(n) ? String(n) : n.toFixed(digits);
  }

  function sum(v) {
    if (num(v) !== null) return num(v);
    if (v && typeof v === 'object') {
      return Object.values(v).reduce((a, x) => a + (num(x) ?? 0), 0);
    }
    return null;
  }

  function duration(secs) {
    const s = num(secs);
    if (s === null) return '–';
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${Math.floor(s % 60)}s`;
    return `${Math.floor(s)}s`;
  }

  function timeOf(ts) {
    const d = new Date(ts);
    return Number.isNaN(d.getTime()) ? clean(ts) : d.toLocaleTimeString();
  }

  function cmdline(v) {
    if (Array.isArray(v)) {
      return v.map((a) => (typeof a === 'string' && /^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
    }
    return v === null || v === undefined ? '' : String(v);
  }

  /** Green below half the alert threshold, amber below it, red at or above it. */
  function scoreClass(score) {
    const s = num(score) ?? 0;
    const t = state.alertThreshold > 0 ? state.alertThreshold : 3;
    if (s >= t) return 'score score-red';
    return s >= t / 2 ? 'score score-amber' : 'score score-green';
  }

  function scoreBadge(score) {
    const n = num(score);
    return el('span', { class: scoreClass(score), 'data-testid': 'score' }, n === null ? '–' : n.toFixed(1));
  }

  /** Renders any JSON value readably (for fields the page has no special view for). */
  function renderValue(v, depth = 0) {
    if (v === null || v === undefined) return el('span', { class: 'muted' }, '–');
    if (Array.isArray(v)) {
      if (v.length === 0) return el('span', { class: 'muted' }, 'none');
      if (v.every((x) => x === null || typeof x !== 'object')) return el('span', { class: 'mono' }, v.map(clean).join(', '));
      return el('ul', { class: 'plain' }, v.slice(0, 200).map((x) => el('li', null, renderValue(x, depth + 1))));
    }
    if (typeof v === 'object') {
      if (depth > 4) return el('span', { class: 'mono' }, JSON.stringify(v));
      const dl = el('dl', { class: 'kv' });
      for (const [k, x] of Object.entries(v)) dl.append(el('dt', null, k), el('dd', null, renderValue(x, depth + 1)));
      return dl;
    }
    return el('span', { class: 'mono' }, v);
  }

  function showError(msg) {
    const b = $('error-banner');
    if (msg) {
      b.textContent = clean(msg);
      b.hidden = false;
    } else {
      b.hidden = true;
    }
  }

  // ---- the API ---------------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function authHeaders(extra) {
    const h = Object.assign({ Accept: 'application/json' }, extra || {});
    if (state.token) h.Authorization = 'Bearer ' + state.token;
    return h;
  }

  async function api(path, method = 'GET') {
    const res = await fetch(path, { method, headers: authHeaders(), cache: 'no-store' });
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (res.status === 401) {
      askToken(state.token ? 'The token was refused.' : 'This procwatch needs a token.');
    }
    if (!res.ok) {
      const msg = (body && (body.error || body.message)) || res.statusText || 'error';
      throw new HttpError(res.status, `${method} ${path}: ${res.status} ${msg}`);
    }
    return body;
  }

  function listOf(body, key) {
    if (Array.isArray(body)) return body;
    if (body && Array.isArray(body[key])) return body[key];
    if (body && Array.isArray(body.items)) return body.items;
    return [];
  }

  /** An alert as the page uses it, from a history record or the alert itself. */
  function normAlert(rec) {
    if (!rec || typeof rec !== 'object') return null;
    let a = rec;
    if (typeof rec.json === 'string') {
      try {
        a = JSON.parse(rec.json);
      } catch (_) {
        a = rec;
      }
    } else if (rec.alert && typeof rec.alert === 'object') {
      a = rec.alert;
    }
    if ((a.id === undefined || a.id === null) && rec.id !== undefined) a.id = rec.id;
    return num(a.id) === null ? null : a;
  }

  // ---- token ------------------------------------------------------------------------------

  function askToken(why) {
    const d = $('token-dialog');
    $('token-why').textContent = clean(why || 'API token, kept for this tab only (sessionStorage).');
    $('token-input').value = state.token;
    if (!d.open) d.showModal();
  }

  function setToken(token) {
    state.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    document.body.classList.toggle('has-token', !!token);
    refreshAll();
    // The history first, then the stream resumes after the newest alert it holds.
    loadRecentAlerts().finally(() => {
      state.tokenWaiters.splice(0).forEach((w) => w());
      restartStream();
    });
    if (state.selectedPid !== null) openDetail(state.selectedPid);
    renderFeed();
  }

  function tokenChanged() {
    return new Promise((resolve) => state.tokenWaiters.push(resolve));
  }

  // ---- statistics and charts --------------------------------------------------------------

  function statsField(s, ...names) {
    for (const n of names) if (s[n] !== undefined) return s[n];
    return undefined;
  }

  function renderStats(s) {
    state.stats = s;
    const threshold = num(statsField(s, 'min_score', 'alert_min_score'));
    if (threshold !== null) state.alertThreshold = threshold;
    $('stat-processes').textContent = fmt(statsField(s, 'processes', 'processes_tracked'), 0);
    $('stat-suspicious').textContent = fmt(statsField(s, 'suspicious'), 0);
    const byRule = statsField(s, 'alerts_by_rule') || {};
    $('stat-alerts').textContent = fmt(statsField(s, 'alerts_total', 'alerts') ?? sum(byRule), 0);
    const eps = statsField(s, 'events_per_second', 'events_per_sec') || {};
    $('stat-eps').textContent = fmt(sum(eps), 1);
    const lostField = statsField(s, 'events_lost', 'lost');
    const lost = lostField && typeof lostField === 'object' && num(lostField.total) !== null ? num(lostField.total) : sum(lostField);
    $('stat-lost').textContent = fmt(lost, 0);
    $('stat-lost').style.color = lost ? 'var(--red)' : '';
    $('stat-uptime').textContent = duration(statsField(s, 'uptime_secs', 'uptime_s', 'uptime_seconds', 'uptime'));
    const sensor = statsField(s, 'sensor');
    const probes = statsField(s, 'probes', 'attached_probes') ?? (sensor && sensor.probes);
    let sensorText = typeof sensor === 'string' ? sensor : (sensor && (sensor.kind || sensor.name)) || '–';
    const missing = sensor && typeof sensor === 'object' ? sensor.probes_missing : undefined;
    if (Array.isArray(missing)) {
      sensorText += missing.length ? ` (${missing.length} probes missing: ${missing.map(clean).join(', ')})` : ' (all probes attached)';
    } else if (Array.isArray(probes)) {
      const attached = probes.filter((p) => p === true || typeof p === 'string' || (p && p.attached !== false)).length;
      sensorText += ` (${attached}/${probes.length} probes)`;
    } else if (num(probes) !== null) {
      sensorText += ` (${probes} probes)`;
    }
    $('stat-sensor').textContent = clean(sensorText);

    // Mode and learning progress.
    const learning = statsField(s, 'learning');
    const modeObj = statsField(s, 'mode') ?? learning;
    const mode = typeof modeObj === 'string' ? modeObj : (modeObj && (modeObj.mode || modeObj.state)) || '';
    let progress = num(statsField(s, 'learning_progress', 'progress'));
    if (progress === null && learning && typeof learning === 'object') progress = num(learning.progress);
    if (progress === null && modeObj && typeof modeObj === 'object') progress = num(modeObj.progress);
    const badge = $('mode-badge');
    badge.textContent = clean(mode || 'mode ?');
    badge.className = 'badge ' + (mode === 'learning' ? 'learning' : mode ? 'monitoring' : '');
    const p = progress === null ? (mode === 'learning' ? 0 : 1) : Math.max(0, Math.min(1, progress > 1 ? progress / 100 : progress));
    $('learning-progress').value = p;
    const until = statsField(s, 'learning_until', 'learning_ends') ?? (learning && typeof learning === 'object' ? learning.ends : undefined);
    const exes = learning && typeof learning === 'object' && num(learning.executables) !== null ? `, ${learning.executables} executables` : '';
    $('learning-text').textContent =
      mode === 'learning'
        ? `${Math.round(p * 100)}%` + (until ? ` until ${new Date(until).toLocaleString()}` : '') + exes
        : mode === 'off'
          ? 'off (no baselines)'
          : mode
            ? `done${exes}`
            : '–';

    // Events per second, over time: the total from the server's own history when it keeps
    // one (the chart is full at once), the kinds from what this page sampled.
    const kinds = {};
    for (const [k, v] of Object.entries(eps)) if (num(v) !== null) kinds[k] = num(v);
    state.epsHistory.push({ t: Date.now(), total: sum(kinds) ?? 0, kinds });
    if (state.epsHistory.length > EPS_POINTS) state.epsHistory.shift();
    const hist = statsField(s, 'events_per_second_history');
    state.epsServer = Array.isArray(hist)
      ? hist.map((h) => ({ t: new Date(h.time).getTime(), total: num(h.events_per_second) ?? 0 })).filter((h) => Number.isFinite(h.t))
      : null;

    const rules = {};
    for (const [k, v] of Object.entries(byRule)) if (num(v) !== null) rules[k] = num(v);
    state.rulesCount = rules;
    addRuleOptions(Object.keys(rules));
    drawCharts();
  }

  const PALETTE = ['#4aa3ff', '#3fb950', '#e3a21a', '#f85149', '#bc8cff', '#39c5cf', '#ff7b72', '#d2a8ff', '#7ee787', '#ffa657'];

  function canvasCtx(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(50, canvas.clientWidth);
    const h = Math.max(50, canvas.clientHeight);
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    return { ctx, w, h };
  }

  /** `text` cut with an ellipsis to at most `width` pixels. */
  function fitText(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    let t = text;
    while (t.length > 1 && ctx.measureText(t + '…').width > width) t = t.slice(0, -1);
    return t + '…';
  }

  function drawRules() {
    const { ctx, w, h } = canvasCtx($('chart-rules'));
    const entries = Object.entries(state.rulesCount || {}).sort((a, b) => b[1] - a[1]).slice(0, 8);
    if (!entries.length) {
      ctx.fillStyle = '#8a9bab';
      ctx.fillText('no alerts yet', 10, h / 2);
      return;
    }
    const max = Math.max(...entries.map((e) => e[1]), 1);
    const labelW = Math.min(140, w * 0.42);
    const rowH = (h - 8) / entries.length;
    entries.forEach(([rule, n], i) => {
      const y = 4 + i * rowH;
      const bw = Math.max(2, ((w - labelW - 40) * n) / max);
      ctx.fillStyle = '#8a9bab';
      ctx.textAlign = 'right';
      ctx.fillText(fitText(ctx, clean(rule), labelW - 8), labelW - 6, y + rowH / 2);
      ctx.fillStyle = PALETTE[i % PALETTE.length];
      ctx.fillRect(labelW, y + rowH * 0.18, bw, rowH * 0.64);
      ctx.fillStyle = '#dde6ee';
      ctx.textAlign = 'left';
      ctx.fillText(String(n), labelW + bw + 4, y + rowH / 2);
    });
  }

  function drawEps() {
    const { ctx, w, h } = canvasCtx($('chart-eps'));
    const pts = state.epsHistory;
    const server = state.epsServer && state.epsServer.length >= 2 ? state.epsServer : null;
    const legend = $('chart-eps-legend');
    if (!server && pts.length < 2) {
      ctx.fillStyle = '#8a9bab';
      ctx.fillText('collecting…', 10, h / 2);
      legend.replaceChildren();
      return;
    }
    // The busiest kinds get a line of their own, beside the total.
    const totals = {};
    for (const p of pts) for (const [k, v] of Object.entries(p.kinds)) totals[k] = (totals[k] || 0) + v;
    const kinds = pts.length >= 2 ? Object.keys(totals).sort((a, b) => totals[b] - totals[a]).slice(0, 5) : [];
    const series = [{ name: 'total', color: '#dde6ee', pts: (server || pts).map((p) => [p.t, p.total]) }].concat(
      kinds.map((k, i) => ({ name: k, color: PALETTE[i % PALETTE.length], pts: pts.map((p) => [p.t, p.kinds[k] || 0]) })),
    );
    const all = series.flatMap((x) => x.pts);
    const max = Math.max(1, ...all.map((p) => p[1]));
    const t0 = Math.min(...all.map((p) => p[0]));
    const span = Math.max(1, Math.max(...all.map((p) => p[0])) - t0);
    const left = 36;
    const bottom = h - 14;
    ctx.strokeStyle = '#2c3a47';
    ctx.fillStyle = '#8a9bab';
    ctx.textAlign = 'right';
    for (const f of [0, 0.5, 1]) {
      const y = bottom - f * (bottom - 8);
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(w - 4, y);
      ctx.stroke();
      ctx.fillText(fmt(max * f, 0), left - 4, y);
    }
    ctx.textAlign = 'left';
    ctx.fillText(`last ${Math.round(span / 1000)} s`, left, h - 5);
    for (const x of series) {
      ctx.strokeStyle = x.color;
      ctx.lineWidth = x.name === 'total' ? 2 : 1.2;
      ctx.beginPath();
      x.pts.forEach(([t, v], i) => {
        const px = left + ((t - t0) / span) * (w - left - 6);
        const py = bottom - (v / max) * (bottom - 8);
        if (i) ctx.lineTo(px, py);
        else ctx.moveTo(px, py);
      });
      ctx.stroke();
    }
    legend.replaceChildren(...series.map((x) => el('span', null, el('i', { style: `background:${x.color}` }), x.name)));
  }

  function drawCharts() {
    drawRules();
    drawEps();
  }

  // ---- process table ----------------------------------------------------------------------

  const COLUMNS = [
    { key: 'pid', num: true },
    { key: 'name', cls: 'name' },
    { key: 'total_score', num: true, score: true },
    { key: 'heuristic_score', num: true, narrow: true },
    { key: 'ml_score', num: true, narrow: true },
    { key: 'cpu_pct', num: true, narrow: true },
    { key: 'conns_outbound', num: true, narrow: true },
    { key: 'user', narrow: true },
    { key: 'exe', cls: 'exe', narrow: true },
  ];

  function compare(a, b, key) {
    const x = a[key];
    const y = b[key];
    const nx = num(x);
    const ny = num(y);
    if (nx !== null && ny !== null) return nx - ny;
    if (x === undefined || x === null) return y === undefined || y === null ? 0 : 1;
    if (y === undefined || y === null) return -1;
    return String(x).localeCompare(String(y));
  }

  function renderProcesses() {
    const minScore = num($('min-score').value) ?? 0;
    const needle = $('name-filter').value.trim().toLowerCase();
    const { key, dir } = state.sort;
    const rows = state.processes
      .filter((p) => (num(p.total_score) ?? 0) >= minScore)
      .filter((p) => !needle || String(p.name ?? '').toLowerCase().includes(needle) || String(p.exe ?? '').toLowerCase().includes(needle) || String(p.pid) === needle)
      .sort((a, b) => {
        const c = compare(a, b, key);
        return (dir === 'asc' ? c : -c) || (num(a.pid) ?? 0) - (num(b.pid) ?? 0);
      });
    const body = $('process-rows');
    body.replaceChildren(
      ...rows.map((p) =>
        el(
          'tr',
          {
            'data-pid': p.pid,
            'data-testid': 'process-row',
            class: p.pid === state.selectedPid ? 'selected' : null,
            onclick: () => openDetail(p.pid),
            tabindex: 0,
            onkeydown: (e) => e.key === 'Enter' && openDetail(p.pid),
          },
          COLUMNS.map((c) => {
            const v = p[c.key];
            const cls = [c.num ? 'num' : '', c.narrow ? 'hide-narrow' : '', c.cls || ''].join(' ').trim() || null;
            if (c.score) return el('td', { class: cls }, scoreBadge(v));
            const text = c.num ? fmt(v, 1) : clean(v ?? '');
            return el('td', { class: cls, title: c.num ? null : text, 'data-col': c.key }, text);
          }),
        ),
      ),
    );
    $('process-count').textContent = `${rows.length} of ${state.processes.length}`;
    document.querySelectorAll('#process-table th').forEach((th) => {
      th.setAttribute('aria-sort', th.dataset.sort === key ? (dir === 'asc' ? 'ascending' : 'descending') : 'none');
    });
  }

  // ---- detail view ------------------------------------------------------------------------

  function section(title, ...content) {
    return [el('h3', null, title), ...content.filter(Boolean)];
  }

  function reasonsList(reasons) {
    if (!Array.isArray(reasons) || !reasons.length) return el('span', { class: 'muted' }, 'none');
    return el(
      'ul',
      { class: 'plain', 'data-testid': 'reasons' },
      reasons.map((r) =>
        el(
          'li',
          { class: r.known ? 'known' : null },
          el('span', { class: 'rule' }, r.rule ?? '?'),
          ' ',
          el('span', { class: 'muted' }, `+${fmt(r.score, 2)}`),
          r.attack ? el('span', { class: 'muted' }, ` ${clean(r.attack)}`) : null,
          r.known ? el('span', { class: 'muted' }, ' (known, not counted)') : null,
          el('div', null, r.reason ?? ''),
        ),
      ),
    );
  }

  function chainList(chain, fields) {
    if (!Array.isArray(chain) || !chain.length) return el('span', { class: 'muted' }, 'none');
    return el(
      'ol',
      { class: 'plain mono' },
      chain.map((c) =>
        el('li', null, typeof c === 'object' && c !== null ? fields.map((f) => (c[f] !== undefined && c[f] !== null ? `${f}: ${clean(typeof c[f] === 'object' ? JSON.stringify(c[f]) : c[f])}  ` : '')).join('') : clean(c)),
      ),
    );
  }

  function connectionText(c) {
    if (!c || typeof c !== 'object') return clean(c);
    const remote = c.remote ?? (c.remote_addr !== undefined ? `${c.remote_addr}:${c.remote_port ?? '?'}` : c.addr !== undefined ? `${c.addr}:${c.port ?? '?'}` : null);
    const local = c.local ?? (c.local_addr !== undefined ? `${c.local_addr}:${c.local_port ?? '?'}` : null);
    const parts = [c.proto ?? c.protocol, c.direction ?? c.state, local ? `local ${local}` : null, remote ? `→ ${remote}` : null].filter(Boolean);
    return parts.length ? parts.map(clean).join(' ') : JSON.stringify(c);
  }

  function actionButtons(p) {
    if (!state.token) return el('p', { class: 'muted' }, 'Give a token (Token button) to kill or accept.');
    const msg = el('div', { class: 'msg', 'data-testid': 'kill-result' });
    const kill = el('button', { type: 'button', class: 'danger', id: 'kill-button', 'data-testid': 'kill-button' }, 'Kill');
    let armed = false;
    kill.addEventListener('click', async () => {
      // Two clicks: a kill is final; no native confirm() (it blocks the page and automation).
      if (!armed) {
        armed = true;
        kill.textContent = `Confirm kill of ${p.pid}`;
        setTimeout(() => {
          armed = false;
          kill.textContent = 'Kill';
        }, 5000);
        return;
      }
      kill.disabled = true;
      try {
        const r = await api(`/api/process/${encodeURIComponent(p.pid)}/kill?start_boottime_ns=${encodeURIComponent(p.start_boottime_ns)}`, 'POST');
        const a = (r && r.alert) || {};
        msg.className = 'msg ok';
        msg.textContent = clean(`${r && r.killed ? 'killed' : 'not killed'}: ${a.action || ''}${a.action_reason ? ' – ' + a.action_reason : ''}${a.id !== undefined ? ` (alert #${a.id})` : ''}`);
      } catch (e) {
        msg.className = 'msg err';
        msg.textContent = clean(e.message);
      } finally {
        kill.disabled = false;
        kill.textContent = 'Kill';
        armed = false;
      }
    });
    return el('div', null, el('div', { class: 'actions' }, kill), msg);
  }

  function acceptButton(alert) {
    const wrap = el('div', { class: 'accept' });
    if (!state.token) return wrap;
    const msg = el('div', { class: 'msg', 'data-testid': 'accept-result' });
    const btn = el('button', { type: 'button', class: 'primary', 'data-testid': 'accept-button', 'data-alert-id': alert.id }, 'Accept into baseline');
    btn.addEventListener('click', async (e) => {
      e.stopPropagation();
      btn.disabled = true;
      try {
        const r = await api(`/api/alerts/${encodeURIComponent(alert.id)}/accept`, 'POST');
        const list = (v) => (Array.isArray(v) ? v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : x)).join('; ') : '');
        const added = list(r && (r.added || r.accepted));
        const skipped = list(r && r.skipped);
        msg.className = 'msg ok';
        msg.textContent = clean('accepted' + (added ? `: ${added}` : '') + (skipped ? ` (not accepted: ${skipped})` : ''));
      } catch (err) {
        btn.disabled = false;
        msg.className = 'msg err';
        msg.textContent = clean(err.message);
      }
    });
    wrap.append(btn, msg);
    return wrap;
  }

  /** The baseline of the process's executable: a summary, what is anomalous now, and all of it folded. */
  function baselineView(b, anomalous) {
    const box = el('div', { 'data-testid': 'detail-baseline' });
    if (!b || typeof b !== 'object') {
      box.append(el('span', { class: 'muted' }, 'no baseline for this executable'));
      return box;
    }
    const kv = el('dl', { class: 'kv' });
    const rows = [
      ['state', b.state],
      ['established', b.baseline_established],
      ['processes seen', b.processes_seen],
      ['first seen', b.first_seen],
      ['accepted', b.accepted === undefined ? undefined : b.accepted ? 'yes (by hand)' : 'no'],
    ];
    for (const [k, v] of rows) if (v !== undefined && v !== null) kv.append(el('dt', null, k), el('dd', null, v));
    box.append(kv);
    if (Array.isArray(anomalous)) {
      box.append(el('div', { class: 'muted', style: 'margin-top:6px' }, anomalous.length ? 'anomalous now:' : 'nothing anomalous now'));
      if (anomalous.length) box.append(reasonsList(anomalous));
    }
    box.append(el('details', null, el('summary', { class: 'muted' }, 'everything learned'), renderValue(b)));
    return box;
  }

  async function openDetail(pid) {
    state.selectedPid = pid;
    const pane = $('detail');
    const body = $('detail-body');
    pane.hidden = false;
    pane.dataset.pid = pid;
    $('detail-title').textContent = `pid ${pid}`;
    body.replaceChildren(el('p', { class: 'muted' }, 'loading…'));
    document.querySelectorAll('#process-rows tr').forEach((tr) => tr.classList.toggle('selected', tr.dataset.pid === String(pid)));
    let p;
    try {
      p = await api(`/api/process/${encodeURIComponent(pid)}`);
    } catch (e) {
      if (state.selectedPid === pid) body.replaceChildren(el('p', { class: 'msg err', 'data-testid': 'detail-error' }, e.message));
      return;
    }
    if (state.selectedPid !== pid || !p) return;
    const proc = p.process && typeof p.process === 'object' ? Object.assign({}, p.process, p) : p;
    $('detail-title').textContent = clean(`${proc.name ?? '?'} (pid ${proc.pid ?? pid})`);
    const kv = el('dl', { class: 'kv', 'data-testid': 'detail-fields' });
    const fields = [
      ['score', scoreBadge(proc.total_score)],
      ['heuristic', fmt(proc.heuristic_score, 2)],
      ['ml', fmt(proc.ml_score, 2)],
      ['exe', proc.exe],
      ['cmdline', cmdline(proc.cmdline)],
      ['user', proc.user ?? proc.uid],
      ['ppid', proc.ppid],
      ['sha256', proc.sha256],
      ['cpu %', fmt(proc.cpu_pct, 1)],
      ['rss', num(proc.rss_bytes) !== null ? `${(proc.rss_bytes / 1048576).toFixed(1)} MiB` : null],
      ['cwd', proc.cwd],
      ['cgroup', proc.cgroup],
      ['traced by', proc.tracer_pid ? proc.tracer_pid : null],
      ['outbound', proc.conns_outbound],
      ['ports', Array.isArray(proc.remote_ports) ? proc.remote_ports.join(', ') : proc.remote_ports],
      ['started', proc.start_time ?? proc.timestamp],
      ['exec id', proc.exec_id],
      ['container', proc.container_id],
    ];
    for (const [k, v] of fields) {
      if (v === undefined || v === null || v === '') continue;
      kv.append(el('dt', null, k), el('dd', null, v));
    }
    const shown = new Set(['pid', 'name', 'total_score', 'heuristic_score', 'ml_score', 'exe', 'cmdline', 'user', 'uid', 'ppid', 'sha256', 'cpu_pct', 'rss_bytes', 'cwd', 'cgroup', 'tracer_pid', 'conns_outbound', 'remote_ports', 'start_time', 'timestamp', 'exec_id', 'container_id', 'reasons', 'exec_chain', 'ancestors', 'connections', 'connects', 'baseline', 'anomalous_now', 'wx_regions', 'wx_requests', 'fds', 'fds_summary', 'open_fds', 'process', 'alerts', 'start_ticks']);
    const extra = Object.entries(proc).filter(([k]) => !shown.has(k));
    const baseline = proc.baseline;
    const parts = [
      el('div', { 'data-testid': 'detail-actions' }, actionButtons(proc)),
      kv,
      ...section('Reasons', reasonsList(proc.reasons)),
      ...section('Exec chain', el('div', { 'data-testid': 'detail-exec-chain' }, chainList(proc.exec_chain, ['exe', 'program', 'time']))),
      ...section('Ancestors', chainList(proc.ancestors, ['pid', 'exe', 'name'])),
      ...section(
        'Connections',
        el(
          'div',
          { 'data-testid': 'detail-connections' },
          Array.isArray(proc.connections) && proc.connections.length
            ? el('ul', { class: 'plain mono' }, proc.connections.map((c) => el('li', null, connectionText(c))))
            : el('span', { class: 'muted' }, 'none'),
        ),
      ),
      ...(Array.isArray(proc.connects) && proc.connects.length
        ? section('Connect calls seen', el('ul', { class: 'plain mono' }, proc.connects.map((c) => el('li', null, connectionText(c)))))
        : []),
      ...section('W+X memory', renderValue(proc.wx_regions), proc.wx_requests && proc.wx_requests.length ? renderValue(proc.wx_requests) : null),
      ...section('Open files', renderValue(proc.fds ?? proc.fds_summary ?? proc.open_fds)),
      ...section('Baseline', baselineView(baseline, proc.anomalous_now)),
    ];
    if (extra.length) parts.push(...section('More', renderValue(Object.fromEntries(extra))));
    const alertsBox = el('div', { 'data-testid': 'detail-alerts' }, el('span', { class: 'muted' }, 'loading…'));
    parts.push(...section('Alerts of this process', alertsBox));
    body.replaceChildren(...parts);
    try {
      const list = listOf(await api(`/api/alerts?pid=${encodeURIComponent(pid)}&limit=50`), 'alerts').map(normAlert).filter(Boolean);
      alertsBox.replaceChildren(
        list.length
          ? el('ul', { class: 'plain' }, list.reverse().map((a) => el('li', { 'data-alert-id': a.id }, `#${a.id} ${timeOf(a.timestamp)} `, scoreBadge(a.total_score), ' ', rulesOf(a).join(', '), acceptButton(a))))
          : el('span', { class: 'muted' }, 'none'),
      );
    } catch (e) {
      alertsBox.replaceChildren(el('span', { class: 'msg err' }, e.message));
    }
  }

  function closeDetail() {
    state.selectedPid = null;
    $('detail').hidden = true;
    document.querySelectorAll('#process-rows tr.selected').forEach((tr) => tr.classList.remove('selected'));
  }

  // ---- alert feed -------------------------------------------------------------------------

  function rulesOf(a) {
    return Array.isArray(a.reasons) ? a.reasons.map((r) => clean(r && r.rule)) : [];
  }

  function addRuleOptions(rules) {
    const sel = $('feed-rule');
    const have = new Set([...sel.options].map((o) => o.value));
    for (const r of rules) if (r && !have.has(r)) sel.append(el('option', { value: r }, r));
  }

  function feedMatches(a) {
    const rule = $('feed-rule').value;
    const min = num($('feed-min-score').value) ?? 0;
    const text = $('feed-text').value.trim().toLowerCase();
    if (rule && !rulesOf(a).includes(rule)) return false;
    if ((num(a.total_score) ?? 0) < min) return false;
    if (text && String(a.pid) !== text && !String(a.name ?? '').toLowerCase().includes(text) && !String(a.exe ?? '').toLowerCase().includes(text)) return false;
    return true;
  }

  function feedItem(entry, fresh) {
    const a = entry.alert;
    return el(
      'li',
      {
        'data-testid': 'feed-alert',
        'data-alert-id': a.id,
        'data-pid': a.pid,
        'data-received-ms': entry.receivedMs,
        class: fresh ? 'fresh' : null,
      },
      el(
        'div',
        { class: 'line1' },
        scoreBadge(a.total_score),
        el('span', { class: 'who', title: clean(a.exe) }, `${clean(a.name ?? '?')} (${a.pid})`),
        el('span', { class: 'time' }, `#${a.id} ${timeOf(a.timestamp)}`),
      ),
      el(
        'div',
        { class: 'line2' },
        el('span', { class: 'rules' }, rulesOf(a).map((r) => el('span', { class: 'rule' }, r))),
        el('button', { type: 'button', class: 'small', 'data-testid': 'feed-open', onclick: () => openDetail(a.pid) }, 'Process'),
      ),
      a.action && a.action !== 'alert' ? el('div', { class: 'muted' }, `action: ${clean(a.action)}${a.action_reason ? ' – ' + clean(a.action_reason) : ''}`) : null,
      acceptButton(a),
    );
  }

  function renderFeed() {
    const entries = [...state.alerts.values()].sort((x, y) => y.alert.id - x.alert.id).filter((e) => feedMatches(e.alert));
    $('feed-list').replaceChildren(...entries.slice(0, FEED_SHOW).map((e) => feedItem(e, false)));
    $('feed-count').textContent = String(state.alerts.size);
  }

  /** Takes an alert into the feed; a live one goes on top at once (no full redraw). */
  function addAlert(rec, live) {
    const a = normAlert(rec);
    if (!a || state.alerts.has(a.id)) return;
    const entry = { alert: a, receivedMs: Date.now() };
    state.alerts.set(a.id, entry);
    state.lastAlertId = Math.max(state.lastAlertId, a.id);
    addRuleOptions(rulesOf(a));
    if (state.alerts.size > FEED_KEEP) {
      const oldest = Math.min(...state.alerts.keys());
      state.alerts.delete(oldest);
    }
    if (live) {
      if (feedMatches(a)) {
        const list = $('feed-list');
        list.prepend(feedItem(entry, true));
        while (list.children.length > FEED_SHOW) list.lastChild.remove();
      }
      $('feed-count').textContent = String(state.alerts.size);
    }
  }

  function setFeedStatus(text, ok) {
    const b = $('feed-status');
    b.textContent = `stream: ${text}`;
    b.className = 'badge ' + (ok ? 'ok' : 'bad');
    b.dataset.state = text;
  }

  /**
   * The newest alerts of the last hour (asked newest first, shown oldest first); the stream
   * then resumes after the newest of them, so the server replays anything newer first.
   */
  async function loadRecentAlerts() {
    try {
      const since = Date.now() - 3600 * 1000;
      const list = listOf(
        await api(`/api/alerts?since=${since}&order=desc&limit=${FEED_KEEP}`),
        'alerts',
      );
      list.reverse().forEach((r) => addAlert(r, false));
      renderFeed();
    } catch (e) {
      if (!(e instanceof HttpError && e.status === 401)) showError(e.message);
    }
  }

  function restartStream() {
    if (state.streamAbort) state.streamAbort.abort();
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /**
   * The live feed: Server-Sent Events read through fetch, so the request can carry the bearer
   * token (EventSource cannot set headers); on reconnect `Last-Event-ID` asks the server for
   * what was missed.
   */
  async function streamLoop() {
    let backoff = 500;
    for (;;) {
      const ctrl = new AbortController();
      state.streamAbort = ctrl;
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (state.lastAlertId) headers['Last-Event-ID'] = String(state.lastAlertId);
        const res = await fetch('/api/alerts/stream', { headers, signal: ctrl.signal, cache: 'no-store' });
        if (res.status === 401) {
          setFeedStatus('needs token', false);
          askToken(state.token ? 'The token was refused.' : 'This procwatch needs a token.');
          await tokenChanged();
          continue;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        setFeedStatus('live', true);
        backoff = 500;
        await readEvents(res.body);
        setFeedStatus('closed', false);
      } catch (e) {
        if (ctrl.signal.aborted) continue;
        setFeedStatus('reconnecting', false);
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  async function readEvents(stream) {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let data = [];
    let type = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      for (;;) {
        const i = buf.search(/[\r\n]/);
        // A CR at the very end may be the first half of CRLF: wait for the next chunk.
        if (i < 0 || (buf[i] === '\r' && i === buf.length - 1)) break;
        const line = buf.slice(0, i);
        buf = buf.slice(i + (buf[i] === '\r' && buf[i + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (data.length) dispatch(type || 'message', data.join('\n'));
          data = [];
          type = '';
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? '' : line.slice(colon + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (field === 'data') data.push(v);
        else if (field === 'event') type = v;
        // A reset's id may be lower than ours: the reset handler sets it.
        else if (field === 'id' && type !== 'reset' && !v.includes('\0') && num(v) !== null) state.lastAlertId = Math.max(state.lastAlertId, num(v));
      }
    }
  }

  function dispatch(type, data) {
    if (type === 'reset') {
      // The server never published our last id (procwatch restarted without its history, so
      // ids started again): forget the old run's ids, or its new alerts would look like
      // ones already shown, and go on from the id the server gives.
      let last = 0;
      try {
        last = num(JSON.parse(data).last_id) ?? 0;
      } catch (_) {
        // No usable id: start from the beginning of what the server streams.
      }
      state.alerts.clear();
      $('feed-list').replaceChildren();
      $('feed-count').textContent = '0';
      state.lastAlertId = last;
      setFeedStatus('live (reset)', true);
      return;
    }
    if (type !== 'message' && type !== 'alert') {
      // e.g. the server telling a slow client what it dropped.
      setFeedStatus(`live (${clean(type)})`, type !== 'lagged' && type !== 'dropped');
      return;
    }
    try {
      addAlert(JSON.parse(data), true);
    } catch (_) {
      // A malformed event is skipped; the next one may be fine.
    }
  }

  // ---- refresh ----------------------------------------------------------------------------

  async function refreshAll() {
    try {
      const [stats, procs] = await Promise.all([api('/api/stats'), api('/api/processes')]);
      showError('');
      if (stats) renderStats(stats);
      state.processes = listOf(procs, 'processes').filter((p) => p && num(p.pid) !== null);
      renderProcesses();
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) return;
      showError(e instanceof HttpError ? e.message : `cannot reach procwatch: ${e.message}`);
    }
  }

  function schedule() {
    clearInterval(state.timer);
    state.timer = null;
    if ($('auto-refresh').checked) state.timer = setInterval(refreshAll, REFRESH_MS);
  }

  function init() {
    document.body.classList.toggle('has-token', !!state.token);
    const auto = sessionStorage.getItem(AUTO_KEY);
    if (auto !== null) $('auto-refresh').checked = auto === '1';
    $('auto-refresh').addEventListener('change', () => {
      sessionStorage.setItem(AUTO_KEY, $('auto-refresh').checked ? '1' : '0');
      schedule();
    });
    $('refresh-now').addEventListener('click', refreshAll);
    $('token-button').addEventListener('click', () => askToken());
    $('token-form').addEventListener('submit', () => setToken($('token-input').value.trim()));
    $('token-clear').addEventListener('click', () => {
      $('token-dialog').close();
      setToken('');
    });
    $('min-score').addEventListener('input', renderProcesses);
    $('name-filter').addEventListener('input', renderProcesses);
    document.querySelectorAll('#process-table th').forEach((th) =>
      th.addEventListener('click', () => {
        const key = th.dataset.sort;
        const numeric = th.classList.contains('num');
        state.sort = state.sort.key === key ? { key, dir: state.sort.dir === 'asc' ? 'desc' : 'asc' } : { key, dir: numeric ? 'desc' : 'asc' };
        renderProcesses();
      }),
    );
    for (const id of ['feed-rule', 'feed-min-score', 'feed-text']) $(id).addEventListener('input', renderFeed);
    $('detail-close').addEventListener('click', closeDetail);
    document.addEventListener('keydown', (e) => e.key === 'Escape' && !$('detail').hidden && closeDetail());
    let resize = null;
    window.addEventListener('resize', () => {
      clearTimeout(resize);
      resize = setTimeout(drawCharts, 100);
    });
    setFeedStatus('connecting', false);
    drawCharts();
    refreshAll();
    loadRecentAlerts().then(streamLoop);
    schedule();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
