import { lazy, Suspense } from "react";
import { createBrowserRouter, Navigate, RouterProvider, type RouteObject } from "react-router";
import { RequireAuth } from "./auth/session";
import { Layout } from "./components/Layout";
import { Spinner } from "./components/ui";
import { LoginPage } from "./pages/LoginPage";

// Every screen but sign-in is its own chunk: the first screen loads only the shell.
const PendingPage = lazy(() => import("./pages/PendingPage"));
const RegisterPage = lazy(() => import("./pages/RegisterPage"));
const DashboardPage = lazy(() => import("./pages/DashboardPage"));
const WorklistPage = lazy(() => import("./pages/WorklistPage"));
const AccountsPage = lazy(() => import("./pages/AccountsPage"));
const AccountPage = lazy(() => import("./pages/AccountPage"));
const CreateAccountPage = lazy(() => import("./pages/CreateAccountPage"));
const BulkPage = lazy(() => import("./pages/BulkPage"));
const ImportsPage = lazy(() => import("./pages/ImportsPage"));
const UsersPage = lazy(() => import("./pages/UsersPage"));
const NotFound = lazy(() => import("./pages/NotFoundPage"));

function S({ children }: { children: React.ReactNode }) {
  return <Suspense fallback={<Spinner />}>{children}</Suspense>;
}

export const routes: RouteObject[] = [
  { path: "/login", element: <LoginPage /> },
  {
    path: "/register",
    element: (
      <S>
        <RegisterPage />
      </S>
    ),
  },
  {
    path: "/",
    element: (
      <RequireAuth>
        {(user) =>
          user.role === "pending" ? (
            <S>
              <PendingPage user={user} />
            </S>
          ) : (
            <Layout user={user} />
          )
        }
      </RequireAuth>
    ),
    children: [
      { index: true, element: <HomeRedirect /> },
      { path: "dashboard", element: <S><DashboardPage /></S> },
      { path: "worklist", element: <S><WorklistPage /></S> },
      { path: "accounts", element: <S><AccountsPage /></S> },
      { path: "accounts/new", element: <S><CreateAccountPage /></S> },
      { path: "accounts/:id", element: <S><AccountPage /></S> },
      { path: "bulk", element: <S><BulkPage /></S> },
      { path: "bulk/:jobId", element: <S><BulkPage /></S> },
      // One route: the page stays mounted (and following its import) from upload to progress.
      { path: "imports/:importId?", element: <S><ImportsPage /></S> },
      { path: "users", element: <S><UsersPage /></S> },
      { path: "*", element: <S><NotFound /></S> },
    ],
  },
];

import { useUser } from "./components/Layout";
function HomeRedirect() {
  const user = useUser();
  return <Navigate to={user.role === "agent" ? "/worklist" : "/dashboard"} replace />;
}

export function App() {
  const router = createBrowserRouter(routes);
  return <RouterProvider router={router} />;
}
