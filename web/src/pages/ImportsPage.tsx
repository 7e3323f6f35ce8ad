import { useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";
import {
  useCreateImportMutation,
  useImportByIdQuery,
  useImportErrorsCsvMutation,
  useImportErrorsQuery,
  useImportsQuery,
  useUploadImportFileMutation,
} from "../api/api";
import { fieldErrors, problemMessage } from "../api/problem";
import { IMPORT_FIELDS, type Import, type ImportMode } from "../api/types";
import { can } from "../auth/roles";
import { useUser } from "../components/Layout";
import { Badge, Button, Card, Empty, ErrorBox, Field, Input, Select, Spinner, formatDateTime } from "../components/ui";
import { useLiveTopics } from "../live/LiveProvider";
import { useAppSelector } from "../store";
import { formatBytes, MAX_IMPORT_BYTES, readCsvHeader } from "./csvHeader";

const RUNNING = ["awaiting_upload", "running"];

/** The upload form's choices for a row whose reference already exists. */
const MODES: { value: ImportMode; label: string }[] = [
  { value: "create", label: "Create new accounts only (existing references are reported as duplicates)" },
  { value: "upsert", label: "Create new and update existing accounts" },
];

/**
 * `/imports` and `/imports/:importId` (one route, so the page stays mounted from the upload to
 * the progress view): it follows `import:{id}` from the moment the import is created, before
 * the file is uploaded, so no progress message can slip between the upload and the view.
 */
export default function ImportsPage() {
  const user = useUser();
  const { importId } = useParams();
  const [createdId, setCreatedId] = useState<string | null>(null);
  const followed = importId ?? createdId;
  useLiveTopics(followed && can(user.role, "imports.run") ? [`import:${followed}`] : []);
  if (!can(user.role, "imports.run")) return <p>Your role cannot import accounts.</p>;
  return (
    <div className="space-y-4">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h1 className="text-2xl font-bold">Imports</h1>
        {importId && <Link to="/imports" className="text-sm text-blue-800 underline">New import</Link>}
      </div>
      {importId ? <ImportView id={importId} /> : <NewImport onCreated={setCreatedId} />}
      {!importId && <ImportList />}
    </div>
  );
}

/** Whether the importer matches `column` by its own name (case and surrounding space ignored). */
function isFieldName(column: string): boolean {
  return (IMPORT_FIELDS as readonly string[]).includes(column.trim().toLowerCase());
}

/** A field per file column: chosen here, else matched by the column's own name. */
type Mapping = Record<string, string>;

function NewImport({ onCreated }: { onCreated: (id: string) => void }) {
  const navigate = useNavigate();
  const [file, setFile] = useState<File | null>(null);
  const [columns, setColumns] = useState<string[]>([]);
  const [mapping, setMapping] = useState<Mapping>({});
  const [mode, setMode] = useState<ImportMode>("create");
  const [local, setLocal] = useState<string | null>(null);
  const [create, creating] = useCreateImportMutation();
  const [upload, uploading] = useUploadImportFileMutation();

  async function choose(f: File | null) {
    setFile(f);
    setMapping({});
    setLocal(null);
    creating.reset();
    uploading.reset();
    setColumns(f ? await readCsvHeader(f).catch(() => []) : []);
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!file) return setLocal("Choose a CSV file to import.");
    if (file.size === 0) return setLocal("The file is empty: nothing to import.");
    if (file.size > MAX_IMPORT_BYTES) return setLocal(`The file is ${formatBytes(file.size)}; an import takes at most 256 MiB. Split the file.`);
    const unknown = columns.filter((c) => !mapping[c] && !isFieldName(c));
    if (unknown.length) return setLocal(`Map ${unknown.map((c) => `"${c}"`).join(", ")} to a field (or rename the column): an import refuses columns it does not know.`);
    setLocal(null);
    const column_mapping = Object.fromEntries(Object.entries(mapping).filter(([, field]) => field));
    try {
      const created = await create({ size: file.size, file_name: file.name, column_mapping, mode }).unwrap();
      onCreated(created.import.id);
      await upload({ upload: created.upload, file }).unwrap();
      navigate(`/imports/${created.import.id}`);
    } catch {
      /* shown below */
    }
  }

  const api = fieldErrors(creating.error);
  const busy = creating.isLoading || uploading.isLoading;
  const error = creating.error ?? uploading.error;
  return (
    <Card title="New import">
      <p className="mb-3 text-sm">
        A CSV file of accounts, one per row, with a header row. Columns named after a field (<code>reference</code>, <code>debtor_name</code>, …) are matched by their name; map any other column to a field below.
      </p>
      <form onSubmit={submit} noValidate aria-label="Import accounts" className="space-y-3">
        <Field label="CSV file" error={local ?? api.size ?? api.file_name} hint="At most 256 MiB.">
          {(p) => <Input {...p} type="file" accept=".csv,text/csv" onChange={(e) => void choose(e.target.files?.[0] ?? null)} />}
        </Field>
        {columns.length > 0 && (
          <fieldset className="space-y-2">
            <legend className="text-sm font-medium">Column mapping</legend>
            <ul className="grid gap-2 sm:grid-cols-2">
              {columns.map((column, i) => {
                const byName = isFieldName(column);
                return (
                  <li key={`${i}-${column}`}>
                    <Field label={`${column || `(column ${i + 1})`} →`} error={api[`column_mapping.${column}`]}>
                      {(p) => (
                        <Select {...p} value={mapping[column] ?? ""} onChange={(e) => setMapping({ ...mapping, [column]: e.target.value })}>
                          <option value="">{byName ? `${column.trim().toLowerCase()} (by its name)` : "Not a field: choose one"}</option>
                          {IMPORT_FIELDS.map((f) => <option key={f} value={f}>{f}</option>)}
                        </Select>
                      )}
                    </Field>
                  </li>
                );
              })}
            </ul>
          </fieldset>
        )}
        <fieldset className="space-y-1" aria-describedby={api.mode ? "import-mode-error" : undefined}>
          <legend className="text-sm font-medium">Rows whose reference already exists</legend>
          {MODES.map((m) => (
            <label key={m.value} className="flex items-center gap-2 text-sm">
              <input type="radio" name="mode" value={m.value} checked={mode === m.value} onChange={() => setMode(m.value)} />
              {m.label}
            </label>
          ))}
          {mode === "upsert" && <p className="text-sm text-slate-700">An existing account takes the row's debtor details, due date, tags and agent; its balance, currency and status never change through an import.</p>}
          {api.mode && <p id="import-mode-error" className="text-sm text-red-700">{api.mode}</p>}
        </fieldset>
        <div className="flex items-center gap-3">
          <Button type="submit" variant="primary" disabled={busy}>
            {creating.isLoading ? "Creating…" : uploading.isLoading ? "Uploading…" : "Upload"}
          </Button>
          {file && <span className="text-sm text-slate-700">{file.name} · {formatBytes(file.size)}</span>}
        </div>
        {error && <p role="alert" className="text-sm text-red-700">{problemMessage(error)}</p>}
      </form>
    </Card>
  );
}

/** Progress from `import.progress` on `import:{id}` (written into the cache by the live client); polls only while live updates are down. */
function ImportView({ id }: { id: string }) {
  const live = useAppSelector((s) => s.live.status);
  const { data, error, isLoading, refetch } = useImportByIdQuery(id, { pollingInterval: live === "up" ? 0 : 3000 });
  if (isLoading) return <Spinner label="Loading the import…" />;
  if (error || !data) return <ErrorBox error={error} title="Could not load the import" onRetry={refetch} />;
  const imp: Import = data;
  const running = RUNNING.includes(imp.state);
  // A file with no data rows is done at once; a refused file read none of its rows.
  const pct = imp.total_rows ? Math.round((imp.rows_read / imp.total_rows) * 100) : imp.state === "completed" ? 100 : 0;
  return (
    <Card title={<>Import <span className="font-mono text-sm">{imp.file_name || imp.id}</span></>} actions={<Badge value={imp.state} />}>
      <div className="space-y-3">
        <p className="text-sm text-slate-700">
          {formatBytes(imp.size)} · started {formatDateTime(imp.created_at)}
          {imp.finished_at && <> · finished {formatDateTime(imp.finished_at)}</>}
        </p>
        {imp.state === "awaiting_upload" && <p className="text-sm">Waiting for the file to arrive…</p>}
        <div>
          <div className="mb-1 flex justify-between text-sm">
            <span id="progress-label">Rows read</span>
            <span data-testid="progress-text">{imp.rows_read}{imp.total_rows !== null && ` of ${imp.total_rows}`} ({pct}%)</span>
          </div>
          <div role="progressbar" aria-labelledby="progress-label" aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct} className="h-4 overflow-hidden rounded bg-slate-200" data-testid="progress">
            <div className="h-full bg-blue-700 motion-safe:transition-[width]" style={{ width: `${pct}%` }} />
          </div>
        </div>
        {imp.mode === "upsert" && <p className="text-sm text-slate-700">Existing accounts are updated from their rows.</p>}
        <dl className="grid grid-cols-2 gap-2 text-sm sm:grid-cols-5">
          <div><dt className="text-slate-600">Rows</dt><dd className="font-semibold">{imp.total_rows ?? "—"}</dd></div>
          <div><dt className="text-slate-600">Created</dt><dd className="font-semibold" data-testid="import-created">{imp.created}</dd></div>
          <div><dt className="text-slate-600">Updated</dt><dd className="font-semibold" data-testid="import-updated">{imp.updated}</dd></div>
          <div><dt className="text-slate-600">Duplicates</dt><dd className="font-semibold" data-testid="import-duplicates">{imp.duplicates}</dd></div>
          <div><dt className="text-slate-600">Failed</dt><dd className="font-semibold" data-testid="import-failed">{imp.failed}</dd></div>
        </dl>
        {imp.state === "failed" && (
          <p role="alert" className="rounded-md border border-red-300 bg-red-50 p-2 text-sm text-red-800">
            The file was refused; no account was created. {imp.error}
          </p>
        )}
        {!running && imp.duplicates + imp.failed > 0 && <RowErrors id={id} />}
      </div>
    </Card>
  );
}

function RowErrors({ id }: { id: string }) {
  const { data, error, isLoading } = useImportErrorsQuery({ id });
  const [download, downloading] = useImportErrorsCsvMutation();

  async function saveCsv() {
    try {
      const csv = await download(id).unwrap();
      const url = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
      const a = document.createElement("a");
      a.href = url;
      a.download = `import-${id}-errors.csv`;
      a.click();
      URL.revokeObjectURL(url);
    } catch {
      /* shown below */
    }
  }

  if (isLoading) return <Spinner label="Loading row errors…" />;
  if (error) return <ErrorBox error={error} />;
  return (
    <div>
      <div className="mb-1 flex flex-wrap items-center justify-between gap-2">
        <h3 className="font-semibold">Rows not created</h3>
        <Button onClick={() => void saveCsv()} disabled={downloading.isLoading}>{downloading.isLoading ? "Preparing…" : "Download all (CSV)"}</Button>
      </div>
      {downloading.error && <p role="alert" className="text-sm text-red-700">{problemMessage(downloading.error)}</p>}
      <ul className="divide-y divide-slate-200 text-sm" data-testid="row-errors">
        {(data?.items ?? []).map((r) => (
          <li key={`${r.line}-${r.column}`} className="py-1">
            Line {r.line}{r.column && <>, column <code>{r.column}</code></>}: <strong>{r.reason}</strong> — {r.message}
          </li>
        ))}
      </ul>
      {data?.next_cursor && <p className="mt-1 text-sm text-slate-600">The first {data.items.length} rows are shown; the download has them all.</p>}
    </div>
  );
}

/**
 * The newest imports the caller may see (a manager's own), so an import can be found again.
 * Read afresh each time the page shows it: the imports it lists move on without it.
 */
function ImportList() {
  const { data, error, isLoading, refetch } = useImportsQuery(undefined, { refetchOnMountOrArgChange: true });
  return (
    <Card title="Recent imports" actions={<Button onClick={refetch}>Refresh</Button>}>
      {error ? <ErrorBox error={error} onRetry={refetch} /> : isLoading ? <Spinner /> : !data?.items.length ? <Empty>No imports yet.</Empty> : (
        <ul className="divide-y divide-slate-200 text-sm" data-testid="import-list">
          {data.items.map((imp: Import) => (
            <li key={imp.id} className="flex flex-wrap items-center justify-between gap-2 py-2">
              <Link className="text-blue-800 underline" to={`/imports/${imp.id}`}>{imp.file_name || imp.id}</Link>
              <span className="flex items-center gap-2">
                <Badge value={imp.state} /> {imp.created} created · {imp.duplicates + imp.failed} not created · {formatDateTime(imp.created_at)}
              </span>
            </li>
          ))}
        </ul>
      )}
    </Card>
  );
}
