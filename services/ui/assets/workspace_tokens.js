// The Workspace tokens screen (Settings › Dev › Workspace tokens), shown
// only to workspace admins (`admin_of` on GET /v1/me): for each workspace
// they administer, its token policy (a form) and every token that can reach
// it, whoever owns it, with a revoke that asks first. The server checks
// every call (403 `not_workspace_admin`); hiding the tab is only courtesy.

import { api, SessionEnded, STATUS_LABEL } from './api.js';
import { openRevokeConfirm } from './dialogs.js';
import { h, append, icon, timeEl, relative, stripTicks, isolated, isolatedText, toast, errorState } from './dom.js';
import { LIFETIME_LABEL } from './policy.js';
import { navigate } from './router.js';
import { state, workspaceName } from './state.js';

const REVOKE_REASON = {
  user: 'by its owner', leaked: 'as leaked', rotated: 'when rotated',
  membership_removed: 'when its owner left a workspace', admin: 'by a workspace admin',
};

// The workspace shown; survives switching tabs and lives in the URL.
let shownWorkspace = null;

function adminOf() {
  return (state.me && state.me.admin_of) || [];
}

function isWorkspaceAdmin() {
  return adminOf().length > 0;
}

function workspaceTokensPath(ws) {
  const id = ws || shownWorkspace;
  return `/settings/dev/workspace-tokens${id ? `?workspace=${encodeURIComponent(id)}` : ''}`;
}

function header() {
  return h('div', { class: 'section-head' },
    h('div', {},
      h('h2', {}, 'Workspace tokens'),
      h('p', { class: 'muted' },
        'As an admin of a workspace you see every token that can reach it, whoever owns it, can revoke any of them, ',
        'and set the policy new tokens for it must follow.')));
}

function loading(text) {
  return h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

function renderWorkspaceTokensPanel(panel, query) {
  const head = header();
  const admin = adminOf();
  if (!admin.length) {
    panel.replaceChildren(head, h('div', { class: 'empty', id: 'workspace-tokens-not-admin' },
      h('div', { class: 'empty-icon' }, icon('key')),
      h('h3', {}, 'Only for workspace admins'),
      h('p', { class: 'muted' }, 'You do not administer any workspace, so there are no workspace tokens to show.')));
    return;
  }
  const asked = query && query.get('workspace');
  if (asked && admin.includes(asked)) shownWorkspace = asked;
  if (!admin.includes(shownWorkspace)) shownWorkspace = admin[0];
  const ws = shownWorkspace;

  const picker = admin.length > 1
    ? h('div', { class: 'filters' }, h('div', { class: 'field' },
      h('label', { for: 'admin-workspace' }, 'Workspace'),
      h('select', {
        id: 'admin-workspace',
        onChange: (e) => {
          shownWorkspace = e.currentTarget.value;
          navigate(workspaceTokensPath(), { replace: true, focus: null });
          document.getElementById('admin-workspace')?.focus();
        },
      }, admin.map((w) => h('option', { value: w, selected: w === ws }, isolatedText(workspaceName(w)))))))
    : null;
  const policyBox = h('div', { id: 'policy-box' }, loading('Loading the policy…'));
  const tableBox = h('div', { id: 'workspace-tokens-box', 'aria-live': 'polite' }, loading('Loading tokens…'));
  panel.replaceChildren();
  append(panel, head, picker,
    h('h3', { class: 'workspace-title', id: 'workspace-title', 'data-workspace': ws }, isolated(workspaceName(ws)), ' ', h('span', { class: 'muted mono' }, ws)),
    policyBox, tableBox);
  loadWorkspace(ws, policyBox, tableBox, { withPolicy: true });
}

/** Fetches the workspace's tokens and policy; fills the table (and the
 * policy form the first time). */
async function loadWorkspace(ws, policyBox, tableBox, { withPolicy = false } = {}) {
  let body;
  try {
    body = await api('GET', `/v1/workspaces/${encodeURIComponent(ws)}/tokens`);
  } catch (err) {
    if (err instanceof SessionEnded) return;
    const retry = () => loadWorkspace(ws, policyBox, tableBox, { withPolicy });
    tableBox.replaceChildren(errorState(err.code === 'not_workspace_admin'
      ? 'You are no longer an admin of this workspace'
      : 'Could not load the workspace’s tokens', err, err.code === 'not_workspace_admin' ? null : retry));
    if (withPolicy) policyBox.replaceChildren();
    return;
  }
  if (!tableBox.isConnected) return;
  if (withPolicy) policyBox.replaceChildren(policyForm(ws, body.policy, () => loadWorkspace(ws, policyBox, tableBox)));
  tableBox.replaceChildren();
  append(tableBox, tokensTable(ws, body.tokens, body.policy, () => loadWorkspace(ws, policyBox, tableBox)));
}

// ---------------------------------------------------------------------------
// The policy form

function policyText(policy) {
  if (policy.max_lifetime) return `New tokens may live at most ${LIFETIME_LABEL[policy.max_lifetime] || policy.max_lifetime}.`;
  if (policy.require_expiration) return 'New tokens must expire; any lifetime.';
  return 'No limit: new tokens may have any expiration, or none.';
}

function policyForm(ws, policy, onSaved) {
  const maxLifetime = h('select', { id: 'policy-max-lifetime', name: 'max_lifetime', 'aria-describedby': 'policy-max-lifetime-error' },
    h('option', { value: '', selected: !policy.max_lifetime }, 'No limit'),
    Object.entries(LIFETIME_LABEL).map(([id, label]) => h('option', { value: id, selected: id === policy.max_lifetime }, label)));
  const requireExpiration = h('input', { type: 'checkbox', id: 'policy-require-expiration', name: 'require_expiration', 'aria-describedby': 'policy-require-hint' });
  let requireChoice = policy.require_expiration;
  const maxError = h('p', { class: 'field-error', id: 'policy-max-lifetime-error', hidden: true });
  const formError = h('div', { class: 'callout callout-error', id: 'policy-error', role: 'alert', hidden: true });
  const current = h('p', { class: 'hint', id: 'policy-current' }, policyText(policy));
  const save = h('button', { type: 'submit', class: 'btn btn-primary', id: 'policy-save' }, 'Save policy');

  // A maximum lifetime implies that tokens expire (as on the server).
  const syncRequire = () => {
    const limited = Boolean(maxLifetime.value);
    requireExpiration.checked = limited || requireChoice;
    requireExpiration.disabled = limited;
  };
  syncRequire();
  maxLifetime.addEventListener('change', syncRequire);
  requireExpiration.addEventListener('change', () => { requireChoice = requireExpiration.checked; });

  const setError = (message) => {
    maxError.replaceChildren(...(message ? [icon('error'), h('span', {}, message)] : []));
    maxError.hidden = !message;
    if (message) maxLifetime.setAttribute('aria-invalid', 'true'); else maxLifetime.removeAttribute('aria-invalid');
  };

  const form = h('form', { class: 'card policy-form', id: 'policy-form', novalidate: true, 'aria-labelledby': 'policy-title' },
    h('h3', { id: 'policy-title' }, 'Token policy'),
    h('p', { class: 'muted' }, 'Binds tokens created or rotated from now on for this workspace. Tokens already over it keep working and are marked non-compliant below.'),
    current,
    h('div', { class: 'policy-fields' },
      h('div', { class: 'field' },
        h('label', { for: 'policy-max-lifetime' }, 'Maximum lifetime'),
        maxLifetime,
        maxError),
      h('div', { class: 'field' },
        h('label', { class: 'choice', for: 'policy-require-expiration' },
          requireExpiration,
          h('span', { class: 'choice-text' },
            h('span', { class: 'choice-title' }, 'Tokens must expire'),
            h('span', { class: 'choice-meaning', id: 'policy-require-hint' }, 'Forbids “No expiration”. A maximum lifetime always implies it.'))))),
    formError,
    h('div', { class: 'form-actions' }, save));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    setError('');
    formError.hidden = true;
    save.disabled = true;
    save.textContent = 'Saving…';
    let saved;
    try {
      saved = await api('PUT', `/v1/workspaces/${encodeURIComponent(ws)}/policy`, {
        max_lifetime: maxLifetime.value || null,
        require_expiration: requireExpiration.checked,
      });
    } catch (err) {
      if (err instanceof SessionEnded) return;
      save.disabled = false;
      save.textContent = 'Save policy';
      if (err.status === 422 && err.field === 'max_lifetime') {
        setError(stripTicks(err.detail || err.message));
        maxLifetime.focus();
      } else {
        formError.replaceChildren(icon('error'), h('span', {}, h('strong', {}, 'The policy was not saved. '), stripTicks(err.message)));
        formError.dataset.code = err.code || '';
        formError.hidden = false;
        save.focus();
      }
      return;
    }
    save.disabled = false;
    save.textContent = 'Save policy';
    current.textContent = policyText(saved);
    toast(`Saved the token policy of ${isolatedText(workspaceName(ws))}.`);
    await onSaved();
  });
  return form;
}

// ---------------------------------------------------------------------------
// The tokens table

function tokensTable(ws, tokens, policy, reload) {
  if (!tokens.length) {
    return h('div', { class: 'empty', id: 'workspace-tokens-empty' },
      h('div', { class: 'empty-icon' }, icon('key')),
      h('h3', {}, 'No token can reach this workspace'),
      h('p', { class: 'muted' }, 'Tokens its members create for it will be listed here.'));
  }
  const nonCompliant = tokens.filter((t) => !t.compliant && t.status === 'active').length;
  const rows = tokens.map((t) => {
    const owner = t.owner_name || t.owner;
    return h('tr', { 'data-token-id': t.id, class: `row-${t.status}${t.compliant ? '' : ' row-noncompliant'}` },
      h('th', { scope: 'row', 'data-label': 'Description' },
        h('span', { class: 'token-name', id: `ws-token-${t.id}`, tabindex: '-1' }, isolated(t.description)),
        h('span', { class: 'token-id mono' }, t.id)),
      h('td', { 'data-label': 'Owner', class: 'cell-owner' },
        h('span', { class: 'owner-name' }, isolated(owner)), ' ', h('span', { class: 'muted mono' }, t.owner)),
      h('td', { 'data-label': 'Scopes' }, h('ul', { class: 'chips', 'aria-label': 'Scopes' }, t.scopes.map((s) => h('li', { class: `chip chip-${s}` }, s)))),
      h('td', { 'data-label': 'Workspaces', class: 'cell-workspaces' }, t.workspaces.map((w, i) => [i ? ', ' : '', isolated(workspaceName(w))])),
      h('td', { 'data-label': 'Expires', class: 'cell-expires' },
        h('span', { class: 'nowrap' }, t.expires_at ? timeEl(t.expires_at) : h('span', { class: 'never' }, 'Never')),
        t.compliant ? null : [' ', h('span', {
          class: 'badge badge-warning noncompliant', title: `Over the policy: ${policyText(policy)}`,
        }, 'Non-compliant', h('span', { class: 'visually-hidden' }, t.expiration === 'never' ? ': never expires, which the policy forbids' : ': lives longer than the policy allows'))]),
      h('td', { 'data-label': 'Last used', class: 'nowrap cell-last-used' }, t.last_used_at ? relative(t.last_used_at) : h('span', { class: 'muted' }, 'Never used')),
      h('td', { 'data-label': 'Status', class: 'cell-status' },
        h('span', { class: `status status-${t.status}` }, STATUS_LABEL[t.status] || t.status),
        t.status === 'revoked' && t.revoked_reason ? h('span', { class: 'hint revoked-reason', 'data-reason': t.revoked_reason }, ` ${REVOKE_REASON[t.revoked_reason] || t.revoked_reason}`) : null),
      h('td', { class: 'cell-actions' },
        t.status === 'active'
          ? h('button', {
            type: 'button', class: 'btn btn-danger-ghost btn-small', id: `admin-revoke-${t.id}`,
            'aria-label': `Revoke ${isolatedText(t.description)} of ${isolatedText(owner)}`,
            onClick: (e) => openAdminRevokeDialog(ws, t, e.currentTarget, reload),
          }, 'Revoke')
          : null));
  });
  return [
    nonCompliant
      ? h('div', { class: 'callout callout-warning', id: 'workspace-noncompliant' }, icon('warn'),
        h('span', {}, `${nonCompliant === 1 ? 'One active token expires' : `${nonCompliant} active tokens expire`} later than the policy allows. `,
          'The policy binds new tokens only: revoke these, or ask their owners to replace them.'))
      : null,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'table tokens-table', id: 'workspace-tokens-table' },
        h('caption', { class: 'visually-hidden' }, 'Every token that can reach the workspace'),
        h('thead', {}, h('tr', {},
          ['Description', 'Owner', 'Scopes', 'Workspaces', 'Expires', 'Last used', 'Status'].map((c) => h('th', { scope: 'col' }, c)),
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
        h('tbody', {}, rows))),
  ];
}

// ---------------------------------------------------------------------------
// Revoke, as an admin

function openAdminRevokeDialog(ws, token, trigger, reload) {
  const owner = token.owner_name || token.owner;
  openRevokeConfirm({
    prefix: 'admin-revoke',
    title: `Revoke ${isolatedText(owner)}’s token?`,
    message: [
      h('strong', {}, isolated(token.description)), ', a token of ', isolated(owner), ', will stop working at once on every ENSPACE API node, ',
      'in every workspace it can reach. Its owner is told that a workspace admin revoked it. This cannot be undone.',
    ],
    confirmLabel: 'Revoke token',
    path: `/v1/workspaces/${encodeURIComponent(ws)}/tokens/${encodeURIComponent(token.id)}`,
    returnTo: `ws-token-${token.id}`,
    trigger,
    onRevoked: reload,
    toastText: `Revoked “${isolatedText(token.description)}” of ${isolatedText(owner)}.`,
  });
}

export { isWorkspaceAdmin, workspaceTokensPath, renderWorkspaceTokensPanel };
