// The Tokens screen (Settings › Dev › Tokens): the list of the user's
// tokens, newest first, paged, with the create, regenerate and revoke
// dialogs, the links between a regenerated token and its successor, why a
// token was revoked, and a banner when tokens are about to expire.

import { SessionEnded, STATUS_LABEL, loadTokens, loadMoreTokens } from './api.js';
import { openCreateDialog, openRevokeDialog } from './dialogs.js';
import { h, icon, timeEl, relative, dateTimeFmt, plural, stripTicks, isolated, errorState } from './dom.js';
import { logsPath } from './logs.js';
import { insightsPath } from './insights.js';
import { timelinePath } from './audit.js';
import { openRotateDialog } from './rotate.js';
import { fenceSummary } from './fences.js';
import { link, parseRoute } from './router.js';
import { state, workspaceName } from './state.js';

function currentTokensPanel() {
  const panel = document.getElementById('dev-panel');
  return panel && parseRoute().sub === 'tokens' ? panel : null;
}

function renderTokensPanel(panel, { reload = false } = {}) {
  return renderListPanel(panel, {
    reload,
    key: 'tokens',
    load: loadTokens,
    header: tokensHeader,
    loading: 'Loading tokens…',
    errorTitle: 'Could not load your tokens',
    empty: () => h('div', { class: 'empty', id: 'tokens-empty' },
      h('div', { class: 'empty-icon' }, icon('key')),
      h('h3', {}, 'No personal access tokens yet'),
      h('p', { class: 'muted' },
        'A personal access token lets a script, an integration or an app call the ENSPACE API as you, ',
        'limited to the scopes and workspaces you choose. Create one for each integration so that you can revoke it on its own.'),
      h('button', { type: 'button', class: 'btn btn-primary', id: 'create-first-token', onClick: (e) => openCreateDialog(e.currentTarget, { onCreated }) },
        icon('plus'), 'Create your first token')),
    list: (tokens) => [tokensHeader(true), expiringBanner(tokens), tokensTable(tokens), tokensMore(panel)],
  });
}

/** A list panel of `state[key]` (tokens, decoys): `load()` fills it, or
 * `state[key + 'Error']`, with a spinner under `header(false)` the first
 * time; then the error, `empty()` or `list(items)`, keeping the focus on the
 * element that had it. */
async function renderListPanel(panel, view) {
  const { reload = false, key, load, header, loading, errorTitle, empty, list } = view;
  if (reload || !state[key]) {
    if (!state[key]) {
      panel.replaceChildren(header(false), h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), loading));
      panel.setAttribute('aria-busy', 'true');
    }
    try {
      await load();
    } catch {
      return;
    }
    panel.removeAttribute('aria-busy');
    if (!panel.isConnected) return;
  }
  const active = document.activeElement;
  const keepFocus = active && panel.contains(active) && active.id ? active.id : null;
  const error = state[`${key}Error`];
  if (error) {
    panel.replaceChildren(header(false), errorState(errorTitle, error, () => {
      state[key] = null;
      renderListPanel(panel, { ...view, reload: true });
    }));
    return;
  }
  const items = state[key];
  // replaceChildren() would write a null as the text "null".
  panel.replaceChildren(...(items.length ? list(items) : [header(false), empty()]).filter(Boolean));
  if (keepFocus) document.getElementById(keepFocus)?.focus();
}

/** "Show more tokens" under the list while older pages remain. */
function tokensMore(panel) {
  if (!state.tokensCursor) return null;
  const more = h('button', { type: 'button', class: 'btn btn-secondary', id: 'tokens-more' }, 'Show more tokens');
  const error = h('p', { class: 'field-error', role: 'alert', hidden: true });
  more.addEventListener('click', async () => {
    more.disabled = true;
    more.textContent = 'Loading…';
    try {
      await loadMoreTokens();
    } catch (err) {
      if (err instanceof SessionEnded) return;
      more.disabled = false;
      more.textContent = 'Show more tokens';
      error.textContent = `Could not load more tokens: ${stripTicks(err.message)}`;
      error.hidden = false;
      return;
    }
    await renderTokensPanel(panel);
    document.querySelector('#tokens-table tbody tr:last-child .token-name')?.focus();
  });
  return h('div', { class: 'table-foot' },
    h('p', { class: 'muted table-count', id: 'tokens-count' }, `Showing your ${state.tokens.length} newest tokens.`),
    more, error);
}

function tokensHeader(withButton) {
  return h('div', { class: 'section-head' },
    h('div', {},
      h('h2', {}, 'Personal access tokens'),
      h('p', { class: 'muted' }, 'Tokens authenticate calls to the ENSPACE API as you. Treat them like passwords.')),
    withButton ? h('button', { type: 'button', class: 'btn btn-primary', id: 'new-token', onClick: (e) => openCreateDialog(e.currentTarget, { onCreated }) }, icon('plus'), 'New token') : null);
}

function scopeChips(scopes) {
  return h('ul', { class: 'chips', 'aria-label': 'Scopes' }, scopes.map((s) => h('li', { class: `chip chip-${s}` }, s)));
}

function tokensTable(tokens) {
  const rows = tokens.map((t) => {
    const label = t.description;
    return h('tr', { 'data-token-id': t.id, class: `row-${t.status}` },
      h('th', { scope: 'row', 'data-label': 'Description' },
        h('span', { class: 'token-name', id: `token-${t.id}`, tabindex: '-1' }, isolated(label)),
        h('span', { class: 'token-id mono' }, t.id),
        tokenLinks(t)),
      h('td', { 'data-label': 'Scopes' }, scopeChips(t.scopes)),
      h('td', { 'data-label': 'Workspaces', class: 'cell-workspaces' }, t.workspaces.map(workspaceName).join(', ')),
      h('td', { 'data-label': 'Created', class: 'nowrap' }, timeEl(t.created_at)),
      h('td', { 'data-label': 'Expires', class: 'nowrap cell-expires' }, t.expires_at ? timeEl(t.expires_at) : h('span', { class: 'never' }, 'Never')),
      h('td', { 'data-label': 'Last used', class: 'nowrap cell-last-used' }, t.last_used_at ? relative(t.last_used_at) : h('span', { class: 'muted' }, 'Never used')),
      h('td', { 'data-label': 'Status', class: 'cell-status' },
        h('span', { class: `status status-${t.status}` }, STATUS_LABEL[t.status] || t.status),
        revokedWhy(t)),
      h('td', { class: 'cell-actions' },
        link(logsPath(t.id), 'Logs', { class: 'btn btn-ghost btn-small', 'aria-label': `Request logs of ${label}` }),
        link(insightsPath(t.id), 'Insights', { class: 'btn btn-ghost btn-small', id: `insights-${t.id}`, 'aria-label': `Insights of ${label}` }),
        link(timelinePath(t.id, false), 'Timeline', { class: 'btn btn-ghost btn-small', id: `timeline-${t.id}`, 'aria-label': `Timeline of ${label}` }),
        t.status === 'active' && !t.replaced_by
          ? h('button', {
            type: 'button', class: 'btn btn-ghost btn-small regenerate', id: `regenerate-${t.id}`,
            'aria-label': `Regenerate ${label}`,
            onClick: (e) => openRotateDialog(t, e.currentTarget, { onChanged: onRevoked }),
          }, 'Regenerate')
          : null,
        t.status === 'active'
          ? h('button', {
            type: 'button', class: 'btn btn-danger-ghost btn-small revoke', id: `revoke-${t.id}`,
            'aria-label': `Revoke ${label}`,
            onClick: (e) => openRevokeDialog(t, e.currentTarget, { onRevoked }),
          }, 'Revoke')
          : null));
  });
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table tokens-table', id: 'tokens-table' },
      h('caption', { class: 'visually-hidden' }, 'Your personal access tokens'),
      h('thead', {}, h('tr', {},
        ['Description', 'Scopes', 'Workspaces', 'Created', 'Expires', 'Last used', 'Status'].map((c) => h('th', { scope: 'col' }, c)),
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      h('tbody', {}, rows)));
}

// ---------------------------------------------------------------------------
// Regenerated tokens and revocations

/** Another token, by the end of its id (the row shows the whole id): a
 * button to its row when the list shows it, else plain text. */
function tokenRef(id) {
  const short = `…${id.slice(-6)}`;
  if (!state.tokens.some((t) => t.id === id)) return h('span', { class: 'mono', title: id }, short);
  return h('button', {
    type: 'button', class: 'link-button mono', 'data-token-ref': id,
    title: id, 'aria-label': `token ${id}`,
    onClick: () => {
      const target = document.getElementById(`token-${id}`);
      target?.scrollIntoView({ block: 'center' });
      target?.focus();
    },
  }, short);
}

/** "Replaced by … · works until …" and "Replaces …" under the description. */
function tokenLinks(t) {
  const lines = [];
  if (t.replaced_by) {
    const end = t.expires_at ? h('time', { datetime: t.expires_at }, dateTimeFmt.format(new Date(t.expires_at))) : null;
    lines.push(h('span', { class: 'token-link', 'data-link': 'replaced-by' },
      'Replaced by ', tokenRef(t.replaced_by),
      end && t.status === 'active' ? [' · works until ', end] : null,
      end && t.status === 'expired' ? [' · stopped working ', end] : null));
  }
  if (t.replaces) {
    lines.push(h('span', { class: 'token-link', 'data-link': 'replaces' }, 'Replaces ', tokenRef(t.replaces)));
  }
  // Its fences: the addresses it may be used from, and a start still ahead.
  const fences = fenceSummary(t);
  if (fences) lines.push(h('span', { class: 'token-fences', id: `fences-${t.id}` }, fences));
  // A machine's token that may renew its own secret.
  if (t.self_rotate) lines.push(h('span', { class: 'token-fences', id: `self-rotate-${t.id}` }, 'Rotates itself'));
  return lines;
}

const REVOKED_WHY = {
  user: 'by you',
  leaked: 'leaked',
  rotated: 'rotated',
  membership_removed: 'membership removed',
  admin: 'by an admin',
};

/** Why a revoked token was revoked; for a leak, where it was reported, as
 * plain text (anyone can report a leak, so the URL is never a link). */
function revokedWhy(t) {
  if (t.status !== 'revoked' || !t.revoked_reason) return null;
  return [
    h('span', { class: 'status-reason', 'data-reason': t.revoked_reason }, ` · ${REVOKED_WHY[t.revoked_reason] || t.revoked_reason}`),
    t.revoked_reason === 'leaked' && t.leak_url
      ? h('span', { class: 'leak-url' }, 'Reported at ', h('bdi', { class: 'mono leak-url-text', title: t.leak_url }, t.leak_url))
      : null,
  ];
}

// ---------------------------------------------------------------------------
// Tokens about to expire

const SOON_MS = 7 * 86400 * 1000;

/** Active tokens (not already replaced) that expire within 7 days, soonest first. */
function expiringSoon(tokens, now = Date.now()) {
  return tokens
    .filter((t) => t.status === 'active' && !t.replaced_by && t.expires_at)
    .filter((t) => {
      const at = new Date(t.expires_at).getTime();
      return at > now && at - now <= SOON_MS;
    })
    .sort((a, b) => new Date(a.expires_at) - new Date(b.expires_at));
}

// Dismissed for this browser session, until another token joins the list.
const dismissKey = () => `enspace:expiring-dismissed:${state.me.id}`;

function expiringBanner(tokens) {
  const soon = expiringSoon(tokens);
  if (!soon.length) return null;
  const signature = soon.map((t) => t.id).join(',');
  if (sessionStorage.getItem(dismissKey()) === signature) return null;
  const first = soon[0];
  const banner = h('section', { class: 'callout callout-warning banner', id: 'expiring-banner', 'aria-labelledby': 'expiring-title' },
    icon('warn'),
    h('div', { class: 'banner-text' },
      h('h3', { id: 'expiring-title' }, `${plural(soon.length, 'token expires', 'tokens expire')} within 7 days`),
      h('p', {},
        soon.length > 1 ? 'The soonest, ' : '',
        h('strong', {}, isolated(first.description)),
        soon.length > 1 ? ', expires ' : ' expires ',
        relative(first.expires_at), ' (', timeEl(first.expires_at, dateTimeFmt), '). ',
        'Regenerate it to get a new secret before it stops working.')),
    h('button', {
      type: 'button', class: 'btn-icon banner-close', id: 'expiring-dismiss', 'aria-label': 'Dismiss the expiry reminder',
      onClick: () => {
        sessionStorage.setItem(dismissKey(), signature);
        banner.remove();
        document.getElementById('new-token')?.focus();
      },
    }, icon('close')));
  return banner;
}

// ---------------------------------------------------------------------------

/** After a create: the list underneath shows the new token. */
function onCreated() {
  const panel = currentTokensPanel();
  if (panel) renderTokensPanel(panel, { reload: true });
  else loadTokens().catch(() => {});
}

/** After a revoke or a regenerate: the list underneath shows it before the
 * dialog closes. */
async function onRevoked() {
  const panel = currentTokensPanel();
  if (panel) await renderTokensPanel(panel, { reload: true });
}

export { renderTokensPanel, renderListPanel };
