import { fetchBaseQuery, type BaseQueryFn, type FetchArgs } from "@reduxjs/toolkit/query";
import { API_URL } from "../config";
import { signedOut, tokensReceived, type AuthState } from "../auth/authSlice";
import { loadRefreshToken } from "../auth/tokens";
import type { ApiError } from "./problem";
import type { TokenPair } from "./types";

type State = { auth: AuthState };

const raw = fetchBaseQuery({
  baseUrl: API_URL,
  prepareHeaders: (headers, { getState }) => {
    const token = (getState() as State).auth.accessToken;
    if (token && !headers.has("authorization")) headers.set("authorization", `Bearer ${token}`);
    return headers;
  },
});

/** Routes whose 401 means "wrong credentials", never "refresh and retry". */
const NO_REFRESH = ["/auth/login", "/auth/refresh", "/auth/register"];

function urlOf(args: string | FetchArgs): string {
  return typeof args === "string" ? args : args.url;
}

/**
 * The refresh in flight, shared by every caller. The refresh token rotates and presenting a
 * spent one revokes the whole family, so two concurrent 401s must never each refresh: the
 * second one waits for the first one's result.
 */
let refreshing: Promise<boolean> | null = null;

type Api = Parameters<BaseQueryFn>[1];

/** Refreshes once for every concurrent caller; resolves to whether a new pair was stored. */
export function refreshOnce(api: Api, extra: object = {}): Promise<boolean> {
  if (!refreshing) {
    refreshing = (async () => {
      const token = loadRefreshToken();
      if (!token) return false;
      const res = await raw({ url: "/auth/refresh", method: "POST", body: { refresh_token: token } }, api, extra);
      if (res.data) {
        api.dispatch(tokensReceived(res.data as TokenPair));
        return true;
      }
      // A network failure keeps the session (the token may still be good); a refusal ends it.
      if (res.error && typeof res.error.status === "number") {
        api.dispatch(signedOut("Your session has ended. Please sign in again."));
      }
      return false;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** The shared refresh from outside an endpoint (session restore, background refresh, the live client). */
export function refreshWithStore(store: { dispatch: Api["dispatch"]; getState: Api["getState"] }): Promise<boolean> {
  const controller = new AbortController();
  return refreshOnce({
    signal: controller.signal,
    abort: () => controller.abort(),
    dispatch: store.dispatch,
    getState: store.getState,
    extra: undefined,
    endpoint: "refresh",
    type: "mutation",
  });
}

function retryAfter(meta: { response?: Response } | undefined): number | undefined {
  const v = meta?.response?.headers.get("retry-after");
  if (!v) return undefined;
  const n = Number(v);
  if (Number.isFinite(n)) return n;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, (at - Date.now()) / 1000) : undefined;
}

/**
 * Every API call goes through here: bearer token, problem+json errors with `Retry-After`, and
 * on a 401 one shared refresh and one retry. A 401 of a request sent with a token that has been
 * replaced since (someone else refreshed meanwhile) is retried without refreshing again.
 */
export const baseQuery: BaseQueryFn<string | FetchArgs, unknown, ApiError, object, { response?: Response }> = async (
  args,
  api,
  extra,
) => {
  const sentWith = (api.getState() as State).auth.accessToken;
  let result = await raw(args, api, extra);
  if (result.error?.status === 401 && !NO_REFRESH.includes(urlOf(args)) && loadRefreshToken()) {
    const current = (api.getState() as State).auth.accessToken;
    const ok = current && current !== sentWith ? true : await refreshOnce(api, extra);
    if (ok) result = await raw(args, api, extra);
  }
  // Still 401 with no way to refresh (no refresh token in this tab, or the new token refused
  // too): the session is over; say so instead of leaving every screen failing.
  if (result.error?.status === 401 && !NO_REFRESH.includes(urlOf(args)) && (api.getState() as State).auth.accessToken) {
    api.dispatch(signedOut("Your session has ended. Please sign in again."));
  }
  if (result.error) {
    const error: ApiError = { ...(result.error as ApiError), retryAfter: retryAfter(result.meta) };
    return { error, meta: result.meta };
  }
  return { data: result.data, meta: result.meta };
};
