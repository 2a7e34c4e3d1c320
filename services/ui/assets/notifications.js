// The notification bell in the top bar: GET /v1/notifications every minute
// while the page is visible (and when it gets focus back), an unread count
// on the bell, and a panel listing them; opening one marks it read (POST
// /v1/notifications/{id}/read). A server without the route (404) or a
// failed poll shows no count and no error: the bell just stays quiet.

import { api, SessionEnded } from './api.js';
import { h, icon, relative, isolated, stripTicks, toast } from './dom.js';
import { state } from './state.js';

const POLL_MS = 60 * 1000;
/** A focus or visibility change polls only when the last poll is older. */
const REFOCUS_MS = 15 * 1000;

const KIND_LABEL = {
  expiring_soon: 'Expiring soon',
  expired: 'Expired',
  leaked: 'Reported leaked',
  revoked: 'Revoked',
  new_client_ip: 'Used from a new address',
  token_self_rotated: 'Rotated itself',
  // Someone used a decoy (contract §18): an alarm, not a token's news.
  decoy_used: 'Decoy used',
};

let timer = null;
let lastPoll = 0;
let polling = false;

function unreadCount() {
  return (state.notifications || []).filter((n) => !n.read).length;
}

/** Starts polling for the signed-in user; calling it again does nothing. */
function startNotifications() {
  if (timer) return;
  timer = setInterval(() => poll(), POLL_MS);
  poll();
}

/** Stops polling and forgets what was loaded (sign-out, session end). */
function stopNotifications() {
  clearInterval(timer);
  timer = null;
  lastPoll = 0;
  state.notifications = null;
}

async function poll() {
  if (!state.me || polling || document.hidden) return;
  polling = true;
  lastPoll = Date.now();
  try {
    const body = await api('GET', '/v1/notifications');
    state.notifications = Array.isArray(body?.notifications) ? body.notifications : [];
  } catch (err) {
    if (err instanceof SessionEnded) return;
    // 404: this server has no notifications; anything else: try next time.
    if (err.status === 404) state.notifications = null;
  } finally {
    polling = false;
  }
  updateBell();
}

function pollIfStale() {
  if (timer && Date.now() - lastPoll > REFOCUS_MS) poll();
}

window.addEventListener('focus', pollIfStale);
document.addEventListener('visibilitychange', () => { if (!document.hidden) pollIfStale(); });

// ---------------------------------------------------------------------------
// The bell and its panel

/** The bell for the top bar, drawn from what the last poll found. */
function notificationBell() {
  const button = h('button', {
    type: 'button', class: 'btn-icon bell', id: 'notifications-button',
    'aria-expanded': 'false', 'aria-controls': 'notifications-panel',
  }, icon('bell'), h('span', { class: 'bell-badge', id: 'notifications-badge', 'aria-hidden': 'true', hidden: true }));
  const panel = h('section', {
    class: 'notifications-panel', id: 'notifications-panel', 'aria-labelledby': 'notifications-title', hidden: true,
  });
  button.addEventListener('click', () => (panel.hidden ? openPanel() : closePanel({ restore: true })));
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.preventDefault(); closePanel({ restore: true }); }
  });
  const wrap = h('div', { class: 'bell-wrap' }, button, panel);
  updateBell(wrap);
  return wrap;
}

function parts(root = document) {
  return {
    button: root.querySelector('#notifications-button'),
    badge: root.querySelector('#notifications-badge'),
    panel: root.querySelector('#notifications-panel'),
  };
}

/** Redraws the count (and the list, when open) from `state.notifications`. */
function updateBell(root = document) {
  const { button, badge, panel } = parts(root);
  if (!button) return;
  const n = unreadCount();
  badge.textContent = n > 99 ? '99+' : String(n);
  badge.hidden = n === 0;
  button.setAttribute('aria-label', n ? `Notifications, ${n} unread` : 'Notifications');
  button.title = n ? `${n} unread notification${n === 1 ? '' : 's'}` : 'Notifications';
  if (!panel.hidden) fillPanel(panel);
}

function openPanel() {
  const { button, panel } = parts();
  fillPanel(panel);
  panel.hidden = false;
  button.setAttribute('aria-expanded', 'true');
  (panel.querySelector('.notification-item') || panel.querySelector('h2'))?.focus();
  pollIfStale();
}

function closePanel({ restore = false } = {}) {
  const { button, panel } = parts();
  if (!panel || panel.hidden) return;
  panel.hidden = true;
  button.setAttribute('aria-expanded', 'false');
  if (restore) button.focus();
}

document.addEventListener('pointerdown', (e) => {
  const wrap = document.querySelector('.bell-wrap');
  if (wrap && !wrap.contains(e.target)) closePanel();
});

function fillPanel(panel) {
  const keep = panel.contains(document.activeElement) ? document.activeElement.id : null;
  const list = state.notifications || [];
  const n = unreadCount();
  panel.replaceChildren(
    h('header', { class: 'notifications-head' },
      h('h2', { id: 'notifications-title', tabindex: '-1' }, 'Notifications'),
      h('span', { class: 'muted', id: 'notifications-unread' }, n ? `${n} unread` : 'All read')),
    list.length
      ? h('ul', { class: 'notifications-list', id: 'notifications-list' }, list.map(item))
      : h('p', { class: 'notifications-empty muted', id: 'notifications-empty' }, 'No notifications. You will hear here when a token is about to expire, has expired or was revoked, and when someone uses one of your decoys.'));
  if (keep) document.getElementById(keep)?.focus();
}

/** The description of a token or decoy the page has loaded, else its id. */
function tokenLabel(id) {
  if (!id) return null;
  const t = [...(state.tokens || []), ...(state.decoys || [])].find((x) => x.id === id);
  return t ? h('strong', { class: 'notification-token' }, isolated(t.description)) : h('span', { class: 'notification-token mono' }, id);
}

function item(n) {
  const node = h('button', {
    type: 'button', class: `notification-item${n.read ? '' : ' unread'}`, id: `notification-${n.id}`,
    'data-kind': n.kind, 'aria-describedby': n.detail ? `notification-${n.id}-detail` : null,
  },
  h('span', { class: 'notification-dot', 'aria-hidden': 'true' }),
  h('span', { class: 'notification-text' },
    h('span', { class: 'notification-title' },
      n.read ? null : h('span', { class: 'visually-hidden' }, 'Unread: '),
      h('span', { class: 'notification-kind' }, KIND_LABEL[n.kind] || n.kind),
      n.token_id ? [' · ', tokenLabel(n.token_id)] : null),
    // The detail may quote a leak report's URL (anyone's text): plain text,
    // cut to three lines on screen, whole in the title.
    n.detail ? h('span', { class: 'notification-detail', id: `notification-${n.id}-detail`, title: n.detail }, isolated(stripTicks(n.detail))) : null,
    n.at ? relative(n.at) : null));
  node.addEventListener('click', () => markRead(n));
  return h('li', {}, node);
}

async function markRead(n) {
  if (n.read) return;
  try {
    await api('POST', `/v1/notifications/${encodeURIComponent(n.id)}/read`);
  } catch (err) {
    if (err instanceof SessionEnded) return;
    toast(`Could not mark the notification as read: ${stripTicks(err.message)}`, 'error');
    return;
  }
  for (const x of state.notifications || []) if (x.id === n.id) x.read = true;
  n.read = true;
  updateBell();
}

export { notificationBell, startNotifications, stopNotifications };
