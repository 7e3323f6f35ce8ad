import { useEffect, useState, type ReactNode } from "react";
import { Navigate, useLocation } from "react-router";
import { useStore } from "react-redux";
import { api } from "../api/api";
import { refreshWithStore } from "../api/baseQuery";
import type { User } from "../api/types";
import { useAppSelector, type AppStore } from "../store";
import { Spinner, ErrorBox } from "../components/ui";
import { loadRefreshToken } from "./tokens";

/**
 * Signed-in pages: restores the session after a reload (memory lost the access token; the
 * refresh token in sessionStorage gets a new pair), refreshes in the background a minute before
 * the access token expires, loads `GET /auth/me`, and sends `pending` users to their screen.
 */
export function RequireAuth({ children }: { children: (user: User) => ReactNode }) {
  const store = useStore() as AppStore;
  const token = useAppSelector((s) => s.auth.accessToken);
  const expiresAt = useAppSelector((s) => s.auth.expiresAt);
  const location = useLocation();
  const [restoring, setRestoring] = useState(() => !token && !!loadRefreshToken());

  useEffect(() => {
    if (!restoring) return;
    void refreshWithStore(store).finally(() => setRestoring(false));
  }, [restoring, store]);

  useEffect(() => {
    if (!expiresAt) return;
    const ms = Math.max(5_000, (expiresAt - 60) * 1000 - Date.now());
    const t = setTimeout(() => void refreshWithStore(store), ms);
    return () => clearTimeout(t);
  }, [expiresAt, store]);

  const me = api.endpoints.me.useQuery(undefined, { skip: !token });

  if (restoring) return <Spinner label="Restoring your session…" />;
  if (!token) return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
  if (me.isLoading || (me.isFetching && !me.data)) return <Spinner label="Loading your profile…" />;
  if (me.error || !me.data)
    return (
      <div className="mx-auto max-w-lg p-6">
        <ErrorBox error={me.error} title="Could not load your profile" onRetry={() => me.refetch()} />
      </div>
    );
  return <>{children(me.data)}</>;
}
