// Routing: each screen is a URL under /settings; links and tabs push
// history and the page re-renders itself through the registered renderer.

import { h } from './dom.js';

let render = () => {};

/** `fn({ focus })` re-renders the page for the current URL. */
function setRenderer(fn) {
  render = fn;
}

function parseRoute() {
  const path = location.pathname.replace(/\/+$/, '') || '/';
  const query = new URLSearchParams(location.search);
  if (path === '/') return { page: 'home' };
  if (path === '/settings' || path === '/settings/profile') return { page: 'settings', tab: 'profile' };
  if (path === '/settings/dev' || path === '/settings/dev/tokens') return { page: 'settings', tab: 'dev', sub: 'tokens' };
  if (path === '/settings/dev/decoys') return { page: 'settings', tab: 'dev', sub: 'decoys' };
  if (path === '/settings/dev/logs') return { page: 'settings', tab: 'dev', sub: 'logs', query };
  if (path === '/settings/dev/insights') return { page: 'settings', tab: 'dev', sub: 'insights', query };
  if (path === '/settings/dev/timeline') return { page: 'settings', tab: 'dev', sub: 'timeline', query };
  if (path === '/settings/audit') return { page: 'settings', tab: 'audit', sub: 'history' };
  if (path === '/settings/audit/timeline') return { page: 'settings', tab: 'audit', sub: 'timeline', query };
  if (path === '/settings/dev/workspace-tokens') return { page: 'settings', tab: 'dev', sub: 'workspace-tokens', query };
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

export { setRenderer, parseRoute, navigate, link };
