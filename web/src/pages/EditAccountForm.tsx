import { useState, type FormEvent } from "react";
import { useUpdateAccountMutation } from "../api/api";
import { asApiError, fieldErrors, problemMessage } from "../api/problem";
import { ACCOUNT_STATUSES, type Account, type Role } from "../api/types";
import { AGENT_EDITABLE_FIELDS, can } from "../auth/roles";
import { Button, Field, Input, Select } from "../components/ui";

type Form = {
  reference: string;
  debtor_name: string;
  debtor_email: string;
  debtor_phone: string;
  debtor_timezone: string;
  status: string;
  due_date: string;
  tags: string;
};

function formOf(a: Account): Form {
  return {
    reference: a.reference,
    debtor_name: a.debtor_name,
    debtor_email: a.debtor_email,
    debtor_phone: a.debtor_phone,
    debtor_timezone: a.debtor_timezone,
    status: a.status,
    due_date: a.due_date,
    tags: a.tags.join(", "),
  };
}

/**
 * Edit an account with `If-Match: <the ETag it was read with>`. Only changed fields are sent,
 * and an agent is offered only the fields its role may change. A 412 means someone else saved
 * first: `onConflict` lets the page say so and reload the new version into a fresh form.
 */
export function EditAccountForm({
  account,
  etag,
  role,
  onSaved,
  onConflict,
}: {
  account: Account;
  etag: string;
  role: Role;
  onSaved: () => void;
  onConflict: () => void;
}) {
  const [update, { isLoading, error }] = useUpdateAccountMutation();
  const [f, setF] = useState<Form>(() => formOf(account));
  const [local, setLocal] = useState<Record<string, string>>({});
  const all = can(role, "account.edit_all_fields");
  const editable = (k: keyof Form) => all || (AGENT_EDITABLE_FIELDS as readonly string[]).includes(k);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const base = formOf(account);
    const changes: Record<string, unknown> = {};
    for (const k of Object.keys(f) as (keyof Form)[]) {
      if (!editable(k) || f[k] === base[k]) continue;
      changes[k] = k === "tags" ? f.tags.split(",").map((t) => t.trim()).filter(Boolean) : f[k].trim();
    }
    const v: Record<string, string> = {};
    if (changes.debtor_email !== undefined && !/^\S+@\S+\.\S+$/.test(String(changes.debtor_email))) v.debtor_email = "Enter an email address.";
    if (changes.debtor_phone !== undefined && !/^\+[1-9]\d{1,14}$/.test(String(changes.debtor_phone))) v.debtor_phone = "An E.164 number, e.g. +14155550123.";
    if (changes.debtor_name !== undefined && !String(changes.debtor_name)) v.debtor_name = "Enter the debtor's name.";
    setLocal(v);
    if (Object.keys(v).length) return;
    if (!Object.keys(changes).length) return onSaved();
    try {
      await update({ id: account.id, etag, changes: changes as Partial<Account> }).unwrap();
      onSaved();
    } catch (err) {
      if (asApiError(err)?.status === 412) onConflict();
    }
  }

  const api = fieldErrors(error);
  const text = (k: keyof Form, label: string, type = "text") =>
    editable(k) && (
      <Field label={label} error={local[k] ?? api[k]}>
        {(p) => <Input {...p} type={type} name={k} value={f[k]} onChange={(e) => setF({ ...f, [k]: e.target.value })} />}
      </Field>
    );
  return (
    <form onSubmit={submit} noValidate aria-label="Edit account" className="grid gap-3 sm:grid-cols-2">
      {text("reference", "Reference")}
      {text("debtor_name", "Debtor name")}
      {text("debtor_email", "Email", "email")}
      {text("debtor_phone", "Phone")}
      {text("debtor_timezone", "Time zone")}
      {text("due_date", "Due date", "date")}
      {editable("status") && (
        <Field label="Status" error={api.status}>
          {(p) => (
            <Select {...p} name="status" value={f.status} onChange={(e) => setF({ ...f, status: e.target.value })}>
              {ACCOUNT_STATUSES.map((s) => <option key={s} value={s}>{s.replace(/_/g, " ")}</option>)}
            </Select>
          )}
        </Field>
      )}
      {text("tags", "Tags (comma-separated)")}
      <div className="flex flex-wrap items-center gap-2 sm:col-span-2">
        <Button type="submit" variant="primary" disabled={isLoading}>{isLoading ? "Saving…" : "Save changes"}</Button>
        {error && asApiError(error)?.status !== 412 && !Object.keys(api).length && (
          <p role="alert" className="text-sm text-red-700">{problemMessage(error)}</p>
        )}
      </div>
    </form>
  );
}
