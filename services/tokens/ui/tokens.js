// The Tokens screen (Settings › Dev › Tokens): the list of the user's
// tokens, newest first, paged, with the create and revoke dialogs.

import { SessionEnded, STATUS_LABEL, loadTokens, loadMoreTokens } from './api.js';
import { openCreateDialog, openRevokeDialog } from './dialogs.js';
import { h, icon, timeEl, relative, stripTicks, isolated, errorState } from './dom.js';
import { logsPath } from './logs.js';
import { insightsPath } from './insights.js';
import { link, parseRoute } from './router.js';
import { state, workspaceName } from './state.js';

function currentTokensPanel() {
  const panel = document.getElementById('dev-panel');
  return panel && parseRoute().sub === 'tokens' ? panel : null;
}

async function renderTokensPanel(panel, { reload = false } = {}) {
  if (reload || !state.tokens) {
    if (!state.tokens) {
      panel.replaceChildren(tokensHeader(false), h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading tokens…'));
      panel.setAttribute('aria-busy', 'true');
    }
    try {
      await loadTokens();
    } catch {
      return;
    }
    panel.removeAttribute('aria-busy');
    if (!panel.isConnected) return;
  }
  const active = document.activeElement;
  const keepFocus = active && panel.contains(active) && active.id ? active.id : null;
  if (state.tokensError) {
    panel.replaceChildren(tokensHeader(false), errorState('Could not load your tokens', state.tokensError, () => {
      state.tokens = null;
      renderTokensPanel(panel, { reload: true });
    }));
    return;
  }
  const tokens = state.tokens;
  if (!tokens.length) {
    panel.replaceChildren(tokensHeader(false), h('div', { class: 'empty', id: 'tokens-empty' },
      h('div', { class: 'empty-icon' }, icon('key')),
      h('h3', {}, 'No personal access tokens yet'),
      h('p', { class: 'muted' },
        'A personal access token lets a script, an integration or an app call the ENSPACE API as you, ',
        'limited to the scopes and workspaces you choose. Create one for each integration so that you can revoke it on its own.'),
      h('button', { type: 'button', class: 'btn btn-primary', id: 'create-first-token', onClick: (e) => openCreateDialog(e.currentTarget, { onCreated }) },
        icon('plus'), 'Create your first token')));
  } else {
    panel.replaceChildren(tokensHeader(true), tokensTable(tokens), tokensMore(panel));
  }
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
        h('span', { class: 'token-id mono' }, t.id)),
      h('td', { 'data-label': 'Scopes' }, scopeChips(t.scopes)),
      h('td', { 'data-label': 'Workspaces', class: 'cell-workspaces' }, t.workspaces.map(workspaceName).join(', ')),
      h('td', { 'data-label': 'Created', class: 'nowrap' }, timeEl(t.created_at)),
      h('td', { 'data-label': 'Expires', class: 'nowrap cell-expires' }, t.expires_at ? timeEl(t.expires_at) : h('span', { class: 'never' }, 'Never')),
      h('td', { 'data-label': 'Last used', class: 'nowrap cell-last-used' }, t.last_used_at ? relative(t.last_used_at) : h('span', { class: 'muted' }, 'Never used')),
      h('td', { 'data-label': 'Status' }, h('span', { class: `status status-${t.status}` }, STATUS_LABEL[t.status] || t.status)),
      h('td', { class: 'cell-actions' },
        link(logsPath(t.id), 'Logs', { class: 'btn btn-ghost btn-small', 'aria-label': `Request logs of ${label}` }),
        link(insightsPath(t.id), 'Insights', { class: 'btn btn-ghost btn-small', id: `insights-${t.id}`, 'aria-label': `Insights of ${label}` }),
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

/** After a create: the list underneath shows the new token. */
function onCreated() {
  const panel = currentTokensPanel();
  if (panel) renderTokensPanel(panel, { reload: true });
  else loadTokens().catch(() => {});
}

/** After a revoke: the list underneath shows it before the dialog closes. */
async function onRevoked() {
  const panel = currentTokensPanel();
  if (panel) await renderTokensPanel(panel, { reload: true });
}

export { renderTokensPanel };
