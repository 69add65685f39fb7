// The dispatcher's operator console: plain JavaScript over the /v1 API the CLI uses, served
// by the dispatcher binary itself (no framework, no build step, nothing from elsewhere).
//
// Security rules this file keeps (see docs/operator-guide.md, "Web console"):
// * every element is made with createElement and filled with textContent: data from the
//   API (release notes, reasons, device names, ...) is never parsed as HTML;
// * the operator token is sent in the Authorization header only (no cookies, so no CSRF),
//   kept in sessionStorage (gone with the tab) and removed at sign-out;
// * no inline script or style anywhere (the Content-Security-Policy forbids them).
// The API enforces every role; hiding buttons from viewers is only a convenience.
'use strict';

const TOKEN_KEY = 'dispatcher-console-token';
const POLL_MS = 1500;
const ROLES = ['viewer', 'operator', 'admin'];
const AUDIT_PAGE = 1000;

const state = {
  token: null,
  me: null,
  route: { page: 'overview', arg: null },
  sig: null,
  seq: 0,
  timer: null,
  flash: null,
  audit: null,
  // The device whose install reports are paged, and the cursors (`before`) of the pages
  // opened below its newest one: a page is fetched by its cursor, never accumulated.
  history: { id: null, cursors: [] },
};

function freshAudit() {
  return {
    records: [],
    verify: null,
    verifiedAt: -1,
    error: null,
    filters: { action: '', actor: '', text: '' },
  };
}

// ---------------------------------------------------------------- DOM helpers

function $(id) {
  return document.getElementById(id);
}

// el('tag', {class, text, onclick, ...attributes}, ...children). Children that are not
// nodes become text nodes; attribute values are set as plain strings.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = String(v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows, attrs) {
  return el('table', attrs || {},
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows));
}

function dl(pairs) {
  return el('dl', { class: 'facts' },
    pairs.filter((p) => p).map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function section(title, ...children) {
  return el('section', { class: 'card' }, el('h2', {}, title), ...children);
}

function short(id) {
  return id ? String(id).slice(0, 12) : '';
}

function fmtTime(t) {
  if (t === null || t === undefined || t === '') return '—';
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function badge(text, kind) {
  return el('span', { class: `badge ${kind || ''}` }, text);
}

function can(role) {
  return state.me && ROLES.indexOf(state.me.role) >= ROLES.indexOf(role);
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

async function api(path, method, body) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${state.token}` };
  const init = { method: method || 'GET', headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (!res.ok) {
    const detail = (data && (data.detail || data.title)) || res.statusText;
    if (res.status === 401 && state.me) signOut('Your token is no longer accepted: sign in again.');
    throw new ApiError(res.status, detail);
  }
  return data;
}

// ---------------------------------------------------------------- sign-in

async function signIn(token) {
  state.token = token;
  const me = await api('/v1/status');
  state.me = me;
  state.audit = freshAudit();
  sessionStorage.setItem(TOKEN_KEY, token);
  $('signin').hidden = true;
  $('top').hidden = false;
  $('who').textContent = `${me.operator} (${me.role})`;
  if (!location.hash || location.hash === '#' || location.hash === '#/signin') {
    location.hash = '#/overview';
  }
  navigate();
  schedulePoll();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  state.sig = null;
  state.audit = null;
  state.seq += 1;
  clearTimeout(state.timer);
  $('view').replaceChildren();
  $('top').hidden = true;
  $('signin').hidden = false;
  $('token').value = '';
  $('signin-error').textContent = message || '';
  $('token').focus();
}

// ---------------------------------------------------------------- routing and polling

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const page = PAGES[parts[0]] ? parts[0] : 'overview';
  const arg = parts.length > 1 && parts[1] ? decodeURIComponent(parts.slice(1).join('/')) : null;
  return { page, arg };
}

function navigate() {
  if (!state.me) return;
  state.route = parseHash();
  state.seq += 1;
  state.sig = null;
  state.history = { id: null, cursors: [] };
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === state.route.page);
  }
  $('view').replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  refresh(true);
}

async function refresh(navigation) {
  if (!state.me) return;
  const seq = state.seq;
  const page = PAGES[state.route.page];
  try {
    const data = await page.load(state.route.arg);
    if (seq !== state.seq) return;
    const sig = JSON.stringify(data);
    if (sig !== state.sig) {
      state.sig = sig;
      paint(page.render(data, state.route.arg), !navigation);
    }
    setLive('ok', `live · ${new Date().toLocaleTimeString()}`);
    updateQueueCount();
  } catch (e) {
    if (seq !== state.seq || !state.me) return;
    setLive('error', `cannot refresh: ${e.message}`);
    if (navigation) {
      paint(el('p', { class: 'error', role: 'alert' }, `Cannot load this page: ${e.message}`), false);
    }
  }
}

function schedulePoll() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => {
    if (state.me && document.visibilityState === 'visible') await refresh(false);
    if (state.me) schedulePoll();
  }, POLL_MS);
}

async function updateQueueCount() {
  try {
    const q = await api('/v1/queue');
    $('queue-count').textContent = q.queue.length ? String(q.queue.length) : '';
  } catch (_) {
    // shown by the next refresh
  }
}

function setLive(kind, text) {
  const l = $('live');
  l.className = `live ${kind}`;
  l.textContent = text;
}

// Replaces the view; with `keep`, what the operator typed (inputs with an id) and the focus
// survive the redraw, so live updates never eat a half-written reason.
function paint(node, keep) {
  const view = $('view');
  const saved = new Map();
  let focus = null;
  if (keep) {
    for (const f of view.querySelectorAll('input[id], textarea[id], select[id]')) {
      saved.set(f.id, f.type === 'checkbox' ? f.checked : f.value);
    }
    const a = document.activeElement;
    if (a && a.id && view.contains(a)) {
      focus = { id: a.id, start: a.selectionStart, end: a.selectionEnd };
    }
  }
  const flash = state.flash;
  state.flash = null;
  view.replaceChildren(...(flash ? [el('p', { class: `flash ${flash.kind}`, role: 'status' }, flash.text)] : []), node);
  for (const [id, v] of saved) {
    const f = $(id);
    if (!f || !view.contains(f)) continue;
    if (f.type === 'checkbox') f.checked = v;
    else if (f.tagName !== 'SELECT' || [...f.options].some((o) => o.value === v)) f.value = v;
  }
  if (focus) {
    const f = $(focus.id);
    if (f) {
      f.focus();
      if (typeof focus.start === 'number') {
        try {
          f.setSelectionRange(focus.start, focus.end);
        } catch (_) {
          // not a text field
        }
      }
    }
  }
}

// ---------------------------------------------------------------- shared pieces

function statusName(r) {
  return r.status && r.status.status ? r.status.status : String(r.status);
}

function statusBadge(s) {
  const kind = { completed: 'ok', running: 'info', scheduled: 'info', paused: 'warn', halted: 'bad', aborted: 'bad' }[s];
  return badge(s, kind);
}

function progressBar(r) {
  const p = r.progress;
  const bad = p.failed + p.rejected;
  const parts = [`${p.installed} of ${p.total} installed`];
  if (bad) parts.push(`${bad} failed or rejected`);
  if (p.in_flight) parts.push(`${p.in_flight} in flight`);
  return el('div', { class: 'progress' },
    el('progress', { max: Math.max(p.total, 1), value: p.installed, 'aria-label': `rollout ${r.id}` }),
    el('span', { class: 'progress-label', id: `progress-label-${r.id}` }, parts.join(', ')));
}

function isActive(r) {
  return ['running', 'scheduled', 'paused', 'halted'].includes(statusName(r));
}

function rolloutOrder(a, b) {
  return Number(b.id.replace(/^r/, '')) - Number(a.id.replace(/^r/, ''));
}

function partState(p) {
  const s = p.state;
  if (s.state === 'approved') return `approved by ${s.decision.by} (rollout ${s.rollout})`;
  if (s.state === 'rejected') return `rejected by ${s.decision.by}`;
  return s.state;
}

function releaseTitle(r) {
  return `${r.version ? `version ${r.version}` : `sequence ${r.sequence}`} · ${r.facts.update_type}`;
}

// Cumulative installs (green) and failures (red) of one rollout over time, on a canvas.
function chart(tl) {
  const ratio = window.devicePixelRatio || 1;
  const W = 760;
  const H = 240;
  const c = el('canvas', {
    class: 'chart',
    width: W * ratio,
    height: H * ratio,
    id: `chart-${tl.rollout}`,
    'data-points': tl.points.length,
    role: 'img',
    'aria-label': `installs over time for rollout ${tl.rollout}: ` +
      `${tl.points.length ? tl.points[tl.points.length - 1].installed : 0} of ${tl.total}`,
  });
  const g = c.getContext('2d');
  if (!g) return c;
  g.scale(ratio, ratio);
  const pad = { l: 44, r: 16, t: 14, b: 34 };
  const t0 = Date.parse(tl.decided_at);
  const last = tl.points.length ? Date.parse(tl.points[tl.points.length - 1].at) : t0;
  const span = Math.max(last - t0, 1000);
  const total = Math.max(tl.total, 1);
  const x = (t) => pad.l + ((t - t0) / span) * (W - pad.l - pad.r);
  const y = (n) => H - pad.b - (n / total) * (H - pad.t - pad.b);
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, W, H);
  g.strokeStyle = '#d0d5dd';
  g.fillStyle = '#475467';
  g.font = '12px system-ui, sans-serif';
  g.lineWidth = 1;
  const ticks = Math.min(total, 5);
  for (let i = 0; i <= ticks; i += 1) {
    const n = Math.round((total * i) / ticks);
    g.beginPath();
    g.moveTo(pad.l, y(n));
    g.lineTo(W - pad.r, y(n));
    g.stroke();
    g.textAlign = 'right';
    g.fillText(String(n), pad.l - 6, y(n) + 4);
  }
  g.textAlign = 'left';
  g.fillText(fmtTime(tl.decided_at).slice(11), pad.l, H - 12);
  g.textAlign = 'right';
  g.fillText(`+${Math.round(span / 1000)} s`, W - pad.r, H - 12);
  const series = (key, colour) => {
    g.strokeStyle = colour;
    g.lineWidth = 2.5;
    g.beginPath();
    g.moveTo(x(t0), y(0));
    let prev = 0;
    for (const p of tl.points) {
      const t = Date.parse(p.at);
      g.lineTo(x(t), y(prev));
      g.lineTo(x(t), y(p[key]));
      prev = p[key];
    }
    g.lineTo(x(last), y(prev));
    g.stroke();
  };
  series('failed', '#d92d20');
  series('installed', '#12b76a');
  return c;
}

function chartBlock(tl) {
  return el('figure', { class: 'chart-box' },
    chart(tl),
    el('figcaption', {},
      el('span', { class: 'key installed' }, 'installed'), ' ',
      el('span', { class: 'key failed' }, 'failed or rejected'),
      ` · rollout ${tl.rollout}, ${tl.total} devices, from the decision at ${fmtTime(tl.decided_at)}`));
}

// ---------------------------------------------------------------- overview

function deviceState(d, rolloutStates, nowMs, interval) {
  const inRollout = rolloutStates.get(d.id);
  if (inRollout === 'in-flight' || inRollout === 'retry') return 'updating';
  if (inRollout === 'waiting') return 'waiting for its batch';
  if (!d.last_seen) return 'never checked in';
  if (d.last_report && d.last_report.outcome !== 'installed') return 'needs attention';
  if (nowMs - Date.parse(d.last_seen) > 3 * interval * 1000) return 'not seen recently';
  return 'ok';
}

const overview = {
  async load() {
    const [status, devices, rollouts, queue] = await Promise.all([
      api('/v1/status'), api('/v1/devices'), api('/v1/rollouts'), api('/v1/queue'),
    ]);
    const list = rollouts.rollouts.sort(rolloutOrder);
    const active = list.filter(isActive);
    const details = await Promise.all(active.map((r) => api(`/v1/rollouts/${encodeURIComponent(r.id)}`)));
    const latest = list[0];
    const timeline = latest ? await api(`/v1/rollouts/${encodeURIComponent(latest.id)}/timeline`) : null;
    const rolloutStates = {};
    for (const r of details) {
      for (const [dev, p] of Object.entries(r.devices)) rolloutStates[dev] = p.state;
    }
    // `now` moves every second: leave it out so the page redraws only when data changes.
    return {
      status: { ...status, now: undefined },
      nowMs: Date.parse(status.now),
      devices: devices.devices,
      rollouts: list,
      queue: queue.queue,
      timeline,
      rolloutStates,
    };
  },
  render(d) {
    const states = new Map(Object.entries(d.rolloutStates));
    const byState = new Map();
    const byVersion = new Map();
    for (const dev of d.devices) {
      const s = deviceState(dev, states, d.nowMs, d.status.checkin_interval_secs || 60);
      byState.set(s, (byState.get(s) || 0) + 1);
      const k = `${dev.group || '—'}\u0000${dev.version}`;
      byVersion.set(k, (byVersion.get(k) || 0) + 1);
    }
    const active = d.rollouts.filter(isActive);
    const alerts = [];
    for (const r of d.rollouts) {
      if (r.alert) alerts.push(el('li', {}, badge('halted', 'bad'), ' rollout ', el('a', { href: `#/rollouts/${r.id}` }, r.id), `: ${r.alert}`));
    }
    for (const dev of d.devices) {
      if (dev.last_report && dev.last_report.outcome !== 'installed') {
        alerts.push(el('li', {}, badge(dev.last_report.outcome, 'warn'), ' device ',
          el('a', { href: `#/devices/${encodeURIComponent(dev.id)}` }, dev.id),
          `: ${dev.last_report.check || ''} ${dev.last_report.message || ''}`));
      }
    }
    const stat = (label, value, href, kind) => el('a', { class: `stat ${kind || ''}`, href },
      el('span', { class: 'stat-value' }, String(value)), el('span', { class: 'stat-label' }, label));
    return el('div', { class: 'page overview' },
      el('h1', {}, 'Overview'),
      el('div', { class: 'stats' },
        stat('devices', d.devices.length, '#/devices'),
        stat('pending approvals', d.queue.length, '#/queue', d.queue.length ? 'warn' : ''),
        stat('active rollouts', active.length, '#/rollouts', active.length ? 'info' : ''),
        stat('alerts', alerts.length, '#/overview', alerts.length ? 'bad' : 'ok')),
      el('div', { class: 'grid' },
        section('Devices by state',
          table(['state', 'devices'], [...byState].sort().map(([s, n]) => el('tr', {}, el('td', {}, s), el('td', { class: 'num' }, String(n)))), { id: 'devices-by-state' })),
        section('Devices by version',
          table(['group', 'version', 'devices'], [...byVersion].sort().map(([k, n]) => {
            const [g, v] = k.split('\u0000');
            return el('tr', {}, el('td', {}, g), el('td', {}, v), el('td', { class: 'num' }, String(n)));
          }), { id: 'devices-by-version' }))),
      section('Pending approvals',
        d.queue.length
          ? el('ul', { class: 'plain' }, d.queue.map((r) => el('li', {},
            el('a', { href: '#/queue' }, short(r.id)), ` ${releaseTitle(r)} · ${r.facts.severity || 'no severity'} · `,
            r.facts.cves.join(', ') || 'no CVE', ` · held by "${r.parts.filter((p) => p.state.state === 'pending').map((p) => p.rule).join('", "')}"`)))
          : el('p', { class: 'muted' }, 'Nothing waits for a decision.')),
      section('Rollouts',
        d.rollouts.length
          ? el('ul', { class: 'plain rollouts' }, d.rollouts.slice(0, 6).map((r) => el('li', {},
            el('div', { class: 'row' }, el('a', { href: `#/rollouts/${r.id}` }, r.id), ' ', statusBadge(statusName(r)),
              ` release ${short(r.release_id)} · batch ${r.progress.batch} of ${r.progress.batches}`),
            progressBar(r))))
          : el('p', { class: 'muted' }, 'No rollouts yet.'),
        d.timeline ? chartBlock(d.timeline) : null),
      section('Alerts', alerts.length ? el('ul', { class: 'plain' }, alerts) : el('p', { class: 'muted' }, 'No alerts.')));
  },
};

// ---------------------------------------------------------------- approval queue

function windowNote(policy, name) {
  if (!name) return 'no window (any time)';
  const w = policy.windows.find((x) => x.name === name);
  if (!w) return `${name} (no longer in the policy: held until approved with "ignore window")`;
  return `${name} (${w.schedule}, ${Math.round(w.duration_secs / 60)} min, ${w.timezone}): ` +
    (w.open_now ? 'open now' : `closed, next opening ${fmtTime(w.next_open)}`);
}

function decisionForm(r, policy) {
  const k = short(r.id);
  const pending = r.parts.filter((p) => p.state.state === 'pending');
  const ruleRollouts = [...new Set(pending.map((p) => p.rollout).filter((x) => x))];
  const msg = el('p', { class: 'form-msg', role: 'alert', id: `msg-${k}` });
  const reason = el('textarea', { id: `reason-${k}`, rows: 2, maxlength: 1000, placeholder: 'e.g. CVE fix, change request 4711' });
  const at = el('input', { id: `at-${k}`, type: 'datetime-local' });
  const ignore = el('input', { id: `ignore-${k}`, type: 'checkbox' });
  const rollout = el('select', { id: `rollout-${k}` },
    el('option', { value: '' }, `the rule's (${ruleRollouts.join(', ') || 'all at once'})`),
    policy.rollouts.map((x) => el('option', { value: x.name },
      `${x.name}: batches ${x.batches.join(' → ')}, pause ${x.pause_secs} s, halt at ${x.failure_threshold}`)));
  reason.addEventListener('input', () => {
    msg.textContent = '';
  });
  const approve = el('button', { type: 'button', class: 'approve' }, 'Approve');
  const reject = el('button', { type: 'button', class: 'reject danger' }, 'Reject');
  const busy = (b) => {
    approve.disabled = b;
    reject.disabled = b;
  };
  const why = () => {
    const text = reason.value.trim();
    if (!text) {
      msg.textContent = 'A reason is required: it goes into the audit log with your name.';
      reason.focus();
    }
    return text;
  };
  approve.addEventListener('click', async () => {
    const text = why();
    if (!text) return;
    const body = { reason: text, ignore_window: ignore.checked };
    if (rollout.value) body.rollout = rollout.value;
    if (at.value) {
      const t = new Date(at.value);
      if (Number.isNaN(t.getTime())) {
        msg.textContent = 'The start time is not a valid date.';
        return;
      }
      body.at = t.toISOString();
    }
    busy(true);
    msg.textContent = 'Approving…';
    try {
      const rec = await api(`/v1/releases/${encodeURIComponent(r.id)}/approve`, 'POST', body);
      const started = rec.parts.map((p) => p.state).filter((s) => s.state === 'approved').map((s) => s.rollout);
      const id = started[started.length - 1];
      state.flash = { kind: 'ok', text: `Release ${short(r.id)} approved: rollout ${id || ''}.` };
      reason.value = '';
      location.hash = id ? `#/rollouts/${id}` : '#/rollouts';
    } catch (e) {
      msg.textContent = `Not approved: ${e.message}`;
      busy(false);
    }
  });
  reject.addEventListener('click', async () => {
    const text = why();
    if (!text) return;
    busy(true);
    msg.textContent = 'Rejecting…';
    try {
      await api(`/v1/releases/${encodeURIComponent(r.id)}/reject`, 'POST', { reason: text });
      state.flash = { kind: 'ok', text: `Release ${short(r.id)} rejected.` };
      reason.value = '';
      navigate();
    } catch (e) {
      msg.textContent = `Not rejected: ${e.message}`;
      busy(false);
    }
  });
  return el('form', { class: 'decision', onsubmit: (e) => e.preventDefault() },
    el('label', { for: reason.id }, 'Reason (required, audited)'), reason,
    el('div', { class: 'form-row' },
      el('label', { for: rollout.id }, 'Rollout'), rollout),
    el('div', { class: 'form-row' },
      el('label', { for: at.id }, 'Start not before (optional)'), at,
      el('label', { class: 'check', for: ignore.id }, ignore, ' ignore the maintenance window')),
    el('div', { class: 'form-row' }, approve, reject),
    msg);
}

function releaseCard(r, policy) {
  const pending = r.parts.filter((p) => p.state.state === 'pending');
  const affected = [...new Set(pending.flatMap((p) => p.devices))];
  return el('article', { class: 'card release', 'data-release': r.id },
    el('h2', {}, releaseTitle(r), ' ', badge(r.facts.severity || 'no severity', r.facts.severity === 'critical' || r.facts.severity === 'high' ? 'bad' : 'warn')),
    dl([
      ['Release', el('code', {}, r.id)],
      ['Publisher', `${r.publisher_kid} (${r.facts.publisher_role})`],
      ['Type', r.facts.update_type],
      ['Categories', r.facts.categories.join(', ') || '—'],
      ['CVEs', r.facts.cves.join(', ') || '—'],
      ['Severity', r.facts.severity || '—'],
      ['Received', `${fmtTime(r.received_at)} from ${r.source}`],
      ['Sizes', `image ${r.image_size} B, blob ${r.blob_size} B, sequence ${r.sequence}`],
      ['Signatures', el('span', { class: 'sigs' },
        badge('publisher ✓', 'ok'), ` ${r.publisher_kid} verified at intake against the trust store (role ${r.facts.publisher_role}); `,
        r.approval_signature ? badge('approval ✓', 'ok') : badge('approval: not yet', 'warn'),
        r.approval_signature ? ' the dispatcher has signed it' : ' the dispatcher signs only when it is approved')],
      ['Affected devices', `${affected.length}: ${affected.join(', ')}`],
    ]),
    el('h3', {}, 'Held by the policy'),
    table(['rule', 'action', 'window', 'rollout', 'devices', 'state'], r.parts.map((p) => el('tr', {},
      el('td', {}, p.rule), el('td', {}, p.action), el('td', {}, windowNote(policy, p.window)),
      el('td', {}, p.rollout || 'all at once'), el('td', { class: 'num' }, String(p.devices.length)),
      el('td', {}, partState(p))))),
    can('operator')
      ? decisionForm(r, policy)
      : el('p', { class: 'muted role-note' }, `Your role (${state.me.role}) may look but not decide: approving and rejecting need the operator role.`));
}

const queue = {
  async load() {
    const [q, releases, policy] = await Promise.all([api('/v1/queue'), api('/v1/releases'), api('/v1/policy')]);
    return { queue: q.queue, releases: releases.releases, policy };
  },
  render(d) {
    return el('div', { class: 'page queue' },
      el('h1', {}, 'Approval queue'),
      d.queue.length ? d.queue.map((r) => releaseCard(r, d.policy))
        : el('p', { class: 'card muted' }, 'Nothing waits for a decision.'),
      section('All releases', table(['release', 'what', 'publisher', 'CVEs', 'received', 'decisions', 'approval signature'],
        d.releases.map((r) => el('tr', { 'data-release': r.id },
          el('td', {}, el('code', {}, short(r.id))), el('td', {}, releaseTitle(r)), el('td', {}, r.publisher_kid),
          el('td', {}, r.facts.cves.join(', ') || '—'), el('td', {}, fmtTime(r.received_at)),
          el('td', {}, r.parts.map((p) => el('div', {}, `${p.rule}: ${partState(p)}`))),
          el('td', {}, r.approval_signature ? 'yes' : 'no'))))));
  },
};

// ---------------------------------------------------------------- rollouts

function controls(r) {
  const s = statusName(r);
  const reason = el('input', { id: `ctl-reason-${r.id}`, type: 'text', maxlength: 500, placeholder: 'reason (required)' });
  const msg = el('span', { class: 'form-msg', role: 'alert' });
  const act = (action) => async () => {
    const text = reason.value.trim();
    if (!text) {
      msg.textContent = 'A reason is required.';
      reason.focus();
      return;
    }
    // eslint-disable-next-line no-alert
    if (action === 'abort' && !window.confirm(`Abort rollout ${r.id}? This is final.`)) return;
    try {
      await api(`/v1/rollouts/${encodeURIComponent(r.id)}/${action}`, 'POST', { reason: text });
      reason.value = '';
      state.flash = { kind: 'ok', text: `Rollout ${r.id}: ${action} done.` };
      navigate();
    } catch (e) {
      msg.textContent = `${action} refused: ${e.message}`;
    }
  };
  const b = (action, label, enabled, cls) => el('button', { type: 'button', class: `${action} ${cls || ''}`, disabled: !enabled, onclick: act(action) }, label);
  return el('div', { class: 'controls form-row' }, reason,
    b('pause', 'Pause', s === 'running' || s === 'scheduled', 'secondary'),
    b('resume', 'Resume', s === 'paused' || s === 'halted'),
    b('abort', 'Abort', !['completed', 'aborted'].includes(s), 'danger'),
    msg);
}

function rolloutFacts(r) {
  return dl([
    ['Release', el('code', {}, r.release_id)],
    ['Status', el('span', {}, el('span', { id: `status-${r.id}` }, statusName(r)), r.status.reason ? ` — ${r.status.reason}` : '')],
    ['Progress', progressBar(r)],
    ['Batch', `${r.progress.batch} of ${r.progress.batches}`],
    ['Next batch', `not before ${fmtTime(r.not_before)}`],
    ['Window', r.window || 'none (any time)'],
    ['Decision', `${r.decision.by} at ${fmtTime(r.decision.at)}: "${r.decision.reason}"`],
    r.alert ? ['Alert', el('span', { class: 'error' }, r.alert)] : null,
  ]);
}

function deviceProgressText(p) {
  switch (p.state) {
    case 'in-flight': return `attempt ${p.attempts} since ${fmtTime(p.since)}`;
    case 'retry': return `attempt ${p.attempts} failed; again after ${fmtTime(p.after)}`;
    case 'rejected': return p.check;
    case 'failed': return p.reason;
    default: return '';
  }
}

const rollouts = {
  async load(id) {
    if (id) {
      const enc = encodeURIComponent(id);
      const [r, timeline] = await Promise.all([api(`/v1/rollouts/${enc}`), api(`/v1/rollouts/${enc}/timeline`)]);
      return { one: r, timeline };
    }
    const v = await api('/v1/rollouts');
    return { list: v.rollouts.sort(rolloutOrder) };
  },
  render(d) {
    if (d.one) {
      const r = d.one;
      return el('div', { class: 'page rollout', 'data-rollout': r.id },
        el('p', {}, el('a', { href: '#/rollouts' }, '← all rollouts')),
        el('h1', {}, `Rollout ${r.id} `, statusBadge(statusName(r))),
        section('Summary', rolloutFacts(r), can('operator') ? controls(r) : null),
        section('Installs over time', chartBlock(d.timeline)),
        section('Devices', table(['device', 'state', 'detail'], Object.entries(r.devices).map(([dev, p]) => el('tr', { 'data-device': dev },
          el('td', {}, el('a', { href: `#/devices/${encodeURIComponent(dev)}` }, dev)),
          el('td', {}, badge(p.state, { installed: 'ok', rejected: 'bad', failed: 'bad', retry: 'warn', 'in-flight': 'info' }[p.state])),
          el('td', {}, deviceProgressText(p)))))));
    }
    return el('div', { class: 'page rollouts' },
      el('h1', {}, 'Rollouts'),
      d.list.length ? d.list.map((r) => el('article', { class: 'card', 'data-rollout': r.id },
        el('h2', {}, el('a', { href: `#/rollouts/${r.id}` }, `Rollout ${r.id}`), ' ', statusBadge(statusName(r))),
        rolloutFacts(r),
        can('operator') && isActive(r) ? controls(r) : null))
        : el('p', { class: 'card muted' }, 'No rollouts yet: approve a release in the queue.'));
  },
};

// ---------------------------------------------------------------- devices

// Newer / older pages of a device's install reports (the API gives a page and the cursor of
// the next; the dispatcher keeps only the newest `limits.reports_per_device`).
function historyPager(d) {
  const cursors = state.history.cursors;
  const go = (change) => () => { change(); refresh(false); };
  const newer = d.page ? el('button', { type: 'button', class: 'secondary newer', onclick: go(() => cursors.pop()) }, '← Newer reports') : null;
  const older = d.one.reports_next_before !== null && d.one.reports_next_before !== undefined
    ? el('button', { type: 'button', class: 'secondary older', onclick: go(() => cursors.push(d.one.reports_next_before)) }, 'Older reports →')
    : null;
  return newer || older ? el('p', { class: 'pager' }, newer, ' ', older) : null;
}

const devices = {
  async load(id) {
    if (id) {
      const enc = encodeURIComponent(id);
      const one = await api(`/v1/devices/${enc}`);
      if (state.history.id !== id) state.history = { id, cursors: [] };
      const cursors = state.history.cursors;
      if (cursors.length) {
        // An older page of the reports (GET /v1/devices/{id}/reports, bounded like the first).
        const page = await api(`/v1/devices/${enc}/reports?before=${cursors[cursors.length - 1]}`);
        one.reports = page.reports;
        one.reports_next_before = page.next_before;
      }
      return { one, page: cursors.length };
    }
    const [v, status] = await Promise.all([api('/v1/devices'), api('/v1/status')]);
    return { list: v.devices, interval: status.checkin_interval_secs };
  },
  render(d) {
    if (d.one) {
      const dev = d.one.device;
      return el('div', { class: 'page device', 'data-device': dev.id },
        el('p', {}, el('a', { href: '#/devices' }, '← all devices')),
        el('h1', {}, `Device ${dev.id}`),
        section('Inventory', dl([
          ['Group', dev.group || '—'],
          ['Version', dev.version],
          ['Sequence (anti-rollback)', String(dev.sequence)],
          ['Release', dev.release_id ? el('code', {}, dev.release_id) : '—'],
          ['Vendor / class', `${dev.vendor_id} / ${dev.class_id}`],
          ['Device-id', dev.device_id],
          ['Address', dev.address || 'unknown (no check-in yet)'],
          ['Enrolled', fmtTime(dev.enrolled_at)],
          ['Last check-in', fmtTime(dev.last_seen)],
          ['Labels', dev.labels.join(', ') || '—'],
          ['Reports', dev.reports ? `${dev.reports.received} received (${dev.reports.installed} installed, ${dev.reports.rejected} rejected, ${dev.reports.reverted} reverted); ${dev.reports.dropped} older ones dropped` : '—'],
        ])),
        section(d.page ? `History (install reports, newest first; older page ${d.page})` : 'History (install reports, newest first)',
          d.one.reports.length
            ? table(['received', 'release', 'outcome', 'check', 'version', 'message'], d.one.reports.map((r) => el('tr', {},
              el('td', {}, fmtTime(r.received_at)), el('td', {}, el('code', {}, short(r.release_id))),
              el('td', {}, badge(r.outcome, r.outcome === 'installed' ? 'ok' : 'bad')), el('td', {}, r.check || ''),
              el('td', {}, `${r.version_before} → ${r.version_after}`), el('td', {}, r.message))), { id: 'history' })
            : el('p', { class: 'muted' }, 'No install reports yet.'),
          historyPager(d)));
    }
    return el('div', { class: 'page devices' },
      el('h1', {}, `Devices (${d.list.length})`),
      section('Inventory', table(['device', 'group', 'class', 'version', 'sequence', 'address', 'last check-in', 'last report'],
        d.list.map((dev) => el('tr', { 'data-device': dev.id },
          el('td', {}, el('a', { href: `#/devices/${encodeURIComponent(dev.id)}` }, dev.id)),
          el('td', {}, dev.group || '—'), el('td', {}, el('code', {}, short(dev.class_id))),
          el('td', { class: 'version' }, dev.version), el('td', { class: 'num' }, String(dev.sequence)),
          el('td', {}, dev.address || '—'), el('td', {}, fmtTime(dev.last_seen)),
          el('td', {}, dev.last_report ? [badge(dev.last_report.outcome, dev.last_report.outcome === 'installed' ? 'ok' : 'bad'), ` ${short(dev.last_report.release_id)}`] : '—'))),
        { id: 'devices' })));
  },
};

// ---------------------------------------------------------------- audit log

const audit = {
  async load() {
    const a = state.audit;
    a.error = null;
    try {
      for (let i = 0; i < 100; i += 1) {
        const from = a.records.length ? a.records[a.records.length - 1].seq + 1 : 0;
        const page = await api(`/v1/audit?from=${from}&limit=${AUDIT_PAGE}`);
        a.records.push(...page.records);
        if (page.records.length < AUDIT_PAGE) break;
      }
    } catch (e) {
      a.error = e.message;
    }
    if (a.records.length !== a.verifiedAt || a.error) {
      a.verify = await api('/v1/audit/verify');
      a.verify.checked = fmtTime(new Date().toISOString());
      a.verifiedAt = a.records.length;
    }
    return { n: a.records.length, verify: a.verify, error: a.error };
  },
  render(d) {
    const a = state.audit;
    const v = d.verify;
    const chain = v.intact
      ? el('p', { class: 'chain ok', id: 'chain-status' }, badge('intact', 'ok'),
        ` The hash chain verifies: ${v.records} records, each MAC-checked and linked to the one before; head MAC ${short(v.head_mac)}… (checked ${v.checked})`)
      : el('p', { class: 'chain bad', id: 'chain-status', role: 'alert' }, badge('BROKEN', 'bad'),
        ` The audit chain does not verify (${v.records} records written; checked ${v.checked}): ${v.error}`);
    const uniq = (k) => [...new Set(a.records.map((r) => r[k]))].sort();
    const sel = (id, key, label) => el('select', {
      id,
      'aria-label': label,
      onchange: (e) => {
        a.filters[key] = e.target.value;
        fillAudit();
      },
    }, el('option', { value: '' }, `any ${label}`), uniq(key).map((x) => el('option', { value: x, selected: a.filters[key] === x }, x)));
    const text = el('input', {
      id: 'audit-text',
      type: 'search',
      placeholder: 'search target, reason, result…',
      value: a.filters.text,
      oninput: (e) => {
        a.filters.text = e.target.value;
        fillAudit();
      },
    });
    const body = el('tbody', { id: 'audit-rows' });
    const page = el('div', { class: 'page audit' },
      el('h1', {}, 'Audit log'),
      section('Chain', chain,
        el('button', { type: 'button', class: 'secondary', onclick: () => { a.verifiedAt = -1; refresh(false); } }, 'Verify again'),
        d.error ? el('p', { class: 'error' }, `Records cannot be read: ${d.error}`) : null),
      section('Records',
        el('div', { class: 'form-row filters' }, sel('audit-action', 'action', 'action'), sel('audit-actor', 'actor', 'actor'), text,
          el('span', { id: 'audit-shown', class: 'muted' })),
        el('table', { id: 'audit' },
          el('thead', {}, el('tr', {}, ['#', 'time', 'actor', 'action', 'target', 'result', 'reason'].map((h) => el('th', { scope: 'col' }, h)))),
          body)));
    fillAudit(body, page);
    return page;
  },
};

function fillAudit(body, root) {
  const a = state.audit;
  const tbody = body || $('audit-rows');
  if (!tbody || !a) return;
  const f = a.filters;
  const needle = f.text.trim().toLowerCase();
  const rows = a.records.filter((r) => (!f.action || r.action === f.action) &&
    (!f.actor || r.actor === f.actor) &&
    (!needle || [r.target, r.reason, r.result, r.actor, r.action].some((x) => x && String(x).toLowerCase().includes(needle))));
  const shown = rows.slice(-500).reverse();
  tbody.replaceChildren(...shown.map((r) => el('tr', { 'data-action': r.action },
    el('td', { class: 'num' }, String(r.seq)), el('td', {}, fmtTime(r.time)), el('td', {}, r.actor),
    el('td', {}, r.action), el('td', {}, el('code', {}, r.target ? (r.target.length > 24 ? `${short(r.target)}…` : r.target) : '')),
    el('td', {}, r.result), el('td', { class: 'reason' }, r.reason || ''))));
  const note = (root || document).querySelector('#audit-shown');
  if (note) note.textContent = `${shown.length} of ${a.records.length} records${rows.length > shown.length ? ' (newest 500 shown)' : ''}`;
}

const PAGES = { overview, queue, rollouts, devices, audit };

// ---------------------------------------------------------------- start

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    $('signin-error').textContent = '';
    if (!token) {
      $('signin-error').textContent = 'Paste your operator token.';
      return;
    }
    $('signin-button').disabled = true;
    try {
      await signIn(token);
    } catch (err) {
      state.token = null;
      state.me = null;
      sessionStorage.removeItem(TOKEN_KEY);
      $('signin-error').textContent = err instanceof ApiError && err.status === 401
        ? 'This token is not accepted by the dispatcher.'
        : `Cannot sign in: ${err.message}`;
    } finally {
      $('signin-button').disabled = false;
    }
  });
  $('signout').addEventListener('click', () => signOut('Signed out.'));
  window.addEventListener('hashchange', navigate);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.me) refresh(false);
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    signIn(saved).catch(() => signOut('Sign in again.'));
  } else {
    signOut('');
  }
});
