import { describe, expect, it } from "vitest";
import { api } from "./api";
import { makeStore } from "../store";
import { fakeApi, json } from "../test/utils";
import { saveRefreshToken, loadRefreshToken } from "../auth/tokens";

describe("the refresh-once base query", () => {
  it("two concurrent 401s share one refresh, then both retry with the new token", async () => {
    saveRefreshToken("R1");
    let refreshes = 0;
    const { calls } = fakeApi(async (c) => {
      if (c.path === "/auth/refresh") {
        refreshes++;
        // The rotating token: only R1 is good once.
        expect(c.body).toEqual({ refresh_token: "R1" });
        await new Promise((r) => setTimeout(r, 20));
        return json(200, { access_token: "T2", refresh_token: "R2", token_type: "Bearer", expires_in: 900 });
      }
      if (c.headers.get("authorization") !== "Bearer T2") return json(401, { title: "Unauthorized", status: 401 });
      if (c.path === "/accounts") return json(200, { items: [], next_cursor: null });
      if (c.path === "/dashboard/summary") return json(200, { date: "2026-01-01", scope: "all" });
      return json(404, {});
    });
    const store = makeStore({ auth: { accessToken: "T1", expiresAt: null, user: null, signedOutReason: null } });

    const [a, b] = await Promise.all([
      store.dispatch(api.endpoints.accounts.initiate({})),
      store.dispatch(api.endpoints.summary.initiate()),
    ]);

    expect(a.error).toBeUndefined();
    expect(b.error).toBeUndefined();
    expect(refreshes).toBe(1);
    expect(store.getState().auth.accessToken).toBe("T2");
    expect(loadRefreshToken()).toBe("R2");
    // Each request: once with T1 (401), once with T2.
    expect(calls.filter((c) => c.path === "/accounts").map((c) => c.headers.get("authorization"))).toEqual([
      "Bearer T1",
      "Bearer T2",
    ]);
  });

  it("a refused refresh signs out and the request's 401 is returned", async () => {
    saveRefreshToken("R-spent");
    fakeApi((c) =>
      c.path === "/auth/refresh"
        ? json(401, { title: "Unauthorized", detail: "refresh token is not valid", status: 401 })
        : json(401, { title: "Unauthorized", status: 401 }),
    );
    const store = makeStore({ auth: { accessToken: "T1", expiresAt: null, user: null, signedOutReason: null } });
    const r = await store.dispatch(api.endpoints.accounts.initiate({}));
    expect(r.error).toMatchObject({ status: 401 });
    expect(store.getState().auth.accessToken).toBeNull();
    expect(loadRefreshToken()).toBeNull();
    expect(store.getState().auth.signedOutReason).toMatch(/session has ended/);
  });

  it("a 401 with no refresh token in this tab ends the session", async () => {
    const { calls } = fakeApi(() => json(401, { title: "Unauthorized", status: 401 }));
    const store = makeStore({ auth: { accessToken: "T1", expiresAt: null, user: null, signedOutReason: null } });
    const r = await store.dispatch(api.endpoints.accounts.initiate({}));
    expect(r.error).toMatchObject({ status: 401 });
    expect(calls.map((c) => c.path)).toEqual(["/accounts"]);
    expect(store.getState().auth.accessToken).toBeNull();
  });

  it("a 401 on sign-in is the answer, never a refresh", async () => {
    saveRefreshToken("R1");
    const { calls } = fakeApi(() => json(401, { title: "Unauthorized", detail: "wrong email or password", status: 401 }));
    const store = makeStore();
    const r = await store.dispatch(api.endpoints.login.initiate({ email: "a@b.c", password: "x" }));
    expect(r).toMatchObject({ error: { status: 401, data: { detail: "wrong email or password" } } });
    expect(calls.map((c) => c.path)).toEqual(["/auth/login"]);
  });

  it("keeps Retry-After on errors (423, 429)", async () => {
    fakeApi(() => json(423, { title: "Locked", detail: "this account is locked", status: 423 }, { "retry-after": "840" }));
    const store = makeStore();
    const r = await store.dispatch(api.endpoints.login.initiate({ email: "a@b.c", password: "x" }));
    expect(r).toMatchObject({ error: { status: 423, retryAfter: 840 } });
  });
});

describe("the dashboard summary", () => {
  it("revalidates with If-None-Match and keeps the figures on a 304", async () => {
    const body = { date: "2026-12-01", scope: "all", accounts: { total: 7, by_status: {}, by_dpd_bucket: {} } };
    const { calls } = fakeApi((c) =>
      c.headers.get("if-none-match") === '"v1"' ? json(304, null, { etag: '"v1"' }) : json(200, body, { etag: '"v1"' }),
    );
    const store = makeStore({ auth: { accessToken: "T1", expiresAt: null, user: null, signedOutReason: null } });
    const { resetSummaryCache } = await import("./api");
    resetSummaryCache();
    const first = await store.dispatch(api.endpoints.summary.initiate());
    expect(first.data?.accounts.total).toBe(7);
    const again = await store.dispatch(api.endpoints.summary.initiate(undefined, { forceRefetch: true }));
    expect(again.error).toBeUndefined();
    expect(again.data?.accounts.total).toBe(7);
    expect(calls.map((c) => c.headers.get("if-none-match"))).toEqual([null, '"v1"']);
  });
});
