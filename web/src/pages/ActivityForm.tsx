import { useState, type FormEvent } from "react";
import { useLogActivityMutation } from "../api/api";
import { asApiError, fieldErrors, problemKind, problemMessage } from "../api/problem";
import { CALL_OUTCOMES, LOGGABLE_ACTIVITY_TYPES, type Account } from "../api/types";
import { Button, Field, Input, Select } from "../components/ui";
import { parseMoney } from "../money";

/** Regulation F and calling-hours refusals (422, `type` naming the rule), said as reasons. */
export const CALL_REFUSALS: Record<string, string> = {
  "call-outside-hours":
    "Calling is not allowed right now: it is outside 08:00–21:00 in the debtor's time zone (Regulation F, 1006.6(b)(1)(i)).",
  "call-after-conversation":
    "Calling is not allowed: someone spoke with the debtor in the last 7 days (Regulation F, 1006.14(b)(2)(ii)).",
  "call-frequency-limit":
    "Calling is not allowed: the account already has 7 call attempts in the last 7 days (Regulation F, 1006.14(b)(2)(i)).",
};

export function refusalReason(error: unknown): string | null {
  const kind = problemKind(asApiError(error));
  return kind && CALL_REFUSALS[kind] ? CALL_REFUSALS[kind] : null;
}

export function ActivityForm({ account }: { account: Account }) {
  const [log, { isLoading, error, reset }] = useLogActivityMutation();
  const [type, setType] = useState<string>("call");
  const [note, setNote] = useState("");
  const [outcome, setOutcome] = useState("");
  const [amount, setAmount] = useState("");
  const [date, setDate] = useState("");
  const [local, setLocal] = useState<Record<string, string>>({});
  const [done, setDone] = useState<string | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const v: Record<string, string> = {};
    const body: { type: string; note?: string; outcome?: string; promise_amount?: number; promise_date?: string } = { type };
    if (note.trim()) body.note = note;
    if (note.length > 2000) v.note = "At most 2,000 characters.";
    if (type === "call" && outcome) body.outcome = outcome;
    if (type === "promise_to_pay") {
      const minor = parseMoney(amount, account.currency);
      if (minor === null || minor < 1) v.promise_amount = "Enter the promised amount.";
      else if (minor > account.balance) v.promise_amount = "The promise is more than the balance.";
      else body.promise_amount = minor;
      if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) v.promise_date = "Pick the date the debtor promised to pay.";
      else body.promise_date = date;
    }
    if (type !== "call" && type !== "promise_to_pay" && !note.trim()) v.note = "Write what happened.";
    setLocal(v);
    if (Object.keys(v).length) return;
    try {
      await log({ accountId: account.id, body }).unwrap();
      setNote("");
      setAmount("");
      setDate("");
      setOutcome("");
      setDone("Activity logged.");
    } catch {
      /* shown below */
    }
  }

  const api = fieldErrors(error);
  const reason = refusalReason(error);
  return (
    <form onSubmit={submit} noValidate aria-label="Log an activity" className="grid gap-3 sm:grid-cols-2">
      <Field label="Type" error={api.type}>
        {(p) => (
          <Select {...p} value={type} onChange={(e) => { setType(e.target.value); reset(); setDone(null); }}>
            {LOGGABLE_ACTIVITY_TYPES.map((t) => <option key={t} value={t}>{t.replace(/_/g, " ")}</option>)}
          </Select>
        )}
      </Field>
      {type === "call" && (
        <Field label="Outcome (optional)" error={api.outcome}>
          {(p) => (
            <Select {...p} value={outcome} onChange={(e) => setOutcome(e.target.value)}>
              <option value="">—</option>
              {CALL_OUTCOMES.map((o) => <option key={o} value={o}>{o.replace(/_/g, " ")}</option>)}
            </Select>
          )}
        </Field>
      )}
      {type === "promise_to_pay" && (
        <>
          <Field label={`Promised amount (${account.currency})`} error={local.promise_amount ?? api.promise_amount}>
            {(p) => <Input {...p} inputMode="decimal" value={amount} onChange={(e) => setAmount(e.target.value)} />}
          </Field>
          <Field label="Promised date" hint="From the debtor's today up to 90 days later." error={local.promise_date ?? api.promise_date}>
            {(p) => <Input {...p} type="date" value={date} onChange={(e) => setDate(e.target.value)} />}
          </Field>
        </>
      )}
      <div className="sm:col-span-2">
        <Field label="Note" error={local.note ?? api.note}>
          {(p) => (
            <textarea
              {...p}
              rows={2}
              value={note}
              onChange={(e) => setNote(e.target.value)}
              className="w-full rounded-md border border-slate-400 px-2 py-1 text-sm"
            />
          )}
        </Field>
      </div>
      <div className="flex flex-wrap items-center gap-2 sm:col-span-2">
        <Button type="submit" variant="primary" disabled={isLoading}>{isLoading ? "Logging…" : "Log activity"}</Button>
        {reason ? (
          <p role="alert" className="text-sm text-amber-900" data-testid="refusal">{reason}</p>
        ) : (
          error && !Object.keys(api).length && <p role="alert" className="text-sm text-red-700">{problemMessage(error)}</p>
        )}
        {done && <p role="status" className="text-sm text-green-800">{done}</p>}
      </div>
    </form>
  );
}
