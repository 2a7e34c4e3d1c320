// Modal dialogs, the one-time view of a new secret, and the two dialogs the
// tokens screen opens here: create and revoke (regenerate is rotate.js). A
// new token's secret lives only in its dialog's DOM and one local variable
// while the dialog is open: never in storage, the URL or the history.

import { api, SessionEnded, loadWorkspaces } from './api.js';
import { h, icon, uid, focusables, dateFmt, stripTicks, isolated, isolatedText, toast } from './dom.js';
import { bindExpirationToPolicies } from './policy.js';
import { fenceBody, fenceFields, fenceSummary, validateFences, MAX_CIDRS } from './fences.js';
import { workspaceName } from './state.js';

// ---------------------------------------------------------------------------
// Modal dialogs: native <dialog> (inert background, Escape), focus moved in,
// trapped, and given back to where it came from.

const openModals = new Set();

function openModal(dialog, { initialFocus, returnFocus, onClose }) {
  document.body.append(dialog);
  dialog.showModal();
  const close = () => {
    if (!openModals.has(close)) return;
    openModals.delete(close);
    if (dialog.open) dialog.close();
    dialog.remove();
    if (onClose) onClose();
    const target = typeof returnFocus === 'function' ? returnFocus() : returnFocus;
    if (target && target.isConnected) target.focus();
  };
  openModals.add(close);
  dialog.addEventListener('cancel', (e) => { e.preventDefault(); close(); });
  dialog.addEventListener('keydown', (e) => {
    if (e.key !== 'Tab') return;
    const items = focusables(dialog);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
      e.preventDefault();
      first.focus();
    }
  });
  (initialFocus || focusables(dialog)[0])?.focus();
  return close;
}

function closeAllModals() {
  for (const close of [...openModals]) close();
}

function dialogShell(titleId, title, body, footer, closeLabel = 'Close') {
  const closeButton = h('button', { type: 'button', class: 'btn-icon dialog-close', 'aria-label': closeLabel }, icon('close'));
  return {
    closeButton,
    nodes: [
      h('header', { class: 'dialog-head' }, h('h2', { id: titleId }, title), closeButton),
      h('div', { class: 'dialog-body' }, body),
      h('footer', { class: 'dialog-foot' }, footer),
    ],
  };
}

// ---------------------------------------------------------------------------
// What a token may be given

const SCOPES = [
  { id: 'read', label: 'Read', meaning: 'List, search and view records' },
  { id: 'write', label: 'Write', meaning: 'Create and update records' },
  { id: 'delete', label: 'Delete', meaning: 'Delete records' },
];

const EXPIRATIONS = [
  { id: '1m', label: '1 month', months: 1 },
  { id: '2m', label: '2 months', months: 2 },
  { id: '3m', label: '3 months', months: 3 },
  { id: '6m', label: '6 months', months: 6 },
  { id: '1y', label: '1 year', months: 12 },
  { id: '2y', label: '2 years', months: 24 },
  { id: 'never', label: 'No expiration', months: null },
];

// ---------------------------------------------------------------------------
// The create dialog

// Control (Cc), format (Cf: bidirectional overrides, zero-width spaces, the
// byte-order mark) and line and paragraph separators (Zl, Zp), as the API.
const CONTROL_CHARS = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

function addMonths(date, months) {
  const y = date.getFullYear();
  const m = date.getMonth() + months;
  const lastDay = new Date(y, m + 1, 0).getDate();
  return new Date(y, m, Math.min(date.getDate(), lastDay), date.getHours(), date.getMinutes());
}

/** When a token of `expiration` made now would expire (null: never). */
function expiryOf(expiration) {
  const e = EXPIRATIONS.find((x) => x.id === expiration);
  return e && e.months !== null ? addMonths(new Date(), e.months) : null;
}

/** What is wrong with a description (a token's or a decoy's), as the API
 * judges it (`invalid_description`), or null. */
function descriptionError(value, example = 'ERP Integration') {
  const description = value.trim();
  const chars = [...description].length;
  if (chars === 0) return `Enter a description, for example “${example}”.`;
  if (chars > 100) return `Use at most 100 characters (this one has ${chars}).`;
  if (CONTROL_CHARS.test(description)) return 'Remove line breaks, tabs and other control or invisible formatting characters.';
  return null;
}

/** The API's rules for a new token, with the codes it answers 422 with. */
function validateToken(values, workspaces) {
  const errors = validateFences({ cidrs: values.cidrs, notBefore: values.notBefore, expiresAt: expiryOf(values.expiration) });
  const description = descriptionError(values.description);
  if (description) errors.description = { code: 'invalid_description', message: description };
  if (!EXPIRATIONS.some((e) => e.id === values.expiration)) errors.expiration = { code: 'invalid_expiration', message: 'Choose when the token expires.' };
  if (!values.scopes.length) errors.scopes = { code: 'invalid_scopes', message: 'Choose at least one scope.' };
  else if (values.scopes.some((s) => !SCOPES.some((x) => x.id === s))) errors.scopes = { code: 'invalid_scopes', message: 'Only Read, Write and Delete are scopes.' };
  if (!values.workspaces.length) errors.workspaces = { code: 'invalid_workspaces', message: 'Choose at least one workspace.' };
  else if (values.workspaces.some((w) => !workspaces.some((x) => x.id === w))) errors.workspaces = { code: 'workspace_not_allowed', message: 'You can only grant access to workspaces you belong to.' };
  return errors;
}

const FIELD_OF_CODE = {
  invalid_description: 'description',
  invalid_expiration: 'expiration',
  invalid_scopes: 'scopes',
  invalid_workspaces: 'workspaces',
  workspace_not_allowed: 'workspaces',
  invalid_allowed_cidrs: 'allowed_cidrs',
  invalid_not_before: 'not_before',
};

/** The fields in the order they are shown (the first one wrong takes focus). */
const FIELDS = ['description', 'expiration', 'scopes', 'workspaces', 'allowed_cidrs', 'not_before'];

/** The create dialog; `onCreated()` refreshes whatever lists the tokens;
 * `prefill` ({description, scopes, workspaces, allowed_cidrs?}) fills it
 * in beforehand. */
async function openCreateDialog(trigger, { onCreated, prefill = null }) {
  const titleId = uid('create-title');
  const dialog = h('dialog', { class: 'modal', id: 'create-dialog', 'aria-labelledby': titleId });
  let close = null;
  const returnFocus = () => (trigger && trigger.isConnected ? trigger : document.getElementById('new-token') || document.querySelector('main h1'));

  // Workspaces come from GET /v1/workspaces, fresh for every dialog.
  let workspaces;
  try {
    workspaces = await loadWorkspaces();
  } catch (err) {
    if (err instanceof SessionEnded) return;
    toast(`Could not load your workspaces: ${stripTicks(err.message)}`, 'error');
    return;
  }

  // --- fields
  const description = h('input', {
    id: 'token-description', name: 'description', type: 'text', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'e.g. ERP Integration, Mobile App', maxlength: '200',
    'aria-describedby': 'token-description-hint token-description-error',
  });
  const counter = h('span', { class: 'counter', 'aria-hidden': 'true' }, '0 / 100');
  const expiration = h('select', {
    id: 'token-expiration', name: 'expiration',
    'aria-describedby': 'token-expiration-hint token-expiration-policy token-expiration-error',
  }, EXPIRATIONS.map((e) => h('option', { value: e.id, selected: e.id === '3m' }, e.label)));
  const expirationHint = h('p', { class: 'hint', id: 'token-expiration-hint' });
  const neverWarning = h('div', { class: 'callout callout-warning', id: 'no-expiration-warning', hidden: true },
    icon('warn'),
    h('span', {}, h('strong', {}, 'Tokens without an expiration date are a security risk. '),
      'If one leaks, it works until someone notices and revokes it. Prefer an expiration and create a new token when it runs out.'));
  const scopeBoxes = SCOPES.map((s) => h('input', { type: 'checkbox', name: 'scopes', value: s.id, id: `token-scope-${s.id}`, 'aria-describedby': `token-scope-${s.id}-meaning`, checked: prefill?.scopes.includes(s.id) }));
  const workspaceBoxes = workspaces.map((w) => h('input', { type: 'checkbox', name: 'workspaces', value: w.id, id: `token-workspace-${w.id}`, checked: prefill ? prefill.workspaces.includes(w.id) : workspaces.length === 1 }));
  if (prefill) description.value = prefill.description;
  const fences = fenceFields(prefill);
  // Sent only when checked: a token that may rotate itself (contract §18).
  const selfRotate = h('input', { type: 'checkbox', name: 'self_rotate', id: 'token-self_rotate', 'aria-describedby': 'token-self_rotate-hint', checked: Boolean(prefill?.self_rotate) });
  const errorEls = {};
  const fieldError = (name) => (errorEls[name] = h('p', { class: 'field-error', id: `token-${name}-error`, hidden: true }));
  const formError = h('div', { class: 'callout callout-error', id: 'create-error', role: 'alert', hidden: true });

  const updateExpiration = () => {
    const e = EXPIRATIONS.find((x) => x.id === expiration.value);
    neverWarning.hidden = !e || e.months !== null;
    expirationHint.textContent = e && e.months !== null
      ? `The token will expire on ${dateFmt.format(addMonths(new Date(), e.months))}.`
      : 'The token will work until you revoke it.';
  };
  // Only the expirations the checked workspaces' policies allow (policy.js).
  const policyNote = h('p', { class: 'hint policy-note', id: 'token-expiration-policy', hidden: true });
  const syncPolicies = bindExpirationToPolicies({
    select: expiration, note: policyNote, options: EXPIRATIONS, boxes: workspaceBoxes,
    policies: workspaces, nameOf: workspaceName, onChange: updateExpiration,
  });
  const updateCounter = () => {
    const n = [...description.value.trim()].length;
    counter.textContent = `${n} / 100`;
    counter.classList.toggle('over', n > 100);
  };
  updateCounter();

  const values = () => ({
    description: description.value,
    expiration: expiration.value,
    scopes: scopeBoxes.filter((b) => b.checked).map((b) => b.value),
    workspaces: workspaceBoxes.filter((b) => b.checked).map((b) => b.value),
    cidrs: fences.cidrs.value,
    notBefore: fences.notBefore.value,
  });

  const focusTarget = { description, expiration, scopes: scopeBoxes[0], workspaces: workspaceBoxes[0], allowed_cidrs: fences.cidrs, not_before: fences.notBefore };
  const invalidTargets = { description: [description], expiration: [expiration], scopes: scopeBoxes, workspaces: workspaceBoxes, allowed_cidrs: [fences.cidrs], not_before: [fences.notBefore] };
  let shown = {};
  const showErrors = (errors) => {
    shown = errors;
    for (const name of FIELDS) {
      const err = errors[name];
      errorEls[name].replaceChildren(...(err ? [icon('error'), h('span', {}, err.message)] : []));
      errorEls[name].hidden = !err;
      if (err) errorEls[name].dataset.code = err.code; else delete errorEls[name].dataset.code;
      for (const el of invalidTargets[name]) {
        if (err) el.setAttribute('aria-invalid', 'true'); else el.removeAttribute('aria-invalid');
      }
    }
  };
  // Once a field has been flagged, re-check it as the user fixes it.
  // A description over the limit is flagged as it is typed.
  const recheck = (live = []) => {
    const fields = new Set([...Object.keys(shown), ...live]);
    if (!fields.size) return;
    const now = validateToken(values(), workspaces);
    const next = {};
    for (const k of fields) if (now[k]) next[k] = now[k];
    showErrors(next);
  };
  description.addEventListener('input', () => {
    updateCounter();
    const text = description.value.trim();
    recheck([...text].length > 100 || CONTROL_CHARS.test(text) ? ['description'] : []);
  });
  expiration.addEventListener('change', () => { updateExpiration(); recheck(); });
  for (const b of [...scopeBoxes, ...workspaceBoxes]) b.addEventListener('change', () => recheck());
  fences.cidrs.addEventListener('input', () => recheck());
  fences.notBefore.addEventListener('change', () => recheck());

  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'create-submit', form: 'create-form' }, 'Create token');
  const cancel = h('button', { type: 'button', class: 'btn btn-secondary', onClick: () => close() }, 'Cancel');

  const form = h('form', { id: 'create-form', novalidate: true, class: 'form' },
    h('div', { class: 'field' },
      h('div', { class: 'label-row' }, h('label', { for: 'token-description' }, 'Description'), counter),
      description,
      h('p', { class: 'hint', id: 'token-description-hint' }, 'What is this token for? You will see it in the list of tokens.'),
      fieldError('description')),
    h('div', { class: 'field' },
      h('label', { for: 'token-expiration' }, 'Expiration'),
      expiration,
      expirationHint,
      policyNote,
      neverWarning,
      fieldError('expiration')),
    h('fieldset', { class: 'field', 'aria-describedby': 'token-scopes-hint token-scopes-error' },
      h('legend', {}, 'Scopes'),
      h('p', { class: 'hint', id: 'token-scopes-hint' }, 'Pick the minimum this token needs: you can always create another one.'),
      h('div', { class: 'choices' }, SCOPES.map((s, i) => h('label', { class: 'choice', for: `token-scope-${s.id}` },
        scopeBoxes[i],
        h('span', { class: 'choice-text' },
          h('span', { class: 'choice-title' }, s.label),
          h('span', { class: 'choice-meaning', id: `token-scope-${s.id}-meaning` }, s.meaning))))),
      fieldError('scopes')),
    h('fieldset', { class: 'field', 'aria-describedby': 'token-workspaces-hint token-workspaces-error' },
      h('legend', {}, 'Workspaces'),
      h('p', { class: 'hint', id: 'token-workspaces-hint' }, 'The token can reach only the workspaces you select.'),
      workspaces.length
        ? h('div', { class: 'choices choices-inline' }, workspaces.map((w, i) => h('label', { class: 'choice', for: `token-workspace-${w.id}` },
          workspaceBoxes[i],
          h('span', { class: 'choice-text' }, h('span', { class: 'choice-title' }, w.name), h('span', { class: 'choice-meaning mono' }, w.id)))))
        : h('p', { class: 'callout callout-info' }, 'You do not belong to any workspace, so a token could not reach anything.'),
      fieldError('workspaces')),
    h('div', { class: 'field' },
      h('label', { for: 'token-allowed_cidrs' }, 'Allowed addresses ', h('span', { class: 'optional' }, '(optional)')),
      fences.cidrs,
      h('p', { class: 'hint', id: 'token-allowed_cidrs-hint' },
        `IPv4 or IPv6 addresses or CIDR blocks, one per line, at most ${MAX_CIDRS}. Calls from anywhere else are refused. Leave empty to allow any address.`),
      fieldError('allowed_cidrs')),
    h('div', { class: 'field' },
      h('label', { for: 'token-not_before' }, 'Not before ', h('span', { class: 'optional' }, '(optional)')),
      fences.notBefore,
      h('p', { class: 'hint', id: 'token-not_before-hint' },
        'The token starts working at this time (your local time), at most 90 days ahead. Leave empty to start at once.'),
      fieldError('not_before')),
    h('div', { class: 'field' },
      h('label', { class: 'choice', for: 'token-self_rotate' },
        selfRotate,
        h('span', { class: 'choice-text' },
          h('span', { class: 'choice-title' }, 'Lets a machine rotate itself'),
          h('span', { class: 'choice-meaning', id: 'token-self_rotate-hint' },
            'The token may renew its own secret (POST /v1/tokens/self/rotate, the old one working at most an hour longer); you are notified each time. It can manage nothing else.')))),
    formError);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.hidden = true;
    const v = values();
    const errors = validateToken(v, workspaces);
    showErrors(errors);
    const firstBad = FIELDS.find((k) => errors[k]);
    if (firstBad) {
      focusTarget[firstBad]?.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Creating…';
    let created;
    try {
      const { cidrs, notBefore, ...fields } = v;
      created = await api('POST', '/v1/tokens', {
        ...fields, description: v.description.trim(), ...fenceBody({ cidrs, notBefore }),
        ...(selfRotate.checked ? { self_rotate: true } : {}),
      });
    } catch (err) {
      if (err instanceof SessionEnded) return;
      submit.disabled = false;
      submit.textContent = 'Create token';
      const field = err.status === 422 ? (FIELD_OF_CODE[err.code] || err.field) : null;
      // A policy changed since the dialog opened: offer what it allows now.
      if (err.code === 'policy_violation') loadWorkspaces().then((fresh) => syncPolicies(fresh), () => {});
      if (field && errorEls[field]) {
        showErrors({ [field]: { code: err.code, message: stripTicks(err.detail || err.message) } });
        focusTarget[field]?.focus();
      } else {
        formError.replaceChildren(icon('error'), h('span', {}, h('strong', {}, 'The token was not created. '), stripTicks(err.message)));
        formError.hidden = false;
        formError.dataset.code = err.code || '';
        submit.focus();
      }
      return;
    }
    showSecret(dialog, titleId, created, { close, forget: (hook) => onCloseHooks.push(hook) });
    // Refresh the list underneath.
    onCreated();
  });

  const shell = dialogShell(titleId, 'New personal access token', form, [cancel, submit], 'Cancel');
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

// ---------------------------------------------------------------------------
// A new token's secret, once: what the create and regenerate dialogs show
// after the API answered 201. `forget(hook)` registers what runs when the
// dialog closes; `note` is an optional line under the summary.

function showSecret(dialog, titleId, created, { close, forget, note = null }) {
  let secret = created.secret;
  const token = created.token;
  const code = h('code', { class: 'secret-value', id: 'token-secret' }, secret);
  const copyStatus = h('p', { class: 'copy-status', id: 'copy-status', role: 'status' });
  const copy = h('button', { type: 'button', class: 'btn btn-secondary', id: 'copy-secret', 'aria-describedby': 'copy-status' }, icon('copy'), h('span', {}, 'Copy'));
  copy.addEventListener('click', async () => {
    const ok = await copyText(secret, code);
    copy.lastChild.textContent = ok ? 'Copied' : 'Copy';
    copy.classList.toggle('copied', ok);
    copyStatus.textContent = ok
      ? 'Copied to the clipboard.'
      : 'Could not copy automatically: the token is selected, press Ctrl+C (or ⌘C) to copy it.';
  });
  const done = h('button', { type: 'button', class: 'btn btn-primary', id: 'secret-done', onClick: () => close() }, 'Done');
  const exp = token.expires_at ? dateFmt.format(new Date(token.expires_at)) : 'Never';
  const body = h('div', { class: 'secret-view' },
    h('div', { class: 'callout callout-warning', id: 'secret-warning' }, icon('warn'),
      h('span', {}, h('strong', {}, 'Copy your token now. It will not be shown again. '),
        'Keep it in a password manager or an environment variable, never in source code.')),
    h('div', { class: 'secret-box' },
      h('label', { class: 'visually-hidden', for: 'token-secret' }, 'Your new token'),
      code, copy),
    copyStatus,
    h('dl', { class: 'facts facts-compact', id: 'created-summary' },
      h('dt', {}, 'Description'), h('dd', {}, isolated(token.description)),
      h('dt', {}, 'Scopes'), h('dd', {}, token.scopes.join(', ')),
      h('dt', {}, 'Workspaces'), h('dd', {}, token.workspaces.map(workspaceName).join(', ')),
      h('dt', {}, 'Expires'), h('dd', {}, exp),
      ...(fenceSummary(token) ? [h('dt', {}, 'Fences'), h('dd', { id: 'created-fences' }, fenceSummary(token))] : []),
      ...(token.self_rotate ? [h('dt', {}, 'Rotation'), h('dd', { id: 'created-self-rotate' }, 'Rotates itself: POST /v1/tokens/self/rotate with this token as the bearer')] : [])),
    note,
    h('p', { class: 'hint' }, 'Send it with every API call as ', h('code', {}, 'Authorization: Bearer <token>'), '.'));
  const shell = dialogShell(titleId, 'Your new token', body, [done], 'Close');
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

async function copyText(text, node) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the selection-based copy
  }
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  if (ok) selection.removeAllRanges();
  return ok;
}

// ---------------------------------------------------------------------------
// Revoke

/** The revoke confirmation of a token or a decoy: `message` says what
 * revoking `name` does, `path` is DELETEd, and `onRevoked()` resolves once
 * the list shows it. Its ids start with `prefix`; the focus goes back to the
 * element with id `returnTo`, else to `trigger`. */
function openRevokeConfirm({ prefix, title, message, confirmLabel, path, returnTo, trigger, onRevoked, toastText }) {
  const titleId = uid(`${prefix}-title`);
  const descId = uid(`${prefix}-desc`);
  const dialog = h('dialog', { class: 'modal modal-small', id: `${prefix}-dialog`, role: 'alertdialog', 'aria-labelledby': titleId, 'aria-describedby': descId });
  const error = h('div', { class: 'callout callout-error', id: `${prefix}-error`, role: 'alert', hidden: true });
  const cancel = h('button', { type: 'button', class: 'btn btn-secondary', id: `${prefix}-cancel` }, 'Cancel');
  const confirm = h('button', { type: 'button', class: 'btn btn-danger', id: `${prefix}-confirm` }, confirmLabel);
  const shell = dialogShell(titleId, title, [h('p', { id: descId }, message), error], [cancel, confirm], 'Cancel');
  dialog.append(...shell.nodes);
  const close = openModal(dialog, {
    initialFocus: cancel,
    returnFocus: () => document.getElementById(returnTo) || trigger,
  });
  cancel.addEventListener('click', () => close());
  shell.closeButton.addEventListener('click', () => close());
  confirm.addEventListener('click', async () => {
    confirm.disabled = true;
    confirm.textContent = 'Revoking…';
    try {
      await api('DELETE', path);
    } catch (err) {
      if (err instanceof SessionEnded) return;
      confirm.disabled = false;
      confirm.textContent = confirmLabel;
      error.replaceChildren(icon('error'), h('span', {}, stripTicks(err.message)));
      error.hidden = false;
      error.dataset.code = err.code || '';
      return;
    }
    await onRevoked();
    close();
    toast(toastText);
  });
}

/** A token's revoke confirmation. */
function openRevokeDialog(token, trigger, { onRevoked }) {
  openRevokeConfirm({
    prefix: 'revoke',
    title: 'Revoke this token?',
    message: [
      h('strong', {}, isolated(token.description)), ' will stop working at once on every ENSPACE API node. ',
      'Anything still using it will get “401 Unauthorized”. This cannot be undone.',
    ],
    confirmLabel: 'Revoke token',
    path: `/v1/tokens/${encodeURIComponent(token.id)}`,
    returnTo: `token-${token.id}`,
    trigger,
    onRevoked,
    toastText: `Revoked “${isolatedText(token.description)}”.`,
  });
}

export {
  openModal, closeAllModals, dialogShell, showSecret, copyText, descriptionError, EXPIRATIONS, addMonths,
  openCreateDialog, openRevokeDialog, openRevokeConfirm,
};
