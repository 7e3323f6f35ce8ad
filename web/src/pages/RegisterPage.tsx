import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { useRegisterMutation } from "../api/api";
import { fieldErrors, problemMessage } from "../api/problem";
import { Button, Field, Input } from "../components/ui";

/** Self-registration: the new user has no access (role `pending`) until an admin grants a role. */
export default function RegisterPage() {
  const [register, { isLoading, error, isSuccess }] = useRegisterMutation();
  const [form, setForm] = useState({ email: "", name: "", password: "" });
  const [local, setLocal] = useState<Record<string, string>>({});
  const api = fieldErrors(error);
  async function submit(e: FormEvent) {
    e.preventDefault();
    const v: Record<string, string> = {};
    if (!/^\S+@\S+\.\S+$/.test(form.email.trim())) v.email = "Enter an email address.";
    if (!form.name.trim()) v.name = "Enter your name.";
    if (form.password.length < 12) v.password = "At least 12 characters.";
    setLocal(v);
    if (Object.keys(v).length) return;
    try {
      await register({ ...form, email: form.email.trim(), name: form.name.trim() }).unwrap();
    } catch {
      /* shown below */
    }
  }
  return (
    <main id="main" className="flex min-h-screen items-center justify-center p-4">
      <form onSubmit={submit} noValidate className="w-full max-w-sm space-y-4 rounded-lg border border-slate-200 bg-white p-6 shadow-sm">
        <h1 className="text-2xl font-bold text-blue-800">Request access</h1>
        {isSuccess ? (
          <p role="status">
            Your account was created. An administrator must grant you a role before you can see anything.{" "}
            <Link to="/login" className="text-blue-800 underline">Sign in</Link>
          </p>
        ) : (
          <>
            {error && (
              <div role="alert" className="rounded-md border border-red-300 bg-red-50 p-3 text-sm text-red-900">
                {problemMessage(error)}
              </div>
            )}
            <Field label="Email" error={local.email ?? api.email}>
              {(p) => <Input {...p} type="email" value={form.email} onChange={(e) => setForm({ ...form, email: e.target.value })} />}
            </Field>
            <Field label="Name" error={local.name ?? api.name}>
              {(p) => <Input {...p} value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} />}
            </Field>
            <Field label="Password" hint="12 to 128 characters; not a common password." error={local.password ?? api.password}>
              {(p) => (
                <Input {...p} type="password" autoComplete="new-password" value={form.password} onChange={(e) => setForm({ ...form, password: e.target.value })} />
              )}
            </Field>
            <Button type="submit" variant="primary" className="w-full" disabled={isLoading}>
              Create account
            </Button>
            <p className="text-sm"><Link to="/login" className="text-blue-800 underline">Back to sign in</Link></p>
          </>
        )}
      </form>
    </main>
  );
}
