// Workspace token policies as the dialogs apply them: which expirations the
// selected workspaces allow, and why the others are missing. The server
// decides (a creation or rotation over a policy is refused with 422
// `policy_violation`); this only keeps the choice honest beforehand.

import { h, isolated } from './dom.js';

/** Months of each expiration preset; `never` has none. */
const PRESET_MONTHS = { '1m': 1, '2m': 2, '3m': 3, '6m': 6, '1y': 12, '2y': 24, never: null };
const PRESETS = Object.keys(PRESET_MONTHS);

const LIFETIME_LABEL = {
  '1m': '1 month', '2m': '2 months', '3m': '3 months', '6m': '6 months', '1y': '1 year', '2y': '2 years',
};

/** Whether `policy` ({max_lifetime, require_expiration}) allows `preset`
 * (as WorkspacePolicy::allows on the server: a limit implies expiry). */
function policyAllows(policy, preset) {
  if (!policy) return true;
  const months = PRESET_MONTHS[preset];
  const max = policy.max_lifetime ? PRESET_MONTHS[policy.max_lifetime] : null;
  if (max !== null && max !== undefined) return months !== null && months <= max;
  if (months === null) return !policy.require_expiration;
  return true;
}

function policyOf(policies, id) {
  if (!policies) return null;
  if (policies instanceof Map) return policies.get(id) || null;
  if (Array.isArray(policies)) return (policies.find((w) => w.id === id) || {}).policy || null;
  return policies[id] || null;
}

/**
 * The expiration presets (in order) that every selected workspace's policy
 * allows. `workspaces`: the selected workspace ids; `policies`: id → policy
 * (an object or a Map), or the `workspaces` array of GET /v1/workspaces.
 * Never empty: every policy allows one month.
 */
function allowedExpirations(workspaces, policies) {
  return PRESETS.filter((p) => workspaces.every((ws) => policyAllows(policyOf(policies, ws), p)));
}

/** Why each selected workspace's policy removes choices: [[id, text]],
 * e.g. ['acme', 'allows at most 3 months.']. */
function policyLimits(workspaces, policies) {
  const limits = [];
  for (const ws of workspaces) {
    const policy = policyOf(policies, ws);
    if (!policy) continue;
    if (policy.max_lifetime) limits.push([ws, `allows at most ${LIFETIME_LABEL[policy.max_lifetime] || policy.max_lifetime}.`]);
    else if (policy.require_expiration) limits.push([ws, 'requires tokens to expire.']);
  }
  return limits;
}

/** The same as sentences: "Acme Corp allows at most 3 months." */
function policyReasons(workspaces, policies, nameOf = (id) => id) {
  return policyLimits(workspaces, policies).map(([ws, text]) => `${nameOf(ws)} ${text}`);
}

/**
 * Keeps an expiration <select> to the presets the checked workspaces allow:
 * options are rebuilt from `options` ([{id, label}]) whenever `sync()` runs;
 * the choice is kept when still allowed, else the longest allowed one up to
 * it. `note` explains why options are missing; `onChange()` runs after
 * each sync. Returns `sync(freshPolicies?)`.
 */
function bindExpirationToPolicies({ select, note, options, boxes, policies, nameOf = (id) => id, onChange }) {
  let current = policies;
  const sync = (fresh) => {
    if (fresh) current = fresh;
    const selected = boxes.filter((b) => b.checked).map((b) => b.value);
    const allowed = allowedExpirations(selected, current);
    const before = select.value;
    let choice = before;
    if (!allowed.includes(choice)) {
      const months = PRESET_MONTHS[before] ?? Infinity;
      const fitting = allowed.filter((p) => PRESET_MONTHS[p] !== null && PRESET_MONTHS[p] <= months);
      choice = fitting.length ? fitting[fitting.length - 1] : allowed[0];
    }
    select.replaceChildren(...options.filter((o) => allowed.includes(o.id))
      .map((o) => h('option', { value: o.id, selected: o.id === choice }, o.label)));
    select.value = choice;
    const limits = policyLimits(selected, current);
    note.replaceChildren(...(allowed.length < options.length && limits.length
      ? ['Fewer expirations are offered: ', ...limits.flatMap(([ws, text], i) => [i ? ' ' : '', isolated(nameOf(ws)), ` ${text}`])]
      : []));
    note.hidden = !note.firstChild;
    if (onChange) onChange();
  };
  for (const b of boxes) b.addEventListener('change', () => sync());
  sync();
  return sync;
}

export {
  PRESET_MONTHS, LIFETIME_LABEL, policyAllows, allowedExpirations, policyLimits, policyReasons,
  bindExpirationToPolicies,
};
