import { act, render } from "@testing-library/react";
import { Provider } from "react-redux";
import { afterEach, describe, expect, it, vi } from "vitest";
import { tokensReceived } from "../auth/authSlice";
import { makeStore } from "../store";
import { LiveProvider } from "./LiveProvider";

class FakeSocket {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(public url: string, public protocols: string[]) {
    FakeSocket.all.push(this);
  }
  send(s: string) {
    this.sent.push(JSON.parse(s));
  }
  close() {
    this.readyState = 3;
  }
}

afterEach(() => {
  vi.unstubAllGlobals();
  FakeSocket.all = [];
});

describe("LiveProvider", () => {
  it("reconnects with the fresh token after a refresh, and feeds each message once", async () => {
    vi.stubGlobal("WebSocket", FakeSocket);
    const store = makeStore({ auth: { accessToken: "T1", expiresAt: null, user: null, signedOutReason: null } });
    render(
      <Provider store={store}>
        <LiveProvider>
          <p>app</p>
        </LiveProvider>
      </Provider>,
    );
    await act(async () => {});
    expect(FakeSocket.all.map((s) => s.protocols)).toEqual([["bearer", "T1"]]);
    const first = FakeSocket.all[0];
    act(() => {
      first.readyState = 1;
      first.onopen?.();
    });
    expect(store.getState().live.status).toBe("up");

    await act(async () => {
      store.dispatch(tokensReceived({ access_token: "T2", refresh_token: "R2", token_type: "Bearer", expires_in: 900 }));
    });
    expect(first.readyState).toBe(3);
    expect(FakeSocket.all.map((s) => s.protocols[1])).toEqual(["T1", "T2"]);

    const second = FakeSocket.all[1];
    const msg = { type: "payment.recorded", id: "ev-1", data: { account_id: "A1", amount: 100, currency: "USD" } };
    act(() => {
      second.readyState = 1;
      second.onopen?.();
      second.onmessage?.({ data: JSON.stringify(msg) });
      second.onmessage?.({ data: JSON.stringify(msg) });
    });
    expect(store.getState().live.feed.map((m) => m.id)).toEqual(["ev-1"]);

    // A drop shows the banner state until the next connection opens.
    act(() => {
      second.readyState = 3;
      second.onclose?.();
    });
    expect(store.getState().live.status).toBe("down");
  });
});
