import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { Link } from "react-router";
import { useSummaryQuery } from "../api/api";
import type { Totals } from "../api/types";
import { can } from "../auth/roles";
import { useUser } from "../components/Layout";
import { Card, ErrorBox, Spinner, formatDateTime, ScrollX } from "../components/ui";
import { useLiveTopics } from "../live/LiveProvider";
import { formatByCurrency, formatMoney, minorDigits } from "../money";
import { useAppSelector } from "../store";

function Figure({ label, value, testId }: { label: string; value: string | number; testId?: string }) {
  return (
    <div className="rounded-lg border border-slate-200 bg-white p-3 shadow-sm">
      <p className="text-sm text-slate-700">{label}</p>
      <p className="text-xl font-bold tabular-nums" data-testid={testId}>{value}</p>
    </div>
  );
}

function ChartCard({ title, data, bars, empty }: { title: string; data: object[]; bars: { key: string; colour: string; name?: string }[]; empty?: string }) {
  if (empty && data.length === 0)
    return (
      <Card title={title}>
        <p className="text-sm text-slate-600">{empty}</p>
      </Card>
    );
  return (
    <Card title={title}>
      <figure aria-label={title}>
        <div className="h-56">
          <ResponsiveContainer width="100%" height="100%">
            <BarChart data={data} margin={{ left: 0, right: 8, top: 8, bottom: 0 }}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="name" tick={{ fontSize: 12 }} />
              <YAxis allowDecimals={false} tick={{ fontSize: 12 }} width={48} />
              <Tooltip />
              {bars.length > 1 && <Legend />}
              {bars.map((b) => <Bar key={b.key} dataKey={b.key} name={b.name ?? b.key} fill={b.colour} isAnimationActive={false} />)}
            </BarChart>
          </ResponsiveContainer>
        </div>
        {/* The numbers behind the chart, for screen readers. */}
        <figcaption className="sr-only">
          {data.map((d) => Object.entries(d).map(([k, v]) => `${k}: ${v}`).join(", ")).join("; ")}
        </figcaption>
      </figure>
    </Card>
  );
}


/**
 * The summary's figures and charts. The summary refetches (with If-None-Match, a 304 keeps
 * what is shown) on `dashboard.changed`; payments and activities arrive in the live feed.
 */
export default function DashboardPage() {
  const user = useUser();
  const { data, error, isLoading, refetch, isFetching } = useSummaryQuery();
  useLiveTopics(["dashboard", "payments", "activities"]);

  if (isLoading) return <Spinner label="Loading the dashboard…" />;
  if (error || !data) return <ErrorBox error={error} title="Could not load the dashboard" onRetry={refetch} />;
  const t: Totals = data;
  const collected = [...new Set([...Object.keys(t.today.collected), ...Object.keys(t.month.collected)])].map((c) => ({
    name: c,
    today: (t.today.collected[c] ?? 0) / 10 ** minorDigits(c),
    month: (t.month.collected[c] ?? 0) / 10 ** minorDigits(c),
  }));
  const methods = Object.entries(t.month.payments_by_method).filter(([, v]) => v.count > 0).map(([m, v]) => ({ name: m, payments: v.count }));

  return (
    <div className="space-y-4" aria-busy={isFetching}>
      <div className="flex flex-wrap items-baseline justify-between gap-2">
        <h1 className="text-2xl font-bold">Dashboard</h1>
        <p className="text-sm text-slate-700">
          {data.scope === "agent" ? "Your accounts" : "All accounts"} · {data.date} (UTC)
        </p>
      </div>
      <div className="grid grid-cols-2 gap-3 md:grid-cols-4">
        <Figure label="Accounts" value={t.accounts.total} testId="fig-accounts" />
        <Figure label="Outstanding" value={formatByCurrency(t.outstanding)} />
        <Figure label="Collected today" value={formatByCurrency(t.today.collected)} testId="fig-today" />
        <Figure label="Collected this month" value={formatByCurrency(t.month.collected)} />
        <Figure label="Promises due today" value={t.today.promises.due} />
        <Figure label="Promises kept (month)" value={t.month.promises.kept} />
        <Figure label="Promises broken (month)" value={t.month.promises.broken} />
        <Figure label="Activities today" value={Object.values(t.today.activities).reduce((a, b) => a + b, 0)} />
      </div>
      <div className="grid gap-4 lg:grid-cols-2">
        <ChartCard title="Collected, today and this month" data={collected} bars={[{ key: "today", colour: "#1d4ed8" }, { key: "month", colour: "#15803d" }]} empty="Nothing collected this month yet." />
        <ChartCard title="Accounts by status" data={Object.entries(t.accounts.by_status).map(([name, n]) => ({ name: name.replace(/_/g, " "), accounts: n }))} bars={[{ key: "accounts", colour: "#1d4ed8" }]} />
        <ChartCard title="Accounts by days past due" data={Object.entries(t.accounts.by_dpd_bucket).map(([name, n]) => ({ name, accounts: n }))} bars={[{ key: "accounts", colour: "#b45309" }]} />
        <ChartCard
          title="Promises to pay"
          data={[
            { name: "today", due: t.today.promises.due, kept: t.today.promises.kept, broken: t.today.promises.broken },
            { name: "month", due: t.month.promises.due, kept: t.month.promises.kept, broken: t.month.promises.broken },
          ]}
          bars={[{ key: "due", colour: "#1d4ed8" }, { key: "kept", colour: "#15803d" }, { key: "broken", colour: "#b91c1c" }]}
        />
        {methods.length > 0 && <ChartCard title="Payments by method (month)" data={methods} bars={[{ key: "payments", colour: "#6d28d9" }]} />}
        <LiveFeed />
      </div>
      {can(user.role, "dashboard.agents") && data.agents && (
        <Card title="Agents">
          <ScrollX label="Agents table">
            <table className="w-full min-w-[36rem] text-left text-sm">
              <thead className="bg-slate-100">
                <tr>
                  <th scope="col" className="p-2">Agent</th>
                  <th scope="col" className="p-2">Accounts</th>
                  <th scope="col" className="p-2">Outstanding</th>
                  <th scope="col" className="p-2">Collected today</th>
                  <th scope="col" className="p-2">Collected month</th>
                  <th scope="col" className="p-2">Promises kept / broken (month)</th>
                </tr>
              </thead>
              <tbody>
                {data.agents.map((a) => (
                  <tr key={a.agent_id} className="border-t border-slate-200">
                    <td className="p-2"><Link className="text-blue-800 underline" to={`/accounts?agent_id=${a.agent_id}`}>{a.name ?? a.agent_id}</Link></td>
                    <td className="p-2 tabular-nums">{a.accounts.total}</td>
                    <td className="p-2 tabular-nums">{formatByCurrency(a.outstanding)}</td>
                    <td className="p-2 tabular-nums">{formatByCurrency(a.today.collected)}</td>
                    <td className="p-2 tabular-nums">{formatByCurrency(a.month.collected)}</td>
                    <td className="p-2 tabular-nums">{a.month.promises.kept} / {a.month.promises.broken}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </ScrollX>
        </Card>
      )}
    </div>
  );
}

/** Payments and activities as they arrive (de-duplicated by the live client). */
export function LiveFeed() {
  const feed = useAppSelector((s) => s.live.feed);
  return (
    <Card title="Live feed">
      {feed.length === 0 ? (
        <p className="text-sm text-slate-600">Payments and activities appear here as they happen.</p>
      ) : (
        <ul className="max-h-64 space-y-1 overflow-y-auto text-sm" aria-live="polite" data-testid="live-feed">
          {feed.map((m, i) => {
            const d = (m.type === "payment.status_changed" ? (m.data.payment as Record<string, unknown>) : m.data) ?? {};
            const when = String(d.created_at ?? d.updated_at ?? "");
            return (
              <li key={m.id ?? i} className="flex flex-wrap justify-between gap-2 border-b border-slate-100 py-1">
                <span>
                  {m.type === "payment.recorded" && <>Payment {formatMoney(Number(d.amount), String(d.currency))} ({String(d.method)})</>}
                  {m.type === "payment.status_changed" && <>Payment {String(m.data.from)} → {String(m.data.to)}</>}
                  {m.type === "activity.logged" && <>Activity: {String(d.type).replace(/_/g, " ")}</>}{" "}
                  <Link className="text-blue-800 underline" to={`/accounts/${String(d.account_id)}`}>account …{String(d.account_id).slice(-6)}</Link>
                </span>
                {when && <time className="text-xs text-slate-600" dateTime={when}>{formatDateTime(when)}</time>}
              </li>
            );
          })}
        </ul>
      )}
    </Card>
  );
}
