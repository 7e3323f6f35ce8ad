import type { User } from "../api/types";
import { useSignOut } from "../components/Layout";
import { Button } from "../components/ui";

/** A signed-in user without a role yet: the API answers 403 everywhere but /auth/*. */
export default function PendingPage({ user }: { user: User }) {
  const signOut = useSignOut();
  return (
    <main id="main" className="flex min-h-screen items-center justify-center p-4">
      <div className="max-w-md space-y-3 rounded-lg border border-slate-200 bg-white p-6 shadow-sm">
        <h1 className="text-xl font-bold">Waiting for approval</h1>
        <p>
          You are signed in as <strong>{user.email}</strong>, but an administrator has not granted you a role yet.
          Debtor data is regulated, so there is nothing to show until then.
        </p>
        <p className="text-sm text-slate-700">Ask your administrator to give you access, then sign in again.</p>
        <div className="flex gap-2">
          <Button variant="primary" onClick={() => void signOut(false)}>Sign out</Button>
          <Button onClick={() => void signOut(true)}>Sign out everywhere</Button>
        </div>
      </div>
    </main>
  );
}
