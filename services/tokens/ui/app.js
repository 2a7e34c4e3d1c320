// ENSPACE settings UI. Plain ES module, no build step, no dependencies.
//
// It talks only to the public HTTP API with the session cookie (HttpOnly,
// SameSite=Strict; the page never sees it). A new token's secret lives only
// in the create dialog's DOM and one local variable while the dialog is open:
// never in storage, the URL or the history.

import { renderChart, SERIES } from './chart.js';

// ---------------------------------------------------------------------------
// DOM helpers

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

// ---------------------------------------------------------------------------
// The API

class ApiProblem extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `The server answered ${status}.`);
    this.status = status;
    this.code = problem && problem.code;
    this.field = problem && problem.field;
    this.detail = problem && problem.detail;
  }
}

class SessionEnded extends Error {}

async function api(method, path, body) {
  const init = {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { Accept: 'application/json' },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiProblem(0, { detail: 'Could not reach ENSPACE. Check your connection and try again.' });
  }
  const type = res.headers.get('Content-Type') || '';
  let data = null;
  if (type.includes('json')) {
    try { data = await res.json(); } catch { data = null; }
  }
  if (res.status === 401 && state.me && path !== '/v1/session') {
    sessionEnded('Your session has ended. Sign in again to continue.');
    throw new SessionEnded();
  }
  if (!res.ok) throw new ApiProblem(res.status, data);
  return data;
}

// ---------------------------------------------------------------------------
// State and routing

const state = {
  me: null,
  workspaces: null, // [{id, name}] from GET /v1/workspaces
  tokens: null, // null while loading
  tokensCursor: null, // next_cursor of the last page loaded
  tokensError: null,
  notice: null, // shown on the sign-in page
};

const app = document.getElementById('app');

function parseRoute() {
  const path = location.pathname.replace(/\/+$/, '') || '/';
  const query = new URLSearchParams(location.search);
  if (path === '/') return { page: 'home' };
  if (path === '/settings' || path === '/settings/profile') return { page: 'settings', tab: 'profile' };
  if (path === '/settings/dev' || path === '/settings/dev/tokens') return { page: 'settings', tab: 'dev', sub: 'tokens' };
  if (path === '/settings/dev/logs') return { page: 'settings', tab: 'dev', sub: 'logs', query };
  return { page: 'not-found' };
}

function navigate(path, { replace = false, focus = 'heading' } = {}) {
  if (path !== location.pathname + location.search) {
    if (replace) history.replaceState(null, '', path);
    else history.pushState(null, '', path);
  }
  render({ focus });
}

window.addEventListener('popstate', () => render({ focus: 'heading' }));

function link(path, text, attrs = {}) {
  return h('a', {
    href: path,
    ...attrs,
    onClick: (e) => {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      navigate(path);
    },
  }, text);
}

function sessionEnded(notice) {
  state.me = null;
  state.workspaces = null;
  state.tokens = null;
  state.notice = notice;
  closeAllModals();
  render({ focus: 'first-field' });
}

/** Re-renders the page for the current URL. */
function render({ focus } = {}) {
  closeMenu();
  if (!state.me) {
    renderSignIn();
    if (focus) document.getElementById('signin-username')?.focus();
    return;
  }
  const route = parseRoute();
  document.title = titleFor(route);
  const main = h('main', { id: 'main', tabindex: '-1' });
  app.replaceChildren(topBar(), main);
  if (route.page === 'home') renderHome(main);
  else if (route.page === 'settings') renderSettings(main, route);
  else renderNotFound(main);
  if (focus === 'heading') main.querySelector('h1')?.focus();
}

function titleFor(route) {
  if (route.page === 'settings' && route.tab === 'profile') return 'Profile · User Settings · ENSPACE';
  if (route.page === 'settings' && route.sub === 'tokens') return 'Tokens · Dev · User Settings · ENSPACE';
  if (route.page === 'settings' && route.sub === 'logs') return 'Request Logs · Dev · User Settings · ENSPACE';
  if (route.page === 'not-found') return 'Page not found · ENSPACE';
  return 'ENSPACE';
}

// ---------------------------------------------------------------------------
// Toasts

function toast(message, kind = 'success') {
  const region = document.getElementById('toasts');
  const item = h('div', { class: `toast toast-${kind}` }, icon(kind === 'success' ? 'check' : 'error'), h('span', {}, message));
  region.append(item);
  setTimeout(() => item.remove(), 6000);
}

// ---------------------------------------------------------------------------
// Sign in

function renderSignIn() {
  document.title = 'Sign in · ENSPACE';
  const usernameError = h('p', { class: 'field-error', id: 'signin-username-error', hidden: true });
  const passwordError = h('p', { class: 'field-error', id: 'signin-password-error', hidden: true });
  const formError = h('div', { class: 'callout callout-error', id: 'signin-error', role: 'alert', hidden: true });
  const username = h('input', {
    id: 'signin-username', name: 'username', type: 'text', autocomplete: 'username',
    autocapitalize: 'none', spellcheck: 'false', required: true,
    'aria-describedby': 'signin-username-error',
  });
  const password = h('input', {
    id: 'signin-password', name: 'password', type: 'password', autocomplete: 'current-password',
    required: true, 'aria-describedby': 'signin-password-error',
  });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', id: 'signin-submit' }, 'Sign in');

  const setError = (input, errorEl, message) => {
    errorEl.textContent = message || '';
    errorEl.hidden = !message;
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  };

  const form = h('form', {
    class: 'signin-form', novalidate: true,
    onSubmit: async (e) => {
      e.preventDefault();
      formError.hidden = true;
      const u = username.value.trim();
      const p = password.value;
      setError(username, usernameError, u ? '' : 'Enter your username.');
      setError(password, passwordError, p ? '' : 'Enter your password.');
      if (!u) { username.focus(); return; }
      if (!p) { password.focus(); return; }
      submit.disabled = true;
      submit.textContent = 'Signing in…';
      try {
        const body = await api('POST', '/v1/session', { username: u, password: p });
        // The session itself travels in the HttpOnly cookie; drop the copy.
        state.me = body.user;
        state.notice = null;
        render({ focus: 'heading' });
      } catch (err) {
        submit.disabled = false;
        submit.textContent = 'Sign in';
        formError.replaceChildren(icon('error'), h('span', {}, err.status === 401
          ? 'Wrong username or password. Check both and try again.'
          : (err.status === 0 ? err.message : `Signing in failed: ${stripTicks(err.message)}`)));
        formError.hidden = false;
        password.value = '';
        password.focus();
      }
    },
  },
  state.notice ? h('div', { class: 'callout callout-info', role: 'status' }, state.notice) : null,
  h('div', { class: 'field' }, h('label', { for: 'signin-username' }, 'Username'), username, usernameError),
  h('div', { class: 'field' }, h('label', { for: 'signin-password' }, 'Password'), password, passwordError),
  formError,
  submit);

  app.replaceChildren(h('main', { id: 'main', class: 'signin', tabindex: '-1' },
    h('div', { class: 'signin-card' },
      h('div', { class: 'brand brand-large' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, 'E'), 'ENSPACE'),
      h('h1', { class: 'signin-title' }, 'Sign in to your account'),
      h('p', { class: 'muted' }, 'Use your ENSPACE username and password.'),
      form),
    h('p', { class: 'signin-footer muted' }, 'Signing in sets a session cookie for this site only.')));
}

// ---------------------------------------------------------------------------
// Top bar and account menu

let menuState = null;

function topBar() {
  const me = state.me;
  const menuId = 'account-menu';
  const button = h('button', {
    type: 'button', class: 'avatar', id: 'account-button',
    'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': menuId,
    'aria-label': `Account menu for ${me.name}`, title: me.name,
  }, h('span', { 'aria-hidden': 'true' }, initials(me.name)));

  const items = [
    h('a', { role: 'menuitem', href: '/settings', tabindex: '-1', id: 'menu-settings' }, 'User Settings'),
    h('button', { type: 'button', role: 'menuitem', tabindex: '-1', id: 'menu-signout' }, 'Sign out'),
  ];
  items[0].addEventListener('click', (e) => {
    e.preventDefault();
    closeMenu();
    navigate('/settings');
  });
  items[1].addEventListener('click', () => {
    closeMenu();
    signOut();
  });
  const menu = h('div', { class: 'menu', id: menuId, role: 'menu', 'aria-labelledby': 'account-button', hidden: true },
    h('div', { class: 'menu-header', role: 'none' },
      h('div', { class: 'menu-name' }, me.name),
      h('div', { class: 'menu-sub' }, `${me.id} · ${me.role}`)),
    h('div', { role: 'separator', class: 'menu-sep' }),
    items);

  const focusItem = (i) => items[(i + items.length) % items.length].focus();
  const open = (which = 0) => {
    menu.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    menuState = { menu, button };
    focusItem(which === 'last' ? items.length - 1 : which);
  };
  button.addEventListener('click', () => (menu.hidden ? open(0) : closeMenu({ restore: true })));
  button.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown') { e.preventDefault(); open(0); }
    if (e.key === 'ArrowUp') { e.preventDefault(); open('last'); }
  });
  menu.addEventListener('keydown', (e) => {
    const i = items.indexOf(document.activeElement);
    if (e.key === 'ArrowDown') { e.preventDefault(); focusItem(i + 1); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); focusItem(i - 1); }
    else if (e.key === 'Home') { e.preventDefault(); focusItem(0); }
    else if (e.key === 'End') { e.preventDefault(); focusItem(items.length - 1); }
    else if (e.key === 'Escape') { e.preventDefault(); closeMenu({ restore: true }); }
    else if (e.key === 'Tab') { closeMenu(); }
    else if (e.key === ' ' && document.activeElement?.tagName === 'A') { e.preventDefault(); document.activeElement.click(); }
  });

  return h('header', { class: 'topbar' },
    h('div', { class: 'topbar-inner' },
      link('/', [h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, 'E'), 'ENSPACE'], { class: 'brand', 'aria-label': 'ENSPACE home' }),
      h('div', { class: 'account' }, button, menu)));
}

function closeMenu({ restore = false } = {}) {
  if (!menuState) return;
  const { menu, button } = menuState;
  menuState = null;
  menu.hidden = true;
  button.setAttribute('aria-expanded', 'false');
  if (restore) button.focus();
}

document.addEventListener('pointerdown', (e) => {
  if (menuState && !menuState.menu.contains(e.target) && !menuState.button.contains(e.target)) closeMenu();
});

async function signOut() {
  try {
    await api('DELETE', '/v1/session');
  } catch (err) {
    if (err instanceof SessionEnded) return;
    toast(`Signing out failed: ${stripTicks(err.message)}`, 'error');
    return;
  }
  history.replaceState(null, '', '/');
  sessionEnded('You have signed out.');
}

// ---------------------------------------------------------------------------
// Home

function renderHome(main) {
  const me = state.me;
  append(main, h('div', { class: 'page' },
    h('h1', { tabindex: '-1' }, `Welcome, ${me.name}`),
    h('p', { class: 'lead' }, 'Your ENSPACE workspaces and developer settings.'),
    h('div', { class: 'cards' },
      h('section', { class: 'card' },
        h('h2', {}, 'Your workspaces'),
        me.workspaces.length
          ? h('ul', { class: 'plain-list' }, me.workspaces.map((w) => h('li', {}, h('strong', {}, w.name), ' ', h('span', { class: 'muted mono' }, w.id))))
          : h('p', { class: 'muted' }, 'You do not belong to any workspace.')),
      h('section', { class: 'card' },
        h('h2', {}, 'Personal access tokens'),
        h('p', { class: 'muted' }, 'Connect scripts and integrations to the ENSPACE API with a token that has only the access they need.'),
        link('/settings/dev/tokens', 'Manage tokens', { class: 'btn btn-secondary' })))));
}

function renderNotFound(main) {
  append(main, h('div', { class: 'page' },
    h('div', { class: 'empty' },
      h('h1', { tabindex: '-1' }, 'Page not found'),
      h('p', { class: 'muted' }, 'There is nothing at this address.'),
      link('/', 'Go to the start page', { class: 'btn btn-primary' }))));
}

// ---------------------------------------------------------------------------
// Tabs (WAI-ARIA tabs with automatic activation; each tab is a URL)

function tablist({ label, tabs, selected, className, panelId }) {
  const buttons = tabs.map((t) => h('button', {
    type: 'button', role: 'tab', id: t.id, class: 'tab',
    'aria-selected': String(t.key === selected), 'aria-controls': panelId,
    tabindex: t.key === selected ? '0' : '-1',
    onClick: () => { if (t.key !== selected) { navigate(t.path, { focus: null }); document.getElementById(t.id)?.focus(); } },
  }, t.label));
  const list = h('div', { role: 'tablist', 'aria-label': label, class: className }, buttons);
  list.addEventListener('keydown', (e) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    let next = null;
    if (e.key === 'ArrowRight') next = (i + 1) % tabs.length;
    else if (e.key === 'ArrowLeft') next = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = tabs.length - 1;
    if (next === null) return;
    e.preventDefault();
    const t = tabs[next];
    navigate(t.path, { focus: null });
    document.getElementById(t.id)?.focus();
  });
  return list;
}

// ---------------------------------------------------------------------------
// User Settings

function renderSettings(main, route) {
  const panel = h('section', { role: 'tabpanel', id: 'settings-panel', 'aria-labelledby': `tab-${route.tab}`, class: 'tabpanel' });
  append(main, h('div', { class: 'page' },
    h('h1', { tabindex: '-1' }, 'User Settings'),
    tablist({
      label: 'User Settings',
      className: 'tabs',
      panelId: 'settings-panel',
      selected: route.tab,
      tabs: [
        { key: 'profile', id: 'tab-profile', label: 'Profile', path: '/settings/profile' },
        { key: 'dev', id: 'tab-dev', label: 'Dev', path: '/settings/dev/tokens' },
      ],
    }),
    panel));
  if (route.tab === 'profile') renderProfile(panel);
  else renderDev(panel, route);
}

function renderProfile(panel) {
  const me = state.me;
  append(panel, h('div', { class: 'card' },
    h('h2', {}, 'Profile'),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Name'), h('dd', {}, me.name),
      h('dt', {}, 'Username'), h('dd', { class: 'mono' }, me.id),
      h('dt', {}, 'Role'), h('dd', {}, me.role === 'auditor' ? 'Auditor' : 'User'),
      h('dt', {}, 'Workspaces'), h('dd', {}, me.workspaces.length ? me.workspaces.map((w) => w.name).join(', ') : 'None'))));
}

function renderDev(panel, route) {
  const sub = h('section', { role: 'tabpanel', id: 'dev-panel', 'aria-labelledby': `tab-dev-${route.sub}`, class: 'subpanel' });
  append(panel,
    tablist({
      label: 'Dev',
      className: 'subtabs',
      panelId: 'dev-panel',
      selected: route.sub,
      tabs: [
        { key: 'tokens', id: 'tab-dev-tokens', label: 'Tokens', path: '/settings/dev/tokens' },
        { key: 'logs', id: 'tab-dev-logs', label: 'Request Logs', path: logsPath() },
      ],
    }),
    sub);
  if (route.sub === 'tokens') renderTokensPanel(sub, { reload: true });
  else renderLogsPanel(sub, route.query);
}

// ---------------------------------------------------------------------------
// Tokens

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

const STATUS_LABEL = { active: 'Active', expired: 'Expired', revoked: 'Revoked' };

function workspaceName(id) {
  const all = state.workspaces || state.me.workspaces;
  return (all.find((w) => w.id === id) || { name: id }).name;
}

const TOKENS_PAGE = 100;

/** The first page of tokens (newest first); more with loadMoreTokens(). */
async function loadTokens() {
  try {
    const body = await api('GET', `/v1/tokens?limit=${TOKENS_PAGE}`);
    state.tokens = body.tokens;
    state.tokensCursor = body.next_cursor;
    state.tokensError = null;
  } catch (err) {
    if (err instanceof SessionEnded) throw err;
    state.tokensError = err;
  }
}

async function loadMoreTokens() {
  const q = new URLSearchParams({ limit: String(TOKENS_PAGE), cursor: state.tokensCursor });
  const body = await api('GET', `/v1/tokens?${q}`);
  const known = new Set(state.tokens.map((t) => t.id));
  state.tokens.push(...body.tokens.filter((t) => !known.has(t.id)));
  state.tokensCursor = body.next_cursor;
}

/** Text whose direction must not spill onto what is next to it. */
function isolated(text) {
  return h('bdi', {}, text);
}

/** The same, where only plain text can go (option labels, toasts):
 * between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE. */
function isolatedText(text) {
  return `\u2068${text}\u2069`;
}

async function loadWorkspaces() {
  const body = await api('GET', '/v1/workspaces');
  state.workspaces = body.workspaces;
  return state.workspaces;
}

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
      h('button', { type: 'button', class: 'btn btn-primary', id: 'create-first-token', onClick: (e) => openCreateDialog(e.currentTarget) },
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
    withButton ? h('button', { type: 'button', class: 'btn btn-primary', id: 'new-token', onClick: (e) => openCreateDialog(e.currentTarget) }, icon('plus'), 'New token') : null);
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
        t.status === 'active'
          ? h('button', {
            type: 'button', class: 'btn btn-danger-ghost btn-small revoke', id: `revoke-${t.id}`,
            'aria-label': `Revoke ${label}`,
            onClick: (e) => openRevokeDialog(t, e.currentTarget),
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

function errorState(title, err, retry) {
  return h('div', { class: 'empty empty-error', role: 'alert' },
    h('div', { class: 'empty-icon' }, icon('error')),
    h('h3', {}, title),
    h('p', { class: 'muted' }, stripTicks(err.message)),
    retry ? h('button', { type: 'button', class: 'btn btn-secondary', onClick: retry }, 'Try again') : null);
}

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

/** The API's rules for a new token, with the codes it answers 422 with. */
function validateToken(values, workspaces) {
  const errors = {};
  const description = values.description.trim();
  const chars = [...description].length;
  if (chars === 0) errors.description = { code: 'invalid_description', message: 'Enter a description, for example “ERP Integration”.' };
  else if (chars > 100) errors.description = { code: 'invalid_description', message: `Use at most 100 characters (this one has ${chars}).` };
  else if (CONTROL_CHARS.test(description)) errors.description = { code: 'invalid_description', message: 'Remove line breaks, tabs and other control or invisible formatting characters.' };
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
};

async function openCreateDialog(trigger) {
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
    'aria-describedby': 'token-expiration-hint token-expiration-error',
  }, EXPIRATIONS.map((e) => h('option', { value: e.id, selected: e.id === '3m' }, e.label)));
  const expirationHint = h('p', { class: 'hint', id: 'token-expiration-hint' });
  const neverWarning = h('div', { class: 'callout callout-warning', id: 'no-expiration-warning', hidden: true },
    icon('warn'),
    h('span', {}, h('strong', {}, 'Tokens without an expiration date are a security risk. '),
      'If one leaks, it works until someone notices and revokes it. Prefer an expiration and create a new token when it runs out.'));
  const scopeBoxes = SCOPES.map((s) => h('input', { type: 'checkbox', name: 'scopes', value: s.id, id: `token-scope-${s.id}`, 'aria-describedby': `token-scope-${s.id}-meaning` }));
  const workspaceBoxes = workspaces.map((w) => h('input', { type: 'checkbox', name: 'workspaces', value: w.id, id: `token-workspace-${w.id}`, checked: workspaces.length === 1 }));
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
  updateExpiration();
  const updateCounter = () => {
    const n = [...description.value.trim()].length;
    counter.textContent = `${n} / 100`;
    counter.classList.toggle('over', n > 100);
  };

  const values = () => ({
    description: description.value,
    expiration: expiration.value,
    scopes: scopeBoxes.filter((b) => b.checked).map((b) => b.value),
    workspaces: workspaceBoxes.filter((b) => b.checked).map((b) => b.value),
  });

  const focusTarget = { description, expiration, scopes: scopeBoxes[0], workspaces: workspaceBoxes[0] };
  const invalidTargets = { description: [description], expiration: [expiration], scopes: scopeBoxes, workspaces: workspaceBoxes };
  let shown = {};
  const showErrors = (errors) => {
    shown = errors;
    for (const name of ['description', 'expiration', 'scopes', 'workspaces']) {
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
    formError);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.hidden = true;
    const v = values();
    const errors = validateToken(v, workspaces);
    showErrors(errors);
    const firstBad = ['description', 'expiration', 'scopes', 'workspaces'].find((k) => errors[k]);
    if (firstBad) {
      focusTarget[firstBad]?.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Creating…';
    let created;
    try {
      created = await api('POST', '/v1/tokens', { ...v, description: v.description.trim() });
    } catch (err) {
      if (err instanceof SessionEnded) return;
      submit.disabled = false;
      submit.textContent = 'Create token';
      const field = err.status === 422 ? (FIELD_OF_CODE[err.code] || err.field) : null;
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
    showSecret(created);
  });

  const shell = dialogShell(titleId, 'New personal access token', form, [cancel, submit], 'Cancel');
  shell.closeButton.addEventListener('click', () => close());
  dialog.append(...shell.nodes);

  // --- after creation: the secret, once
  function showSecret(created) {
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
        h('dt', {}, 'Expires'), h('dd', {}, exp)),
      h('p', { class: 'hint' }, 'Send it with every API call as ', h('code', {}, 'Authorization: Bearer <token>'), '.'));
    const shell2 = dialogShell(titleId, 'Your new token', body, [done], 'Close');
    shell2.closeButton.addEventListener('click', () => close());
    dialog.replaceChildren(...shell2.nodes);
    dialog.classList.add('modal-secret');
    // Forget the secret with the dialog: nothing else ever held it.
    onCloseHooks.push(() => {
      code.textContent = '';
      secret = null;
    });
    copy.focus();
    // Refresh the list underneath.
    const panel = currentTokensPanel();
    if (panel) renderTokensPanel(panel, { reload: true });
    else loadTokens().catch(() => {});
  }

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

function openRevokeDialog(token, trigger) {
  const titleId = uid('revoke-title');
  const descId = uid('revoke-desc');
  const dialog = h('dialog', { class: 'modal modal-small', id: 'revoke-dialog', role: 'alertdialog', 'aria-labelledby': titleId, 'aria-describedby': descId });
  const error = h('div', { class: 'callout callout-error', role: 'alert', hidden: true });
  const cancel = h('button', { type: 'button', class: 'btn btn-secondary', id: 'revoke-cancel' }, 'Cancel');
  const confirm = h('button', { type: 'button', class: 'btn btn-danger', id: 'revoke-confirm' }, 'Revoke token');
  const shell = dialogShell(titleId, 'Revoke this token?', [
    h('p', { id: descId },
      h('strong', {}, isolated(token.description)), ' will stop working at once on every ENSPACE API node. ',
      'Anything still using it will get “401 Unauthorized”. This cannot be undone.'),
    error,
  ], [cancel, confirm], 'Cancel');
  dialog.append(...shell.nodes);
  const close = openModal(dialog, {
    initialFocus: cancel,
    returnFocus: () => document.getElementById(`token-${token.id}`) || trigger,
  });
  cancel.addEventListener('click', () => close());
  shell.closeButton.addEventListener('click', () => close());
  confirm.addEventListener('click', async () => {
    confirm.disabled = true;
    confirm.textContent = 'Revoking…';
    try {
      await api('DELETE', `/v1/tokens/${encodeURIComponent(token.id)}`);
    } catch (err) {
      if (err instanceof SessionEnded) return;
      confirm.disabled = false;
      confirm.textContent = 'Revoke token';
      error.replaceChildren(icon('error'), h('span', {}, stripTicks(err.message)));
      error.hidden = false;
      return;
    }
    const panel = currentTokensPanel();
    if (panel) await renderTokensPanel(panel, { reload: true });
    close();
    toast(`Revoked “${isolatedText(token.description)}”.`);
  });
}

// ---------------------------------------------------------------------------
// Request logs

const PERIODS = [
  { id: '1h', label: 'Last hour', ms: 3600e3 },
  { id: '24h', label: 'Last 24 hours', ms: 24 * 3600e3 },
  { id: '7d', label: 'Last 7 days', ms: 7 * 24 * 3600e3 },
  { id: '30d', label: 'Last 30 days', ms: 30 * 24 * 3600e3 },
  { id: '90d', label: 'Last 90 days', ms: 90 * 24 * 3600e3 },
  { id: 'custom', label: 'Custom range', ms: null },
];
const PAGE_SIZE = 50;
const HOUR = 3600e3;
const DAY = 24 * HOUR;

// What the Request Logs tab shows; survives switching tabs, and lives in the
// URL (token id and period only) so that reload keeps the place.
const logs = { tokenId: null, period: '24h', from: null, to: null };

function logsPath(tokenId) {
  const q = new URLSearchParams();
  const id = tokenId || logs.tokenId;
  if (id) q.set('token', id);
  if (tokenId || logs.period !== '24h') q.set('period', tokenId ? '24h' : logs.period);
  if (!tokenId && logs.period === 'custom' && logs.from && logs.to) {
    q.set('from', logs.from.toISOString());
    q.set('to', logs.to.toISOString());
  }
  const s = q.toString();
  return `/settings/dev/logs${s ? `?${s}` : ''}`;
}

function toLocalInput(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function windowOf() {
  if (logs.period === 'custom' && logs.from && logs.to) return { from: logs.from, to: logs.to };
  const p = PERIODS.find((x) => x.id === logs.period) || PERIODS[1];
  const to = new Date();
  return { from: new Date(to.getTime() - p.ms), to };
}

async function renderLogsPanel(panel, query) {
  if (query) {
    if (query.get('token')) logs.tokenId = query.get('token');
    const period = query.get('period');
    if (PERIODS.some((p) => p.id === period)) logs.period = period;
    if (logs.period === 'custom') {
      const from = new Date(query.get('from') || '');
      const to = new Date(query.get('to') || '');
      if (!Number.isNaN(from.getTime()) && !Number.isNaN(to.getTime()) && from < to) {
        logs.from = from;
        logs.to = to;
      } else if (!logs.from || !logs.to) {
        logs.to = new Date();
        logs.from = new Date(logs.to.getTime() - DAY);
      }
    }
  }
  const header = h('div', { class: 'section-head' },
    h('div', {},
      h('h2', {}, 'Request logs'),
      h('p', { class: 'muted' }, 'Every call made to the ENSPACE API with one of your tokens, allowed or refused. ',
        h('span', { id: 'retention-note' }, 'Logs are kept for 90 days.'))));
  panel.replaceChildren(header, h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading…'));
  try {
    await loadTokens();
  } catch {
    return;
  }
  if (!panel.isConnected) return;
  if (state.tokensError) {
    panel.replaceChildren(header, errorState('Could not load your tokens', state.tokensError, () => renderLogsPanel(panel)));
    return;
  }
  let tokens = state.tokens;
  // A deep link may name a token older than the pages loaded so far.
  if (logs.tokenId && !tokens.some((t) => t.id === logs.tokenId)) {
    try {
      const one = await api('GET', `/v1/tokens/${encodeURIComponent(logs.tokenId)}`);
      tokens = [...tokens, one];
    } catch (err) {
      if (err instanceof SessionEnded) return;
    }
    if (!panel.isConnected) return;
  }
  if (!tokens.length) {
    panel.replaceChildren(header, h('div', { class: 'empty', id: 'logs-no-tokens' },
      h('div', { class: 'empty-icon' }, icon('logs')),
      h('h3', {}, 'No tokens, no requests'),
      h('p', { class: 'muted' }, 'Request logs show the calls made with your tokens. Create a token first.'),
      link('/settings/dev/tokens', 'Go to Tokens', { class: 'btn btn-primary' })));
    return;
  }
  if (!tokens.some((t) => t.id === logs.tokenId)) {
    logs.tokenId = (tokens.find((t) => t.status === 'active') || tokens[0]).id;
  }

  // --- filters
  const tokenSelect = h('select', { id: 'logs-token', name: 'token' }, tokens.map((t) => h('option', { value: t.id, selected: t.id === logs.tokenId },
    t.status === 'active' ? isolatedText(t.description) : `${isolatedText(t.description)} (${STATUS_LABEL[t.status].toLowerCase()})`)));
  const periodName = uid('period');
  const periodRadios = PERIODS.map((p) => h('input', {
    type: 'radio', name: periodName, value: p.id, id: `logs-period-${p.id}`, checked: p.id === logs.period, class: 'segment-input',
  }));
  const now = new Date();
  const fromInput = h('input', { type: 'datetime-local', id: 'logs-from', value: toLocalInput(logs.from || new Date(now.getTime() - DAY)) });
  const toInput = h('input', { type: 'datetime-local', id: 'logs-to', value: toLocalInput(logs.to || now) });
  const rangeError = h('p', { class: 'field-error', id: 'logs-range-error', hidden: true });
  const applyRange = h('button', { type: 'button', class: 'btn btn-secondary', id: 'logs-apply' }, 'Apply');
  const custom = h('div', { class: 'custom-range', id: 'logs-custom', hidden: logs.period !== 'custom' },
    h('div', { class: 'field field-inline' }, h('label', { for: 'logs-from' }, 'From'), fromInput),
    h('div', { class: 'field field-inline' }, h('label', { for: 'logs-to' }, 'To'), toInput),
    applyRange, rangeError);
  const refresh = h('button', { type: 'button', class: 'btn btn-ghost', id: 'logs-refresh' }, icon('refresh'), 'Refresh');

  const filters = h('div', { class: 'filters' },
    h('div', { class: 'field' }, h('label', { for: 'logs-token' }, 'Token'), tokenSelect),
    h('div', { class: 'field' },
      h('span', { class: 'label', id: 'logs-period-label' }, 'Period'),
      h('div', { class: 'segments', role: 'radiogroup', 'aria-labelledby': 'logs-period-label' },
        PERIODS.map((p, i) => [periodRadios[i], h('label', { for: `logs-period-${p.id}`, class: 'segment' }, p.label)]))),
    h('div', { class: 'filters-end' }, refresh));

  const chartBox = h('div', { class: 'chart', id: 'logs-chart' });
  const legend = h('ul', { class: 'legend', id: 'logs-legend' });
  const chartCard = h('section', { class: 'card chart-card', 'aria-labelledby': 'logs-chart-title' },
    h('div', { class: 'chart-head' }, h('h3', { id: 'logs-chart-title' }, 'Requests over time'), legend),
    chartBox);
  const tableBox = h('section', { class: 'logs-table-box', 'aria-labelledby': 'logs-table-title' });
  // Calls an API node made but had to drop from its queue (GET …/stats `dropped`).
  const droppedNotice = h('div', { class: 'callout callout-warning', id: 'logs-dropped', role: 'status', hidden: true });
  panel.replaceChildren(header, filters, custom, droppedNotice, chartCard, tableBox);

  let generation = 0;
  const reload = () => {
    const tok = tokens.find((t) => t.id === logs.tokenId);
    history.replaceState(null, '', logsPath());
    loadLogs(++generation, tok, windowOf());
  };

  tokenSelect.addEventListener('change', () => { logs.tokenId = tokenSelect.value; reload(); });
  for (const r of periodRadios) {
    r.addEventListener('change', () => {
      if (!r.checked) return;
      logs.period = r.value;
      custom.hidden = logs.period !== 'custom';
      if (logs.period === 'custom') {
        if (!logs.from || !logs.to) {
          logs.to = new Date();
          logs.from = new Date(logs.to.getTime() - DAY);
        }
        fromInput.value = toLocalInput(logs.from);
        toInput.value = toLocalInput(logs.to);
      }
      reload();
    });
  }
  applyRange.addEventListener('click', () => {
    const from = new Date(fromInput.value);
    const to = new Date(toInput.value);
    let message = '';
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) message = 'Enter both a start and an end.';
    else if (from >= to) message = 'The start must be before the end.';
    rangeError.textContent = message;
    rangeError.hidden = !message;
    for (const el of [fromInput, toInput]) {
      if (message) el.setAttribute('aria-invalid', 'true'); else el.removeAttribute('aria-invalid');
    }
    if (message) { fromInput.focus(); return; }
    logs.from = from;
    logs.to = to;
    reload();
  });
  refresh.addEventListener('click', reload);

  async function loadLogs(gen, token, win) {
    const stale = () => gen !== generation || !panel.isConnected;
    const params = (extra) => {
      const q = new URLSearchParams({ from: win.from.toISOString(), to: win.to.toISOString(), ...extra });
      return q.toString();
    };
    const span = win.to - win.from;
    const bucket = span <= 2 * DAY ? 'hour' : 'day';
    const base = `/v1/tokens/${encodeURIComponent(token.id)}/requests`;

    chartBox.replaceChildren(h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading chart…'));
    legend.replaceChildren();
    tableBox.replaceChildren(h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading requests…'));
    tableBox.setAttribute('aria-busy', 'true');

    const statsP = api('GET', `${base}/stats?${params({ bucket })}`).then((b) => ({ ok: b }), (e) => ({ err: e }));
    const pageP = api('GET', `${base}?${params({ limit: String(PAGE_SIZE) })}`).then((b) => ({ ok: b }), (e) => ({ err: e }));
    const [stats, page] = await Promise.all([statsP, pageP]);
    if ([stats.err, page.err].some((e) => e instanceof SessionEnded) || stale()) return;

    if (stats.err) {
      chartBox.replaceChildren(h('p', { class: 'chart-error', role: 'alert' }, icon('error'), `Could not load the chart: ${stripTicks(stats.err.message)}`));
    } else {
      drawChart(chartBox, legend, fillBuckets(stats.ok, win, bucket), bucket);
    }
    const dropped = stats.ok ? stats.ok.dropped || 0 : 0;
    droppedNotice.dataset.dropped = String(dropped);
    droppedNotice.hidden = dropped === 0;
    droppedNotice.replaceChildren(icon('warn'), h('span', {},
      h('strong', {}, `${plural(dropped, 'call', 'calls')} made with this token in this period ${dropped === 1 ? 'is' : 'are'} missing from the log. `),
      'An ENSPACE API node could not keep up and dropped them: this token was sending more than any other.'));

    tableBox.removeAttribute('aria-busy');
    if (page.err) {
      tableBox.replaceChildren(errorState('Could not load the request logs', page.err, reload));
      return;
    }
    const records = [...page.ok.requests];
    let cursor = page.ok.next_cursor;
    if (!records.length) {
      tableBox.replaceChildren(h('div', { class: 'empty', id: 'logs-empty' },
        h('div', { class: 'empty-icon' }, icon('chart')),
        h('h3', { id: 'logs-table-title' }, 'No requests in this period'),
        h('p', { class: 'muted' }, 'Nothing was called with “', isolated(token.description), `” between ${dateTimeFmt.format(win.from)} and ${dateTimeFmt.format(win.to)}. `,
          'Calls appear here within seconds of being made. Try a longer period.')));
      return;
    }
    const tbody = h('tbody', {});
    const count = h('p', { class: 'muted table-count', id: 'logs-count', role: 'status' });
    const more = h('button', { type: 'button', class: 'btn btn-secondary', id: 'logs-more' }, 'Load more');
    const moreError = h('p', { class: 'field-error', role: 'alert', hidden: true });
    const addRows = (list) => append(tbody, list.map(recordRow));
    const update = () => {
      count.textContent = `Showing ${plural(records.length, 'request', 'requests')}${cursor ? ' — more are available' : ''}.`;
      more.hidden = !cursor;
    };
    more.addEventListener('click', async () => {
      more.disabled = true;
      more.textContent = 'Loading…';
      moreError.hidden = true;
      try {
        const next = await api('GET', `${base}?${params({ limit: String(PAGE_SIZE), cursor })}`);
        if (stale()) return;
        records.push(...next.requests);
        addRows(next.requests);
        cursor = next.next_cursor;
      } catch (err) {
        if (err instanceof SessionEnded) return;
        moreError.textContent = `Could not load more: ${stripTicks(err.message)}`;
        moreError.hidden = false;
      }
      more.disabled = false;
      more.textContent = 'Load more';
      update();
      if (!cursor) count.focus();
    });
    addRows(records);
    count.setAttribute('tabindex', '-1');
    update();
    tableBox.replaceChildren(
      h('h3', { id: 'logs-table-title', class: 'visually-hidden' }, 'Requests'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'table logs-table', id: 'logs-table' },
          h('caption', { class: 'visually-hidden' }, 'Requests made with ', isolated(token.description), ', newest first'),
          h('thead', {}, h('tr', {}, ['Time', 'Method', 'Path', 'Workspace', 'Status', 'Duration', 'Client IP', 'Node'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody)),
      h('div', { class: 'table-foot' }, count, more, moreError));
  }

  reload();
}

function recordRow(r) {
  const cls = r.status >= 500 ? 'server' : r.status >= 400 ? 'client' : 'ok';
  return h('tr', { 'data-request-id': r.id },
    h('td', { 'data-label': 'Time', class: 'nowrap' }, h('time', { datetime: r.at, title: fullFmt.format(new Date(r.at)) }, logTimeFmt.format(new Date(r.at)))),
    h('td', { 'data-label': 'Method' }, h('span', { class: 'method mono' }, r.method)),
    h('td', { 'data-label': 'Path', class: 'mono cell-path' }, r.path),
    h('td', { 'data-label': 'Workspace' }, r.workspace ? workspaceName(r.workspace) : h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Status' }, h('span', { class: `http http-${cls}` }, String(r.status))),
    h('td', { 'data-label': 'Duration', class: 'num nowrap' }, `${Number(r.duration_ms).toFixed(1)} ms`),
    h('td', { 'data-label': 'Client IP', class: 'mono' }, r.client_ip),
    h('td', { 'data-label': 'Node', class: 'mono' }, r.node));
}

/** Every bucket of the window, zeros where the server had none. */
function fillBuckets(stats, win, bucket) {
  const step = bucket === 'hour' ? HOUR : DAY;
  const byStart = new Map();
  for (const b of stats.buckets || []) byStart.set(new Date(b.start).getTime(), b);
  const first = Math.floor(win.from.getTime() / step) * step;
  const out = [];
  for (let t = first; t < win.to.getTime(); t += step) {
    const b = byStart.get(t);
    byStart.delete(t);
    out.push(bucketOf(t, step, b));
  }
  for (const [t, b] of byStart) out.push(bucketOf(t, step, b));
  out.sort((a, b) => a.start - b.start);
  return out;
}

function bucketOf(t, step, b) {
  return {
    start: new Date(t),
    end: new Date(t + step),
    total: (b && b.total) || 0,
    success: (b && b.success) || 0,
    client_error: (b && b.client_error) || 0,
    server_error: (b && b.server_error) || 0,
  };
}

function drawChart(box, legend, buckets, bucket) {
  const options = {
    summary: (total, errors) => `Requests over time: ${plural(total, 'request', 'requests')}, ${plural(errors, 'error', 'errors')}`,
    tick: (b) => (bucket === 'hour'
      ? (b.start.getHours() === 0 ? dayFmt.format(b.start) : hourFmt.format(b.start))
      : dayFmt.format(b.start)),
    describe: (b) => {
      const when = bucket === 'hour'
        ? `${dayFmt.format(b.start)}, ${hourFmt.format(b.start)}–${hourFmt.format(b.end)}`
        : dayFmt.format(b.start);
      return `${when}: ${plural(b.total, 'request', 'requests')} (${b.success} successful, ${b.client_error} client errors, ${b.server_error} server errors)`;
    },
  };
  const draw = () => renderChart(box, buckets, options);
  const totals = draw();
  box.dataset.total = String(totals.total);
  box.dataset.errors = String(totals.errors);
  box.dataset.buckets = String(buckets.length);
  const sums = Object.fromEntries(SERIES.map((s) => [s.key, buckets.reduce((n, b) => n + b[s.key], 0)]));
  legend.replaceChildren(...SERIES.map((s) => h('li', {},
    h('span', { class: `swatch ${s.className}`, 'aria-hidden': 'true' }), `${s.label}: `, h('strong', { 'data-series': s.key }, String(sums[s.key])))));
  if (typeof ResizeObserver === 'function') {
    let last = box.clientWidth;
    const ro = new ResizeObserver(() => {
      if (!box.isConnected) { ro.disconnect(); return; }
      if (Math.abs(box.clientWidth - last) < 8) return;
      last = box.clientWidth;
      draw();
    });
    ro.observe(box);
  }
}

// ---------------------------------------------------------------------------
// Start

document.querySelector('.skip-link')?.addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main')?.focus();
});

async function boot() {
  try {
    const res = await fetch('/v1/me', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
    if (res.ok) state.me = await res.json();
    else if (res.status !== 401) throw new Error(`The server answered ${res.status}.`);
  } catch (err) {
    app.replaceChildren(h('main', { id: 'main', class: 'signin' },
      h('div', { class: 'signin-card' }, errorState('ENSPACE is not reachable right now', err, () => location.reload()))));
    return;
  }
  render({ focus: null });
}

boot();
