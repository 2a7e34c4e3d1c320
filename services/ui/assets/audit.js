// The Audit tab (auditors only) and a token's Timeline (auditors, and the
// token's owner from the Tokens list). Audit: the chain checked in this
// browser (every hash recomputed with WebCrypto and every Ed25519
// signature checked against the served event keys, following the key
// rotations the log records, each of them shown), every token as it
// stood at a chosen moment (with its fences, and decoys marked), and the
// history between two moments. Timeline: one token's events, what it was
// made as (fences, a decoy) and what its calls did. Everything from the
// server goes in as text, never as markup.

import { api, SessionEnded } from './api.js';
import { h, timeEl, dateTimeFmt, plural, isolated, errorState, stripTicks } from './dom.js';
import { link } from './router.js';

const LAST_CHECK = 'enspace-audit-last-verification';
const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (bytes) => [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, '0')).join('');
const DOMAIN = new TextEncoder().encode('ENSPACE-EVENT-V1\0');

function timelinePath(tokenId, auditor) {
  const base = auditor ? '/settings/audit/timeline' : '/settings/dev/timeline';
  return `${base}?token=${encodeURIComponent(tokenId)}`;
}

function table(id, head, rows) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table', id },
      h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows)));
}

// ---------------------------------------------------------------------------
// The chain, checked here

/** The served keys by id, imported for WebCrypto. */
async function servedKeys(served) {
  const keys = new Map();
  for (const k of [...(served.previous || []), served]) {
    keys.set(k.key_id, await crypto.subtle.importKey('raw', b64(k.key), { name: 'Ed25519' }, false, ['verify']));
  }
  return keys;
}

/**
 * Pages through every event; answers {count, head, key_id, rotations} or
 * throws at the first bad seq. The key in force is event 1's (one of the
 * served keys), then each rotation's new key; a rotation is signed by the
 * key it replaces, or, after a lost key, by its new key (which must be
 * served). An event without a signature (its key was lost) is vouched for
 * by the next signed one.
 */
async function verifyChain(progress) {
  const served = await api('GET', '/v1/event-key');
  const keys = await servedKeys(served);
  const rotations = [];
  let current = null;
  let unvouched = null;
  let prev = '0'.repeat(64);
  let after = 0;
  let count = 0;
  for (;;) {
    const page = await api('GET', `/v1/audit/events?after=${after}&limit=1000`);
    for (const e of page.events) {
      const fail = (why) => { throw new Error(`seq ${e.seq}: ${why}`); };
      if (e.seq !== count + 1) fail('missing or out of order');
      if (e.prev_hash !== prev) fail('prev_hash is not the previous hash');
      const payload = b64(e.payload);
      const joined = new Uint8Array(32 + payload.length);
      joined.set(Uint8Array.from(prev.match(/../g).map((x) => parseInt(x, 16))), 0);
      joined.set(payload, 32);
      const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', joined));
      if (hex(hash) !== e.hash) fail('hash does not match prev_hash and payload');
      if (current === null) {
        if (!keys.has(e.key_id)) fail(`signed by key ${e.key_id}, which the server does not serve`);
        current = e.key_id;
      }
      let signer = current;
      let next = current;
      if (e.type === 'signing_key_rotated') {
        const lost = e.data.previous_lost === true;
        if (lost) {
          if (!keys.has(e.data.key_id)) fail(`the key ${e.data.previous_key_id} was declared lost and replaced by ${e.data.key_id}, which the server does not serve`);
          signer = e.data.key_id;
        } else if (e.data.previous_key_id !== current) {
          fail(`a key rotation that does not start from the key in force ${current}`);
        }
        next = e.data.key_id;
        rotations.push({ seq: e.seq, from: e.data.previous_key_id, to: e.data.key_id, lost });
      }
      if (e.key_id !== signer) fail(`signed by key ${e.key_id}, not by the key in force ${signer}`);
      if (e.signature === '') {
        if (unvouched === null) unvouched = e.seq;
      } else {
        const signed = new Uint8Array(DOMAIN.length + 32);
        signed.set(DOMAIN, 0);
        signed.set(hash, DOMAIN.length);
        const key = keys.get(signer);
        if (!key || !(await crypto.subtle.verify({ name: 'Ed25519' }, key, b64(e.signature), signed))) fail('the signature does not verify');
        unvouched = null;
      }
      current = next;
      prev = e.hash;
      count += 1;
    }
    progress(count);
    if (page.next_after === null || page.next_after === undefined) break;
    after = page.next_after;
  }
  if (unvouched !== null) throw new Error(`seq ${unvouched}: no signature, and no signed event after it vouches for it`);
  return { count, head: prev, key_id: current ?? served.key_id, rotations };
}

/** What the last check found of key rotations, as text. */
function rotationNotes(rotations) {
  if (!rotations || rotations.length === 0) return null;
  return h('ul', { id: 'audit-key-rotations', class: 'muted' },
    rotations.map((r) => h('li', {},
      `Event key ${r.lost ? 'replaced after a loss' : 'rotated'} at seq ${r.seq}: `,
      h('code', { class: 'mono' }, r.from), ' → ', h('code', { class: 'mono' }, r.to),
      r.lost ? ' (the previous key was declared lost: this break is signed by the new key only)' : '')));
}

function chainCard() {
  const status = h('p', { id: 'audit-chain-status', role: 'status' });
  const notes = h('div', {});
  const last = () => {
    try { return JSON.parse(localStorage.getItem(LAST_CHECK) || 'null'); } catch { return null; }
  };
  const show = (check) => {
    if (!check) { status.replaceChildren('Not verified in this browser yet.'); return; }
    status.replaceChildren(
      h('strong', { class: check.ok ? 'ok' : 'bad' }, check.ok ? 'Verified' : 'Broken'), ' ',
      check.ok
        ? `${plural(check.count, 'event', 'events')}, head seq ${check.count}, hash `
        : `${stripTicks(check.error)} `,
      check.ok ? h('code', { id: 'audit-chain-head', class: 'mono' }, check.head) : null,
      ' · last verification ', timeEl(check.at, dateTimeFmt));
    notes.replaceChildren(...(check.ok && rotationNotes(check.rotations) ? [rotationNotes(check.rotations)] : []));
  };
  const button = h('button', {
    type: 'button', class: 'btn btn-secondary', id: 'audit-verify',
    onClick: async () => {
      button.disabled = true;
      try {
        const result = await verifyChain((n) => status.replaceChildren(`Checking… ${plural(n, 'event', 'events')}`));
        const check = { ok: true, ...result, at: new Date().toISOString() };
        localStorage.setItem(LAST_CHECK, JSON.stringify(check));
        show(check);
      } catch (err) {
        if (err instanceof SessionEnded) return;
        const check = { ok: false, error: err.message, at: new Date().toISOString() };
        localStorage.setItem(LAST_CHECK, JSON.stringify(check));
        show(check);
      } finally {
        button.disabled = false;
      }
    },
  }, 'Verify the chain');
  show(last());
  return h('section', { class: 'card', 'aria-labelledby': 'audit-chain-title' },
    h('h2', { id: 'audit-chain-title' }, 'The event chain'),
    h('p', { class: 'muted' }, 'Recomputes every hash and checks every signature in this browser against the served event keys, following their rotations.'),
    status, notes, button);
}

// ---------------------------------------------------------------------------
// State at a moment

/** A datetime-local value (local time) as RFC 3339 UTC. */
const toUtc = (local) => new Date(local).toISOString();
const localNow = () => {
  const d = new Date(Date.now() - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
};

/** A token's fences, self-rotation as they stood: `{allowed_cidrs,
 * not_before, self_rotate}` of a state row or of its `token_created` data.
 * A start shows whether or not it is past (the moment may be long ago). */
function fenceFacts(t) {
  const facts = [];
  if (t.allowed_cidrs?.length) {
    facts.push(h('li', { class: 'fence-cidrs' }, 'Only from ', h('span', { class: 'mono' }, t.allowed_cidrs.join(', '))));
  }
  if (t.not_before) facts.push(h('li', { class: 'fence-not-before' }, 'Not before ', timeEl(t.not_before, dateTimeFmt)));
  if (t.self_rotate) facts.push(h('li', { class: 'fence-self-rotate' }, 'Rotates itself'));
  return facts;
}

/** A decoy's mark: it never granted anything. */
function decoyBadge() {
  return h('span', { class: 'badge badge-decoy', title: 'A decoy: it never grants access, and its use is told to its owner' }, 'decoy');
}

function field(id, label, input) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

function stateCard() {
  const at = h('input', { id: 'audit-at', type: 'datetime-local', value: localNow(), required: true });
  const workspace = h('input', { id: 'audit-workspace', type: 'text', maxlength: 256, placeholder: 'any' });
  const user = h('input', { id: 'audit-user', type: 'text', maxlength: 256, placeholder: 'any' });
  const out = h('div', { id: 'audit-state-result' });
  const form = h('form', {
    class: 'filters', novalidate: true,
    onSubmit: async (e) => {
      e.preventDefault();
      if (!at.value) { out.replaceChildren(h('p', { class: 'field-error' }, 'Choose a moment.')); return; }
      const q = new URLSearchParams({ at: toUtc(at.value), limit: '1000' });
      if (workspace.value.trim()) q.set('workspace', workspace.value.trim());
      if (user.value.trim()) q.set('user', user.value.trim());
      out.replaceChildren(h('p', { role: 'status' }, 'Folding the log…'));
      try {
        const body = await api('GET', `/v1/audit/state?${q}`);
        out.replaceChildren(
          h('p', { class: 'muted', role: 'status' }, `${plural(body.tokens.length, 'token', 'tokens')} at `, timeEl(body.at, dateTimeFmt),
            body.next_after ? ' (the first 1,000)' : ''),
          table('audit-state-table', ['Token', 'Owner', 'Scopes', 'Workspaces', 'Fences', 'Status', 'Expires'],
            body.tokens.map((t) => h('tr', { 'data-token-id': t.id, class: `row-${t.status}${t.decoy ? ' row-decoy' : ''}` },
              h('td', {}, link(timelinePath(t.id, true), isolated(t.description)), t.decoy ? [' ', decoyBadge()] : null,
                h('span', { class: 'token-id mono' }, t.id)),
              h('td', {}, t.user_id),
              h('td', {}, t.decoy ? h('span', { class: 'muted' }, 'none') : t.scopes.join(', ')),
              h('td', {}, t.decoy ? h('span', { class: 'muted' }, 'none') : t.workspaces.join(', ')),
              h('td', { class: 'cell-fences' }, fenceFacts(t).length
                ? h('ul', { class: 'fence-facts' }, fenceFacts(t))
                : h('span', { class: 'muted' }, 'None')),
              h('td', { class: 'cell-status' }, h('span', { class: `status status-${t.status}` }, t.status),
                t.revoked_reason ? ` (${t.revoked_reason.replace('_', ' ')})` : ''),
              h('td', {}, t.expires_at ? timeEl(t.expires_at, dateTimeFmt) : 'Never')))));
      } catch (err) {
        if (err instanceof SessionEnded) return;
        out.replaceChildren(errorState('Could not fold the log', err));
      }
    },
  },
  field('audit-at', 'Moment', at), field('audit-workspace', 'Workspace', workspace), field('audit-user', 'User', user),
  h('button', { type: 'submit', class: 'btn btn-primary', id: 'audit-state-submit' }, 'Show the state'));
  return h('section', { class: 'card', 'aria-labelledby': 'audit-state-title' },
    h('h2', { id: 'audit-state-title' }, 'State at a moment'),
    h('p', { class: 'muted' }, 'Every token as it stood then: owner, scopes, workspaces, fences and status, folded from the log. Decoys are marked: they never granted anything.'),
    form, out);
}

// ---------------------------------------------------------------------------
// History between two moments

function historyCard() {
  const from = h('input', { id: 'audit-from', type: 'datetime-local', required: true });
  const to = h('input', { id: 'audit-to', type: 'datetime-local', value: localNow(), required: true });
  const out = h('div', { id: 'audit-history-result' });
  const groups = [['created', 'Created'], ['revoked', 'Revoked'], ['rotated', 'Rotated'], ['policies', 'Policies set']];
  const form = h('form', {
    class: 'filters', novalidate: true,
    onSubmit: async (e) => {
      e.preventDefault();
      if (!from.value || !to.value) { out.replaceChildren(h('p', { class: 'field-error' }, 'Choose both moments.')); return; }
      const q = new URLSearchParams({ from: toUtc(from.value), to: toUtc(to.value), limit: '1000' });
      try {
        const body = await api('GET', `/v1/audit/changes?${q}`);
        out.replaceChildren(...groups.map(([key, title]) => h('div', { class: 'audit-group', id: `audit-group-${key}` },
          h('h3', {}, `${title} (${body[key].length})`),
          body[key].length
            ? h('ul', { class: 'plain-list' }, body[key].map((ev) => h('li', {},
              timeEl(ev.at, dateTimeFmt), ' · seq ', String(ev.seq), ' · ', ev.actor, ' · ',
              key === 'policies' ? (ev.data.workspace || '') : link(timelinePath(ev.token_id, true), ev.token_id, { class: 'mono' }))))
            : h('p', { class: 'muted' }, 'None.'))));
      } catch (err) {
        if (err instanceof SessionEnded) return;
        out.replaceChildren(errorState('Could not read the history', err));
      }
    },
  },
  field('audit-from', 'From', from), field('audit-to', 'To', to),
  h('button', { type: 'submit', class: 'btn btn-primary', id: 'audit-history-submit' }, 'Show the history'));
  return h('section', { class: 'card', 'aria-labelledby': 'audit-history-title' },
    h('h2', { id: 'audit-history-title' }, 'History'),
    form, out);
}

function renderAuditPanel(panel) {
  panel.replaceChildren(chainCard(), stateCard(), historyCard());
}

// ---------------------------------------------------------------------------
// A token's timeline

async function renderTimelinePanel(panel, query) {
  const id = query && query.get('token');
  if (!id) {
    panel.replaceChildren(h('p', { class: 'muted' }, 'Open a token’s timeline from its Timeline link.'));
    return;
  }
  panel.replaceChildren(h('p', { role: 'status' }, 'Loading the timeline…'));
  let t;
  try {
    t = await api('GET', `/v1/audit/tokens/${encodeURIComponent(id)}/timeline`);
  } catch (err) {
    if (err instanceof SessionEnded) return;
    panel.replaceChildren(errorState('Could not load the timeline', err));
    return;
  }
  const a = t.activity;
  // What it was made as: its token_created event's data.
  const made = t.events.find((e) => e.type === 'token_created')?.data || {};
  const fences = fenceFacts(made);
  const marks = [
    ['Created', t.marks.created_at],
    ['Revoked', t.marks.revoked_at],
    ['Reported leaked', t.marks.leaked_at],
  ].filter(([, at]) => at);
  panel.replaceChildren(
    h('section', { class: 'card', id: 'timeline' },
      h('h2', {}, 'Timeline of ', isolated(t.description), made.decoy ? [' ', decoyBadge()] : null),
      h('p', { class: 'muted mono' }, `${t.token_id} · ${t.user_id}`),
      h('dl', { class: 'facts', id: 'timeline-marks' },
        marks.map(([label, at]) => [h('dt', {}, label), h('dd', {}, timeEl(at, dateTimeFmt))]),
        made.decoy ? [h('dt', {}, 'Decoy'), h('dd', { id: 'timeline-decoy' }, 'Never granted access: every use was refused as an unknown token’s and told to its owner')] : null,
        fences.length ? [h('dt', {}, 'Fences'), h('dd', {}, h('ul', { class: 'fence-facts', id: 'timeline-fences' }, fences))] : null),
      h('h3', {}, 'Events'),
      h('ol', { class: 'plain-list', id: 'timeline-events' }, t.events.map((e) => h('li', {},
        timeEl(e.at, dateTimeFmt), ' · ', h('strong', {}, e.type), ' · seq ', String(e.seq), ' · by ', e.actor))),
      h('h3', {}, 'Calls'),
      h('p', { id: 'timeline-calls' }, a.calls && a.first_call && a.last_call
        ? [plural(a.calls, 'call', 'calls'), ' from ', timeEl(a.first_call, dateTimeFmt), ' to ', timeEl(a.last_call, dateTimeFmt)]
        : 'No calls recorded.'),
      a.calls ? table('timeline-days', ['Day', 'Calls', '2xx–3xx', '4xx', '5xx'], a.per_day.map((d) => h('tr', {},
        h('td', {}, timeEl(d.day)), h('td', {}, String(d.total)), h('td', {}, String(d.success)),
        h('td', {}, String(d.client_error)), h('td', {}, String(d.server_error))))) : null,
      a.calls ? table('timeline-ips', ['Client IP', 'Calls', 'First', 'Last'], a.per_client_ip.map((ip) => h('tr', {},
        h('td', { class: 'mono' }, ip.client_ip), h('td', {}, String(ip.calls)),
        h('td', {}, timeEl(ip.first, dateTimeFmt)), h('td', {}, timeEl(ip.last, dateTimeFmt))))) : null,
      a.per_workspace.length ? table('timeline-workspaces', ['Workspace', 'Allowed', 'Refused'], a.per_workspace.map((w) => h('tr', {},
        h('td', {}, w.workspace), h('td', {}, String(w.allowed)), h('td', {}, String(w.denied))))) : null,
      t.since_leak
        ? h('div', { class: 'callout callout-error', id: 'timeline-since-leak' },
          `Since the leak report: ${plural(t.since_leak.calls, 'call', 'calls')}`,
          t.since_leak.per_client_ip.length ? ` from ${t.since_leak.per_client_ip.map((ip) => ip.client_ip).join(', ')}` : '')
        : null));
}

export { renderAuditPanel, renderTimelinePanel, timelinePath };
