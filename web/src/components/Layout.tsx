import { NavLink, Outlet, useNavigate } from "react-router";
import { useLogoutAllMutation, useLogoutMutation, api } from "../api/api";
import type { User } from "../api/types";
import { can } from "../auth/roles";
import { signedOut } from "../auth/authSlice";
import { loadRefreshToken } from "../auth/tokens";
import { useAppDispatch, useAppSelector } from "../store";
import { LiveProvider } from "../live/LiveProvider";
import { createContext, useContext, useState } from "react";
import { Button } from "./ui";

const UserContext = createContext<User | null>(null);
/** Provides the signed-in user (the layout does; tests render pages inside it directly). */
export const UserProvider = UserContext.Provider;
/** The signed-in user (only inside the signed-in layout). */
export function useUser(): User {
  const u = useContext(UserContext);
  if (!u) throw new Error("useUser outside the signed-in layout");
  return u;
}

function LiveBanner() {
  const status = useAppSelector((s) => s.live.status);
  if (status !== "down") return null;
  return (
    <div role="status" className="bg-amber-100 px-4 py-1.5 text-center text-sm text-amber-950">
      Live updates are down — reconnecting… Figures may be out of date until then.
    </div>
  );
}

export function useSignOut() {
  const dispatch = useAppDispatch();
  const navigate = useNavigate();
  const [logout] = useLogoutMutation();
  const [logoutAll] = useLogoutAllMutation();
  return async (everywhere = false) => {
    const refresh_token = loadRefreshToken();
    try {
      if (everywhere) await logoutAll().unwrap();
      else if (refresh_token) await logout({ refresh_token }).unwrap();
    } catch {
      /* signing out locally matters most; the refresh token expires anyway */
    }
    dispatch(signedOut(everywhere ? "Signed out on every device." : "Signed out."));
    dispatch(api.util.resetApiState());
    navigate("/login", { replace: true });
  };
}

const linkClass = ({ isActive }: { isActive: boolean }) =>
  `whitespace-nowrap rounded-md px-3 py-1.5 text-sm font-medium ${isActive ? "bg-blue-700 text-white" : "text-slate-800 hover:bg-slate-200"}`;

export function Layout({ user }: { user: User }) {
  const signOut = useSignOut();
  const [busy, setBusy] = useState(false);
  return (
    <UserContext.Provider value={user}>
      <LiveProvider>
        <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:p-2">
          Skip to content
        </a>
        <header className="border-b border-slate-200 bg-white">
          <div className="mx-auto flex max-w-7xl flex-wrap items-center gap-x-4 gap-y-2 px-4 py-2">
            <span className="text-lg font-bold text-blue-800">CollectPro</span>
            <nav aria-label="Main" className="order-3 -mx-1 flex w-full gap-1 overflow-x-auto md:order-none md:w-auto">
              {user.role === "agent" && (
                <NavLink to="/worklist" className={linkClass}>
                  Worklist
                </NavLink>
              )}
              <NavLink to="/dashboard" className={linkClass}>
                Dashboard
              </NavLink>
              <NavLink to="/accounts" end={false} className={linkClass}>
                Accounts
              </NavLink>
              {can(user.role, "bulk.run") && (
                <NavLink to="/bulk" className={linkClass}>
                  Bulk updates
                </NavLink>
              )}
              {can(user.role, "imports.run") && (
                <NavLink to="/imports" className={linkClass}>
                  Imports
                </NavLink>
              )}
              {can(user.role, "users.manage") && (
                <NavLink to="/users" className={linkClass}>
                  Users
                </NavLink>
              )}
            </nav>
            <div className="ml-auto flex items-center gap-2 text-sm">
              <span className="hidden text-slate-700 sm:inline" data-testid="whoami">
                {user.email} · {user.role}
              </span>
              <Button
                disabled={busy}
                onClick={async () => {
                  setBusy(true);
                  await signOut(false);
                }}
              >
                Sign out
              </Button>
              <span className="hidden md:contents">
              <Button
                disabled={busy}
                title="Ends every session of yours, on every device"
                onClick={async () => {
                  setBusy(true);
                  await signOut(true);
                }}
              >
                Sign out everywhere
              </Button>
              </span>
            </div>
          </div>
        </header>
        <LiveBanner />
        <main id="main" className="mx-auto max-w-7xl px-3 py-4 sm:px-4">
          <Outlet />
        </main>
      </LiveProvider>
    </UserContext.Provider>
  );
}
