// A token's fences (contract §18) in the UI: the create dialog's "Allowed
// addresses" and "Not before" fields, checked as the API checks them (at
// most 32 IPv4 or IPv6 blocks without host bits set, a bare address a block
// of one; a start at most 90 days ahead and before the token expires), and
// how a token shows them. The API stays the judge: its 422s name the same
// fields and show under them.

import { h, dateTimeFmt } from './dom.js';

export const MAX_CIDRS = 32;
const MAX_AHEAD_MS = 90 * 86_400_000;

const V4_PART = /^(0|[1-9]\d{0,2})$/;

/** An IPv4 address as a number, or null. */
function ipv4(text) {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => V4_PART.test(p) && Number(p) <= 255)) return null;
  return parts.reduce((n, p) => (n << 8n) | BigInt(p), 0n);
}

/** An IPv6 address (`::` shorthand, a dotted IPv4 tail) as a number, or null. */
function ipv6(text) {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || !text.includes(':')) return null;
  let head = text;
  let tail = null;
  if (text.includes('.')) {
    const cut = text.lastIndexOf(':');
    tail = ipv4(text.slice(cut + 1));
    if (tail === null) return null;
    head = `${text.slice(0, cut + 1)}0:0`;
  }
  const halves = head.split('::');
  if (halves.length > 2) return null;
  const groups = (s) => (s === '' ? [] : s.split(':'));
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  const count = left.length + right.length;
  if (halves.length === 1 ? count !== 8 : count > 7) return null;
  const all = [...left, ...Array(8 - count).fill('0'), ...right];
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  let n = all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
  if (tail !== null) n = (n & ~0xffffffffn) | tail;
  return n;
}

/** Why `text` is not a block the API takes, or null when it is one. */
export function cidrProblem(text) {
  const [addr, prefix, extra] = text.split('/');
  if (extra !== undefined) return 'is not an address or CIDR block';
  const v4 = ipv4(addr);
  const n = v4 ?? ipv6(addr);
  if (n === null) return 'is not an IPv4 or IPv6 address or CIDR block (e.g. 192.0.2.0/24, 2001:db8::/32)';
  const width = v4 !== null ? 32 : 128;
  if (prefix === undefined) return null;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > width) return `needs a prefix length of 0 to ${width}`;
  const len = BigInt(prefix);
  if (v4 === null && len >= 96n && (n >> 32n) === 0xffffn) return 'is an IPv4-mapped IPv6 block; write it as IPv4';
  const host = (1n << (BigInt(width) - len)) - 1n;
  if (n & host) return 'has host bits set (the block starts lower)';
  return null;
}

/** The ranges typed in `text`: separated by new lines, commas or spaces. */
export function splitCidrs(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

/** The API's rules for the fence fields, with the codes it answers 422
 * with: `{allowed_cidrs, not_before}` errors for what is wrong. */
export function validateFences({ cidrs, notBefore, expiresAt, now = new Date() }) {
  const errors = {};
  const list = splitCidrs(cidrs);
  const bad = list.findIndex((c) => cidrProblem(c));
  if (list.length > MAX_CIDRS) {
    errors.allowed_cidrs = { code: 'invalid_allowed_cidrs', message: `Enter at most ${MAX_CIDRS} address ranges (this has ${list.length}).` };
  } else if (bad >= 0) {
    errors.allowed_cidrs = { code: 'invalid_allowed_cidrs', message: `“${list[bad]}” ${cidrProblem(list[bad])}.` };
  }
  if (notBefore) {
    const at = new Date(notBefore);
    if (Number.isNaN(at.getTime())) errors.not_before = { code: 'invalid_not_before', message: 'Enter a date and time.' };
    else if (at.getTime() > now.getTime() + MAX_AHEAD_MS) errors.not_before = { code: 'invalid_not_before', message: 'The start can be at most 90 days ahead.' };
    else if (expiresAt && at >= expiresAt) errors.not_before = { code: 'invalid_not_before', message: 'The start must be before the token expires.' };
  }
  return errors;
}

/** The fence members of a create request (none when the fields are empty). */
export function fenceBody({ cidrs, notBefore }) {
  const body = {};
  const list = splitCidrs(cidrs);
  if (list.length) body.allowed_cidrs = list;
  if (notBefore) body.not_before = new Date(notBefore).toISOString();
  return body;
}

/** The two fields, for the create dialog; `prefill` may hold `allowed_cidrs`. */
export function fenceFields(prefill) {
  const cidrs = h('textarea', {
    id: 'token-allowed_cidrs', name: 'allowed_cidrs', rows: '3', autocomplete: 'off', spellcheck: 'false',
    class: 'mono', placeholder: 'e.g. 203.0.113.0/24\n2001:db8::/32',
    'aria-describedby': 'token-allowed_cidrs-hint token-allowed_cidrs-error',
  });
  if (prefill?.allowed_cidrs?.length) cidrs.value = prefill.allowed_cidrs.join('\n');
  const notBefore = h('input', {
    id: 'token-not_before', name: 'not_before', type: 'datetime-local',
    'aria-describedby': 'token-not_before-hint token-not_before-error',
  });
  return { cidrs, notBefore };
}

/** What a token's fences say, in words, or null when it has none. */
export function fenceSummary(token) {
  const parts = [];
  if (token.allowed_cidrs?.length) parts.push(`Only from ${token.allowed_cidrs.join(', ')}`);
  if (token.not_before && new Date(token.not_before) > new Date()) {
    parts.push(`Starts ${dateTimeFmt.format(new Date(token.not_before))}`);
  }
  return parts.length ? parts.join(' · ') : null;
}
