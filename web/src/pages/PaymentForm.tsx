import { useRef, useState, type FormEvent } from "react";
import { useRecordPaymentMutation } from "../api/api";
import { asApiError, fieldErrors, problemMessage } from "../api/problem";
import { PAYMENT_METHODS, type Account } from "../api/types";
import { Button, Field, Input, Select } from "../components/ui";
import { parseMoney } from "../money";

/** A fresh key per submit; `crypto.randomUUID` needs a secure context, so fall back. */
export function newIdempotencyKey(): string {
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Record a payment. One `Idempotency-Key` per submit of these values: it is made when the
 * person submits and kept until the payment is recorded or they change the form, so a second
 * click while the first request runs does nothing, and "Try again" after a network error sends
 * the same key — the API then replays the first result instead of recording twice.
 */
export function PaymentForm({ account, onDone }: { account: Account; onDone?: () => void }) {
  const [record, { isLoading, error, reset }] = useRecordPaymentMutation();
  const [amount, setAmount] = useState("");
  const [method, setMethod] = useState("card");
  const [reference, setReference] = useState("");
  const [local, setLocal] = useState<Record<string, string>>({});
  const [done, setDone] = useState<string | null>(null);
  const key = useRef<string | null>(null);
  const inFlight = useRef(false);

  function edited() {
    key.current = null;
    setDone(null);
    reset();
  }

  async function submit(e?: FormEvent) {
    e?.preventDefault();
    if (inFlight.current) return;
    const minor = parseMoney(amount, account.currency);
    const v: Record<string, string> = {};
    if (minor === null || minor < 1) v.amount = `Enter an amount in ${account.currency}, e.g. 25.00.`;
    else if (minor > account.balance) v.amount = "The amount is more than the balance.";
    setLocal(v);
    if (Object.keys(v).length) return;
    key.current ??= newIdempotencyKey();
    inFlight.current = true;
    try {
      await record({
        accountId: account.id,
        idempotencyKey: key.current,
        body: { amount: minor!, currency: account.currency, method, ...(reference.trim() ? { reference: reference.trim() } : {}) },
      }).unwrap();
      key.current = null;
      setAmount("");
      setReference("");
      setDone("Payment recorded.");
      onDone?.();
    } catch (err) {
      // Only a network failure keeps the key (the request may have been recorded); an answer
      // from the API means nothing was recorded, so the next submit is a new attempt.
      if (asApiError(err)?.status !== "FETCH_ERROR") key.current = null;
    } finally {
      inFlight.current = false;
    }
  }

  const api = fieldErrors(error);
  const networkFailed = asApiError(error)?.status === "FETCH_ERROR";
  return (
    <form onSubmit={submit} noValidate aria-label="Record a payment" className="grid gap-3 sm:grid-cols-3">
      <Field label={`Amount (${account.currency})`} error={local.amount ?? api.amount}>
        {(p) => <Input {...p} inputMode="decimal" name="amount" value={amount} onChange={(e) => { setAmount(e.target.value); edited(); }} />}
      </Field>
      <Field label="Method" error={api.method}>
        {(p) => (
          <Select {...p} value={method} onChange={(e) => { setMethod(e.target.value); edited(); }}>
            {PAYMENT_METHODS.map((m) => <option key={m}>{m}</option>)}
          </Select>
        )}
      </Field>
      <Field label="Reference (optional)" error={api.reference}>
        {(p) => <Input {...p} value={reference} onChange={(e) => { setReference(e.target.value); edited(); }} />}
      </Field>
      <div className="flex flex-wrap items-center gap-2 sm:col-span-3">
        <Button type="submit" variant="primary" disabled={isLoading} aria-disabled={isLoading}>
          {isLoading ? "Recording…" : "Record payment"}
        </Button>
        {networkFailed && <Button onClick={() => void submit()}>Try again</Button>}
        {error && !Object.keys(api).length && (
          <p role="alert" className="text-sm text-red-700">{problemMessage(error)}</p>
        )}
        {done && <p role="status" className="text-sm text-green-800">{done}</p>}
      </div>
    </form>
  );
}
