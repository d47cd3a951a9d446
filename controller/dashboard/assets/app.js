// canaryctl dashboard: a single page, no build step. Client-side routing by hash:
//   #/            the fleet (every rollout the server shows)
//   #/r/NS/NAME   one rollout
// Data comes from the server's JSON API (relative URLs, so the page works under a path prefix too);
// live updates from /api/events (server-sent events), falling back to polling every 2 s.
// Charts use the vendored uPlot (window.uPlot, assets/vendor/).

let POLL_MS = 2000; // the server's tick when /api/config names it
const PHASE_ORDER = ['Pending', 'Progressing', 'Paused', 'RollingBack', 'RolledBack', 'Failed', 'Aborted', 'Promoted'];
const TERMINAL = new Set(['Promoted', 'RolledBack', 'Failed', 'Aborted']);
const ACTIONS = [
  ['pause', 'Pause', 'Stop moving the weight; the route stays as it is now.'],
  ['resume', 'Resume', 'Continue the schedule from the current step.'],
  ['promote', 'Promote', 'Send all traffic to the canary now, skipping the remaining steps and checks.'],
  ['abort', 'Abort', 'Restore the original route and end this run.'],
  ['retry', 'Retry', 'Start a new run from the first step.'],
];
const MARKER_LABEL = {
  weight: 'weight written', step: 'step start', check: 'check', pause: 'pause', resume: 'resume',
  drift: 'drift', command: 'command', rollback: 'rollback', promote: 'promote', alert: 'alert',
};

const main = document.getElementById('main');
const state = {
  config: null,
  token: sessionStorage.getItem('canary-dashboard-token'),
  fleet: null, // the last /api/rollouts body
  fleetAt: 0, // performance.now() when it arrived
  sort: loadSort(),
  attentionOnly: sessionStorage.getItem('canary-dashboard-attention') === '1',
  phase: null,
  text: '',
  view: null, // {kind: 'fleet'} | {kind: 'rollout', ns, name}
  detail: null,
  detailKey: '',
  charts: [],
  openDetails: new Map(), // which <details> the reader opened or closed, kept across live re-renders
  live: null, // {es} | {timer}
  firstFleetRender: true,
};

// ---------------------------------------------------------------- helpers

const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => (
  { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: 'application/json', ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, `the dashboard server cannot be reached (${err.message})`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = (body && body.error) || `HTTP ${response.status}`;
    if (response.status === 401) askToken(message);
    throw new ApiError(response.status, message);
  }
  return body;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function coarseDuration(seconds) {
  // Ages: a minute's resolution past the first minute, so 1,000 rows do not change text every second.
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  return seconds < 60 ? '<1m' : duration(Math.floor(seconds / 60) * 60).replace(/ 00s$/, '');
}

function pct(ratio, digits = 3) {
  if (ratio === null || ratio === undefined || !Number.isFinite(Number(ratio))) return '–';
  const value = Number(ratio) * 100;
  return `${value.toFixed(value === 0 ? 0 : digits).replace(/\.?0+$/, '') || '0'} %`;
}

function value(v) {
  // A check's value or threshold: ratios (0..1) as percentages, anything else as given.
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return v >= 0 && v <= 1 ? pct(v, 4) : String(v);
  if (typeof v === 'object') {
    return Object.entries(v).map(([k, x]) => `${k} ${typeof x === 'number' ? value(x) : esc(JSON.stringify(x))}`).join(', ');
  }
  return String(v);
}

function when(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso ?? '') : d.toLocaleTimeString();
}

const unix = (iso) => new Date(iso).getTime() / 1000;
const rolloutHash = (ns, name) => `#/r/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
const rolloutPath = (ns, name) => `api/rollouts/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function toast(message, bad = false) {
  const box = document.getElementById('toast');
  box.textContent = message;
  box.className = bad ? 'bad' : '';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.textContent = ''; }, 6000);
}

function setLive(open, text) {
  const el = document.getElementById('live');
  el.dataset.state = open ? 'open' : 'closed';
  el.querySelector('.live-text').textContent = text;
}

// ---------------------------------------------------------------- theme

function applyTheme(theme) {
  const root = document.documentElement;
  if (theme === 'auto') delete root.dataset.theme;
  else root.dataset.theme = theme;
  const button = document.getElementById('theme-toggle');
  button.textContent = { auto: '◐ auto', light: '☀ light', dark: '☾ dark' }[theme];
  button.setAttribute('aria-label', `Colour theme: ${theme} (change)`);
  localStorage.setItem('canary-dashboard-theme', theme);
}

document.getElementById('theme-toggle').addEventListener('click', () => {
  const order = ['auto', 'light', 'dark'];
  const now = localStorage.getItem('canary-dashboard-theme') || 'auto';
  applyTheme(order[(order.indexOf(now) + 1) % order.length]);
  if (state.view && state.view.kind === 'rollout' && state.detail) drawRolloutCharts(); // canvas colours
});
applyTheme(localStorage.getItem('canary-dashboard-theme') || 'auto');

// ---------------------------------------------------------------- auth (cluster mode)

function askToken(message) {
  const dialog = document.getElementById('token-dialog');
  const error = document.getElementById('token-error');
  error.hidden = !state.token;
  error.textContent = state.token ? `The token was refused: ${message}` : '';
  if (!dialog.open) dialog.showModal();
}

document.getElementById('token-dialog').addEventListener('close', (event) => {
  const dialog = event.target;
  if (dialog.returnValue !== 'ok') return;
  const token = document.getElementById('token-input').value.trim();
  if (!token) return;
  state.token = token;
  sessionStorage.setItem('canary-dashboard-token', token);
  start();
});

// ---------------------------------------------------------------- routing

function parseHash() {
  const match = /^#\/r\/([^/]+)\/([^/?]+)/.exec(location.hash);
  if (match) return { kind: 'rollout', ns: decodeURIComponent(match[1]), name: decodeURIComponent(match[2]) };
  return { kind: 'fleet' };
}

function route() {
  destroyCharts();
  state.view = parseHash();
  const crumbs = document.getElementById('crumbs');
  if (state.view.kind === 'rollout') {
    const { ns, name } = state.view;
    crumbs.innerHTML = `<a href="#/">Rollouts</a> / ${esc(ns)} / <strong>${esc(name)}</strong>`;
    document.title = `${ns}/${name} · canaryctl dashboard`;
    state.detail = null;
    state.detailKey = '';
    state.openDetails = new Map();
    main.innerHTML = '<p class="loading">Loading the rollout…</p>';
    loadDetail();
  } else {
    crumbs.innerHTML = '';
    document.title = 'Rollouts · canaryctl dashboard';
    renderFleetShell();
    if (state.fleet) renderFleet();
  }
  main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);

document.addEventListener('keydown', (event) => {
  // "/" jumps to the fleet's filter, as in many list views; not while typing somewhere
  if (event.key !== '/' || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest && event.target.closest('input, textarea, select, [contenteditable], dialog')) return;
  const filter = document.getElementById('filter');
  if (filter) {
    event.preventDefault();
    filter.focus();
  }
});

// ---------------------------------------------------------------- fleet

function loadSort() {
  try {
    const saved = JSON.parse(localStorage.getItem('canary-dashboard-sort'));
    if (saved && typeof saved.key === 'string') return saved;
  } catch { /* default below */ }
  return { key: 'attention', dir: 1 };
}

const COLUMNS = [
  ['name', 'Rollout', ''],
  ['target', 'Target', ''],
  ['phase', 'Phase', ''],
  ['step', 'Step', 'num'],
  ['weight', 'Weight', 'num'],
  ['verdict', 'Last verdict', ''],
  ['age', 'Age', 'num'],
  ['next', 'Next step in', 'num'],
];

const SORT_KEYS = {
  attention: (r) => [r.needsAttention ? 0 : 1, r.namespace, r.name],
  name: (r) => [r.namespace, r.name],
  target: (r) => [r.target ? `${r.target.kind}/${r.target.name}` : '', r.namespace, r.name],
  phase: (r) => [PHASE_ORDER.indexOf(r.phase), r.namespace, r.name],
  step: (r) => [r.stepIndex ?? -1, r.namespace, r.name],
  weight: (r) => [r.weight ?? -1, r.namespace, r.name],
  verdict: (r) => [r.lastVerdict ? r.lastVerdict.verdict : '~', r.namespace, r.name],
  age: (r) => [r.ageSeconds ?? Infinity, r.namespace, r.name],
  next: (r) => [r.nextStepInSeconds ?? Infinity, r.namespace, r.name],
};

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

function compareKeys(a, b) {
  for (let i = 0; i < a.length; i += 1) {
    const x = a[i];
    const y = b[i];
    const order = typeof x === 'string' && typeof y === 'string' ? collator.compare(x, y) : (x < y ? -1 : x > y ? 1 : 0);
    if (order) return order;
  }
  return 0;
}

function renderFleetShell() {
  const head = COLUMNS.map(([key, label, cls]) => `<th scope="col" data-col="${key}" class="${cls}"${
    state.sort.key === key ? ` aria-sort="${state.sort.dir > 0 ? 'ascending' : 'descending'}"` : ''}><button type="button" data-sort="${key}">${label}</button></th>`).join('');
  main.innerHTML = `
    <h1>Rollouts</h1>
    <p class="muted" id="scope"></p>
    <div class="toolbar">
      <ul id="counts" aria-label="Rollouts by phase (select to filter)"></ul>
      <label class="toggle"><input type="checkbox" id="needs-attention"${state.attentionOnly ? ' checked' : ''}>
        Needs attention <span id="attention-count" class="muted"></span></label>
      <input type="search" id="filter" placeholder="Filter: namespace, name, target  ( / )" aria-label="Filter rollouts by text (shortcut: /)" value="${esc(state.text)}">
      <span id="shown" class="muted" aria-live="polite"></span>
    </div>
    <table id="fleet" aria-label="Rollouts">
      <thead><tr>${head}</tr></thead>
      <tbody id="fleet-body"></tbody>
    </table>
    <p id="fleet-empty" class="empty" hidden></p>`;

  main.querySelector('#needs-attention').addEventListener('change', (event) => {
    state.attentionOnly = event.target.checked;
    sessionStorage.setItem('canary-dashboard-attention', state.attentionOnly ? '1' : '0');
    renderFleet();
  });
  let typing = null; // a short debounce: one table rebuild per pause in typing, not one per key
  main.querySelector('#filter').addEventListener('input', (event) => {
    state.text = event.target.value.trim().toLowerCase();
    clearTimeout(typing);
    typing = setTimeout(renderFleet, 120);
  });
  main.querySelector('#counts').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-phase]');
    if (!button) return;
    state.phase = state.phase === button.dataset.phase ? null : button.dataset.phase;
    renderFleet();
  });
  main.querySelector('#fleet thead').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-sort]');
    if (!button) return;
    const key = button.dataset.sort;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    localStorage.setItem('canary-dashboard-sort', JSON.stringify(state.sort));
    for (const th of main.querySelectorAll('#fleet th')) {
      if (th.dataset.col === key) th.setAttribute('aria-sort', state.sort.dir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
    renderFleet();
  });
  const body = main.querySelector('#fleet-body');
  body.addEventListener('click', (event) => {
    if (event.target.closest('a')) return; // the link navigates by itself
    const row = event.target.closest('tr[data-rollout]');
    if (row) location.hash = row.dataset.href;
  });
  body.addEventListener('focusin', (event) => {
    const row = event.target.closest('tr[data-rollout]');
    if (!row || row.tabIndex === 0) return;
    for (const other of body.querySelectorAll('tr[tabindex="0"]')) other.tabIndex = -1;
    row.tabIndex = 0;
  });
  body.addEventListener('keydown', (event) => {
    const row = event.target.closest('tr[data-rollout]');
    if (!row) return;
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      location.hash = row.dataset.href;
    } else if (['ArrowDown', 'ArrowUp', 'Home', 'End'].includes(event.key)) {
      event.preventDefault();
      const next = { ArrowDown: row.nextElementSibling, ArrowUp: row.previousElementSibling,
        Home: body.firstElementChild, End: body.lastElementChild }[event.key];
      if (next) next.focus();
    }
  });
}

function rowHtml(r, elapsed) {
  const key = `${r.namespace}/${r.name}`;
  const href = rolloutHash(r.namespace, r.name);
  const verdict = r.lastVerdict;
  const target = r.target ? `${esc(r.target.kind)}/${esc(r.target.name)}` : '–';
  const next = r.nextStepInSeconds === null || r.nextStepInSeconds === undefined
    ? '<td data-col="next" class="num">–</td>'
    : `<td data-col="next" class="num" data-next="${r.nextStepInSeconds}">${duration(r.nextStepInSeconds - elapsed)}</td>`;
  const age = r.ageSeconds === null || r.ageSeconds === undefined
    ? '<td data-col="age" class="num">–</td>'
    : `<td data-col="age" class="num" data-age="${r.ageSeconds}">${coarseDuration(r.ageSeconds + elapsed)}</td>`;
  return `<tr data-rollout="${esc(key)}" data-href="${esc(href)}" tabindex="-1"${r.needsAttention ? ' class="attention"' : ''}>`
    + `<td data-col="name"><a href="${esc(href)}" tabindex="-1">${esc(r.namespace)}/<strong>${esc(r.name)}</strong></a>${
      r.needsAttention ? `<span class="attention-why">${esc(r.attention || 'needs attention')}</span>` : ''}</td>`
    + `<td data-col="target" class="target">${target}</td>`
    + `<td data-col="phase"><span class="phase phase-${esc(r.phase)}">${esc(r.phase || '–')}</span></td>`
    + `<td data-col="step" class="num">${esc(r.step || '–')}</td>`
    + `<td data-col="weight" class="num">${r.weight === null || r.weight === undefined ? '–' : `${r.weight} %`}</td>`
    + `<td data-col="verdict">${verdict ? `<span class="verdict verdict-${esc(verdict.verdict)}" title="${esc(verdict.reason)}">${esc(verdict.verdict)}</span>` : '–'}</td>`
    + `${age}${next}</tr>`;
}

function renderFleet() {
  const body = document.getElementById('fleet-body');
  if (!body || !state.fleet) return;
  const doc = state.fleet;
  const rows = doc.rollouts || [];
  const elapsed = (performance.now() - state.fleetAt) / 1000;

  // counts by phase, known phases first
  const counts = doc.counts || {};
  const phases = Object.keys(counts).sort((a, b) => {
    const ia = PHASE_ORDER.indexOf(a);
    const ib = PHASE_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
  document.getElementById('counts').innerHTML = phases.map((phase) => `<li><button type="button" data-phase="${esc(phase)}" aria-pressed="${state.phase === phase}"><span class="phase phase-${esc(phase)}">${esc(phase)}</span> <span class="n">${counts[phase]}</span></button></li>`).join('');
  const attentionCount = rows.reduce((n, r) => n + (r.needsAttention ? 1 : 0), 0);
  document.getElementById('attention-count').textContent = `(${attentionCount})`;
  const scope = document.getElementById('scope');
  if (scope && state.config) {
    const ns = state.config.namespaces;
    scope.textContent = `${ns === 'all' ? 'All namespaces' : `Namespaces: ${(ns || []).join(', ')}`} · updated ${clock(doc.generatedAt)}`;
  }

  let shown = rows;
  if (state.attentionOnly) shown = shown.filter((r) => r.needsAttention);
  if (state.phase) shown = shown.filter((r) => r.phase === state.phase);
  if (state.text) {
    shown = shown.filter((r) => `${r.namespace}/${r.name} ${r.target ? `${r.target.kind}/${r.target.name}` : ''} ${r.phase}`
      .toLowerCase().includes(state.text));
  }
  const keyOf = SORT_KEYS[state.sort.key] || SORT_KEYS.attention;
  const dir = state.sort.dir;
  shown = shown.map((r) => [keyOf(r), r]).sort((a, b) => dir * compareKeys(a[0], b[0])).map((pair) => pair[1]);

  // One innerHTML for the whole body: one parse, one layout, however many rows.
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('tr[data-rollout]');
  const focusKey = focused ? focused.dataset.rollout : null;
  body.innerHTML = shown.map((r) => rowHtml(r, elapsed)).join('');
  // One row in the tab order (a roving tabindex): Tab passes the table in one step, arrows move in it.
  const again = (focusKey && body.querySelector(`tr[data-rollout="${CSS.escape(focusKey)}"]`)) || body.firstElementChild;
  if (again) {
    again.tabIndex = 0;
    if (focusKey) again.focus({ preventScroll: true });
  }
  document.getElementById('shown').textContent = shown.length === rows.length
    ? `${rows.length} rollout${rows.length === 1 ? '' : 's'}` : `${shown.length} of ${rows.length} shown`;
  const empty = document.getElementById('fleet-empty');
  empty.hidden = shown.length > 0;
  empty.textContent = rows.length ? 'No rollout matches the filters.' : 'No rollouts in the namespaces shown.';

  if (state.firstFleetRender) {
    state.firstFleetRender = false;
    // For benchmarks/dashboard_render.py: when the first table was in the DOM, in ms since navigation.
    window.__fleetRendered = performance.now();
    performance.mark('fleet-rendered');
  }
}

function tickFleet() {
  const body = document.getElementById('fleet-body');
  if (!body || !state.fleet) return;
  const elapsed = (performance.now() - state.fleetAt) / 1000;
  for (const cell of body.querySelectorAll('td[data-next]')) {
    const text = duration(Number(cell.dataset.next) - elapsed);
    if (cell.textContent !== text) cell.textContent = text;
  }
  for (const cell of body.querySelectorAll('td[data-age]')) {
    const text = coarseDuration(Number(cell.dataset.age) + elapsed);
    if (cell.textContent !== text) cell.textContent = text;
  }
}

// What a row shows apart from the clocks: ages and countdowns move every second and are ticked here in the
// page, so a new body that differs only in them does not rebuild the table (or reload a rollout page).
const CLOCK_FIELDS = new Set(['ageSeconds', 'nextStepInSeconds']);
const rowSignature = (r) => JSON.stringify(r, (k, v) => (CLOCK_FIELDS.has(k) ? undefined : v));

function acceptFleet(doc) {
  const signature = JSON.stringify(doc.counts) + (doc.rollouts || []).map(rowSignature).join('\n');
  const changed = signature !== state.fleetSignature;
  if (!changed && state.fleet) return; // same content; the page keeps ticking its clocks
  state.fleetSignature = signature;
  state.fleet = doc;
  state.fleetAt = performance.now();
  if (!state.view) return;
  if (state.view.kind === 'fleet') {
    renderFleet();
  } else if (state.view.kind === 'rollout') {
    const { ns, name } = state.view;
    const row = (doc.rollouts || []).find((r) => r.namespace === ns && r.name === name);
    if (row && rowSignature(row) !== state.detailKey) loadDetail();
  }
}

// ---------------------------------------------------------------- live updates

function stopLive() {
  if (!state.live) return;
  if (state.live.es) state.live.es.close();
  if (state.live.timer) clearInterval(state.live.timer);
  state.live = null;
}

function startPolling(reason) {
  stopLive();
  const poll = async () => {
    try {
      acceptFleet(await api('api/rollouts'));
      setLive(true, `polling every ${POLL_MS / 1000} s`);
    } catch (err) {
      setLive(false, err.status === 401 || err.status === 403 ? 'not signed in' : 'disconnected');
    }
  };
  state.live = { timer: setInterval(poll, POLL_MS) };
  poll();
  if (reason) document.getElementById('live').title = reason;
}

function startLive() {
  stopLive();
  // EventSource cannot send an Authorization header: with a token (cluster mode) poll instead.
  if (state.token || typeof EventSource === 'undefined') {
    startPolling('polling: the event stream cannot carry a bearer token');
    return;
  }
  const es = new EventSource('api/events');
  let opened = false;
  state.live = { es };
  es.addEventListener('open', () => {
    opened = true;
    setLive(true, 'live');
  });
  es.addEventListener('rollouts', (event) => {
    setLive(true, 'live');
    try {
      acceptFleet(JSON.parse(event.data));
    } catch (err) {
      console.error('bad rollouts event', err);
    }
  });
  es.addEventListener('error', (event) => {
    if (event.data) { // the server's own "error" event: the stream is fine, the data source is not
      let message = event.data;
      try {
        message = JSON.parse(event.data).error || message;
      } catch { /* shown as sent */ }
      setLive(false, 'server error');
      document.getElementById('live').title = message;
      return;
    }
    if (!opened) {
      // never connected: the server has no stream (or refuses it); poll instead
      startPolling('polling: the event stream is not available');
    } else {
      setLive(false, 'reconnecting');
    }
  });
}

// ---------------------------------------------------------------- rollout page

async function loadDetail() {
  const view = state.view;
  if (!view || view.kind !== 'rollout') return;
  if (loadDetail.busy) {
    loadDetail.again = true;
    return;
  }
  loadDetail.busy = true;
  try {
    const detail = await api(rolloutPath(view.ns, view.name));
    if (state.view !== view) return;
    state.detail = detail;
    state.detailKey = rowSignature(detail.row);
    state.detailAt = performance.now();
    renderRollout();
  } catch (err) {
    if (state.view !== view) return;
    if (!state.detail) {
      main.innerHTML = `<section id="rollout" data-rollout="${esc(`${view.ns}/${view.name}`)}"><h1>${esc(view.ns)}/${esc(view.name)}</h1>
        <p class="error">${err.status === 404 ? 'No such rollout' : 'Cannot load this rollout'}: ${esc(err.message)}</p>
        <p><a href="#/">Back to all rollouts</a></p></section>`;
    } else {
      toast(`Refresh failed: ${err.message}`, true);
    }
  } finally {
    loadDetail.busy = false;
    if (loadDetail.again) {
      loadDetail.again = false;
      loadDetail();
    }
  }
}

function routeTable(id, caption, items, other) {
  const weights = new Map((other || []).map((d) => [d.destination, d.weight]));
  const rows = (items || []).map((d) => {
    const changed = other && other.length > 0 && weights.get(d.destination) !== d.weight;
    return `<tr${changed ? ' class="changed"' : ''}><td class="mono">${esc(d.destination)}</td><td class="num">${d.weight ?? '–'}${d.weight === null || d.weight === undefined ? '' : ' %'}</td></tr>`;
  }).join('');
  return `<table id="${id}"><caption class="muted">${caption}</caption><thead><tr><th scope="col">Destination</th><th scope="col" class="num">Weight</th></tr></thead>
    <tbody>${rows || '<tr><td colspan="2" class="muted">not known</td></tr>'}</tbody></table>`;
}

function sampleText(errors, connections) {
  const e = Math.round(Number(errors));
  const n = Math.round(Number(connections));
  return `${e} error${e === 1 ? '' : 's'} in ${n} connection${n === 1 ? '' : 's'}`;
}

function checkHtml(c, openAttr = '') {
  const verdict = c.verdict || 'not-yet';
  const errors = (ratio, connections) => (ratio === null || ratio === undefined || connections === null || connections === undefined
    ? null : Math.round(Number(ratio) * Number(connections)));
  const canaryErrors = c.canaryErrors ?? errors(c.canaryValue, c.canaryConnections);
  const stableErrors = c.stableErrors ?? errors(c.stableValue, c.stableConnections);
  const sample = c.canaryConnections === null || c.canaryConnections === undefined
    ? 'no connections counted yet'
    : sampleText(canaryErrors, c.canaryConnections)
      + (c.stableConnections === null || c.stableConnections === undefined ? '' : ` (stable: ${Math.round(stableErrors)} in ${Math.round(c.stableConnections)})`);
  const links = c.prometheusLinks || [];
  const queries = (c.queries || []).map((q, i) => `<li><code>${esc(q)}</code>${
    links[i] ? `<a class="promql" href="${esc(links[i])}" target="_blank" rel="noopener noreferrer">Open in Prometheus</a>` : ''}
    <button type="button" class="copy" data-copy="${esc(q)}" aria-label="Copy the query">Copy</button></li>`).join('');
  return `<section class="card check" data-check="${esc(c.name)}" aria-label="Check ${esc(c.name)}">
    <header><h3>${esc(c.name)}</h3><span class="verdict verdict-${esc(verdict)}">${esc(verdict)}</span>
      <span class="sample">${esc(sample)}</span></header>
    <p class="reason">${esc(c.reason || '')}</p>
    <p class="muted">canary ${pct(c.canaryValue, 4)} · stable ${pct(c.stableValue, 4)} · threshold ${esc(value(c.threshold))}</p>
    <ul class="legend-keys" aria-hidden="true"><li class="key" style="--c: var(--canary)">canary error ratio</li><li class="key" style="--c: var(--stable)">stable error ratio</li><li class="key" style="--c: var(--diff)">difference (canary − stable)</li><li class="key" style="--c: var(--band)">above the threshold</li><li class="key" style="--c: var(--muted)">canary connections</li></ul>
    <div class="chart series" role="img" aria-label="Error ratio over time for check ${esc(c.name)}"><p class="muted">Loading the series…</p></div>
    <p class="window muted"></p>
    <details data-keep="promql:${esc(c.name)}"${openAttr}><summary>PromQL (${(c.queries || []).length})</summary><ul class="promql-list">${queries || '<li class="muted">no query recorded</li>'}</ul></details>
  </section>`;
}

function renderRollout() {
  const d = state.detail;
  const row = d.row || {};
  const key = `${row.namespace}/${row.name}`;
  const actions = state.config && state.config.actions;
  const f = d.failure;
  const ts = d.trafficShare;
  const routeInfo = d.route || {};
  const drift = Boolean(routeInfo.drift);
  const verdict = row.lastVerdict;
  for (const el of main.querySelectorAll('details[data-keep]')) state.openDetails.set(el.dataset.keep, el.open);
  const open = (key, byDefault = false) => ((state.openDetails.get(key) ?? byDefault) ? ' open' : '');
  const focusedAction = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.action : null;

  const failureHtml = f ? `<section id="failure-banner" role="alert">
      <h2>${esc(row.phase === 'RolledBack' || row.phase === 'RollingBack' ? 'Rolled back' : 'Failed')}: check ${esc(f.check)} at step ${esc(f.step)}</h2>
      <dl>
        <dt>Check</dt><dd data-field="check">${esc(f.check)}</dd>
        <dt>Value</dt><dd data-field="value">${esc(value(f.value))}</dd>
        <dt>Threshold</dt><dd data-field="threshold">${esc(value(f.threshold))}</dd>${
  f.canaryConnections === null || f.canaryConnections === undefined ? '' : `
        <dt>Sample</dt><dd data-field="sample">${esc(sampleText(f.canaryErrors ?? Math.round(Number(f.value) * Number(f.canaryConnections)), f.canaryConnections))}${
  f.stableValue === null || f.stableValue === undefined ? '' : ` (stable ${esc(pct(f.stableValue, 4))})`}</dd>`}
        <dt>Step</dt><dd data-field="step">${esc(f.step)}</dd>
        <dt>At</dt><dd data-field="at">${esc(when(f.at))}</dd>
      </dl>
      <p>${esc(f.reason || '')}</p>
      ${(f.alerts || []).length ? `<ul class="alerts">${f.alerts.map((a) => `<li>alert to <strong>${esc(a.sink)}</strong>: ${esc(a.result)}${
        a.attempts ? ` after ${a.attempts} attempt${a.attempts === 1 ? '' : 's'}` : ''}${a.error ? ` (${esc(a.error)})` : ''}</li>`).join('')}</ul>`
        : '<p class="muted">No alert delivery recorded.</p>'}
    </section>` : '';

  // Only the commands the controller would accept now (d.actions, the CLI's own preview); all when not sent.
  const allowed = Array.isArray(d.actions) ? ACTIONS.filter(([action]) => d.actions.includes(action)) : ACTIONS;
  const actionHtml = actions && allowed.length ? `<div class="actions" role="group" aria-label="Actions">${allowed.map(([action, label]) => (
    `<button type="button" data-action="${action}">${label}</button>`)).join('')}</div>` : '';

  let shareHtml = '<p class="muted">No traffic-share measurement yet.</p>';
  if (ts) {
    // observed, low and high are fractions (0..1) of new connections; written is the weight in percent
    const frac = (x) => (x === null || x === undefined || !Number.isFinite(Number(x)) ? null : Number(x) * 100);
    const observedPct = frac(ts.observed);
    const low = frac(ts.low);
    const high = frac(ts.high);
    const clamp = (x) => Math.min(100, Math.max(0, x));
    shareHtml = `<p>written <strong>${ts.written ?? '–'} %</strong> · observed <strong>${observedPct === null ? '–' : `${observedPct.toFixed(1)} %`}</strong>${
      ts.connections === null || ts.connections === undefined ? '' : ` of ${ts.connections} new connections`}${
      low !== null && high !== null ? ` <span class="muted">(expected ${low.toFixed(1)}–${high.toFixed(1)} %)</span>` : ''}</p>
      <div class="bar" role="img" aria-label="written ${ts.written} percent, observed ${observedPct === null ? 'unknown' : `${observedPct.toFixed(1)} percent`}">
        ${low !== null && high !== null ? `<span class="expected" style="left: ${clamp(low)}%; width: ${clamp(high) - clamp(low)}%"></span>` : ''}
        <span class="written" style="width: ${clamp(ts.written ?? 0)}%"></span>
        ${observedPct === null ? '' : `<span class="observed" style="width: ${clamp(observedPct)}%"></span>`}
      </div>
      <ul class="legend-keys"><li class="key" style="--c: var(--weight)">written weight</li><li class="key" style="--c: var(--canary)">observed canary share</li>${
        low !== null && high !== null ? '<li class="key" style="--c: var(--grid)">expected range</li>' : ''}</ul>`;
  }

  const planRows = (d.plan || []).map((p) => `<tr${p.current || p.step === row.step ? ' class="current" aria-current="step"' : ''}><td>${esc(p.step)}</td><td class="num">${p.weight} %</td><td class="mono">${
    (p.route || []).map((x) => `${esc(x.destination)} ${x.weight}`).join(' · ')}</td></tr>`).join('');
  const runRows = (d.runs || []).slice().reverse().map((r) => {
    const total = r.startedAt && r.endedAt ? duration(unix(r.endedAt) - unix(r.startedAt)) : 'running';
    const steps = (r.steps || []).map((s, i) => `${s.weight === null || s.weight === undefined ? `step ${i + 1}` : `${s.weight} %`}: ${duration(s.seconds)}`).join(' · ');
    return `<tr><td class="mono">${esc(r.runId || '–')}</td><td><span class="phase phase-${esc(r.outcome)}">${esc(r.outcome || 'running')}</span></td><td>${esc(when(r.startedAt))}</td><td class="num">${total}</td><td>${esc(steps)}</td></tr>`;
  }).join('');

  const timeline = d.timeline || [];
  const events = timeline.slice().reverse().map((m) => `<li data-kind="${esc(m.kind)}"${m.verdict ? ` data-verdict="${esc(m.verdict)}"` : ''}><time datetime="${esc(m.at)}">${esc(clock(m.at))}</time>${
    esc(MARKER_LABEL[m.kind] || m.kind)}: ${esc(m.text)}${m.weight === null || m.weight === undefined ? '' : ` (weight ${m.weight} %)`}${m.by ? ` by <strong>${esc(m.by)}</strong>` : ''}</li>`).join('');

  const scrollY = window.scrollY;
  destroyCharts();
  main.innerHTML = `<section id="rollout" data-rollout="${esc(key)}" data-phase="${esc(row.phase)}" aria-labelledby="r-title">
    <div class="head">
      <div>
        <h1 id="r-title">${esc(row.namespace)}/${esc(row.name)}</h1>
        <div class="target">${row.target ? `${esc(row.target.kind)} ${esc(row.target.name)}` : ''} · <a href="${esc(rolloutHash(row.namespace, row.name))}">link to this rollout</a></div>
        <dl class="facts">
          <div><dt>Phase</dt><dd><span class="phase phase-${esc(row.phase)}">${esc(row.phase)}</span></dd></div>
          <div><dt>Step</dt><dd>${esc(row.step || '–')}</dd></div>
          <div><dt>Weight</dt><dd>${row.weight === null || row.weight === undefined ? '–' : `${row.weight} %`}</dd></div>
          <div><dt>Last verdict</dt><dd>${verdict ? `<span class="verdict verdict-${esc(verdict.verdict)}">${esc(verdict.verdict)}</span>` : '–'}</dd></div>
          <div><dt>Started</dt><dd>${esc(when(row.startedAt))}</dd></div>
          <div><dt>Next step in</dt><dd id="countdown" aria-live="off">${duration(row.nextStepInSeconds)}</dd></div>
        </dl>
        <p class="message">${esc(row.message || '')}${row.stall ? ` · <strong>held: ${esc(row.stall)}</strong>` : ''}${verdict && verdict.reason ? `<br>${esc(verdict.reason)}` : ''}</p>
      </div>
      ${actionHtml}
    </div>
    ${failureHtml}
    <section class="card wide" aria-labelledby="tl-title">
      <h2 id="tl-title">Timeline</h2>
      <ul class="legend-keys" aria-hidden="true"><li class="key" style="--c: var(--weight)">written weight</li><li class="key" style="--c: var(--info)">step start</li><li class="key" style="--c: var(--pass)">check pass</li><li class="key" style="--c: var(--fail)">check fail / rollback</li><li class="key" style="--c: var(--warn)">inconclusive, pause, drift, alert</li><li class="key" style="--c: var(--muted)">command, resume</li></ul>
      <div id="timeline" class="chart" role="img" aria-label="Written weight over time with markers; the same events are listed below"></div>
      <details data-keep="events"${open('events', true)}><summary>Events (${timeline.length}), newest first</summary>
        <ul id="timeline-events">${events || '<li class="muted">no events recorded</li>'}</ul></details>
    </section>
    <h2>Checks</h2>
    <div class="grid" id="checks">${(d.checks || []).map((c) => checkHtml(c, open(`promql:${c.name}`))).join('') || '<p class="muted">No check has run yet.</p>'}</div>
    <div class="grid">
      <section class="card" id="traffic-share" aria-labelledby="ts-title"><h2 id="ts-title">Traffic share</h2>${shareHtml}</section>
      <section class="card" aria-labelledby="route-title"><h2 id="route-title">Route</h2>
        <p id="drift" data-drift="${drift}">${drift ? '⚠ Drift: the live route differs from what the controller wrote' : '✓ The live route matches the desired one'}</p>
        <div class="grid">${routeTable('route-live', 'Live (as stored now)', routeInfo.live, routeInfo.desired)}${routeTable('route-desired', 'Desired', routeInfo.desired, null)}</div>
      </section>
    </div>
    <div class="grid">
      <section class="card" id="plan" aria-labelledby="plan-title"><h2 id="plan-title">Plan</h2>
        <table><thead><tr><th scope="col">Step</th><th scope="col" class="num">Weight</th><th scope="col">Route written</th></tr></thead><tbody>${planRows || '<tr><td colspan="3" class="muted">no plan</td></tr>'}</tbody></table></section>
      <section class="card" id="runs" aria-labelledby="runs-title"><h2 id="runs-title">Runs</h2>
        <table><thead><tr><th scope="col">Run</th><th scope="col">Outcome</th><th scope="col">Started</th><th scope="col" class="num">Took</th><th scope="col">Time per step</th></tr></thead><tbody>${runRows || '<tr><td colspan="5" class="muted">no runs yet</td></tr>'}</tbody></table></section>
    </div>
    <details class="card" data-keep="policy"${open('policy')}><summary>Policy</summary><pre>${esc(JSON.stringify(d.policy, null, 2))}</pre></details>
    <details class="card" data-keep="status"${open('status')}><summary>Stored status (JSON)</summary><pre>${esc(JSON.stringify(d.status, null, 2))}</pre></details>
  </section>`;
  window.scrollTo(0, scrollY);
  if (focusedAction) {
    const again = main.querySelector(`button[data-action="${focusedAction}"]`);
    if (again) again.focus({ preventScroll: true });
  }

  for (const button of main.querySelectorAll('button[data-action]')) {
    button.addEventListener('click', () => confirmAction(row, button.dataset.action));
  }
  for (const button of main.querySelectorAll('button[data-copy]')) {
    button.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(button.dataset.copy);
        toast('Query copied');
      } catch {
        toast('Copying needs a secure context; select the query text instead', true);
      }
    });
  }
  drawRolloutCharts();
}

function tickRollout() {
  const el = document.getElementById('countdown');
  const d = state.detail;
  if (!el || !d || !d.row) return;
  const base = d.row.nextStepInSeconds;
  if (base === null || base === undefined) return;
  el.textContent = duration(base - (performance.now() - state.detailAt) / 1000);
}

// ---------------------------------------------------------------- charts

function destroyCharts() {
  for (const chart of state.charts) {
    if (chart.observer) chart.observer.disconnect();
    if (chart.plot) chart.plot.destroy();
  }
  state.charts = [];
}

function mountChart(container, build) {
  const width = () => Math.max(280, container.clientWidth || 600);
  const entry = { plot: build(width()), observer: null, container };
  if (typeof ResizeObserver !== 'undefined') {
    let last = width();
    entry.observer = new ResizeObserver(() => {
      const w = width();
      if (Math.abs(w - last) > 4 && entry.plot) {
        last = w;
        entry.plot.setSize({ width: w, height: entry.plot.height });
      }
    });
    entry.observer.observe(container);
  }
  state.charts.push(entry);
  return entry;
}

function axisStyle() {
  return { stroke: css('--muted'), grid: { stroke: css('--grid'), width: 1 }, ticks: { stroke: css('--grid'), width: 1 } };
}

function markerColour(m) {
  if (m.kind === 'check') return css(m.verdict === 'pass' ? '--pass' : m.verdict === 'fail' ? '--fail' : '--warn');
  if (m.kind === 'rollback') return css('--fail');
  if (m.kind === 'promote') return css('--pass');
  if (m.kind === 'step' || m.kind === 'weight') return css('--info');
  if (m.kind === 'pause' || m.kind === 'drift' || m.kind === 'alert') return css('--warn');
  return css('--muted');
}

function drawRolloutCharts() {
  destroyCharts();
  if (typeof window.uPlot === 'undefined') {
    for (const el of main.querySelectorAll('.chart')) el.innerHTML = '<p class="error">The chart library did not load.</p>';
    return;
  }
  drawTimeline();
  for (const el of main.querySelectorAll('.check[data-check]')) loadSeries(el);
}

function markerWeight(m, row) {
  // The weight a marker stands for: its own, else a step start's "step N/M" read against the schedule,
  // a rollback's 0 (the original route) and a promotion's 100.
  if (m.weight !== null && m.weight !== undefined) return m.weight;
  if (m.kind === 'step') {
    const match = /step (\d+)\/(\d+)/.exec(m.text || '');
    const steps = row.steps || [];
    if (match && steps.length === Number(match[2])) return steps[Number(match[1]) - 1] ?? null;
  }
  if (m.kind === 'rollback' && /restored|RolledBack/.test(m.text || '')) return 0;
  if (m.kind === 'promote') return 100;
  return null;
}

function drawTimeline() {
  const container = document.getElementById('timeline');
  const d = state.detail;
  if (!container || !d) return;
  const markers = (d.timeline || []).filter((m) => m.at).map((m) => ({ ...m, t: unix(m.at) })).filter((m) => Number.isFinite(m.t));
  const points = markers.map((m) => ({ ...m, weight: markerWeight(m, d.row) }))
    .filter((m) => m.weight !== null && m.weight !== undefined);
  if (!points.length) {
    container.innerHTML = '<p class="muted">No weight has been written yet.</p>';
    return;
  }
  const xs = points.map((m) => m.t);
  const ys = points.map((m) => m.weight);
  const terminal = TERMINAL.has(d.row.phase);
  const endT = terminal ? Math.max(...markers.map((m) => m.t)) : Date.now() / 1000;
  if (endT > xs[xs.length - 1]) {
    xs.push(endT);
    ys.push(ys[ys.length - 1]);
  }
  const nextT = !terminal && d.row.nextStepInSeconds !== null && d.row.nextStepInSeconds !== undefined
    ? Date.now() / 1000 + d.row.nextStepInSeconds : null;
  const axis = axisStyle();
  mountChart(container, (width) => new window.uPlot({
    width,
    height: 220,
    legend: { show: true },
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true, range: (u, min, max) => [min, Math.max(max, nextT || max) + 1] }, y: { range: [0, 105] } },
    axes: [{ ...axis }, { ...axis, label: 'weight %', values: (u, ticks) => ticks.map((t) => `${t}%`) }],
    series: [
      {},
      {
        label: 'written weight', stroke: css('--weight'), width: 2, fill: `${css('--weight')}22`,
        paths: window.uPlot.paths.stepped({ align: 1 }), value: (u, v) => (v === null ? '–' : `${v} %`),
      },
    ],
    hooks: {
      draw: [(u) => {
        const { ctx } = u;
        const { top, height } = u.bbox;
        const dpr = window.devicePixelRatio || 1;
        ctx.save();
        let lane = 0; // labels on three staggered lines, so neighbouring markers stay readable
        for (const m of markers) {
          const x = Math.round(u.valToPos(m.t, 'x', true));
          ctx.strokeStyle = markerColour(m);
          ctx.fillStyle = ctx.strokeStyle;
          if (m.kind === 'check') { // a dot on the bottom edge, not a line: checks come every few seconds
            ctx.beginPath();
            ctx.arc(x, top + height - 5 * dpr, 3.5 * dpr, 0, 2 * Math.PI);
            ctx.fill();
            continue;
          }
          if (m.kind === 'weight') continue; // the step chart itself shows it
          ctx.lineWidth = (m.kind === 'rollback' ? 2.5 : 1.5) * dpr;
          ctx.setLineDash(m.kind === 'step' ? [] : [4 * dpr, 3 * dpr]);
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
          ctx.setLineDash([]);
          ctx.font = `${11 * dpr}px system-ui, sans-serif`;
          const label = m.kind === 'command' && m.by ? `${m.text} by ${m.by}` : (MARKER_LABEL[m.kind] || m.kind);
          ctx.fillText(label, x + 3 * dpr, top + (12 + 13 * (lane % 3)) * dpr);
          lane += 1;
        }
        if (nextT) {
          const x = Math.round(u.valToPos(nextT, 'x', true));
          ctx.strokeStyle = css('--muted');
          ctx.setLineDash([2 * dpr, 4 * dpr]);
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
          ctx.setLineDash([]);
          ctx.fillStyle = css('--muted');
          ctx.font = `${11 * dpr}px system-ui, sans-serif`;
          ctx.fillText('next step', x + 3 * dpr, top + 51 * dpr);
        }
        ctx.restore();
      }],
    },
  }, [xs, ys], container));
}

function seriesWindow() {
  const d = state.detail;
  const runs = d.runs || [];
  const last = runs.length ? runs[runs.length - 1] : null;
  const startIso = (last && last.startedAt) || d.row.startedAt;
  const now = Date.now();
  let start = startIso ? new Date(startIso).getTime() - 30_000 : now - 30 * 60_000;
  let end = last && last.endedAt ? new Date(last.endedAt).getTime() + 60_000 : now;
  if (end > now) end = now;
  if (!(end > start)) start = end - 30 * 60_000;
  return { start: new Date(start).toISOString(), end: new Date(end).toISOString() };
}

function mergeSeries(lists) {
  // Series from Prometheus come as [[unix, value], ...] each; uPlot wants one shared x array.
  const xs = [...new Set(lists.flatMap((list) => (list || []).map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = lists.map((list) => {
    const column = new Array(xs.length).fill(null);
    for (const [x, v] of list || []) column[index.get(x)] = v === null || v === undefined ? null : Number(v);
    return column;
  });
  return [xs, ...columns];
}

const seriesCache = new Map(); // "ns/name/check" -> the last series body, drawn at once on a re-render

async function loadSeries(card) {
  const view = state.view;
  const d = state.detail;
  const name = card.dataset.check;
  const container = card.querySelector('.chart');
  const cacheKey = `${d.row.namespace}/${d.row.name}/${name}`;
  const cached = seriesCache.get(cacheKey);
  if (cached) drawSeries(container, cached.body);
  const { start, end } = seriesWindow();
  const query = new URLSearchParams({ check: name, start, end });
  let body;
  try {
    body = await api(`${rolloutPath(d.row.namespace, d.row.name)}/series?${query}`);
  } catch (err) {
    if (state.view !== view || !container.isConnected) return;
    seriesCache.delete(cacheKey);
    dropChart(container);
    container.innerHTML = `<p class="${err.status === 503 ? 'muted' : 'error'}">${
      err.status === 503 ? 'Prometheus cannot be reached' : 'No series'}: ${esc(err.message)}</p>`;
    return;
  }
  if (state.view !== view || !container.isConnected) return;
  const windowNote = card.querySelector('.window');
  if (windowNote) {
    windowNote.textContent = `Range queried: ${clock(start)} – ${clock(end)}${
      Number.isFinite(Number(body.step)) ? `, a point every ${Number(body.step)} s` : ''}.`;
  }
  const text = JSON.stringify(body);
  if (cached && cached.text === text) return;
  seriesCache.set(cacheKey, { body, text });
  drawSeries(container, body);
}

function dropChart(container) {
  const entry = state.charts.find((c) => c.container === container);
  if (!entry) return;
  if (entry.observer) entry.observer.disconnect();
  if (entry.plot) entry.plot.destroy();
  state.charts = state.charts.filter((c) => c !== entry);
}

function drawSeries(container, body) {
  dropChart(container);
  const [xs, canary, stable, connections] = mergeSeries([body.canary, body.stable, body.canaryConnections]);
  if (!xs.length) {
    container.innerHTML = '<p class="muted">Prometheus has no samples for this check in the run\'s window.</p>';
    return;
  }
  container.innerHTML = '';
  const toPct = (v) => (v === null ? null : v * 100);
  const canaryPct = canary.map(toPct);
  const stablePct = stable.map(toPct);
  const diff = canaryPct.map((c, i) => (c === null || stablePct[i] === null ? null : c - stablePct[i]));
  const threshold = body.threshold === null || body.threshold === undefined ? null : Number(body.threshold) * 100;
  const axis = axisStyle();
  const fmt = (u, v) => (v === null ? '–' : `${v.toFixed(3)} %`);
  mountChart(container, (width) => new window.uPlot({
    width,
    height: 220,
    scales: {
      x: { time: true },
      y: {
        range: (u, min, max) => {
          const lo = Math.min(0, min ?? 0);
          const hi = Math.max(max ?? 0, threshold === null ? 0 : threshold * 1.25, 0.01);
          return [lo, hi * 1.05];
        },
      },
      n: { range: (u, min, max) => [0, Math.max(1, max ?? 1) * 1.1] },
    },
    axes: [
      { ...axis },
      { ...axis, label: 'error ratio %', values: (u, ticks) => ticks.map((t) => `${+t.toFixed(3)}%`) },
      { ...axis, scale: 'n', side: 1, label: 'connections', grid: { show: false } },
    ],
    series: [
      {},
      { label: 'canary', stroke: css('--canary'), width: 2, value: fmt },
      { label: 'stable', stroke: css('--stable'), width: 2, value: fmt },
      { label: 'difference', stroke: css('--diff'), width: 1, dash: [5, 4], value: fmt },
      { label: 'canary connections', stroke: css('--muted'), width: 1, scale: 'n', paths: window.uPlot.paths.stepped({ align: 1 }), value: (u, v) => (v === null ? '–' : String(Math.round(v))) },
    ],
    hooks: {
      drawClear: [(u) => {
        if (threshold === null) return;
        // the threshold band: everything above the threshold is where the canary fails
        const { ctx } = u;
        const { left, top, width: w } = u.bbox;
        const y = u.valToPos(threshold, 'y', true);
        ctx.save();
        ctx.fillStyle = css('--band');
        ctx.fillRect(left, top, w, Math.max(0, y - top));
        ctx.strokeStyle = css('--fail');
        ctx.setLineDash([6, 4]);
        ctx.beginPath();
        ctx.moveTo(left, y);
        ctx.lineTo(left + w, y);
        ctx.stroke();
        ctx.restore();
      }],
    },
  }, [xs, canaryPct, stablePct, diff, connections], container));
  if (threshold !== null) {
    container.dataset.label ??= container.getAttribute('aria-label');
    container.setAttribute('aria-label', `${container.dataset.label}; threshold ${threshold.toFixed(3)} %`);
  }
}

// ---------------------------------------------------------------- actions

function confirmAction(row, action) {
  const dialog = document.getElementById('confirm');
  const [, label, explain] = ACTIONS.find(([a]) => a === action);
  document.getElementById('confirm-title').textContent = `${label} ${row.namespace}/${row.name}?`;
  document.getElementById('confirm-text').textContent = explain;
  const yes = document.getElementById('confirm-yes');
  yes.textContent = label;
  dialog.dataset.action = action;
  dialog.dataset.rollout = `${row.namespace}/${row.name}`;
  dialog.returnValue = '';
  dialog.showModal(); // Esc closes it (returnValue stays '')
}

document.getElementById('confirm').addEventListener('close', async (event) => {
  const dialog = event.target;
  if (dialog.returnValue !== 'yes') return;
  const action = dialog.dataset.action;
  const [ns, ...rest] = dialog.dataset.rollout.split('/');
  const name = rest.join('/');
  try {
    const body = await api(`${rolloutPath(ns, name)}/${action}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Canary-Dashboard': '1' },
      body: JSON.stringify({ confirm: true }),
    });
    toast(body && body.message ? body.message : `${action}: done`);
    loadDetail();
  } catch (err) {
    toast(`${action} refused: ${err.message}`, true);
  }
});

// ---------------------------------------------------------------- start

async function start() {
  // The fleet is asked for at once, beside the config: one round trip less before the first table.
  const fleet = api('api/rollouts');
  fleet.catch(() => {}); // reported below, or by the config's failure
  try {
    state.config = await api('api/config');
  } catch (err) {
    setLive(false, err.status === 401 ? 'not signed in' : 'disconnected');
    if (err.status === 401) {
      main.innerHTML = `<p>This dashboard shows rollouts to callers with a Kubernetes token that may <code>get</code>
        canarypolicies. <button type="button" id="sign-in">Sign in with a token</button></p>`;
      main.querySelector('#sign-in').addEventListener('click', () => askToken(err.message));
    } else {
      main.innerHTML = `<p class="error">${err.status === 403 ? 'Not allowed' : 'The dashboard server did not answer'}: ${esc(err.message)}</p>`;
    }
    return;
  }
  if (Number(state.config.tickSeconds) > 0) POLL_MS = Number(state.config.tickSeconds) * 1000;
  const mode = document.getElementById('mode');
  mode.textContent = state.config.mode === 'cluster' ? 'in cluster · read-only' : (state.config.actions ? 'local' : 'local · read-only');
  if (state.config.user) mode.textContent += ` · ${state.config.user}`;
  if (state.config.version) mode.title = `canaryctl ${state.config.version}`;
  route();
  fleet.then(acceptFleet, (err) => setLive(false, err.message));
  startLive();
}

setInterval(() => {
  if (!state.view) return;
  if (state.view.kind === 'fleet') tickFleet();
  else tickRollout();
}, 1000);

start();
