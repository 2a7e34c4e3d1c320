// The Request Logs screen (Settings › Dev › Request Logs): one token's
// calls over a period, as a chart of counts and a paged table.

import { api, SessionEnded, STATUS_LABEL, loadTokens } from './api.js';
import { renderChart, SERIES } from './chart.js';
import {
  h, append, icon, uid, dateTimeFmt, fullFmt, logTimeFmt, hourFmt, dayFmt,
  plural, stripTicks, isolated, isolatedText, errorState,
} from './dom.js';
import { link } from './router.js';
import { state, workspaceName } from './state.js';

const PERIODS = [
  { id: '1h', label: 'Last hour', ms: 3600e3 },
  { id: '24h', label: 'Last 24 hours', ms: 24 * 3600e3 },
  { id: '7d', label: 'Last 7 days', ms: 7 * 24 * 3600e3 },
  { id: '30d', label: 'Last 30 days', ms: 30 * 24 * 3600e3 },
  { id: '90d', label: 'Last 90 days', ms: 90 * 24 * 3600e3 },
  { id: 'custom', label: 'Custom range', ms: null },
];
const PAGE_SIZE = 50;
const HOUR = 3600e3;
const DAY = 24 * HOUR;

// What the Request Logs tab shows; survives switching tabs, and lives in the
// URL (token id and period only) so that reload keeps the place.
const logs = { tokenId: null, period: '24h', from: null, to: null };

function logsPath(tokenId) {
  const q = new URLSearchParams();
  const id = tokenId || logs.tokenId;
  if (id) q.set('token', id);
  if (tokenId || logs.period !== '24h') q.set('period', tokenId ? '24h' : logs.period);
  if (!tokenId && logs.period === 'custom' && logs.from && logs.to) {
    q.set('from', logs.from.toISOString());
    q.set('to', logs.to.toISOString());
  }
  const s = q.toString();
  return `/settings/dev/logs${s ? `?${s}` : ''}`;
}

function toLocalInput(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function windowOf() {
  if (logs.period === 'custom' && logs.from && logs.to) return { from: logs.from, to: logs.to };
  const p = PERIODS.find((x) => x.id === logs.period) || PERIODS[1];
  const to = new Date();
  return { from: new Date(to.getTime() - p.ms), to };
}

async function renderLogsPanel(panel, query) {
  if (query) {
    if (query.get('token')) logs.tokenId = query.get('token');
    const period = query.get('period');
    if (PERIODS.some((p) => p.id === period)) logs.period = period;
    if (logs.period === 'custom') {
      const from = new Date(query.get('from') || '');
      const to = new Date(query.get('to') || '');
      if (!Number.isNaN(from.getTime()) && !Number.isNaN(to.getTime()) && from < to) {
        logs.from = from;
        logs.to = to;
      } else if (!logs.from || !logs.to) {
        logs.to = new Date();
        logs.from = new Date(logs.to.getTime() - DAY);
      }
    }
  }
  const header = h('div', { class: 'section-head' },
    h('div', {},
      h('h2', {}, 'Request logs'),
      h('p', { class: 'muted' }, 'Every call made to the ENSPACE API with one of your tokens, allowed or refused. ',
        h('span', { id: 'retention-note' }, 'Logs are kept for 90 days.'))));
  panel.replaceChildren(header, h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading…'));
  try {
    await loadTokens();
  } catch {
    return;
  }
  if (!panel.isConnected) return;
  if (state.tokensError) {
    panel.replaceChildren(header, errorState('Could not load your tokens', state.tokensError, () => renderLogsPanel(panel)));
    return;
  }
  let tokens = state.tokens;
  // A deep link may name a token older than the pages loaded so far.
  if (logs.tokenId && !tokens.some((t) => t.id === logs.tokenId)) {
    try {
      const one = await api('GET', `/v1/tokens/${encodeURIComponent(logs.tokenId)}`);
      tokens = [...tokens, one];
    } catch (err) {
      if (err instanceof SessionEnded) return;
    }
    if (!panel.isConnected) return;
  }
  if (!tokens.length) {
    panel.replaceChildren(header, h('div', { class: 'empty', id: 'logs-no-tokens' },
      h('div', { class: 'empty-icon' }, icon('logs')),
      h('h3', {}, 'No tokens, no requests'),
      h('p', { class: 'muted' }, 'Request logs show the calls made with your tokens. Create a token first.'),
      link('/settings/dev/tokens', 'Go to Tokens', { class: 'btn btn-primary' })));
    return;
  }
  if (!tokens.some((t) => t.id === logs.tokenId)) {
    logs.tokenId = (tokens.find((t) => t.status === 'active') || tokens[0]).id;
  }

  // --- filters
  const tokenSelect = h('select', { id: 'logs-token', name: 'token' }, tokens.map((t) => h('option', { value: t.id, selected: t.id === logs.tokenId },
    t.status === 'active' ? isolatedText(t.description) : `${isolatedText(t.description)} (${STATUS_LABEL[t.status].toLowerCase()})`)));
  const periodName = uid('period');
  const periodRadios = PERIODS.map((p) => h('input', {
    type: 'radio', name: periodName, value: p.id, id: `logs-period-${p.id}`, checked: p.id === logs.period, class: 'segment-input',
  }));
  const now = new Date();
  const fromInput = h('input', { type: 'datetime-local', id: 'logs-from', value: toLocalInput(logs.from || new Date(now.getTime() - DAY)) });
  const toInput = h('input', { type: 'datetime-local', id: 'logs-to', value: toLocalInput(logs.to || now) });
  const rangeError = h('p', { class: 'field-error', id: 'logs-range-error', hidden: true });
  const applyRange = h('button', { type: 'button', class: 'btn btn-secondary', id: 'logs-apply' }, 'Apply');
  const custom = h('div', { class: 'custom-range', id: 'logs-custom', hidden: logs.period !== 'custom' },
    h('div', { class: 'field field-inline' }, h('label', { for: 'logs-from' }, 'From'), fromInput),
    h('div', { class: 'field field-inline' }, h('label', { for: 'logs-to' }, 'To'), toInput),
    applyRange, rangeError);
  const refresh = h('button', { type: 'button', class: 'btn btn-ghost', id: 'logs-refresh' }, icon('refresh'), 'Refresh');

  const filters = h('div', { class: 'filters' },
    h('div', { class: 'field' }, h('label', { for: 'logs-token' }, 'Token'), tokenSelect),
    h('div', { class: 'field' },
      h('span', { class: 'label', id: 'logs-period-label' }, 'Period'),
      h('div', { class: 'segments', role: 'radiogroup', 'aria-labelledby': 'logs-period-label' },
        PERIODS.map((p, i) => [periodRadios[i], h('label', { for: `logs-period-${p.id}`, class: 'segment' }, p.label)]))),
    h('div', { class: 'filters-end' }, refresh));

  const chartBox = h('div', { class: 'chart', id: 'logs-chart' });
  const legend = h('ul', { class: 'legend', id: 'logs-legend' });
  const chartCard = h('section', { class: 'card chart-card', 'aria-labelledby': 'logs-chart-title' },
    h('div', { class: 'chart-head' }, h('h3', { id: 'logs-chart-title' }, 'Requests over time'), legend),
    chartBox);
  const tableBox = h('section', { class: 'logs-table-box', 'aria-labelledby': 'logs-table-title' });
  // Calls an API node made but had to drop from its queue (GET …/stats `dropped`).
  const droppedNotice = h('div', { class: 'callout callout-warning', id: 'logs-dropped', role: 'status', hidden: true });
  panel.replaceChildren(header, filters, custom, droppedNotice, chartCard, tableBox);

  let generation = 0;
  const reload = () => {
    const tok = tokens.find((t) => t.id === logs.tokenId);
    history.replaceState(null, '', logsPath());
    loadLogs(++generation, tok, windowOf());
  };

  tokenSelect.addEventListener('change', () => { logs.tokenId = tokenSelect.value; reload(); });
  for (const r of periodRadios) {
    r.addEventListener('change', () => {
      if (!r.checked) return;
      logs.period = r.value;
      custom.hidden = logs.period !== 'custom';
      if (logs.period === 'custom') {
        if (!logs.from || !logs.to) {
          logs.to = new Date();
          logs.from = new Date(logs.to.getTime() - DAY);
        }
        fromInput.value = toLocalInput(logs.from);
        toInput.value = toLocalInput(logs.to);
      }
      reload();
    });
  }
  applyRange.addEventListener('click', () => {
    const from = new Date(fromInput.value);
    const to = new Date(toInput.value);
    let message = '';
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) message = 'Enter both a start and an end.';
    else if (from >= to) message = 'The start must be before the end.';
    rangeError.textContent = message;
    rangeError.hidden = !message;
    for (const el of [fromInput, toInput]) {
      if (message) el.setAttribute('aria-invalid', 'true'); else el.removeAttribute('aria-invalid');
    }
    if (message) { fromInput.focus(); return; }
    logs.from = from;
    logs.to = to;
    reload();
  });
  refresh.addEventListener('click', reload);

  async function loadLogs(gen, token, win) {
    const stale = () => gen !== generation || !panel.isConnected;
    const params = (extra) => {
      const q = new URLSearchParams({ from: win.from.toISOString(), to: win.to.toISOString(), ...extra });
      return q.toString();
    };
    const span = win.to - win.from;
    const bucket = span <= 2 * DAY ? 'hour' : 'day';
    const base = `/v1/tokens/${encodeURIComponent(token.id)}/requests`;

    chartBox.replaceChildren(h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading chart…'));
    legend.replaceChildren();
    tableBox.replaceChildren(h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading requests…'));
    tableBox.setAttribute('aria-busy', 'true');

    const statsP = api('GET', `${base}/stats?${params({ bucket })}`).then((b) => ({ ok: b }), (e) => ({ err: e }));
    const pageP = api('GET', `${base}?${params({ limit: String(PAGE_SIZE) })}`).then((b) => ({ ok: b }), (e) => ({ err: e }));
    const [stats, page] = await Promise.all([statsP, pageP]);
    if ([stats.err, page.err].some((e) => e instanceof SessionEnded) || stale()) return;

    if (stats.err) {
      chartBox.replaceChildren(h('p', { class: 'chart-error', role: 'alert' }, icon('error'), `Could not load the chart: ${stripTicks(stats.err.message)}`));
    } else {
      drawChart(chartBox, legend, fillBuckets(stats.ok, win, bucket), bucket);
    }
    const dropped = stats.ok ? stats.ok.dropped || 0 : 0;
    droppedNotice.dataset.dropped = String(dropped);
    droppedNotice.hidden = dropped === 0;
    droppedNotice.replaceChildren(icon('warn'), h('span', {},
      h('strong', {}, `${plural(dropped, 'call', 'calls')} made with this token in this period ${dropped === 1 ? 'is' : 'are'} missing from the log. `),
      'An ENSPACE API node could not keep up and dropped them: this token was sending more than any other.'));

    tableBox.removeAttribute('aria-busy');
    if (page.err) {
      tableBox.replaceChildren(errorState('Could not load the request logs', page.err, reload));
      return;
    }
    const records = [...page.ok.requests];
    let cursor = page.ok.next_cursor;
    if (!records.length) {
      tableBox.replaceChildren(h('div', { class: 'empty', id: 'logs-empty' },
        h('div', { class: 'empty-icon' }, icon('chart')),
        h('h3', { id: 'logs-table-title' }, 'No requests in this period'),
        h('p', { class: 'muted' }, 'Nothing was called with “', isolated(token.description), `” between ${dateTimeFmt.format(win.from)} and ${dateTimeFmt.format(win.to)}. `,
          'Calls appear here within seconds of being made. Try a longer period.')));
      return;
    }
    const tbody = h('tbody', {});
    const count = h('p', { class: 'muted table-count', id: 'logs-count', role: 'status' });
    const more = h('button', { type: 'button', class: 'btn btn-secondary', id: 'logs-more' }, 'Load more');
    const moreError = h('p', { class: 'field-error', role: 'alert', hidden: true });
    const addRows = (list) => append(tbody, list.map(recordRow));
    const update = () => {
      count.textContent = `Showing ${plural(records.length, 'request', 'requests')}${cursor ? ' — more are available' : ''}.`;
      more.hidden = !cursor;
    };
    more.addEventListener('click', async () => {
      more.disabled = true;
      more.textContent = 'Loading…';
      moreError.hidden = true;
      try {
        const next = await api('GET', `${base}?${params({ limit: String(PAGE_SIZE), cursor })}`);
        if (stale()) return;
        records.push(...next.requests);
        addRows(next.requests);
        cursor = next.next_cursor;
      } catch (err) {
        if (err instanceof SessionEnded) return;
        moreError.textContent = `Could not load more: ${stripTicks(err.message)}`;
        moreError.hidden = false;
      }
      more.disabled = false;
      more.textContent = 'Load more';
      update();
      if (!cursor) count.focus();
    });
    addRows(records);
    count.setAttribute('tabindex', '-1');
    update();
    tableBox.replaceChildren(
      h('h3', { id: 'logs-table-title', class: 'visually-hidden' }, 'Requests'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'table logs-table', id: 'logs-table' },
          h('caption', { class: 'visually-hidden' }, 'Requests made with ', isolated(token.description), ', newest first'),
          h('thead', {}, h('tr', {}, ['Time', 'Method', 'Path', 'Workspace', 'Status', 'Duration', 'Client IP', 'Node'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody)),
      h('div', { class: 'table-foot' }, count, more, moreError));
  }

  reload();
}

function recordRow(r) {
  const cls = r.status >= 500 ? 'server' : r.status >= 400 ? 'client' : 'ok';
  return h('tr', { 'data-request-id': r.id },
    h('td', { 'data-label': 'Time', class: 'nowrap' }, h('time', { datetime: r.at, title: fullFmt.format(new Date(r.at)) }, logTimeFmt.format(new Date(r.at)))),
    h('td', { 'data-label': 'Method' }, h('span', { class: 'method mono' }, r.method)),
    h('td', { 'data-label': 'Path', class: 'mono cell-path' }, r.path),
    h('td', { 'data-label': 'Workspace' }, r.workspace ? workspaceName(r.workspace) : h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Status' }, h('span', { class: `http http-${cls}` }, String(r.status))),
    h('td', { 'data-label': 'Duration', class: 'num nowrap' }, `${Number(r.duration_ms).toFixed(1)} ms`),
    h('td', { 'data-label': 'Client IP', class: 'mono' }, r.client_ip),
    h('td', { 'data-label': 'Node', class: 'mono' }, r.node));
}

/** Every bucket of the window, zeros where the server had none. */
function fillBuckets(stats, win, bucket) {
  const step = bucket === 'hour' ? HOUR : DAY;
  const byStart = new Map();
  for (const b of stats.buckets || []) byStart.set(new Date(b.start).getTime(), b);
  const first = Math.floor(win.from.getTime() / step) * step;
  const out = [];
  for (let t = first; t < win.to.getTime(); t += step) {
    const b = byStart.get(t);
    byStart.delete(t);
    out.push(bucketOf(t, step, b));
  }
  for (const [t, b] of byStart) out.push(bucketOf(t, step, b));
  out.sort((a, b) => a.start - b.start);
  return out;
}

function bucketOf(t, step, b) {
  return {
    start: new Date(t),
    end: new Date(t + step),
    total: (b && b.total) || 0,
    success: (b && b.success) || 0,
    client_error: (b && b.client_error) || 0,
    server_error: (b && b.server_error) || 0,
  };
}

function drawChart(box, legend, buckets, bucket) {
  const options = {
    summary: (total, errors) => `Requests over time: ${plural(total, 'request', 'requests')}, ${plural(errors, 'error', 'errors')}`,
    tick: (b) => (bucket === 'hour'
      ? (b.start.getHours() === 0 ? dayFmt.format(b.start) : hourFmt.format(b.start))
      : dayFmt.format(b.start)),
    describe: (b) => {
      const when = bucket === 'hour'
        ? `${dayFmt.format(b.start)}, ${hourFmt.format(b.start)}–${hourFmt.format(b.end)}`
        : dayFmt.format(b.start);
      return `${when}: ${plural(b.total, 'request', 'requests')} (${b.success} successful, ${b.client_error} client errors, ${b.server_error} server errors)`;
    },
  };
  const draw = () => renderChart(box, buckets, options);
  const totals = draw();
  box.dataset.total = String(totals.total);
  box.dataset.errors = String(totals.errors);
  box.dataset.buckets = String(buckets.length);
  const sums = Object.fromEntries(SERIES.map((s) => [s.key, buckets.reduce((n, b) => n + b[s.key], 0)]));
  legend.replaceChildren(...SERIES.map((s) => h('li', {},
    h('span', { class: `swatch ${s.className}`, 'aria-hidden': 'true' }), `${s.label}: `, h('strong', { 'data-series': s.key }, String(sums[s.key])))));
  if (typeof ResizeObserver === 'function') {
    let last = box.clientWidth;
    const ro = new ResizeObserver(() => {
      if (!box.isConnected) { ro.disconnect(); return; }
      if (Math.abs(box.clientWidth - last) < 8) return;
      last = box.clientWidth;
      draw();
    });
    ro.observe(box);
  }
}

export { logsPath, renderLogsPanel };
