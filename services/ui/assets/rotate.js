// The regenerate dialog (POST /v1/tokens/{id}/rotate): choose how long the
// old token keeps working and the new one's expiration, then see the new
// secret once, in the same view the create dialog uses.

import { api, SessionEnded, loadWorkspaces } from './api.js';
import { openModal, dialogShell, showSecret, EXPIRATIONS, addMonths } from './dialogs.js';
import { h, icon, uid, dateFmt, dateTimeFmt, stripTicks, isolated } from './dom.js';
import { allowedExpirations, policyReasons } from './policy.js';
import { fenceSummary } from './fences.js';
import { state, workspaceName } from './state.js';

const OVERLAPS = [
  { id: '0', label: 'Stop the old token now', hours: 0 },
  { id: '1h', label: '1 hour', hours: 1 },
  { id: '1d', label: '1 day', hours: 24 },
  { id: '7d', label: '7 days', hours: 7 * 24 },
  { id: '30d', label: '30 days', hours: 30 * 24 },
];

const DEFAULT_OVERLAP = '1d';

/** What the old token does once the new one exists, in words. */
function overlapOutcome(overlap, from = new Date()) {
  if (!overlap.hours) return 'The old token stops working at once, on every ENSPACE API node.';
  const end = new Date(from.getTime() + overlap.hours * 3600 * 1000);
  return `The old token keeps working until ${dateTimeFmt.format(end)}, then stops.`;
}

/**
 * The regenerate dialog for an active `token`. `onChanged()` refreshes the
 * list underneath (it resolves once the list shows the change).
 */
function openRotateDialog(token, trigger, { onChanged }) {
  const titleId = uid('rotate-title');
  const descId = uid('rotate-desc');
  const dialog = h('dialog', { class: 'modal', id: 'rotate-dialog', 'aria-labelledby': titleId, 'aria-describedby': descId });
  let successor = null;
  let changed = false;

  // --- how long the old one keeps working
  const overlapInputs = OVERLAPS.map((o) => h('input', {
    type: 'radio', name: 'overlap', value: o.id, id: `rotate-overlap-${o.id}`, class: 'segment-input',
    checked: o.id === DEFAULT_OVERLAP,
  }));
  const overlapHint = h('p', { class: 'hint', id: 'rotate-overlap-hint', role: 'status' });
  const selectedOverlap = () => OVERLAPS.find((o) => o.id === overlapInputs.find((i) => i.checked)?.value) || OVERLAPS[0];
  const updateOverlap = () => { overlapHint.textContent = overlapOutcome(selectedOverlap()); };
  for (const input of overlapInputs) input.addEventListener('change', updateOverlap);
  updateOverlap();

  // --- the new one's expiration (the same preset unless changed)
  const expiration = h('select', {
    id: 'rotate-expiration', name: 'expiration', 'aria-describedby': 'rotate-expiration-hint',
  }, EXPIRATIONS.map((e) => h('option', { value: e.id, selected: e.id === token.expiration }, e.id === token.expiration ? `${e.label} (as before)` : e.label)));
  const expirationHint = h('p', { class: 'hint', id: 'rotate-expiration-hint' });
  const updateExpiration = () => {
    const e = EXPIRATIONS.find((x) => x.id === expiration.value);
    expirationHint.textContent = e && e.months !== null
      ? `The new token will expire on ${dateFmt.format(addMonths(new Date(), e.months))}.`
      : 'The new token will work until you revoke it.';
  };
  expiration.addEventListener('change', updateExpiration);
  updateExpiration();

  // Only the expirations the token's workspaces' policies allow (the server
  // refuses the others with 422 policy_violation).
  const policyNote = h('p', { class: 'hint policy-note', id: 'rotate-policy-note', hidden: true });
  const applyPolicies = (workspaces) => {
    if (!workspaces) return;
    const allowed = allowedExpirations(token.workspaces, workspaces);
    for (const option of expiration.options) option.disabled = !allowed.includes(option.value);
    if (!allowed.includes(expiration.value)) {
      const enabled = [...expiration.options].filter((o) => !o.disabled);
      const fitting = enabled.filter((o) => o.index < expiration.selectedIndex);
      const pick = fitting.length ? fitting[fitting.length - 1] : enabled[0];
      if (pick) expiration.value = pick.value;
      updateExpiration();
    }
    const reasons = policyReasons(token.workspaces, workspaces, workspaceName);
    policyNote.textContent = reasons.join(' ');
    policyNote.hidden = reasons.length === 0;
  };
  applyPolicies(state.workspaces);
  loadWorkspaces().then(applyPolicies).catch(() => {});

  const error = h('div', { class: 'callout callout-error', id: 'rotate-error', role: 'alert', hidden: true });
  const cancel = h('button', { type: 'button', class: 'btn btn-secondary', id: 'rotate-cancel' }, 'Cancel');
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'rotate-submit', form: 'rotate-form' }, 'Regenerate token');

  const form = h('form', { id: 'rotate-form', class: 'form', novalidate: true },
    h('p', { id: descId, class: 'rotate-intro' },
      'A new token with a new secret replaces ', h('strong', {}, isolated(token.description)),
      '. It keeps the same description, scopes and workspaces. Give the old token some time to keep working ',
      'while you put the new secret wherever the old one is used.'),
    fenceSummary(token)
      ? h('p', { class: 'hint', id: 'rotate-fences' }, 'The new token keeps its fences: ', fenceSummary(token), '.')
      : null,
    h('fieldset', { class: 'field', 'aria-describedby': 'rotate-overlap-hint' },
      h('legend', {}, 'Keep the old token working for'),
      h('div', { class: 'segments rotate-overlaps' }, OVERLAPS.map((o, i) => [
        overlapInputs[i],
        h('label', { class: 'segment', for: `rotate-overlap-${o.id}` }, o.label),
      ])),
      overlapHint),
    h('div', { class: 'field' },
      h('label', { for: 'rotate-expiration' }, 'New token expires'),
      expiration,
      expirationHint,
      policyNote),
    error);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    submit.textContent = 'Regenerating…';
    const body = { overlap: selectedOverlap().id };
    if (expiration.value !== token.expiration) body.expiration = expiration.value;
    let created;
    try {
      created = await api('POST', `/v1/tokens/${encodeURIComponent(token.id)}/rotate`, body);
    } catch (err) {
      if (err instanceof SessionEnded) return;
      submit.textContent = 'Regenerate token';
      error.replaceChildren(icon('error'), h('span', {},
        h('strong', {}, 'The token was not regenerated. '),
        err.code === 'token_inactive'
          ? 'It is no longer active (it was revoked, has expired or was already regenerated elsewhere). Close this dialog to see its current state.'
          : stripTicks(err.message)));
      error.dataset.code = err.code || '';
      error.hidden = false;
      if (err.code === 'token_inactive') {
        // Trying again cannot succeed; the list shows why once closed.
        changed = true;
        cancel.textContent = 'Close';
        cancel.focus();
      } else {
        submit.disabled = false;
        submit.focus();
      }
      return;
    }
    successor = created.token;
    changed = true;
    const old = OVERLAPS.find((o) => o.id === body.overlap);
    showSecret(dialog, titleId, created, {
      close: () => close(),
      forget: (hook) => onCloseHooks.push(hook),
      note: h('p', { class: 'callout callout-info', id: 'rotate-outcome' }, overlapOutcome(old, new Date(created.token.created_at))),
    });
    // The list underneath shows both tokens, linked.
    onChanged();
  });

  const shell = dialogShell(titleId, 'Regenerate this token?', form, [cancel, submit], 'Cancel');
  dialog.append(...shell.nodes);
  const onCloseHooks = [];
  const close = openModal(dialog, {
    initialFocus: overlapInputs.find((i) => i.checked),
    // After a change the list is redrawn: focus goes to a row's name, which
    // the redrawn list keeps; otherwise back to the Regenerate button.
    returnFocus: () => (successor && document.getElementById(`token-${successor.id}`))
      || (!changed && trigger && trigger.isConnected ? trigger : null)
      || document.getElementById(`token-${token.id}`),
    onClose: () => {
      for (const hook of onCloseHooks) hook();
      dialog.replaceChildren();
      if (changed && !successor) onChanged();
    },
  });
  cancel.addEventListener('click', () => close());
  shell.closeButton.addEventListener('click', () => close());
}

export { openRotateDialog, OVERLAPS };
