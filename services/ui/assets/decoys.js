// The Decoys screen (Settings › Dev › Decoys, contract §18): tokens that are
// alarms. A decoy has the format of any token and never grants anything;
// whoever uses it is answered as with an unknown token, and its owner gets
// a "Decoy used" notification. The list (newest first, revoked ones too),
// the create dialog (a description only) that shows the secret once, and
// the revoke confirmation. A decoy's secret lives only in its dialog's DOM
// and one local variable while the dialog is open, as a token's does.

import { api, SessionEnded, STATUS_LABEL } from './api.js';
import { openModal, dialogShell, copyText, descriptionError, openRevokeConfirm } from './dialogs.js';
import { h, icon, uid, timeEl, relative, dateTimeFmt, stripTicks, isolated, isolatedText } from './dom.js';
import { parseRoute } from './router.js';
import { state } from './state.js';
import { renderListPanel } from './tokens.js';

/** Active decoys one user may hold (the API answers 422 past it). */
const MAX_DECOYS = 20;
const DECOY_EXAMPLE = 'In the CI secrets of repo billing';

async function loadDecoys() {
  try {
    const body = await api('GET', '/v1/decoys');
    state.decoys = body.decoys;
    state.decoysError = null;
  } catch (err) {
    if (err instanceof SessionEnded) throw err;
    state.decoysError = err;
  }
}

function currentDecoysPanel() {
  const panel = document.getElementById('dev-panel');
  return panel && parseRoute().sub === 'decoys' ? panel : null;
}

function renderDecoysPanel(panel, { reload = false } = {}) {
  return renderListPanel(panel, {
    reload,
    key: 'decoys',
    load: loadDecoys,
    header: decoysHeader,
    loading: 'Loading decoys…',
    errorTitle: 'Could not load your decoys',
    empty: () => h('div', { class: 'empty', id: 'decoys-empty' },
      h('div', { class: 'empty-icon' }, icon('bell')),
      h('h3', {}, 'No decoys yet'),
      h('p', { class: 'muted' },
        'A decoy looks like any personal access token but never grants access. ',
        'Plant one where a thief would look; if anyone uses it, you are told where from.'),
      h('button', { type: 'button', class: 'btn btn-primary', id: 'create-first-decoy', onClick: (e) => openCreateDecoyDialog(e.currentTarget) },
        icon('plus'), 'Create your first decoy')),
    list: (decoys) => [decoysHeader(true), decoysTable(decoys), decoysCount(decoys)],
  });
}

function decoysHeader(withButton) {
  return h('div', { class: 'section-head' },
    h('div', {},
      h('h2', {}, 'Decoys'),
      h('p', { class: 'muted' },
        'Tokens that are alarms: a decoy never grants access, and any use of it tells you (at most once per address per hour). ',
        'Decoys are not listed with your tokens.')),
    withButton ? h('button', { type: 'button', class: 'btn btn-primary', id: 'new-decoy', onClick: (e) => openCreateDecoyDialog(e.currentTarget) }, icon('plus'), 'Create decoy') : null);
}

function decoysCount(decoys) {
  const n = decoys.filter((d) => d.status === 'active').length;
  return h('div', { class: 'table-foot' },
    h('p', { class: 'muted table-count', id: 'decoys-count' },
      `${n} of ${MAX_DECOYS} active decoys.`, n >= MAX_DECOYS ? ' Revoke one to create another.' : ''));
}

function decoysTable(decoys) {
  const rows = decoys.map((d) => h('tr', { 'data-decoy-id': d.id, class: `row-${d.status}` },
    h('th', { scope: 'row', 'data-label': 'Description' },
      h('span', { class: 'token-name', id: `decoy-${d.id}`, tabindex: '-1' }, isolated(d.description)),
      h('span', { class: 'token-id mono' }, d.id)),
    h('td', { 'data-label': 'Created', class: 'nowrap' }, timeEl(d.created_at)),
    // The last time someone tripped it: each use is also a notification.
    h('td', { 'data-label': 'Last used', class: 'nowrap cell-last-used' }, d.last_used_at
      ? h('span', { class: 'tripped' }, icon('warn'), relative(d.last_used_at))
      : h('span', { class: 'muted' }, 'Never used')),
    h('td', { 'data-label': 'Status', class: 'cell-status' },
      h('span', { class: `status status-${d.status}` }, STATUS_LABEL[d.status] || d.status),
      d.status === 'revoked' && d.revoked_at
        ? h('span', { class: 'status-reason' }, ' · ', timeEl(d.revoked_at, dateTimeFmt))
        : null),
    h('td', { class: 'cell-actions' },
      d.status === 'active'
        ? h('button', {
          type: 'button', class: 'btn btn-danger-ghost btn-small revoke', id: `revoke-decoy-${d.id}`,
          'aria-label': `Revoke the decoy ${d.description}`,
          onClick: (e) => openRevokeDecoyDialog(d, e.currentTarget),
        }, 'Revoke')
        : null)));
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table tokens-table decoys-table', id: 'decoys-table' },
      h('caption', { class: 'visually-hidden' }, 'Your decoys'),
      h('thead', {}, h('tr', {},
        ['Description', 'Created', 'Last used', 'Status'].map((c) => h('th', { scope: 'col' }, c)),
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      h('tbody', {}, rows)));
}

/** What a decoy is, said where one is made and where its secret shows. */
function explainer(id) {
  return h('ul', { class: 'decoy-explainer', id },
    h('li', {}, h('strong', {}, 'It never grants access. '), 'Every call with it is refused exactly as a call with an unknown token is, so whoever holds it cannot tell.'),
    h('li', {}, h('strong', {}, 'Any use tells you. '), 'You get a “Decoy used” notification naming the address, user agent and call, at most once per address per hour.'),
    h('li', {}, h('strong', {}, 'Plant it where a thief would look: '), 'a CI secret, an .env file, a configuration repository, a password manager entry.'));
}

// ---------------------------------------------------------------------------
// Create, and the secret once

/** After a create or a revoke: the list underneath shows it. */
async function refreshList() {
  const panel = currentDecoysPanel();
  if (panel) await renderDecoysPanel(panel, { reload: true });
  else await loadDecoys().catch(() => {});
}

function openCreateDecoyDialog(trigger) {
  const titleId = uid('decoy-title');
  const dialog = h('dialog', { class: 'modal', id: 'decoy-dialog', 'aria-labelledby': titleId });
  let close = null;
  const returnFocus = () => (trigger && trigger.isConnected ? trigger : document.getElementById('new-decoy') || document.querySelector('main h1'));

  const description = h('input', {
    id: 'decoy-description', name: 'description', type: 'text', autocomplete: 'off', spellcheck: 'false',
    placeholder: `e.g. ${DECOY_EXAMPLE}`, maxlength: '200',
    'aria-describedby': 'decoy-description-hint decoy-description-error',
  });
  const counter = h('span', { class: 'counter', 'aria-hidden': 'true' }, '0 / 100');
  const fieldError = h('p', { class: 'field-error', id: 'decoy-description-error', hidden: true });
  const formError = h('div', { class: 'callout callout-error', id: 'decoy-create-error', role: 'alert', hidden: true });
  const showFieldError = (message, code) => {
    fieldError.replaceChildren(...(message ? [icon('error'), h('span', {}, message)] : []));
    fieldError.hidden = !message;
    if (message) {
      fieldError.dataset.code = code;
      description.setAttribute('aria-invalid', 'true');
    } else {
      delete fieldError.dataset.code;
      description.removeAttribute('aria-invalid');
    }
  };
  const updateCounter = () => {
    const n = [...description.value.trim()].length;
    counter.textContent = `${n} / 100`;
    counter.classList.toggle('over', n > 100);
  };
  description.addEventListener('input', () => {
    updateCounter();
    // Once flagged, or over the limit as typed, checked as it changes.
    if (!fieldError.hidden || [...description.value.trim()].length > 100) showFieldError(descriptionError(description.value, DECOY_EXAMPLE), 'invalid_description');
  });

  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'decoy-submit', form: 'decoy-form' }, 'Create decoy');
  const cancel = h('button', { type: 'button', class: 'btn btn-secondary', onClick: () => close() }, 'Cancel');
  const form = h('form', { id: 'decoy-form', novalidate: true, class: 'form' },
    explainer('decoy-explainer'),
    h('div', { class: 'field' },
      h('div', { class: 'label-row' }, h('label', { for: 'decoy-description' }, 'Description'), counter),
      description,
      h('p', { class: 'hint', id: 'decoy-description-hint' }, 'For you only: where you will plant it, so that an alarm says which place was found.'),
      fieldError),
    formError);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.hidden = true;
    const problem = descriptionError(description.value, DECOY_EXAMPLE);
    showFieldError(problem, 'invalid_description');
    if (problem) {
      description.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Creating…';
    let created;
    try {
      created = await api('POST', '/v1/decoys', { description: description.value.trim() });
    } catch (err) {
      if (err instanceof SessionEnded) return;
      submit.disabled = false;
      submit.textContent = 'Create decoy';
      if (err.status === 422 && (err.code === 'invalid_description' || err.field === 'description')) {
        showFieldError(stripTicks(err.detail || err.message), err.code || 'invalid_description');
        description.focus();
      } else {
        formError.replaceChildren(icon('error'), h('span', {}, h('strong', {}, 'The decoy was not created. '), stripTicks(err.message)));
        formError.hidden = false;
        formError.dataset.code = err.code || '';
        submit.focus();
      }
      return;
    }
    showDecoySecret(dialog, titleId, created, { close, forget: (hook) => onCloseHooks.push(hook) });
    refreshList();
  });

  const shell = dialogShell(titleId, 'New decoy', form, [cancel, submit], 'Cancel');
  shell.closeButton.addEventListener('click', () => close());
  dialog.append(...shell.nodes);
  const onCloseHooks = [];
  close = openModal(dialog, {
    initialFocus: description,
    returnFocus,
    onClose: () => {
      for (const hook of onCloseHooks) hook();
      dialog.replaceChildren();
    },
  });
}

function showDecoySecret(dialog, titleId, created, { close, forget }) {
  let secret = created.secret;
  const decoy = created.decoy;
  const code = h('code', { class: 'secret-value', id: 'decoy-secret' }, secret);
  const copyStatus = h('p', { class: 'copy-status', id: 'decoy-copy-status', role: 'status' });
  const copy = h('button', { type: 'button', class: 'btn btn-secondary', id: 'copy-decoy-secret', 'aria-describedby': 'decoy-copy-status' }, icon('copy'), h('span', {}, 'Copy'));
  copy.addEventListener('click', async () => {
    const ok = await copyText(secret, code);
    copy.lastChild.textContent = ok ? 'Copied' : 'Copy';
    copy.classList.toggle('copied', ok);
    copyStatus.textContent = ok
      ? 'Copied to the clipboard.'
      : 'Could not copy automatically: the decoy is selected, press Ctrl+C (or ⌘C) to copy it.';
  });
  const done = h('button', { type: 'button', class: 'btn btn-primary', id: 'decoy-secret-done', onClick: () => close() }, 'Done');
  const body = h('div', { class: 'secret-view' },
    h('div', { class: 'callout callout-warning', id: 'decoy-secret-warning' }, icon('warn'),
      h('span', {}, h('strong', {}, 'Copy the decoy now. It will not be shown again. '),
        'Plant it as if it were a real secret.')),
    h('div', { class: 'secret-box' },
      h('label', { class: 'visually-hidden', for: 'decoy-secret' }, 'Your new decoy'),
      code, copy),
    copyStatus,
    h('dl', { class: 'facts facts-compact', id: 'decoy-created-summary' },
      h('dt', {}, 'Description'), h('dd', {}, isolated(decoy.description)),
      h('dt', {}, 'Grants'), h('dd', {}, 'Nothing: no scopes, no workspaces, no expiry')),
    explainer('decoy-secret-explainer'));
  const shell = dialogShell(titleId, 'Your new decoy', body, [done], 'Close');
  shell.closeButton.addEventListener('click', () => close());
  dialog.replaceChildren(...shell.nodes);
  dialog.classList.add('modal-secret');
  // Forget the secret with the dialog: nothing else ever held it.
  forget(() => {
    code.textContent = '';
    secret = null;
  });
  copy.focus();
}

// ---------------------------------------------------------------------------
// Revoke

function openRevokeDecoyDialog(decoy, trigger) {
  openRevokeConfirm({
    prefix: 'decoy-revoke',
    title: 'Revoke this decoy?',
    message: [
      h('strong', {}, isolated(decoy.description)), ' will stop being an alarm: its use will be answered as any unknown token’s, ',
      'and you will no longer be told of it. Remove it from where you planted it if you can. This cannot be undone.',
    ],
    confirmLabel: 'Revoke decoy',
    path: `/v1/decoys/${encodeURIComponent(decoy.id)}`,
    returnTo: `decoy-${decoy.id}`,
    trigger,
    onRevoked: refreshList,
    toastText: `Revoked the decoy “${isolatedText(decoy.description)}”.`,
  });
}

export { renderDecoysPanel, loadDecoys };
