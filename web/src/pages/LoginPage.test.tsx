import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { fakeApi, json, renderPage } from "../test/utils";
import { LoginPage } from "./LoginPage";
import { loadRefreshToken } from "../auth/tokens";

async function signIn() {
  await userEvent.type(screen.getByLabelText("Email"), "admin@collectpro.local");
  await userEvent.type(screen.getByLabelText("Password"), "secret-password");
  await userEvent.click(screen.getByRole("button", { name: "Sign in" }));
}

describe("sign in", () => {
  it("shows the API's words for a locked account with the time left", async () => {
    fakeApi(() =>
      json(423, { title: "Locked", status: 423, detail: "this account is locked after repeated failed sign-ins" }, { "retry-after": "840" }),
    );
    renderPage(<LoginPage />, { token: null as never, path: "/login", route: "/login" });
    await signIn();
    expect(await screen.findByTestId("login-error")).toHaveTextContent(
      "this account is locked after repeated failed sign-ins Try again in 14 min.",
    );
  });

  it("shows a rate limit with its wait", async () => {
    fakeApi(() => json(429, { title: "Too Many Requests", status: 429, detail: "too many sign-in attempts" }, { "retry-after": "30" }));
    renderPage(<LoginPage />, { token: null as never, path: "/login", route: "/login" });
    await signIn();
    expect(await screen.findByTestId("login-error")).toHaveTextContent("too many sign-in attempts Try again in 30 s.");
  });

  it("validates before sending", async () => {
    const { calls } = fakeApi(() => json(500, {}));
    renderPage(<LoginPage />, { token: null as never, path: "/login", route: "/login" });
    await userEvent.click(screen.getByRole("button", { name: "Sign in" }));
    expect(screen.getByText("Enter your email address.")).toBeInTheDocument();
    expect(calls).toHaveLength(0);
  });

  it("stores the refresh token in sessionStorage and goes on", async () => {
    fakeApi(() => json(200, { access_token: "T", refresh_token: "R", token_type: "Bearer", expires_in: 900 }));
    const { store, router } = renderPage(<LoginPage />, {
      token: null as never,
      path: "/login",
      route: "/login",
      extraRoutes: [{ path: "/", element: <p>home</p> }],
    });
    await signIn();
    await screen.findByText("home");
    expect(store.getState().auth.accessToken).toBe("T");
    expect(loadRefreshToken()).toBe("R");
    expect(router.state.location.pathname).toBe("/");
  });
});
