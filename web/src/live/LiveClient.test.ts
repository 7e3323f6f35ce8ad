import { describe, expect, it } from "vitest";
import { LiveClient, type LiveMessage } from "./LiveClient";

/** An in-memory stand-in for the browser's WebSocket that the test drives. */
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
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  receive(m: object) {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.();
  }
}

function setup(tokens: string[]) {
  FakeSocket.all = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const got: LiveMessage[] = [];
  const statuses: string[] = [];
  let t = 0;
  const client = new LiveClient({
    url: "ws://test",
    getToken: () => tokens[Math.min(t++, tokens.length - 1)],
    onMessage: (m) => got.push(m),
    onStatus: (s) => statuses.push(s),
    WebSocketImpl: FakeSocket as never,
    random: () => 1,
    setTimer: (fn, ms) => timers.push({ fn, ms }),
    clearTimer: () => {},
  });
  const flush = () => new Promise((r) => setTimeout(r, 0));
  return { client, timers, got, statuses, flush };
}

describe("LiveClient", () => {
  it("connects with the bearer subprotocol and subscribes to every followed topic on open", async () => {
    const { client, flush } = setup(["T1"]);
    client.subscribe("dashboard");
    client.subscribe("account:A1");
    client.start();
    await flush();
    const s = FakeSocket.all[0];
    expect(s.protocols).toEqual(["bearer", "T1"]);
    s.open();
    expect(s.sent).toEqual([{ action: "subscribe", topics: ["dashboard", "account:A1"] }]);
  });

  it("reconnects with growing backoff after drops and resubscribes", async () => {
    const { client, timers, statuses, flush } = setup(["T1"]);
    client.subscribe("payments");
    client.start();
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].drop();
    expect(statuses.at(-1)).toBe("down");
    // random() = 1 → the delay is the cap: 500, then 1000, 2000...
    expect(timers.map((t) => t.ms)).toEqual([500]);
    timers[0].fn();
    await flush();
    FakeSocket.all[1].drop();
    expect(timers.map((t) => t.ms)).toEqual([500, 1000]);
    timers[1].fn();
    await flush();
    const third = FakeSocket.all[2];
    third.open();
    expect(statuses.at(-1)).toBe("up");
    expect(third.sent).toEqual([{ action: "subscribe", topics: ["payments"] }]);
    // An open connection resets the backoff.
    third.drop();
    expect(timers.at(-1)!.ms).toBe(500);
  });

  it("drops repeated messages by id", async () => {
    const { client, got, flush } = setup(["T1"]);
    client.start();
    await flush();
    const s = FakeSocket.all[0];
    s.open();
    s.receive({ type: "payment.recorded", id: "e1", data: { amount: 1 } });
    s.receive({ type: "payment.recorded", id: "e1", data: { amount: 1 } });
    s.receive({ type: "payment.recorded", id: "e2", data: { amount: 2 } });
    expect(got.map((m) => m.id)).toEqual(["e1", "e2"]);
  });

  it("keeps de-duplicating across a reconnect (at-least-once redelivery)", async () => {
    const { client, got, timers, flush } = setup(["T1"]);
    client.start();
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive({ type: "activity.logged", id: "e9", data: {} });
    FakeSocket.all[0].drop();
    timers[0].fn();
    await flush();
    FakeSocket.all[1].open();
    FakeSocket.all[1].receive({ type: "activity.logged", id: "e9", data: {} });
    expect(got).toHaveLength(1);
  });

  it("reconnect() after a token refresh opens a new socket with the fresh token at once", async () => {
    const { client, timers, flush } = setup(["T1", "T2"]);
    client.subscribe("dashboard");
    client.start();
    await flush();
    const old = FakeSocket.all[0];
    old.open();
    client.reconnect();
    await flush();
    expect(old.readyState).toBe(3);
    const fresh = FakeSocket.all[1];
    expect(fresh.protocols).toEqual(["bearer", "T2"]);
    expect(timers).toHaveLength(0);
    // The old socket's late close must not schedule a reconnect.
    old.onclose?.();
    expect(timers).toHaveLength(0);
    fresh.open();
    expect(fresh.sent).toEqual([{ action: "subscribe", topics: ["dashboard"] }]);
  });

  it("unsubscribes when the last follower leaves", async () => {
    const { client, flush } = setup(["T1"]);
    client.start();
    await flush();
    const s = FakeSocket.all[0];
    s.open();
    const a = client.subscribe("account:X");
    const b = client.subscribe("account:X");
    a();
    expect(s.sent).toEqual([{ action: "subscribe", topics: ["account:X"] }]);
    b();
    expect(s.sent.at(-1)).toEqual({ action: "unsubscribe", topics: ["account:X"] });
    expect(client.subscribedTopics).toEqual([]);
  });
});
