import { useState, type FormEvent } from "react";
import { useCreateUserMutation, useRevokeSessionsMutation, useUpdateUserMutation, useUsersQuery } from "../api/api";
import { fieldErrors, problemMessage } from "../api/problem";
import type { Role, User } from "../api/types";
import { can } from "../auth/roles";
import { useUser } from "../components/Layout";
import { Badge, Button, Card, Dialog, Empty, ErrorBox, Field, Input, Select, Spinner, ScrollX } from "../components/ui";

const ROLES: Role[] = ["admin", "manager", "agent", "viewer", "pending"];

export default function UsersPage() {
  const me = useUser();
  const [cursor, setCursor] = useState<string | undefined>();
  const [prev, setPrev] = useState<(string | undefined)[]>([]);
  const { data, error, isLoading, refetch } = useUsersQuery({ cursor }, { skip: !can(me.role, "users.manage") });
  const [creating, setCreating] = useState(false);
  if (!can(me.role, "users.manage")) return <p>Only administrators manage users.</p>;
  const items = data?.items ?? [];
  const pending = items.filter((u) => u.role === "pending");
  return (
    <div className="space-y-4">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h1 className="text-2xl font-bold">Users</h1>
        <Button variant="primary" onClick={() => setCreating(true)}>New user</Button>
      </div>
      {pending.length > 0 && (
        <p role="status" className="rounded-md border border-amber-300 bg-amber-50 p-2 text-sm">
          {pending.length} user{pending.length === 1 ? " is" : "s are"} waiting for a role on this page.
        </p>
      )}
      <Card>
        {error ? <ErrorBox error={error} onRetry={refetch} /> : isLoading ? <Spinner /> : !items.length ? <Empty>No users.</Empty> : (
          <ScrollX label="Users table">
            <table className="w-full min-w-[48rem] text-left text-sm">
              <thead className="bg-slate-100">
                <tr>
                  <th scope="col" className="p-2">Name</th>
                  <th scope="col" className="p-2">Email</th>
                  <th scope="col" className="p-2">Role</th>
                  <th scope="col" className="p-2">State</th>
                  <th scope="col" className="p-2">Actions</th>
                </tr>
              </thead>
              <tbody>{items.map((u) => <UserRow key={u.id} user={u} self={u.id === me.id} />)}</tbody>
            </table>
          </ScrollX>
        )}
        <div className="mt-2 flex gap-2">
          <Button disabled={!prev.length} onClick={() => { const p = [...prev]; setCursor(p.pop()); setPrev(p); }}>Previous</Button>
          <Button disabled={!data?.next_cursor} onClick={() => { setPrev([...prev, cursor]); setCursor(data!.next_cursor!); }}>Next</Button>
        </div>
      </Card>
      <Dialog open={creating} title="New user" onClose={() => setCreating(false)}>
        <CreateUser onDone={() => setCreating(false)} />
      </Dialog>
    </div>
  );
}

function UserRow({ user, self }: { user: User; self: boolean }) {
  const [update, upd] = useUpdateUserMutation();
  const [revoke, rev] = useRevokeSessionsMutation();
  const [note, setNote] = useState<string | null>(null);
  const [newRole, setNewRole] = useState<Role | null>(null);
  const locked = !!user.locked_until && Date.parse(user.locked_until) > Date.now();
  const run = async (p: Promise<unknown>, ok: string) => {
    setNote(null);
    try {
      await p;
      setNote(ok);
    } catch {
      /* shown below */
    }
  };
  const err = upd.error ?? rev.error;
  return (
    <tr className="border-t border-slate-200 align-middle">
      <td className="p-2">{user.name}</td>
      <td className="p-2">{user.email}</td>
      <td className="p-2">
        <label className="sr-only" htmlFor={`role-${user.id}`}>Role of {user.email}</label>
        <Select
          id={`role-${user.id}`}
          className="w-32"
          value={user.role}
          disabled={upd.isLoading}
          onChange={(e) => setNewRole(e.target.value as Role)}
        >
          {ROLES.map((r) => <option key={r} value={r}>{r}</option>)}
        </Select>
        <Dialog open={newRole !== null} title="Change role?" onClose={() => setNewRole(null)}>
          <p className="mb-3 text-sm">
            {user.email} becomes <strong>{newRole}</strong> (now {user.role}). Their current sessions end and they sign in again.
          </p>
          <div className="flex justify-end gap-2">
            <Button onClick={() => setNewRole(null)}>Keep {user.role}</Button>
            <Button
              variant="primary"
              onClick={() => {
                const role = newRole!;
                setNewRole(null);
                void run(update({ id: user.id, changes: { role } }).unwrap(), "Role changed.");
              }}
            >
              Change role
            </Button>
          </div>
        </Dialog>
      </td>
      <td className="p-2 space-x-1">
        {user.role === "pending" && <Badge value="pending" />}
        {user.disabled && <Badge value="disabled" />}
        {locked && <Badge value="locked" />}
        {!user.disabled && !locked && user.role !== "pending" && <span className="text-slate-600">active</span>}
      </td>
      <td className="p-2">
        <div className="flex flex-wrap gap-1">
          {!self && (
            <Button onClick={() => void run(update({ id: user.id, changes: { disabled: !user.disabled } }).unwrap(), user.disabled ? "Enabled." : "Disabled.")}>
              {user.disabled ? "Enable" : "Disable"}
            </Button>
          )}
          {locked && <Button onClick={() => void run(update({ id: user.id, changes: { unlock: true } }).unwrap(), "Unlocked.")}>Unlock</Button>}
          <Button onClick={() => void run(revoke(user.id).unwrap(), "Sessions revoked.")}>Revoke sessions</Button>
        </div>
        {err && <p role="alert" className="text-xs text-red-700">{problemMessage(err)}</p>}
        {note && !err && <p role="status" className="text-xs text-green-800">{note}</p>}
      </td>
    </tr>
  );
}

function CreateUser({ onDone }: { onDone: () => void }) {
  const [create, { isLoading, error }] = useCreateUserMutation();
  const [f, setF] = useState({ email: "", name: "", password: "", role: "agent" as Role });
  const [local, setLocal] = useState<Record<string, string>>({});
  async function submit(e: FormEvent) {
    e.preventDefault();
    const v: Record<string, string> = {};
    if (!/^\S+@\S+\.\S+$/.test(f.email.trim())) v.email = "Enter an email address.";
    if (!f.name.trim()) v.name = "Enter a name.";
    if (f.password.length < 12) v.password = "At least 12 characters.";
    setLocal(v);
    if (Object.keys(v).length) return;
    try {
      await create({ ...f, email: f.email.trim(), name: f.name.trim() }).unwrap();
      onDone();
    } catch {
      /* shown below */
    }
  }
  const api = fieldErrors(error);
  return (
    <form onSubmit={submit} noValidate className="space-y-3">
      <Field label="Email" error={local.email ?? api.email}>{(p) => <Input {...p} type="email" value={f.email} onChange={(e) => setF({ ...f, email: e.target.value })} />}</Field>
      <Field label="Name" error={local.name ?? api.name}>{(p) => <Input {...p} value={f.name} onChange={(e) => setF({ ...f, name: e.target.value })} />}</Field>
      <Field label="Password" hint="12 to 128 characters" error={local.password ?? api.password}>{(p) => <Input {...p} type="password" autoComplete="new-password" value={f.password} onChange={(e) => setF({ ...f, password: e.target.value })} />}</Field>
      <Field label="Role" error={api.role}>{(p) => (
        <Select {...p} value={f.role} onChange={(e) => setF({ ...f, role: e.target.value as Role })}>
          {ROLES.filter((r) => r !== "pending").map((r) => <option key={r}>{r}</option>)}
        </Select>
      )}</Field>
      {error && !Object.keys(api).length && <p role="alert" className="text-sm text-red-700">{problemMessage(error)}</p>}
      <div className="flex justify-end gap-2">
        <Button onClick={onDone}>Cancel</Button>
        <Button type="submit" variant="primary" disabled={isLoading}>Create user</Button>
      </div>
    </form>
  );
}
