import { render } from "@testing-library/react";
import type { ReactNode } from "react";
import { Provider } from "react-redux";
import { createMemoryRouter, RouterProvider, type RouteObject } from "react-router";
import { vi } from "vitest";
import type { Role, User } from "../api/types";
import { UserProvider } from "../components/Layout";
import { makeStore } from "../store";

export function user(role: Role, id = `U-${role}`): User {
  return {
    id,
    email: `${role}@collectpro.local`,
    name: role,
    role,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    locked_until: null,
    disabled: false,
  };
}

export interface Call {
  method: string;
  path: string;
  url: URL;
  search: URLSearchParams;
  headers: Headers;
  body: unknown;
}

type Handler = (call: Call) => Response | Promise<Response>;

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  const problem = status >= 400;
  return new Response(status === 204 || status === 304 ? null : JSON.stringify(body), {
    status,
    headers: { "content-type": problem ? "application/problem+json" : "application/json", ...headers },
  });
}

/** A JSON body as its value; anything else (a file's bytes) as its text. */
function parseBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Stands in for the network (the one boundary a unit test cannot cross): every request the
 * app makes is recorded with its method, path, headers and body, and answered by `handler`.
 */
export function fakeApi(handler: Handler) {
  const calls: Call[] = [];
  const fetchFn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = input instanceof Request ? input : new Request(String(input), init);
    const url = new URL(req.url);
    const text = req.method === "GET" || req.method === "HEAD" ? "" : await req.clone().text();
    const call: Call = {
      method: req.method,
      path: url.pathname,
      url,
      search: url.searchParams,
      headers: req.headers,
      body: text ? parseBody(text) : undefined,
    };
    calls.push(call);
    return handler(call);
  });
  vi.stubGlobal("fetch", fetchFn);
  return { calls, fetchFn };
}

/** A fake JWT whose payload carries `exp` (the app reads only that). */
export function jwt(name: string, expInSeconds = 900): string {
  const payload = btoa(JSON.stringify({ sub: name, exp: Math.floor(Date.now() / 1000) + expInSeconds }));
  return `h.${payload}.s-${name}`;
}

export function renderPage(
  element: ReactNode,
  { role = "admin" as Role, path = "/", route = "/", extraRoutes = [] as RouteObject[], token = "T1" } = {},
) {
  const store = makeStore({
    auth: { accessToken: token, expiresAt: null, user: null, signedOutReason: null },
  });
  const u = user(role);
  const router = createMemoryRouter(
    [{ path, element: <UserProvider value={u}>{element}</UserProvider> }, ...extraRoutes],
    { initialEntries: [route] },
  );
  const utils = render(
    <Provider store={store}>
      <RouterProvider router={router} />
    </Provider>,
  );
  return { ...utils, store, router, user: u };
}
