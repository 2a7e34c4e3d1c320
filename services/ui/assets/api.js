// The API client: every call goes through `api()` with the session cookie
// (HttpOnly, SameSite=Strict; the page never sees it). A 401 while signed in
// ends the session through the handler the page registers.

import { state } from './state.js';

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

let sessionEnded = () => {};

/** `handler(notice)` runs when a call finds the session gone. */
function onSessionEnded(handler) {
  sessionEnded = handler;
}

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
// Tokens and workspaces

const STATUS_LABEL = { active: 'Active', expired: 'Expired', revoked: 'Revoked' };

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

async function loadWorkspaces() {
  const body = await api('GET', '/v1/workspaces');
  state.workspaces = body.workspaces;
  return state.workspaces;
}

export {
  ApiProblem, SessionEnded, api, onSessionEnded,
  STATUS_LABEL, loadTokens, loadMoreTokens, loadWorkspaces,
};
