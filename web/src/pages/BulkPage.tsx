import { useState, type FormEvent } from "react";
import { Link, useLocation, useNavigate, useParams, useSearchParams } from "react-router";
import { useCancelJobMutation, useJobFailuresQuery, useJobQuery, useJobsQuery, useStartBulkMutation } from "../api/api";
import { fieldErrors, problemMessage } from "../api/problem";
import { ACCOUNT_STATUSES, type Job } from "../api/types";
import { can } from "../auth/roles";
import { useUser } from "../components/Layout";
import { Badge, Button, Card, Empty, ErrorBox, Field, Select, Spinner, formatDateTime } from "../components/ui";
import { useLiveTopics } from "../live/LiveProvider";
import { useAppSelector } from "../store";
import { bulkFilter, queryFromSearch } from "./accountFilters";
import { useAgents } from "./useAgents";

const RUNNING = ["queued", "running"];

export default function BulkPage() {
  const user = useUser();
  const { jobId } = useParams();
  if (!can(user.role, "bulk.run")) return <p>Your role cannot run bulk updates.</p>;
  return (
    <div className="space-y-4">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h1 className="text-2xl font-bold">Bulk updates</h1>
        {jobId && <Link to="/accounts" className="text-sm text-blue-800 underline">New bulk update: choose accounts</Link>}
      </div>
      {jobId ? <JobView id={jobId} /> : <NewJob />}
      <JobList />
    </div>
  );
}

function NewJob() {
  const location = useLocation();
  const [search] = useSearchParams();
  const navigate = useNavigate();
  const agents = useAgents();
  const ids = (location.state as { account_ids?: string[] } | null)?.account_ids;
  const listQuery = queryFromSearch(search);
  const filter = bulkFilter(listQuery);
  const [status, setStatus] = useState("");
  const [agent, setAgent] = useState("");
  const [local, setLocal] = useState<string | null>(null);
  const [start, { isLoading, error }] = useStartBulkMutation();
  const target = ids?.length ? `${ids.length} selected account${ids.length === 1 ? "" : "s"}` :
    Object.keys(filter).length ? `every account matching ${Object.entries(filter).map(([k, v]) => `${k} = ${v}`).join(", ")}` :
    "every account";

  async function submit(e: FormEvent) {
    e.preventDefault();
    const changes: { status?: string; assigned_agent_id?: string | null } = {};
    if (status) changes.status = status;
    if (agent) changes.assigned_agent_id = agent === "none" ? null : agent;
    if (!Object.keys(changes).length) return setLocal("Choose a change: a status, an agent or both.");
    setLocal(null);
    try {
      const r = await start(ids?.length ? { account_ids: ids, changes } : { filter, changes }).unwrap();
      navigate(`/bulk/${r.job_id}`);
    } catch {
      /* shown below */
    }
  }
  const api = fieldErrors(error);
  return (
    <Card title="New bulk update">
      <p className="mb-3 text-sm">Applies to <strong data-testid="bulk-target">{target}</strong>. Choose accounts on the <Link className="text-blue-800 underline" to="/accounts">accounts list</Link> (a selection or the current filter).</p>
      {!ids?.length && listQuery.q && (
        <p role="note" className="mb-3 rounded-md border border-amber-300 bg-amber-50 p-2 text-sm">
          A bulk update cannot use a search; it applies to the other filters only. Select the accounts instead to update just the search results.
        </p>
      )}
      <form onSubmit={submit} noValidate aria-label="Bulk update" className="grid gap-3 sm:grid-cols-3">
        <Field label="Set status" error={api["changes.status"]}>
          {(p) => (
            <Select {...p} value={status} onChange={(e) => setStatus(e.target.value)}>
              <option value="">Leave as is</option>
              {ACCOUNT_STATUSES.map((s) => <option key={s} value={s}>{s.replace(/_/g, " ")}</option>)}
            </Select>
          )}
        </Field>
        <Field label="Assign to agent" error={api["changes.assigned_agent_id"]}>
          {(p) => (
            <Select {...p} value={agent} onChange={(e) => setAgent(e.target.value)}>
              <option value="">Leave as is</option>
              <option value="none">Unassign</option>
              {agents.map((a) => <option key={a.id} value={a.id}>{a.name}</option>)}
            </Select>
          )}
        </Field>
        <div className="flex items-end gap-2">
          <Button type="submit" variant="primary" disabled={isLoading}>{isLoading ? "Starting…" : "Start bulk update"}</Button>
        </div>
        {(local || error) && <p role="alert" className="text-sm text-red-700 sm:col-span-3">{local ?? problemMessage(error)}</p>}
      </form>
    </Card>
  );
}

/** Progress from `job.progress` on `job:{id}` (the cache is updated by the live client); polls only while live updates are down. */
function JobView({ id }: { id: string }) {
  useLiveTopics([`job:${id}`]);
  const live = useAppSelector((s) => s.live.status);
  const { data: job, error, isLoading, refetch } = useJobQuery(id, { pollingInterval: live === "up" ? 0 : 3000 });
  const [cancel, cancelling] = useCancelJobMutation();
  if (isLoading) return <Spinner label="Loading the job…" />;
  if (error || !job) return <ErrorBox error={error} title="Could not load the job" onRetry={refetch} />;
  const pct = job.total ? Math.round((job.processed / job.total) * 100) : RUNNING.includes(job.state) ? 0 : 100;
  const running = RUNNING.includes(job.state);
  return (
    <Card title={<>Job <span className="font-mono text-sm">{job.id}</span></>} actions={<Badge value={job.state} />}>
      <div className="space-y-3">
        <div>
          <div className="mb-1 flex justify-between text-sm"><span id="progress-label">Progress</span><span data-testid="progress-text">{pct}%</span></div>
          <div role="progressbar" aria-labelledby="progress-label" aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct} className="h-4 overflow-hidden rounded bg-slate-200" data-testid="progress">
            <div className="h-full bg-blue-700 motion-safe:transition-[width]" style={{ width: `${pct}%` }} />
          </div>
        </div>
        <dl className="grid grid-cols-2 gap-2 text-sm sm:grid-cols-5">
          <div><dt className="text-slate-600">Total</dt><dd className="font-semibold" data-testid="job-total">{job.total}</dd></div>
          <div><dt className="text-slate-600">Processed</dt><dd className="font-semibold">{job.processed}</dd></div>
          <div><dt className="text-slate-600">Succeeded</dt><dd className="font-semibold" data-testid="job-succeeded">{job.succeeded}</dd></div>
          <div><dt className="text-slate-600">Failed</dt><dd className="font-semibold">{job.failed}</dd></div>
          <div><dt className="text-slate-600">Cancelled</dt><dd className="font-semibold">{job.cancelled ?? 0}</dd></div>
        </dl>
        {running && (
          <Button variant="danger" disabled={cancelling.isLoading} onClick={() => void cancel(id).unwrap().catch(() => {})}>Cancel the rest</Button>
        )}
        {cancelling.error && <p role="alert" className="text-sm text-red-700">{problemMessage(cancelling.error)}</p>}
        {job.failed > 0 && <Failures id={id} />}
      </div>
    </Card>
  );
}

function Failures({ id }: { id: string }) {
  const [cursor, setCursor] = useState<string | undefined>();
  const { data, error, isLoading } = useJobFailuresQuery({ id, cursor });
  if (isLoading) return <Spinner label="Loading failures…" />;
  if (error) return <ErrorBox error={error} />;
  return (
    <div>
      <h3 className="mb-1 font-semibold">Failures</h3>
      <ul className="divide-y divide-slate-200 text-sm">
        {(data?.items ?? []).map((f) => (
          <li key={f.account_id} className="py-1">
            <Link className="text-blue-800 underline" to={`/accounts/${f.account_id}`}>{f.account_id}</Link>: <strong>{f.reason.replace(/_/g, " ")}</strong> — {f.message}
          </li>
        ))}
      </ul>
      {data?.next_cursor && <Button onClick={() => setCursor(data.next_cursor!)}>More failures</Button>}
    </div>
  );
}

function JobList() {
  const { data, error, isLoading, refetch } = useJobsQuery();
  return (
    <Card title="Recent jobs" actions={<Button onClick={refetch}>Refresh</Button>}>
      {error ? <ErrorBox error={error} onRetry={refetch} /> : isLoading ? <Spinner /> : !data?.items.length ? <Empty>No bulk jobs yet.</Empty> : (
        <ul className="divide-y divide-slate-200 text-sm">
          {data.items.map((j: Job) => (
            <li key={j.id} className="flex flex-wrap items-center justify-between gap-2 py-2">
              <Link className="font-mono text-blue-800 underline" to={`/bulk/${j.id}`}>{j.id}</Link>
              <span className="flex items-center gap-2"><Badge value={j.state} /> {j.succeeded}/{j.total} · {formatDateTime(j.created_at)}</span>
            </li>
          ))}
        </ul>
      )}
    </Card>
  );
}
