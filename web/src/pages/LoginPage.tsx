import { useState, type FormEvent } from "react";
import { Link, Navigate, useLocation, useNavigate } from "react-router";
import { useLoginMutation } from "../api/api";
import { problemMessage } from "../api/problem";
import { tokensReceived } from "../auth/authSlice";
import { useAppDispatch, useAppSelector } from "../store";
import { Button, Field, Input } from "../components/ui";

/**
 * Sign in. The API's problem+json words are shown as they are: a wrong password or unknown
 * email (the same 401 by design), a locked account (423, with the time left from Retry-After),
 * too many attempts (429, with the wait).
 */
export function LoginPage() {
  const dispatch = useAppDispatch();
  const navigate = useNavigate();
  const location = useLocation();
  const token = useAppSelector((s) => s.auth.accessToken);
  const reason = useAppSelector((s) => s.auth.signedOutReason);
  const [login, { isLoading, error }] = useLoginMutation();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [errors, setErrors] = useState<{ email?: string; password?: string }>({});
  const from = (location.state as { from?: string } | null)?.from ?? "/";

  if (token) return <Navigate to={from} replace />;

  async function submit(e: FormEvent) {
    e.preventDefault();
    const v: typeof errors = {};
    if (!/^\S+@\S+\.\S+$/.test(email.trim())) v.email = "Enter your email address.";
    if (!password) v.password = "Enter your password.";
    setErrors(v);
    if (Object.keys(v).length) return;
    try {
      const pair = await login({ email: email.trim(), password }).unwrap();
      dispatch(tokensReceived(pair));
      navigate(from, { replace: true });
    } catch {
      /* shown from `error` */
    }
  }

  return (
    <main id="main" className="flex min-h-screen items-center justify-center p-4">
      <form onSubmit={submit} noValidate className="w-full max-w-sm space-y-4 rounded-lg border border-slate-200 bg-white p-6 shadow-sm">
        <h1 className="text-2xl font-bold text-blue-800">CollectPro</h1>
        <p className="text-slate-700">Sign in to continue.</p>
        {reason && !error && (
          <p role="status" className="rounded bg-slate-100 p-2 text-sm">
            {reason}
          </p>
        )}
        {error && (
          <div role="alert" className="rounded-md border border-red-300 bg-red-50 p-3 text-sm text-red-900" data-testid="login-error">
            {problemMessage(error)}
          </div>
        )}
        <Field label="Email" error={errors.email}>
          {(p) => (
            <Input {...p} type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} />
          )}
        </Field>
        <Field label="Password" error={errors.password}>
          {(p) => (
            <Input
              {...p}
              type="password"
              autoComplete="current-password"
              value={password}
              onChange={(e) => setPassword(e.target.value)}
            />
          )}
        </Field>
        <Button type="submit" variant="primary" className="w-full" disabled={isLoading}>
          {isLoading ? "Signing in…" : "Sign in"}
        </Button>
        <p className="text-sm text-slate-700">
          No account? <Link to="/register" className="text-blue-800 underline">Request access</Link>
        </p>
      </form>
    </main>
  );
}
