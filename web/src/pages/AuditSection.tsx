import { useState, type ReactNode } from "react";
import { useAuditTrailQuery, type AuditEntry, type FieldChange } from "../api/audit";
import { Button, Card, Empty, ErrorBox, ScrollX, Spinner, formatDateTime } from "../components/ui";

/** A value of a change as text (`—` when absent). */
function show(value: unknown): string {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function Change({ change }: { change: FieldChange }) {
  return (
    <li>
      <span className="font-medium">{change.field}</span>: {show(change.old)} → {show(change.new)}
    </li>
  );
}

function Entry({ entry }: { entry: AuditEntry }) {
  return (
    <tr className="border-t align-top" data-testid="audit-entry">
      <td className="whitespace-nowrap py-1 pr-3">{formatDateTime(entry.at)}</td>
      <td className="py-1 pr-3">
        {entry.actor_id} <span className="text-slate-500">({entry.actor_role})</span>
        {entry.via && <div className="text-xs text-slate-500">via {entry.via}</div>}
      </td>
      <td className="py-1 pr-3">
        {entry.action} <span className="text-slate-500">{entry.entity.split(":")[0]}</span>
      </td>
      <td className="py-1">
        <ul className="text-xs">
          {entry.changes.map((c) => (
            <Change key={c.field} change={c} />
          ))}
        </ul>
      </td>
    </tr>
  );
}

/** One page of the trail; the last page offers the next. */
function TrailPage({ entity, cursor, last, onMore }: { entity: string; cursor?: string; last: boolean; onMore: (c: string) => void }) {
  const { data, error, isLoading } = useAuditTrailQuery({ entity, cursor });
  const row = (content: ReactNode) => (
    <tr>
      <td colSpan={4}>{content}</td>
    </tr>
  );
  if (isLoading) return row(<Spinner />);
  if (error) return row(<ErrorBox error={error} />);
  if (!data) return null;
  return (
    <>
      {data.items.map((e) => (
        <Entry key={e.id} entry={e} />
      ))}
      {!cursor && data.items.length === 0 && row(<Empty>No audited changes yet.</Empty>)}
      {last && data.next_cursor && (
        <tr>
          <td colSpan={4} className="pt-2">
            <Button onClick={() => onMore(data.next_cursor as string)}>Older changes</Button>
          </td>
        </tr>
      )}
    </>
  );
}

/**
 * The account's audit trail (admins and managers): who changed what, newest first, with
 * the account's payments and plans; loaded when opened.
 */
export function AuditSection({ accountId }: { accountId: string }) {
  const [open, setOpen] = useState(false);
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const entity = `account:${accountId}`;
  return (
    <Card
      title="Audit trail"
      actions={<Button onClick={() => setOpen(!open)}>{open ? "Hide audit trail" : "Show audit trail"}</Button>}
    >
      {open && (
        <ScrollX label="Audit trail">
          <table className="w-full text-left text-sm">
            <thead>
              <tr className="text-slate-500">
                <th className="pr-3">When</th>
                <th className="pr-3">Who</th>
                <th className="pr-3">What</th>
                <th>Changes</th>
              </tr>
            </thead>
            <tbody>
              {cursors.map((c, i) => (
                <TrailPage
                  key={c ?? "first"}
                  entity={entity}
                  cursor={c}
                  last={i === cursors.length - 1}
                  onMore={(next) => setCursors([...cursors, next])}
                />
              ))}
            </tbody>
          </table>
        </ScrollX>
      )}
    </Card>
  );
}
