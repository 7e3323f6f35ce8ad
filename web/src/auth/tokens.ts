/**
 * Where the tokens live (see web/README.md for the reasoning):
 * - the access token only in memory (the Redux store), so it never outlives the page;
 * - the refresh token in `sessionStorage`, so a reload of this tab stays signed in while
 *   closing the tab forgets it, and other tabs/sites cannot read it through cookies.
 */
const KEY = "collectpro.refresh_token";

export function loadRefreshToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function saveRefreshToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage disabled: the session then lasts as long as the page */
  }
}

/** Seconds since the epoch at which a JWT expires (`exp`), or null if it cannot be read. */
export function tokenExpiry(token: string): number | null {
  try {
    const payload = token.split(".")[1];
    const json = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
    return typeof json.exp === "number" ? json.exp : null;
  } catch {
    return null;
  }
}
