// The Insights screen (Settings › Dev › Insights): what one token's calls
// over the retention window used and were refused, per scope and per
// workspace, the client IPs they came from, and the narrowest grant that
// would have allowed every allowed call, with a one-click "Create a
// narrower token" that opens the create dialog prefilled with it.
// Everything from the server goes in as text (h() and text nodes), never
// as markup.

import { api, SessionEnded, STATUS_LABEL, loadTokens } from './api.js';
import { openCreateDialog } from './dialogs.js';
import { h, icon, timeEl, relative, plural, isolated, isolatedText, errorState, dateFmt } from './dom.js';
import { logsPath } from './logs.js';
import { link, navigate } from './router.js';
import { state, workspaceName } from './state.js';

const SCOPE_LABEL = { read: 'Read', write: 'Write', delete: 'Delete' };
const DESCRIPTION_MAX = 100;
const NARROWED = ' (narrowed)';

// The token shown; survives switching tabs and lives in the URL.
let insightsToken = null;

function insightsPath(tokenId) {
  const id = tokenId || insightsToken;
  return `/settings/dev/insights${id ? `?token=${encodeURIComponent(id)}` : ''}`;
}

/** "<old> (narrowed)", cut so that it stays within the 100 characters. */
function narrowedDescription(old) {
  const chars = [...String(old).trim()];
  const room = DESCRIPTION_MAX - NARROWED.length;
  return `${chars.slice(0, room).join('').trim()}${NARROWED}`;
}

function header() {
  return h('div', { class: 'section-head' },
    h('div', {},
      h('h2', {}, 'Token insights'),
      h('p', { class: 'muted' },
        'What a token’s calls used and what was refused, where they came from, and the narrowest access that would have been enough.')));
}

async function renderInsightsPanel(panel, query) {
  if (query && query.get('token')) insightsToken = query.get('token');
  const head = header();
  panel.replaceChildren(head, loading('Loading…'));
  try {
    await loadTokens();
  } catch {
    return;
  }
  if (!panel.isConnected) return;
  if (state.tokensError) {
    panel.replaceChildren(head, errorState('Could not load your tokens', state.tokensError, () => renderInsightsPanel(panel)));
    return;
  }
  let tokens = state.tokens;
  // A deep link may name a token older than the pages loaded so far.
  if (insightsToken && !tokens.some((t) => t.id === insightsToken)) {
    try {
      tokens = [...tokens, await api('GET', `/v1/tokens/${encodeURIComponent(insightsToken)}`)];
    } catch (err) {
      if (err instanceof SessionEnded) return;
    }
    if (!panel.isConnected) return;
  }
  if (!tokens.length) {
    panel.replaceChildren(head, h('div', { class: 'empty', id: 'insights-no-tokens' },
      h('div', { class: 'empty-icon' }, icon('chart')),
      h('h3', {}, 'No tokens yet'),
      h('p', { class: 'muted' }, 'Insights show how your tokens are used. Create a token first.'),
      link('/settings/dev/tokens', 'Go to Tokens', { class: 'btn btn-primary' })));
    return;
  }
  if (!tokens.some((t) => t.id === insightsToken)) {
    insightsToken = (tokens.find((t) => t.status === 'active') || tokens[0]).id;
  }
  const token = tokens.find((t) => t.id === insightsToken);

  const select = h('select', { id: 'insights-token', name: 'token' }, tokens.map((t) => h('option', { value: t.id, selected: t.id === token.id },
    t.status === 'active' ? isolatedText(t.description) : `${isolatedText(t.description)} (${(STATUS_LABEL[t.status] || t.status).toLowerCase()})`)));
  select.addEventListener('change', () => {
    insightsToken = select.value;
    navigate(insightsPath(), { replace: true, focus: null });
    document.getElementById('insights-token')?.focus();
  });
  const body = h('div', { class: 'insights', id: 'insights-body', 'aria-live': 'polite', 'aria-busy': 'true' }, loading('Loading insights…'));
  panel.replaceChildren(head,
    h('div', { class: 'filters' },
      h('div', { class: 'field' }, h('label', { for: 'insights-token' }, 'Token'), select),
      h('div', { class: 'filters-end' },
        link(logsPath(token.id), [icon('logs'), 'Request logs'], { class: 'btn btn-secondary', id: 'insights-logs' }))),
    body);

  let insights;
  try {
    insights = await api('GET', `/v1/tokens/${encodeURIComponent(token.id)}/insights`);
  } catch (err) {
    if (err instanceof SessionEnded) return;
    body.removeAttribute('aria-busy');
    body.replaceChildren(errorState('Could not load this token’s insights', err, () => renderInsightsPanel(panel)));
    return;
  }
  if (!body.isConnected) return;
  body.removeAttribute('aria-busy');
  body.replaceChildren(
    suggestionCard(token, insights),
    callCounts(insights),
    section('insights-scopes', 'Scopes', 'Each scope the API knows, whether this token has it, and its calls.',
      usageTable('insights-scopes-table', 'Scope', insights.scopes.map((s) => ({
        key: s.scope, granted: s.granted, allowed: s.allowed, denied: s.denied, last_used: s.last_used,
        label: h('ul', { class: 'chips' }, h('li', { class: `chip chip-${s.scope}` }, SCOPE_LABEL[s.scope] || s.scope)),
      })))),
    section('insights-workspaces', 'Workspaces', 'The workspaces this token may reach, then any other its calls asked for.',
      usageTable('insights-workspaces-table', 'Workspace', insights.workspaces.map((w) => ({
        key: w.workspace, granted: w.granted, allowed: w.allowed, denied: w.denied, last_used: w.last_used,
        label: [h('span', { class: 'token-name' }, isolated(workspaceName(w.workspace))), h('span', { class: 'token-id mono' }, w.workspace)],
      })))),
    section('insights-ips', 'Client IPs', 'Where the calls came from, most recently seen first.', clientIps(insights)));
}

function loading(text) {
  return h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

function windowDays(insights) {
  return Math.max(1, Math.round((new Date(insights.to) - new Date(insights.from)) / 86400e3));
}

function section(id, title, note, content) {
  return h('section', { class: 'insights-section', id, 'aria-labelledby': `${id}-title` },
    h('h3', { id: `${id}-title` }, title),
    h('p', { class: 'muted' }, note),
    content);
}

function callCounts(insights) {
  const c = insights.calls;
  const stat = (id, value, label) => h('div', { class: 'stat', id },
    h('span', { class: 'stat-value' }, value.toLocaleString()), h('span', { class: 'stat-label' }, label));
  return h('section', { class: 'insights-section', 'aria-labelledby': 'insights-calls-title' },
    h('h3', { id: 'insights-calls-title' }, 'Calls'),
    h('p', { class: 'muted' }, `From ${dateFmt.format(new Date(insights.from))} to ${dateFmt.format(new Date(insights.to))}, the last ${windowDays(insights)} days the request logs keep.`),
    h('div', { class: 'stats' },
      stat('insights-allowed', c.allowed, 'Allowed'),
      stat('insights-denied', c.denied, 'Refused (scope or workspace not granted)'),
      stat('insights-invalid', c.invalid_token, 'With the token revoked or expired'),
      stat('insights-limited', c.rate_limited, 'Rate limited')));
}

function usageTable(id, first, rows) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table insights-table', id },
      h('thead', {}, h('tr', {}, [first, 'Granted', 'Allowed calls', 'Refused calls', 'Last used'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((r) => h('tr', { 'data-key': r.key, class: r.granted && !r.allowed ? 'row-unused' : '' },
        h('th', { scope: 'row', 'data-label': first }, r.label),
        h('td', { 'data-label': 'Granted', class: 'cell-granted' },
          r.granted ? 'Yes' : h('span', { class: 'muted' }, 'No'),
          r.granted && !r.allowed ? [' ', h('span', { class: 'badge badge-warning' }, 'Unused')] : null),
        h('td', { 'data-label': 'Allowed calls', class: 'num cell-allowed' }, r.allowed.toLocaleString()),
        h('td', { 'data-label': 'Refused calls', class: 'num cell-denied' }, r.denied.toLocaleString()),
        h('td', { 'data-label': 'Last used', class: 'nowrap' }, r.last_used ? relative(r.last_used) : h('span', { class: 'muted' }, 'Never')))))));
}

function clientIps(insights) {
  if (!insights.client_ips.length) {
    return h('p', { class: 'callout callout-info', id: 'insights-no-ips' }, 'No calls in this period, so no client IPs.');
  }
  const more = insights.client_ips_seen > insights.client_ips.length;
  return [
    h('div', { class: 'table-wrap' },
      h('table', { class: 'table insights-table', id: 'insights-ips-table' },
        h('thead', {}, h('tr', {}, ['Client IP', 'Calls', 'First seen', 'Last seen'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, insights.client_ips.map((ip) => h('tr', { 'data-ip': ip.ip },
          h('th', { scope: 'row', 'data-label': 'Client IP', class: 'mono' }, ip.ip),
          h('td', { 'data-label': 'Calls', class: 'num' }, ip.count.toLocaleString()),
          h('td', { 'data-label': 'First seen', class: 'nowrap' }, timeEl(ip.first_seen)),
          h('td', { 'data-label': 'Last seen', class: 'nowrap' }, relative(ip.last_seen))))))),
    more || insights.client_ip_calls_unlisted
      ? h('p', { class: 'hint' },
        more ? `Showing the ${insights.client_ips.length} most recently seen of ${plural(insights.client_ips_seen, 'client IP', 'client IPs')}. ` : '',
        insights.client_ip_calls_unlisted ? `${plural(insights.client_ip_calls_unlisted, 'call', 'calls')} came from addresses not counted apart.` : '')
      : null,
  ];
}

/** The least-privilege suggestion, or why there is none. */
function suggestionCard(token, insights) {
  const suggestion = insights.suggestion;
  const days = windowDays(insights);
  const card = (kind, ...children) => h('section', { class: `card suggestion suggestion-${kind}`, id: 'insights-suggestion', 'aria-labelledby': 'insights-suggestion-title' }, ...children);
  if (!insights.calls.allowed || !suggestion.scopes.length) {
    return card('unused',
      h('h3', { id: 'insights-suggestion-title' }, 'Nothing to suggest: this token was not used'),
      h('p', { class: 'muted', id: 'insights-unused' },
        `No call with this token was allowed in the last ${days} days, so there is no narrower access to suggest. `,
        'If nothing needs it, revoke it on the Tokens tab.'));
  }
  const grantedScopes = insights.scopes.filter((s) => s.granted).map((s) => s.scope);
  const grantedWorkspaces = insights.workspaces.filter((w) => w.granted).map((w) => w.workspace);
  const unusedScopes = grantedScopes.filter((s) => !suggestion.scopes.includes(s));
  const unusedWorkspaces = grantedWorkspaces.filter((w) => !suggestion.workspaces.includes(w));
  const facts = h('dl', { class: 'facts facts-compact', id: 'insights-suggested' },
    h('dt', {}, 'Scopes'), h('dd', { id: 'insights-suggested-scopes' }, h('ul', { class: 'chips' }, suggestion.scopes.map((s) => h('li', { class: `chip chip-${s}`, 'data-scope': s }, SCOPE_LABEL[s] || s)))),
    h('dt', {}, 'Workspaces'), h('dd', { id: 'insights-suggested-workspaces' }, suggestion.workspaces.map((w, i) => [i ? ', ' : '', h('span', { 'data-workspace': w }, isolated(workspaceName(w)))])),
    ...((suggestion.allowed_cidrs || []).length
      ? [h('dt', {}, 'Addresses'), h('dd', { id: 'insights-suggested-cidrs', class: 'mono' }, suggestion.allowed_cidrs.join(', '))]
      : []));
  // A token usable from anywhere whose calls came from a few networks can
  // be fenced to them: that alone is worth a narrower token.
  const fenceable = !token.allowed_cidrs?.length && (suggestion.allowed_cidrs || []).length > 0;
  if (!unusedScopes.length && !unusedWorkspaces.length && !fenceable) {
    return card('narrow',
      h('h3', { id: 'insights-suggestion-title' }, 'Already as narrow as its use'),
      h('p', { class: 'muted' }, `In the last ${days} days this token’s calls used every scope and workspace it has:`),
      facts);
  }
  const status = h('p', { class: 'copy-status', id: 'insights-narrow-status', role: 'status' });
  const button = h('button', { type: 'button', class: 'btn btn-primary', id: 'insights-narrow' }, icon('plus'), 'Create a narrower token');
  button.addEventListener('click', () => openCreateDialog(button, {
    prefill: { description: narrowedDescription(token.description), scopes: suggestion.scopes, workspaces: suggestion.workspaces, allowed_cidrs: suggestion.allowed_cidrs || [] },
    onCreated: () => {
      status.textContent = 'Created. Once everything uses the new token, revoke this one on the Tokens tab.';
      loadTokens().catch(() => {});
    },
  }));
  const unused = [...unusedScopes.map((s) => SCOPE_LABEL[s] || s), ...unusedWorkspaces.map((w) => isolated(workspaceName(w)))];
  return card('narrower',
    h('h3', { id: 'insights-suggestion-title' }, 'This token can do more than it uses'),
    h('p', { class: 'muted' }, `Every call allowed in the last ${days} days would also have been allowed with only:`),
    facts,
    unused.length
      ? h('p', { class: 'suggestion-never', id: 'insights-unused-grants' }, h('strong', {}, 'Never used: '), unused.map((u, i) => [i ? ', ' : '', u]), '.')
      : null,
    fenceable
      ? h('p', { class: 'suggestion-never', id: 'insights-unfenced' }, h('strong', {}, 'Any address: '),
        'this token works from anywhere, but its calls came only from the addresses above. The narrower token works only from them.')
      : null,
    h('div', { class: 'suggestion-actions' }, button, status));
}

export { insightsPath, renderInsightsPanel, narrowedDescription };
