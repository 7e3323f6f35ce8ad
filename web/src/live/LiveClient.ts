/**
 * The WebSocket client: one connection per signed-in page.
 *
 * - Connects with `new WebSocket(url, ["bearer", token])` (browsers cannot set headers on the
 *   upgrade; the API accepts the token as a subprotocol entry and echoes `bearer`).
 * - Subscriptions are reference-counted per topic and re-sent after every (re)connect.
 * - Reconnects with exponential backoff and equal jitter (base 500 ms, cap 15 s) after any
 *   close it did not ask for; `reconnect()` (after a token refresh) swaps the connection at once.
 * - Delivery is at least once: messages are dropped when their `id` was seen (the last 1,000 ids).
 */
export interface LiveMessage {
  type: string;
  id?: string;
  data: Record<string, unknown>;
}

export type LiveClientStatus = "connecting" | "up" | "down";

type SocketCtor = new (url: string, protocols?: string | string[]) => WebSocket;

export interface LiveClientOptions {
  url: string;
  /** The token to connect with; may refresh first. Null means "not signed in": stay closed. */
  getToken: () => Promise<string | null> | string | null;
  onMessage: (msg: LiveMessage) => void;
  onStatus?: (status: LiveClientStatus) => void;
  WebSocketImpl?: SocketCtor;
  baseDelayMs?: number;
  maxDelayMs?: number;
  random?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
}

const SEEN_LIMIT = 1000;

export class LiveClient {
  private socket: WebSocket | null = null;
  private topics = new Map<string, number>();
  private seen = new Set<string>();
  private attempt = 0;
  private timer: unknown = null;
  private stopped = true;
  private generation = 0;
  private readonly o: Required<Omit<LiveClientOptions, "onStatus">> & Pick<LiveClientOptions, "onStatus">;

  constructor(options: LiveClientOptions) {
    this.o = {
      WebSocketImpl: globalThis.WebSocket as SocketCtor,
      baseDelayMs: 500,
      maxDelayMs: 15000,
      random: Math.random,
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
      ...options,
    };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.generation++;
    if (this.timer !== null) this.o.clearTimer(this.timer);
    this.timer = null;
    const s = this.socket;
    this.socket = null;
    if (s && s.readyState <= 1) s.close(1000, "bye");
  }

  /** A fresh connection now (the token changed): the old one is closed without a backoff. */
  reconnect(): void {
    if (this.stopped) return;
    this.generation++;
    const s = this.socket;
    this.socket = null;
    if (s && s.readyState <= 1) s.close(1000, "token refreshed");
    if (this.timer !== null) this.o.clearTimer(this.timer);
    this.timer = null;
    this.attempt = 0;
    void this.connect();
  }

  /** Follows a topic until the returned function is called. */
  subscribe(topic: string): () => void {
    const n = this.topics.get(topic) ?? 0;
    this.topics.set(topic, n + 1);
    if (n === 0) this.send({ action: "subscribe", topics: [topic] });
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.topics.get(topic) ?? 1) - 1;
      if (left <= 0) {
        this.topics.delete(topic);
        this.send({ action: "unsubscribe", topics: [topic] });
      } else this.topics.set(topic, left);
    };
  }

  get subscribedTopics(): string[] {
    return [...this.topics.keys()];
  }

  private send(msg: object) {
    if (this.socket && this.socket.readyState === 1) this.socket.send(JSON.stringify(msg));
  }

  private async connect(): Promise<void> {
    const gen = ++this.generation;
    this.o.onStatus?.("connecting");
    let token: string | null = null;
    try {
      token = await this.o.getToken();
    } catch {
      token = null;
    }
    if (gen !== this.generation || this.stopped) return;
    if (!token) {
      this.scheduleReconnect();
      return;
    }
    let socket: WebSocket;
    try {
      socket = new this.o.WebSocketImpl(this.o.url, ["bearer", token]);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.attempt = 0;
      this.o.onStatus?.("up");
      const topics = this.subscribedTopics;
      if (topics.length) socket.send(JSON.stringify({ action: "subscribe", topics }));
    };
    socket.onmessage = (ev: MessageEvent) => {
      if (this.socket !== socket) return;
      let msg: LiveMessage;
      try {
        msg = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      if (!msg || typeof msg.type !== "string") return;
      if (msg.id) {
        if (this.seen.has(msg.id)) return;
        this.seen.add(msg.id);
        if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.values().next().value as string);
      }
      this.o.onMessage(msg);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.scheduleReconnect();
    };
    socket.onerror = () => {
      /* a close always follows */
    };
  }

  private scheduleReconnect() {
    if (this.stopped) return;
    this.o.onStatus?.("down");
    const cap = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 16);
    const delay = Math.round(cap / 2 + (this.o.random() * cap) / 2);
    this.timer = this.o.setTimer(() => {
      this.timer = null;
      void this.connect();
    }, delay);
  }

  /** The delay cap of the next attempt (exposed for tests). */
  get nextAttempt(): number {
    return this.attempt;
  }
}
