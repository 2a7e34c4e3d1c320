// DOM helpers, icons, formatting, toasts and the error state every screen
// shows: nothing here knows about the API or the page's state.

/** h('button', {class: 'x', onClick: fn, 'aria-label': '…'}, 'text', child…) */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      node.className = value;
    } else if (key === 'value') {
      node.value = value;
    } else if (key === 'checked' || key === 'selected' || key === 'disabled' || key === 'hidden') {
      node[key] = Boolean(value);
    } else if (value === true) {
      node.setAttribute(key, '');
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  key: 'M15 7a4 4 0 1 1-3.9 4.9L4 19v2h3v-2h2v-2h2l1.1-1.1A4 4 0 0 1 15 7zm1 3a1 1 0 1 0 0-2 1 1 0 0 0 0 2z',
  plus: 'M11 5h2v6h6v2h-6v6h-2v-6H5v-2h6z',
  close: 'M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6 10.6 12 5 6.4z',
  copy: 'M8 3h10a2 2 0 0 1 2 2v12h-2V5H8zM5 7h9a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V9a2 2 0 0 1 2-2zm0 2v10h9V9z',
  check: 'M9.5 16.2 5.3 12l-1.4 1.4 5.6 5.6L20.1 8.4 18.7 7z',
  warn: 'M12 3 1.5 21h21zm0 4.5 7 12h-14zM11 11v4h2v-4zm0 5.5v2h2v-2z',
  error: 'M12 2a10 10 0 1 1 0 20 10 10 0 0 1 0-20zm-1 5v7h2V7zm0 9v2h2v-2z',
  chart: 'M4 19h16v2H2V3h2zm3-2V10h3v7zm5 0V5h3v12zm5 0v-5h3v5z',
  refresh: 'M17.7 6.3A8 8 0 1 0 20 12h-2a6 6 0 1 1-1.8-4.2L13 11h7V4z',
  logs: 'M4 5h16v2H4zm0 6h16v2H4zm0 6h10v2H4z',
  bell: 'M12 22a2 2 0 0 0 2-2h-4a2 2 0 0 0 2 2zm6-6v-5c0-3.1-1.6-5.6-4.5-6.3V4a1.5 1.5 0 0 0-3 0v.7C7.6 5.4 6 7.9 6 11v5l-2 2v1h16v-1z',
};

function icon(name, cls = '') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon ${cls}`.trim());
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', ICONS[name]);
  path.setAttribute('fill', 'currentColor');
  svg.append(path);
  return svg;
}

let idCounter = 0;
const uid = (prefix) => `${prefix}-${++idCounter}`;

function focusables(root) {
  return [...root.querySelectorAll(
    'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])',
  )].filter((el) => !el.closest('[hidden]') && el.getClientRects().length > 0);
}

// ---------------------------------------------------------------------------
// Formatting

const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' });
const logTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});
const hourFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

function timeEl(iso, fmt = dateFmt) {
  const d = new Date(iso);
  return h('time', { datetime: iso, title: fullFmt.format(d) }, fmt.format(d));
}

function relative(iso) {
  const d = new Date(iso);
  const seconds = (d.getTime() - Date.now()) / 1000;
  const abs = Math.abs(seconds);
  let text;
  if (abs < 45) text = 'just now';
  else if (abs < 3600) text = relFmt.format(Math.round(seconds / 60), 'minute');
  else if (abs < 86400) text = relFmt.format(Math.round(seconds / 3600), 'hour');
  else if (abs < 86400 * 30) text = relFmt.format(Math.round(seconds / 86400), 'day');
  else text = dateFmt.format(d);
  return h('time', { datetime: iso, title: fullFmt.format(d) }, text);
}

function initials(name) {
  const words = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words.slice(0, 1);
  return letters.map((w) => [...w][0].toUpperCase()).join('') || '?';
}

function plural(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

const stripTicks = (s) => String(s || '').replace(/`/g, '');

/** Text whose direction must not spill onto what is next to it. */
function isolated(text) {
  return h('bdi', {}, text);
}

/** The same, where only plain text can go (option labels, toasts):
 * between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE. */
function isolatedText(text) {
  return `\u2068${text}\u2069`;
}

// ---------------------------------------------------------------------------
// Toasts and error states

function toast(message, kind = 'success') {
  const region = document.getElementById('toasts');
  const item = h('div', { class: `toast toast-${kind}` }, icon(kind === 'success' ? 'check' : 'error'), h('span', {}, message));
  region.append(item);
  setTimeout(() => item.remove(), 6000);
}

function errorState(title, err, retry) {
  return h('div', { class: 'empty empty-error', role: 'alert' },
    h('div', { class: 'empty-icon' }, icon('error')),
    h('h3', {}, title),
    h('p', { class: 'muted' }, stripTicks(err.message)),
    retry ? h('button', { type: 'button', class: 'btn btn-secondary', onClick: retry }, 'Try again') : null);
}

export {
  h, append, icon, uid, focusables,
  dateFmt, dateTimeFmt, fullFmt, logTimeFmt, hourFmt, dayFmt,
  timeEl, relative, initials, plural, stripTicks, isolated, isolatedText,
  toast, errorState,
};
