import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from "react";
import { useStore } from "react-redux";
import { api } from "../api/api";
import { refreshWithStore } from "../api/baseQuery";
import { WS_URL } from "../config";
import { tokenExpiry } from "../auth/tokens";
import type { AppStore } from "../store";
import { LiveClient, type LiveMessage } from "./LiveClient";
import { feedReceived, liveStatus } from "./liveSlice";

type Listener = (msg: LiveMessage) => void;

interface LiveContextValue {
  client: LiveClient | null;
  listen: (fn: Listener) => () => void;
}

const LiveContext = createContext<LiveContextValue>({ client: null, listen: () => () => {} });

/** What a message changes in the cache, whichever page is open. */
export function applyToCache(store: AppStore, msg: LiveMessage) {
  const d = msg.data ?? {};
  if (msg.type === "payment.recorded" || msg.type === "payment.status_changed" || msg.type === "activity.logged") {
    const payment = (msg.type === "payment.status_changed" ? d.payment : d) as { account_id?: string } | undefined;
    const accountId = payment?.account_id;
    store.dispatch(feedReceived(msg));
    if (accountId) {
      store.dispatch(
        api.util.invalidateTags([
          { type: "Account", id: accountId },
          { type: "Payments", id: accountId },
          { type: "Activities", id: accountId },
        ]),
      );
    }
  } else if (msg.type === "job.progress" && typeof d.id === "string") {
    store.dispatch(api.util.upsertQueryData("job", d.id, d as never));
    const s = d.state as string;
    if (s !== "queued" && s !== "running") store.dispatch(api.util.invalidateTags(["Jobs", "AccountList"]));
  } else if (msg.type === "import.progress" && typeof d.id === "string") {
    store.dispatch(api.util.upsertQueryData("importById", d.id, d as never));
    const s = d.state as string;
    // A finished import has its row errors and new accounts to show.
    if (s !== "awaiting_upload" && s !== "running") {
      store.dispatch(api.util.invalidateTags([{ type: "Imports", id: d.id }, "AccountList", "Summary"]));
    }
  } else if (msg.type === "dashboard.changed") {
    store.dispatch(api.util.invalidateTags(["Summary"]));
  }
}

/**
 * One live connection while signed in (not for `pending` users, whom $connect refuses). A token
 * refresh reconnects with the new token; the connect itself refreshes first when the token is
 * about to expire, so a reconnect after a long outage does not present a dead token.
 */
export function LiveProvider({ children }: { children: ReactNode }) {
  const store = useStore() as AppStore;
  const listeners = useRef(new Set<Listener>());
  const [value, setValue] = useState<LiveContextValue>({ client: null, listen: () => () => {} });

  useEffect(() => {
    const confirmed = new Set<string>();
    const c = new LiveClient({
      url: WS_URL,
      getToken: async () => {
        const { accessToken } = store.getState().auth;
        if (!accessToken) return null;
        const exp = tokenExpiry(accessToken);
        if (exp !== null && exp - Date.now() / 1000 < 30) {
          await refreshWithStore(store);
          return store.getState().auth.accessToken;
        }
        return accessToken;
      },
      onMessage: (msg) => {
        if (msg.type === "subscribed") {
          // Confirmed topics as a document attribute: lets a person's tools (and the E2E run)
          // see that live updates are flowing for a page before acting.
          const topics = (msg.data?.topics as string[] | undefined) ?? [];
          topics.forEach((t) => confirmed.add(t));
          document.documentElement.dataset.liveTopics = [...confirmed].join(" ");
          return;
        }
        applyToCache(store, msg);
        for (const l of listeners.current) l(msg);
      },
      onStatus: (s) => {
        if (s !== "up") confirmed.clear();
        document.documentElement.dataset.live = s;
        store.dispatch(liveStatus(s));
      },
    });
    c.start();
    setValue({
      client: c,
      listen: (fn) => {
        listeners.current.add(fn);
        return () => listeners.current.delete(fn);
      },
    });
    let token = store.getState().auth.accessToken;
    const unsub = store.subscribe(() => {
      const next = store.getState().auth.accessToken;
      if (next !== token) {
        token = next;
        if (next) c.reconnect();
      }
    });
    return () => {
      unsub();
      c.stop();
      store.dispatch(liveStatus("off"));
    };
  }, [store]);

  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

/** Follows topics while the calling component is mounted. */
export function useLiveTopics(topics: string[]) {
  const { client } = useContext(LiveContext);
  const key = topics.join("|");
  useEffect(() => {
    if (!client || !key) return;
    const offs = key.split("|").map((t) => client.subscribe(t));
    return () => offs.forEach((off) => off());
  }, [client, key]);
}

/** Calls `fn` for every (de-duplicated) live message while mounted. */
export function useLiveMessages(fn: Listener) {
  const { listen } = useContext(LiveContext);
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => listen((m) => ref.current(m)), [listen]);
}
