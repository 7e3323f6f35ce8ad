import { useState, type FormEvent } from "react";
import { Link, useLocation, useNavigate, useSearchParams } from "react-router";
import { useAccountsQuery, type AccountQuery } from "../api/api";
import { ACCOUNT_STATUSES, DPD_BUCKETS } from "../api/types";
import { can } from "../auth/roles";
import { useUser } from "../components/Layout";
import { Badge, Button, Empty, ErrorBox, Input, Select, Spinner, ScrollX } from "../components/ui";
import { formatMoney, minorToInput, parseMoney } from "../money";
import { queryFromSearch, searchFromQuery, toggleSort, withChange } from "./accountFilters";
import { useAgents } from "./useAgents";

const SORTABLE: { key: string; label: string }[] = [
  { key: "balance", label: "Balance" },
  { key: "days_past_due", label: "Days past due" },
  { key: "due_date", label: "Due date" },
  { key: "created_at", label: "Created" },
  { key: "updated_at", label: "Updated" },
];

/**
 * The accounts table over `GET /accounts`: every filter the API has, sortable columns, signed
 * cursor paging (the cursors of earlier pages ride in the history state for "Previous"), page
 * size, row selection for bulk updates. Filters, sort, size and the cursor are the URL.
 */
export default function AccountsPage() {
  const user = useUser();
  const agents = useAgents();
  const [search] = useSearchParams();
  const navigate = useNavigate();
  const location = useLocation();
  const query = queryFromSearch(search);
  const prev: string[] = (location.state as { prev?: string[] } | null)?.prev ?? [];
  const { data, error, isLoading, isFetching, refetch } = useAccountsQuery(query);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const agentName = (id: string | null) => (id ? agents.find((a) => a.id === id)?.name ?? id.slice(-6) : "—");

  function go(q: AccountQuery, state?: { prev: string[] }) {
    setSelected(new Set());
    navigate({ search: searchFromQuery(q).toString() }, { state });
  }

  const items = data?.items ?? [];
  const allOnPage = items.length > 0 && items.every((a) => selected.has(a.id));
  const sort = query.sort ?? "-created_at";

  return (
    <div className="space-y-4">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h1 className="text-2xl font-bold">Accounts</h1>
        {can(user.role, "account.create") && (
          <Link to="/accounts/new" className="rounded-md bg-blue-700 px-3 py-1.5 text-sm font-medium text-white hover:bg-blue-800">
            New account
          </Link>
        )}
      </div>

      <Filters key={searchFromQuery({ ...query, cursor: undefined, sort: undefined, limit: undefined }).toString()} query={query} onApply={(q) => go(q)} agents={agents} showAgent={user.role !== "agent"} />

      {can(user.role, "bulk.run") && (
        <div className="flex flex-wrap items-center gap-2 text-sm" aria-label="Bulk actions">
          <span>{selected.size} selected</span>
          <Button
            disabled={selected.size === 0}
            onClick={() => navigate("/bulk", { state: { account_ids: [...selected] } })}
          >
            Bulk update selected
          </Button>
          <Button onClick={() => navigate(`/bulk?${searchFromQuery({ ...query, cursor: undefined, limit: undefined, sort: undefined }).toString()}`, { state: { byFilter: true } })}>
            Bulk update all matching the filter
          </Button>
        </div>
      )}

      {error ? (
        <ErrorBox error={error} title="Could not load accounts" onRetry={refetch} />
      ) : isLoading ? (
        <Spinner label="Loading accounts…" />
      ) : items.length === 0 ? (
        <Empty>No accounts match these filters.</Empty>
      ) : (
        <>
        {/* Phones: one card per account (a table would scroll sideways). */}
        <ul className="space-y-2 md:hidden" aria-label="Accounts" aria-busy={isFetching}>
          {items.map((a) => (
            <li key={a.id} className="rounded-lg border border-slate-200 bg-white p-3">
              <div className="flex items-start justify-between gap-2">
                <div className="min-w-0">
                  <Link to={`/accounts/${a.id}`} className="break-all font-medium text-blue-800 underline">{a.reference}</Link>
                  <p className="[overflow-wrap:anywhere]">{a.debtor_name}</p>
                </div>
                {can(user.role, "bulk.run") && (
                  <input
                    type="checkbox"
                    aria-label={`Select ${a.reference}`}
                    className="mt-1 h-5 w-5"
                    checked={selected.has(a.id)}
                    onChange={() => {
                      const next = new Set(selected);
                      if (next.has(a.id)) next.delete(a.id); else next.add(a.id);
                      setSelected(next);
                    }}
                  />
                )}
              </div>
              <div className="mt-1 flex flex-wrap items-center justify-between gap-2 text-sm">
                <Badge value={a.status} />
                <span className="font-semibold tabular-nums">{formatMoney(a.balance, a.currency)}</span>
                <span className="text-slate-700">{a.days_past_due} days past due</span>
              </div>
            </li>
          ))}
        </ul>
        <ScrollX label="Accounts table" className="hidden rounded-lg border border-slate-200 bg-white md:block" aria-busy={isFetching}>
          <table className="w-full min-w-[44rem] text-left text-sm">
            <caption className="sr-only">Accounts, sorted by {sort.replace(/^-/, "")} {sort.startsWith("-") ? "descending" : "ascending"}</caption>
            <thead className="bg-slate-100 text-slate-800">
              <tr>
                {can(user.role, "bulk.run") && (
                  <th scope="col" className="w-8 p-2">
                    <input
                      type="checkbox"
                      aria-label="Select every account on this page"
                      checked={allOnPage}
                      onChange={() => {
                        const next = new Set(selected);
                        for (const a of items) if (allOnPage) next.delete(a.id); else next.add(a.id);
                        setSelected(next);
                      }}
                    />
                  </th>
                )}
                <th scope="col" className="p-2">Reference</th>
                <th scope="col" className="p-2">Debtor</th>
                <th scope="col" className="p-2">Status</th>
                {SORTABLE.slice(0, 3).map((c) => (
                  <SortHeader key={c.key} column={c.key} label={c.label} sort={sort} disabled={!!query.q} onSort={(s) => go(withChange(query, { sort: s }))} />
                ))}
                {user.role !== "agent" && <th scope="col" className="p-2">Agent</th>}
              </tr>
            </thead>
            <tbody>
              {items.map((a) => (
                <tr key={a.id} className="border-t border-slate-200 hover:bg-slate-50">
                  {can(user.role, "bulk.run") && (
                    <td className="p-2">
                      <input
                        type="checkbox"
                        aria-label={`Select ${a.reference}`}
                        checked={selected.has(a.id)}
                        onChange={() => {
                          const next = new Set(selected);
                          if (next.has(a.id)) next.delete(a.id); else next.add(a.id);
                          setSelected(next);
                        }}
                      />
                    </td>
                  )}
                  <td className="p-2">
                    <Link to={`/accounts/${a.id}`} className="font-medium text-blue-800 underline">{a.reference}</Link>
                  </td>
                  <td className="p-2">{a.debtor_name}</td>
                  <td className="p-2"><Badge value={a.status} /></td>
                  <td className="p-2 tabular-nums" data-testid="row-balance">{formatMoney(a.balance, a.currency)}</td>
                  <td className="p-2 tabular-nums">{a.days_past_due} <span className="text-slate-600">({a.dpd_bucket})</span></td>
                  <td className="p-2 tabular-nums">{a.due_date}</td>
                  {user.role !== "agent" && <td className="p-2">{agentName(a.assigned_agent_id)}</td>}
                </tr>
              ))}
            </tbody>
          </table>
        </ScrollX>
        </>
      )}

      <nav aria-label="Pages" className="flex flex-wrap items-center gap-2">
        <Button
          disabled={prev.length === 0}
          onClick={() => {
            const p = [...prev];
            const c = p.pop();
            go({ ...query, cursor: c || undefined }, { prev: p });
          }}
        >
          Previous
        </Button>
        <Button
          disabled={!data?.next_cursor}
          onClick={() => go({ ...query, cursor: data!.next_cursor! }, { prev: [...prev, query.cursor ?? ""] })}
        >
          Next
        </Button>
        <label className="ml-auto flex items-center gap-2 whitespace-nowrap text-sm">
          Page size
          <Select className="w-20" value={query.limit ?? "25"} onChange={(e) => go(withChange(query, { limit: e.target.value === "25" ? undefined : e.target.value }))}>
            {["10", "25", "50", "100"].map((n) => <option key={n}>{n}</option>)}
          </Select>
        </label>
      </nav>
    </div>
  );
}

function SortHeader({ column, label, sort, disabled, onSort }: { column: string; label: string; sort: string; disabled: boolean; onSort: (s: string) => void }) {
  const dir = sort === column ? "ascending" : sort === `-${column}` ? "descending" : "none";
  return (
    <th scope="col" className="p-2" aria-sort={dir}>
      <button type="button" disabled={disabled} className="font-semibold underline decoration-dotted disabled:no-underline" onClick={() => onSort(toggleSort(sort, column))}>
        {label} {dir === "ascending" ? "▲" : dir === "descending" ? "▼" : ""}
      </button>
    </th>
  );
}

function Filters({ query, onApply, agents, showAgent }: { query: AccountQuery; onApply: (q: AccountQuery) => void; agents: { id: string; name: string }[]; showAgent: boolean }) {
  const [f, setF] = useState(() => ({
    q: query.q ?? "",
    status: query.status ?? "",
    dpd_bucket: query.dpd_bucket ?? "",
    agent_id: query.agent_id ?? "",
    min: query.min_balance ? minorToInput(Number(query.min_balance), "USD") : "",
    max: query.max_balance ? minorToInput(Number(query.max_balance), "USD") : "",
  }));
  const [err, setErr] = useState<string | null>(null);
  function submit(e: FormEvent) {
    e.preventDefault();
    const min = f.min ? parseMoney(f.min, "USD") : null;
    const max = f.max ? parseMoney(f.max, "USD") : null;
    if ((f.min && min === null) || (f.max && max === null)) return setErr("Balances are amounts like 1250.00.");
    if (min !== null && max !== null && max < min) return setErr("The maximum balance is below the minimum.");
    if (f.q && f.q.replace(/[^\p{L}\p{N}]/gu, "").length < 2) return setErr("Search needs at least 2 letters or digits.");
    setErr(null);
    onApply(
      withChange(query, {
        q: f.q.trim() || undefined,
        status: f.status || undefined,
        dpd_bucket: f.dpd_bucket || undefined,
        agent_id: f.agent_id || undefined,
        min_balance: min !== null ? String(min) : undefined,
        max_balance: max !== null ? String(max) : undefined,
      }),
    );
  }
  const input = "flex flex-col gap-1 text-sm font-medium";
  return (
    <form onSubmit={submit} role="search" aria-label="Filter accounts" className="grid grid-cols-2 gap-2 rounded-lg border border-slate-200 bg-white p-3 md:grid-cols-4 lg:grid-cols-7">
      <label className={`${input} col-span-2`}>
        Search
        <Input value={f.q} placeholder="Reference, name, email, phone" onChange={(e) => setF({ ...f, q: e.target.value })} />
      </label>
      <label className={input}>
        Status
        <Select value={f.status} onChange={(e) => setF({ ...f, status: e.target.value })}>
          <option value="">Any</option>
          {ACCOUNT_STATUSES.map((s) => <option key={s} value={s}>{s.replace(/_/g, " ")}</option>)}
        </Select>
      </label>
      <label className={input}>
        Days past due
        <Select value={f.dpd_bucket} onChange={(e) => setF({ ...f, dpd_bucket: e.target.value })}>
          <option value="">Any</option>
          {DPD_BUCKETS.map((s) => <option key={s} value={s}>{s}</option>)}
        </Select>
      </label>
      {showAgent && (
        <label className={input}>
          Agent
          {agents.length ? (
            <Select value={f.agent_id} onChange={(e) => setF({ ...f, agent_id: e.target.value })}>
              <option value="">Any</option>
              {agents.map((a) => <option key={a.id} value={a.id}>{a.name}</option>)}
            </Select>
          ) : (
            <Input value={f.agent_id} placeholder="Agent id" onChange={(e) => setF({ ...f, agent_id: e.target.value })} />
          )}
        </label>
      )}
      <label className={input}>
        Min balance
        <Input inputMode="decimal" value={f.min} onChange={(e) => setF({ ...f, min: e.target.value })} />
      </label>
      <label className={input}>
        Max balance
        <Input inputMode="decimal" value={f.max} onChange={(e) => setF({ ...f, max: e.target.value })} />
      </label>
      <div className="col-span-2 flex items-end gap-2 md:col-span-4 lg:col-span-7">
        <Button type="submit" variant="primary">Apply filters</Button>
        <Button onClick={() => { setF({ q: "", status: "", dpd_bucket: "", agent_id: "", min: "", max: "" }); onApply({ limit: query.limit }); }}>Clear</Button>
        {err && <p role="alert" className="text-sm text-red-700">{err}</p>}
      </div>
    </form>
  );
}
