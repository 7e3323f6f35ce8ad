import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import {
  useAccountQuery,
  useActivitiesQuery,
  useChangePaymentStatusMutation,
  useDeleteAccountMutation,
  usePaymentsQuery,
} from "../api/api";
import { problemMessage } from "../api/problem";
import { PAYMENT_TRANSITIONS, type Account, type Payment } from "../api/types";
import { can } from "../auth/roles";
import { useUser } from "../components/Layout";
import { Badge, Button, Card, Dialog, Empty, ErrorBox, Spinner, formatDateTime, ScrollX } from "../components/ui";
import { useLiveMessages, useLiveTopics } from "../live/LiveProvider";
import { formatMoney } from "../money";
import { ActivityForm } from "./ActivityForm";
import { EditAccountForm } from "./EditAccountForm";
import { PaymentForm } from "./PaymentForm";
import { PlanSection } from "./PlanSection";
import { AuditSection } from "./AuditSection";

export default function AccountPage() {
  const { id = "" } = useParams();
  const user = useUser();
  const navigate = useNavigate();
  const { data, error, isLoading, refetch } = useAccountQuery(id);
  const [editing, setEditing] = useState(false);
  const [conflict, setConflict] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [remove, removal] = useDeleteAccountMutation();
  const [liveNote, setLiveNote] = useState<string | null>(null);

  useLiveTopics([`account:${id}`]);
  useLiveMessages((m) => {
    const d = (m.type === "payment.status_changed" ? m.data.payment : m.data) as { account_id?: string; created_by?: string; actor_id?: string } | undefined;
    if (d?.account_id !== id) return;
    const by = d.created_by ?? d.actor_id;
    if (by === user.id) return;
    setLiveNote(
      m.type === "payment.recorded" ? "A payment was just recorded by someone else." :
      m.type === "payment.status_changed" ? "A payment's status was just changed by someone else." :
      "An activity was just logged by someone else.",
    );
  });

  if (isLoading) return <Spinner label="Loading the account…" />;
  if (error || !data) return <ErrorBox error={error} title="Could not load the account" onRetry={refetch} />;
  const { account, etag } = data;
  const deleted = !!account.deleted_at;

  return (
    <div className="space-y-4">
      <p><Link to="/accounts" className="text-sm text-blue-800 underline">← Accounts</Link></p>
      <div className="flex flex-wrap items-start justify-between gap-3">
        <div className="min-w-0 [overflow-wrap:anywhere]">
          <h1 className="text-2xl font-bold">{account.debtor_name}</h1>
          <p className="text-slate-700">{account.reference} · <Badge value={account.status} /> {deleted && <Badge value="deleted" />}</p>
        </div>
        <div className="sm:text-right">
          <p className="text-sm text-slate-700">Balance</p>
          <p className="text-3xl font-bold tabular-nums" data-testid="balance">{formatMoney(account.balance, account.currency)}</p>
          <p className="text-sm text-slate-700">of {formatMoney(account.original_balance, account.currency)} · {account.days_past_due} days past due ({account.dpd_bucket})</p>
        </div>
      </div>
      {liveNote && (
        <div role="status" className="flex items-center justify-between rounded-md border border-blue-300 bg-blue-50 p-2 text-sm" data-testid="live-note">
          {liveNote} The page is up to date.
          <button type="button" className="underline" onClick={() => setLiveNote(null)}>Dismiss</button>
        </div>
      )}

      <div className="grid gap-4 lg:grid-cols-2">
        <Card
          title="Debtor"
          actions={
            !deleted && (
              <div className="flex gap-2">
                {can(user.role, "account.edit") && (
                  <Button onClick={() => { setEditing(!editing); setConflict(false); }} aria-expanded={editing}>{editing ? "Cancel edit" : "Edit"}</Button>
                )}
                {can(user.role, "account.delete") && <Button variant="danger" onClick={() => setConfirmDelete(true)}>Delete</Button>}
              </div>
            )
          }
        >
          {conflict && (
            <div role="alert" className="mb-3 rounded-md border border-amber-400 bg-amber-50 p-3 text-sm text-amber-950" data-testid="conflict">
              Someone else changed this account while you were editing it. The form now shows their version (version {account.version}); make your change again and save.
            </div>
          )}
          {editing ? (
            <EditAccountForm
              key={account.version}
              account={account}
              etag={etag}
              role={user.role}
              onSaved={() => { setEditing(false); setConflict(false); }}
              onConflict={() => { setConflict(true); refetch(); }}
            />
          ) : (
            <dl className="grid grid-cols-[8rem_minmax(0,1fr)] gap-y-1 text-sm [&_dd]:[overflow-wrap:anywhere]">
              <dt className="text-slate-600">Email</dt><dd>{account.debtor_email}</dd>
              <dt className="text-slate-600">Phone</dt><dd>{account.debtor_phone}</dd>
              <dt className="text-slate-600">Time zone</dt><dd>{account.debtor_timezone}</dd>
              <dt className="text-slate-600">Due date</dt><dd>{account.due_date}</dd>
              <dt className="text-slate-600">Tags</dt><dd>{account.tags.length ? account.tags.join(", ") : "—"}</dd>
              <dt className="text-slate-600">Version</dt><dd data-testid="version">{account.version}</dd>
            </dl>
          )}
        </Card>

        {can(user.role, "payment.record") && !deleted && account.balance > 0 && (
          <Card title="Record a payment">
            <PaymentForm account={account} />
          </Card>
        )}
      </div>

      <PlanSection account={account} canWrite={can(user.role, "payment.record")} />

      <Payments account={account} canChange={can(user.role, "payment.change_status")} />

      {can(user.role, "audit.account") && <AuditSection accountId={account.id} />}

      <div className="grid gap-4 lg:grid-cols-2">
        {can(user.role, "activity.log") && !deleted && (
          <Card title="Log an activity">
            <ActivityForm account={account} />
          </Card>
        )}
        <Timeline accountId={account.id} currency={account.currency} />
      </div>

      <Dialog open={confirmDelete} title="Delete this account?" onClose={() => setConfirmDelete(false)}>
        <p className="mb-3 text-sm">
          {account.reference} ({account.debtor_name}) leaves every list. Its payments and activities are kept.
        </p>
        {removal.error && <p role="alert" className="mb-2 text-sm text-red-700">{problemMessage(removal.error)}</p>}
        <div className="flex justify-end gap-2">
          <Button onClick={() => setConfirmDelete(false)}>Keep it</Button>
          <Button
            variant="danger"
            disabled={removal.isLoading}
            onClick={async () => {
              try {
                await remove({ id: account.id, etag }).unwrap();
                setConfirmDelete(false);
                navigate("/accounts", { replace: true });
              } catch {
                /* shown above */
              }
            }}
          >
            Delete account
          </Button>
        </div>
      </Dialog>
    </div>
  );
}

function Payments({ account, canChange }: { account: Account; canChange: boolean }) {
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  return (
    <Card title="Payments">
      <ScrollX label="Payments table">
        <table className="w-full min-w-[36rem] text-left text-sm" data-testid="payments">
          <thead className="bg-slate-100">
            <tr>
              <th scope="col" className="p-2">Received</th>
              <th scope="col" className="p-2">Amount</th>
              <th scope="col" className="p-2">Method</th>
              <th scope="col" className="p-2">Status</th>
              <th scope="col" className="p-2">Reference</th>
              {canChange && <th scope="col" className="p-2">Change status</th>}
            </tr>
          </thead>
          {cursors.map((c, i) => (
            <PaymentRows key={c ?? "first"} account={account} cursor={c} canChange={canChange} last={i === cursors.length - 1} onMore={(n) => setCursors([...cursors, n])} />
          ))}
        </table>
      </ScrollX>
    </Card>
  );
}

function PaymentRows({ account, cursor, canChange, last, onMore }: { account: Account; cursor?: string; canChange: boolean; last: boolean; onMore: (c: string) => void }) {
  const { data, error, isLoading, refetch } = usePaymentsQuery({ accountId: account.id, cursor });
  const cols = canChange ? 6 : 5;
  if (isLoading) return <tbody><tr><td colSpan={cols}><Spinner label="Loading payments…" /></td></tr></tbody>;
  if (error) return <tbody><tr><td colSpan={cols}><ErrorBox error={error} onRetry={refetch} /></td></tr></tbody>;
  const items = data?.items ?? [];
  return (
    <tbody>
      {!cursor && items.length === 0 && <tr><td colSpan={cols} className="p-3 text-slate-600">No payments yet.</td></tr>}
      {items.map((p) => <PaymentRow key={p.id} payment={p} canChange={canChange} />)}
      {last && data?.next_cursor && (
        <tr><td colSpan={cols} className="p-2"><Button onClick={() => onMore(data.next_cursor!)}>Older payments</Button></td></tr>
      )}
    </tbody>
  );
}

function PaymentRow({ payment, canChange }: { payment: Payment; canChange: boolean }) {
  const [change, { isLoading, error }] = useChangePaymentStatusMutation();
  const next = PAYMENT_TRANSITIONS[payment.status];
  return (
    <tr className="border-t border-slate-200">
      <td className="p-2">{formatDateTime(payment.received_at)}</td>
      <td className="p-2 tabular-nums">{formatMoney(payment.amount, payment.currency)}</td>
      <td className="p-2">{payment.method}</td>
      <td className="p-2"><Badge value={payment.status} /></td>
      <td className="p-2">{payment.reference ?? "—"}</td>
      {canChange && (
        <td className="p-2">
          <div className="flex flex-wrap gap-1">
            {next.map((s) => (
              <Button key={s} disabled={isLoading} onClick={() => void change({ accountId: payment.account_id, payment, status: s }).unwrap().catch(() => {})}>
                Mark {s}
              </Button>
            ))}
            {next.length === 0 && <span className="text-slate-500">final</span>}
          </div>
          {error && <p role="alert" className="text-xs text-red-700">{problemMessage(error)}</p>}
        </td>
      )}
    </tr>
  );
}

function Timeline({ accountId, currency }: { accountId: string; currency: string }) {
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  return (
    <Card title="Activity">
      <ol className="space-y-2" aria-label="Activity timeline">
        {cursors.map((c, i) => (
          <TimelinePage key={c ?? "first"} accountId={accountId} currency={currency} cursor={c} last={i === cursors.length - 1} onMore={(n) => setCursors([...cursors, n])} />
        ))}
      </ol>
    </Card>
  );
}

function TimelinePage({ accountId, currency, cursor, last, onMore }: { accountId: string; currency: string; cursor?: string; last: boolean; onMore: (c: string) => void }) {
  const { data, error, isLoading, refetch } = useActivitiesQuery({ accountId, cursor });
  if (isLoading) return <li><Spinner label="Loading activity…" /></li>;
  if (error) return <li><ErrorBox error={error} onRetry={refetch} /></li>;
  const items = data?.items ?? [];
  return (
    <>
      {!cursor && items.length === 0 && <li><Empty>No activity yet.</Empty></li>}
      {items.map((a) => (
        <li key={a.id} className="rounded-md border border-slate-200 p-2 text-sm">
          <div className="flex flex-wrap items-center justify-between gap-2">
            <Badge value={a.type} />
            <time dateTime={a.created_at} className="text-xs text-slate-600">{formatDateTime(a.created_at)}</time>
          </div>
          {a.note && <p className="mt-1 whitespace-pre-wrap">{a.note}</p>}
          {a.outcome && <p className="text-slate-700">Outcome: {a.outcome.replace(/_/g, " ")}</p>}
          {a.promise_amount !== null && a.promise_date && (
            <p className="text-slate-700">Promised {formatMoney(a.promise_amount, currency)} by {a.promise_date}</p>
          )}
        </li>
      ))}
      {last && data?.next_cursor && (
        <li><Button onClick={() => onMore(data.next_cursor!)}>Older activity</Button></li>
      )}
    </>
  );
}
