import { Link } from "react-router";
import { useAccountsQuery, useActivitiesBatchQuery } from "../api/api";
import type { Account, Activity } from "../api/types";
import { Badge, Card, Empty, ErrorBox, Spinner } from "../components/ui";
import { useLiveTopics } from "../live/LiveProvider";
import { formatMoney } from "../money";

/** Today's date where the agent is (promise dates are calendar dates). */
function today(): string {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** The newest promise on each account, from the batch timeline. */
function latestPromises(results: { account_id: string; activities: Activity[] }[] | undefined) {
  const out = new Map<string, Activity>();
  for (const r of results ?? []) {
    const p = r.activities.find((a) => a.type === "promise_to_pay");
    if (p) out.set(r.account_id, p);
  }
  return out;
}

/**
 * The page an agent starts the day on. The list API has no promise filter, so promises come
 * from the agent's `promise_to_pay` accounts (`GET /accounts?status=promise_to_pay`) and their
 * newest promise (`POST /activities/batch`): due today, and past their date but not yet
 * settled by the nightly job (broken). Then the agent's accounts by days past due and by balance.
 */
export default function WorklistPage() {
  useLiveTopics(["payments", "activities"]);
  const promising = useAccountsQuery({ status: "promise_to_pay", sort: "due_date", limit: "100" });
  const ids = (promising.data?.items ?? []).map((a) => a.id);
  const batch = useActivitiesBatchQuery({ account_ids: ids, limit: 10 }, { skip: ids.length === 0 });
  // The list API filters one status at a time, so a page is read and settled accounts (paid,
  // closed) are left out here: nothing on them is left to work.
  const byDpd = useAccountsQuery({ sort: "-days_past_due", limit: "50" });
  const byBalance = useAccountsQuery({ sort: "-balance", limit: "50" });
  const promises = latestPromises(batch.data?.results);
  const t = today();
  const accounts = promising.data?.items ?? [];
  const due = accounts.filter((a) => promises.get(a.id)?.promise_date === t);
  const broken = accounts.filter((a) => {
    const d = promises.get(a.id)?.promise_date;
    return d !== undefined && d !== null && d < t;
  });

  return (
    <div className="space-y-4">
      <h1 className="text-2xl font-bold">Worklist</h1>
      <div className="grid gap-4 lg:grid-cols-2">
        <Card title={`Promises due today (${due.length})`}>
          {promising.error ? <ErrorBox error={promising.error} onRetry={promising.refetch} /> :
            promising.isLoading || batch.isLoading ? <Spinner /> :
            <PromiseList accounts={due} promises={promises} empty="No promises fall due today." />}
        </Card>
        <Card title={`Broken promises (${broken.length})`}>
          {promising.error ? <ErrorBox error={promising.error} onRetry={promising.refetch} /> :
            promising.isLoading || batch.isLoading ? <Spinner /> :
            <PromiseList accounts={broken} promises={promises} empty="No broken promises." />}
        </Card>
        <Card title="Most days past due">
          <AccountList q={byDpd} show={(a) => `${a.days_past_due} days`} />
        </Card>
        <Card title="Highest balances">
          <AccountList q={byBalance} show={(a) => formatMoney(a.balance, a.currency)} />
        </Card>
      </div>
    </div>
  );
}

function PromiseList({ accounts, promises, empty }: { accounts: Account[]; promises: Map<string, Activity>; empty: string }) {
  if (!accounts.length) return <Empty>{empty}</Empty>;
  return (
    <ul className="divide-y divide-slate-200 text-sm">
      {accounts.map((a) => {
        const p = promises.get(a.id)!;
        return (
          <li key={a.id} className="flex flex-wrap items-center justify-between gap-2 py-2">
            <Link to={`/accounts/${a.id}`} className="min-w-0 font-medium text-blue-800 underline [overflow-wrap:anywhere]">{a.debtor_name} · {a.reference}</Link>
            <span>{formatMoney(p.promise_amount ?? 0, a.currency)} by {p.promise_date}</span>
          </li>
        );
      })}
    </ul>
  );
}

/** Rows per worklist card. */
const WORKLIST_ROWS = 10;

/** An account with something left to collect: not settled as paid or closed. */
function isOpen(a: Account): boolean {
  return a.status !== "paid" && a.status !== "closed";
}

function AccountList({ q, show }: { q: ReturnType<typeof useAccountsQuery>; show: (a: Account) => string }) {
  if (q.error) return <ErrorBox error={q.error} onRetry={q.refetch} />;
  if (q.isLoading) return <Spinner />;
  const items: Account[] = (q.data?.items ?? []).filter(isOpen).slice(0, WORKLIST_ROWS);
  if (!items.length) return <Empty>No open accounts assigned to you.</Empty>;
  return (
    <ul className="divide-y divide-slate-200 text-sm" data-testid="worklist-accounts">
      {items.map((a: Account) => (
        <li key={a.id} className="flex flex-wrap items-center justify-between gap-2 py-2">
          <Link to={`/accounts/${a.id}`} className="min-w-0 font-medium text-blue-800 underline [overflow-wrap:anywhere]">{a.debtor_name} · {a.reference}</Link>
          <span className="flex items-center gap-2"><Badge value={a.status} /><span className="tabular-nums">{show(a)}</span></span>
        </li>
      ))}
    </ul>
  );
}
