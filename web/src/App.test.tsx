import { render, screen } from "@testing-library/react";
import { Provider } from "react-redux";
import { createMemoryRouter, RouterProvider } from "react-router";
import { describe, expect, it } from "vitest";
import { routes } from "./App";
import { makeStore } from "./store";
import { fakeApi, json, user } from "./test/utils";
import { saveRefreshToken } from "./auth/tokens";

function renderApp(path: string, accessToken: string | null) {
  const store = makeStore({ auth: { accessToken, expiresAt: null, user: null, signedOutReason: null } });
  const router = createMemoryRouter(routes, { initialEntries: [path] });
  render(
    <Provider store={store}>
      <RouterProvider router={router} />
    </Provider>,
  );
  return { store, router };
}

describe("the app's routes", () => {
  it("a pending user sees only the waiting-for-approval screen", async () => {
    const { calls } = fakeApi((c) => (c.path === "/auth/me" ? json(200, user("pending")) : json(403, { status: 403, title: "Forbidden" })));
    renderApp("/accounts", "T1");
    expect(await screen.findByRole("heading", { name: "Waiting for approval" })).toBeInTheDocument();
    expect(screen.queryByRole("navigation", { name: "Main" })).toBeNull();
    expect(calls.map((c) => c.path)).toEqual(["/auth/me"]);
  });

  it("without a session, a deep link goes to sign-in", async () => {
    fakeApi(() => json(500, {}));
    const { router } = renderApp("/accounts?status=paid", null);
    expect(await screen.findByRole("button", { name: "Sign in" })).toBeInTheDocument();
    expect(router.state.location.pathname).toBe("/login");
  });

  it("a reload restores the session from the refresh token in sessionStorage", async () => {
    saveRefreshToken("R1");
    const { calls } = fakeApi((c) => {
      if (c.path === "/auth/refresh") return json(200, { access_token: "T9", refresh_token: "R2", token_type: "Bearer", expires_in: 900 });
      if (c.path === "/auth/me") return json(200, user("viewer"));
      if (c.path === "/dashboard/summary") return json(200, { date: "2026-12-01", scope: "all", accounts: { total: 0, by_status: {}, by_dpd_bucket: {} }, outstanding: {}, today: { collected: {}, payments_by_method: {}, activities: {}, promises: { due: 0, kept: 0, broken: 0 } }, month: { collected: {}, payments_by_method: {}, activities: {}, promises: { due: 0, kept: 0, broken: 0 } } });
      return json(404, {});
    });
    const { store } = renderApp("/dashboard", null);
    expect(await screen.findByRole("heading", { name: "Dashboard" })).toBeInTheDocument();
    expect(store.getState().auth.accessToken).toBe("T9");
    expect(calls[0].path).toBe("/auth/refresh");
    expect(calls.find((c) => c.path === "/auth/me")!.headers.get("authorization")).toBe("Bearer T9");
  });
});
