// What the page knows while it runs: the signed-in user and the tokens and
// decoys loaded so far. Never a secret: a new token's or decoy's secret
// stays in its dialog.

export const state = {
  me: null,
  workspaces: null, // [{id, name}] from GET /v1/workspaces
  tokens: null, // null while loading
  tokensCursor: null, // next_cursor of the last page loaded
  tokensError: null,
  decoys: null, // from GET /v1/decoys; null while loading
  decoysError: null,
  notifications: null, // from GET /v1/notifications; null when unknown or absent
  notice: null, // shown on the sign-in page
};

/** The name of a workspace, or its id when the user has none by that id. */
export function workspaceName(id) {
  const all = state.workspaces || state.me.workspaces;
  return (all.find((w) => w.id === id) || { name: id }).name;
}
