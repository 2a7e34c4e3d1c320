// ENSPACE settings UI. Plain ES modules, no build step, no dependencies.
//
// The entry module: the page shell (sign-in, the top bar with the
// notification bell and the account menu, home, the settings tabs) and the start-up. Each screen lives in a
// module of its own; they talk to the API only through api.js.

import { api, SessionEnded, onSessionEnded } from './api.js';
import { closeAllModals } from './dialogs.js';
import { h, append, icon, initials, stripTicks, toast, errorState } from './dom.js';
import { logsPath, renderLogsPanel } from './logs.js';
import { notificationBell, startNotifications, stopNotifications } from './notifications.js';
import { link, navigate, parseRoute, setRenderer } from './router.js';
import { state } from './state.js';
import { renderTokensPanel } from './tokens.js';
import { renderDecoysPanel } from './decoys.js';
import { insightsPath, renderInsightsPanel } from './insights.js';
import { renderAuditPanel, renderTimelinePanel } from './audit.js';
import { isWorkspaceAdmin, workspaceTokensPath, renderWorkspaceTokensPanel } from './workspace_tokens.js';

const app = document.getElementById('app');

function sessionEnded(notice) {
  state.me = null;
  state.workspaces = null;
  state.tokens = null;
  state.decoys = null;
  state.notice = notice;
  stopNotifications();
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
  startNotifications();
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
  if (route.page === 'settings' && route.sub === 'decoys') return 'Decoys · Dev · User Settings · ENSPACE';
  if (route.page === 'settings' && route.sub === 'logs') return 'Request Logs · Dev · User Settings · ENSPACE';
  if (route.page === 'settings' && route.sub === 'insights') return 'Insights · Dev · User Settings · ENSPACE';
  if (route.page === 'settings' && route.sub === 'timeline') return 'Timeline · ENSPACE';
  if (route.page === 'settings' && route.tab === 'audit') return 'Audit · User Settings · ENSPACE';
  if (route.page === 'settings' && route.sub === 'workspace-tokens') return 'Workspace tokens · Dev · User Settings · ENSPACE';
  if (route.page === 'not-found') return 'Page not found · ENSPACE';
  return 'ENSPACE';
}

setRenderer(render);
onSessionEnded(sessionEnded);

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
      h('div', { class: 'topbar-end' },
        notificationBell(),
        h('div', { class: 'account' }, button, menu))));
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
        ...(state.me.role === 'auditor' ? [{ key: 'audit', id: 'tab-audit', label: 'Audit', path: '/settings/audit' }] : []),
      ],
    }),
    panel));
  if (route.tab === 'profile') renderProfile(panel);
  else if (route.tab === 'audit' && route.sub === 'timeline') renderTimelinePanel(panel, route.query);
  else if (route.tab === 'audit' && state.me.role !== 'auditor') {
    append(panel, h('div', { class: 'empty', id: 'audit-not-auditor' },
      h('h2', {}, 'For auditors'),
      h('p', { class: 'muted' }, 'The audit log is open to users with the auditor role only.')));
  } else if (route.tab === 'audit') renderAuditPanel(panel);
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
        { key: 'decoys', id: 'tab-dev-decoys', label: 'Decoys', path: '/settings/dev/decoys' },
        { key: 'logs', id: 'tab-dev-logs', label: 'Request Logs', path: logsPath() },
        // Insights and, for workspace admins only, Workspace tokens.
        { key: 'insights', id: 'tab-dev-insights', label: 'Insights', path: insightsPath() },
        ...(route.sub === 'timeline' ? [{ key: 'timeline', id: 'tab-dev-timeline', label: 'Timeline', path: location.pathname + location.search }] : []),
        ...(isWorkspaceAdmin() ? [{ key: 'workspace-tokens', id: 'tab-dev-workspace-tokens', label: 'Workspace tokens', path: workspaceTokensPath() }] : []),
      ],
    }),
    sub);
  if (route.sub === 'tokens') renderTokensPanel(sub, { reload: true });
  else if (route.sub === 'decoys') renderDecoysPanel(sub, { reload: true });
  else if (route.sub === 'insights') renderInsightsPanel(sub, route.query);
  else if (route.sub === 'timeline') renderTimelinePanel(sub, route.query);
  else if (route.sub === 'workspace-tokens') renderWorkspaceTokensPanel(sub, route.query);
  else renderLogsPanel(sub, route.query);
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
