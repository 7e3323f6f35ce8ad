import { useState, type FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { useCreateAccountMutation } from "../api/api";
import { fieldErrors, problemMessage } from "../api/problem";
import { ACCOUNT_STATUSES } from "../api/types";
import { can } from "../auth/roles";
import { useUser } from "../components/Layout";
import { Button, Card, Field, Input, Select } from "../components/ui";
import { parseMoney } from "../money";
import { useAgents } from "./useAgents";

const CURRENCIES = ["USD", "CAD", "GBP", "EUR", "JPY"];

export default function CreateAccountPage() {
  const user = useUser();
  const agents = useAgents();
  const navigate = useNavigate();
  const [create, { isLoading, error }] = useCreateAccountMutation();
  const [f, setF] = useState({
    reference: "",
    debtor_name: "",
    debtor_email: "",
    debtor_phone: "",
    debtor_timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "America/New_York",
    currency: "USD",
    original_balance: "",
    status: "active",
    assigned_agent_id: "",
    due_date: new Date().toISOString().slice(0, 10),
    tags: "",
  });
  const [local, setLocal] = useState<Record<string, string>>({});
  if (!can(user.role, "account.create")) return <p>Your role cannot create accounts.</p>;

  async function submit(e: FormEvent) {
    e.preventDefault();
    const v: Record<string, string> = {};
    const minor = parseMoney(f.original_balance, f.currency);
    if (!f.reference.trim()) v.reference = "Enter the agency's account number.";
    if (!f.debtor_name.trim()) v.debtor_name = "Enter the debtor's name.";
    if (!/^\S+@\S+\.\S+$/.test(f.debtor_email.trim())) v.debtor_email = "Enter an email address.";
    if (!/^\+[1-9]\d{1,14}$/.test(f.debtor_phone.trim())) v.debtor_phone = "An E.164 number, e.g. +14155550123.";
    if (minor === null || minor < 1) v.original_balance = `An amount in ${f.currency}, e.g. 1250.00.`;
    if (!/^\d{4}-\d{2}-\d{2}$/.test(f.due_date)) v.due_date = "Pick the due date.";
    setLocal(v);
    if (Object.keys(v).length) return;
    try {
      const a = await create({
        reference: f.reference.trim(),
        debtor_name: f.debtor_name.trim(),
        debtor_email: f.debtor_email.trim(),
        debtor_phone: f.debtor_phone.trim(),
        debtor_timezone: f.debtor_timezone.trim(),
        currency: f.currency,
        original_balance: minor!,
        status: f.status as never,
        assigned_agent_id: f.assigned_agent_id || null,
        due_date: f.due_date,
        tags: f.tags.split(",").map((t) => t.trim()).filter(Boolean),
      }).unwrap();
      navigate(`/accounts/${a.id}`);
    } catch {
      /* shown below */
    }
  }
  const api = fieldErrors(error);
  const err = (k: string) => local[k] ?? api[k];
  const text = (k: keyof typeof f, label: string, type = "text", hint?: string) => (
    <Field label={label} error={err(k)} hint={hint}>
      {(p) => <Input {...p} name={k} type={type} value={f[k]} onChange={(e) => setF({ ...f, [k]: e.target.value })} />}
    </Field>
  );
  return (
    <div className="space-y-4">
      <p><Link to="/accounts" className="text-sm text-blue-800 underline">← Accounts</Link></p>
      <h1 className="text-2xl font-bold">New account</h1>
      <Card>
        <form onSubmit={submit} noValidate aria-label="New account" className="grid gap-3 sm:grid-cols-2">
          {text("reference", "Reference")}
          {text("debtor_name", "Debtor name")}
          {text("debtor_email", "Email", "email")}
          {text("debtor_phone", "Phone", "tel", "E.164, e.g. +14155550123")}
          {text("debtor_timezone", "Time zone", "text", "IANA, e.g. America/New_York")}
          <Field label="Currency" error={err("currency")}>
            {(p) => (
              <Select {...p} value={f.currency} onChange={(e) => setF({ ...f, currency: e.target.value })}>
                {CURRENCIES.map((c) => <option key={c}>{c}</option>)}
              </Select>
            )}
          </Field>
          {text("original_balance", "Original balance", "text", "In the currency, e.g. 1250.00")}
          {text("due_date", "Due date", "date")}
          <Field label="Status" error={err("status")}>
            {(p) => (
              <Select {...p} value={f.status} onChange={(e) => setF({ ...f, status: e.target.value })}>
                {ACCOUNT_STATUSES.map((s) => <option key={s} value={s}>{s.replace(/_/g, " ")}</option>)}
              </Select>
            )}
          </Field>
          <Field label="Agent" error={err("assigned_agent_id")}>
            {(p) =>
              agents.length ? (
                <Select {...p} value={f.assigned_agent_id} onChange={(e) => setF({ ...f, assigned_agent_id: e.target.value })}>
                  <option value="">Unassigned</option>
                  {agents.map((a) => <option key={a.id} value={a.id}>{a.name}</option>)}
                </Select>
              ) : (
                <Input {...p} placeholder="Agent id (optional)" value={f.assigned_agent_id} onChange={(e) => setF({ ...f, assigned_agent_id: e.target.value })} />
              )
            }
          </Field>
          {text("tags", "Tags (comma-separated)")}
          <div className="flex items-center gap-2 sm:col-span-2">
            <Button type="submit" variant="primary" disabled={isLoading}>{isLoading ? "Creating…" : "Create account"}</Button>
            {error && !Object.keys(api).length && <p role="alert" className="text-sm text-red-700">{problemMessage(error)}</p>}
          </div>
        </form>
      </Card>
    </div>
  );
}
