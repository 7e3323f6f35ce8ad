import { useState, type FormEvent } from "react";
import { useCancelPlanMutation, useCreatePlanMutation, usePlansQuery } from "../api/api";
import { fieldErrors, problemMessage } from "../api/problem";
import { PLAN_FREQUENCIES, type Account, type NewPlan, type Plan } from "../api/types";
import { Badge, Button, Card, Empty, ErrorBox, Field, Input, ScrollX, Select, Spinner } from "../components/ui";
import { useLiveMessages } from "../live/LiveProvider";
import { formatMoney, parseMoney } from "../money";

/**
 * The account's payment plans (docs/plans.md): the active plan's schedule with each
 * installment's paid amount and status, a cancel button, a form to make a plan when there is
 * none, and the ended plans. Kept current by `plan.changed` on the account's topic.
 */
export function PlanSection({ account, canWrite }: { account: Account; canWrite: boolean }) {
  const { data, error, isLoading, refetch } = usePlansQuery(account.id);
  useLiveMessages((m) => {
    if (m.type === "plan.changed" && (m.data as { account_id?: string } | undefined)?.account_id === account.id) refetch();
  });
  if (isLoading) return <Card title="Payment plan"><Spinner label="Loading plans…" /></Card>;
  if (error) return <Card title="Payment plan"><ErrorBox error={error} onRetry={refetch} /></Card>;
  const plans = data?.items ?? [];
  const active = plans.find((p) => p.status === "active");
  const ended = plans.filter((p) => p.status !== "active");
  const open = !account.deleted_at && ["active", "promise_to_pay", "payment_plan"].includes(account.status) && account.balance > 0;
  return (
    <Card title="Payment plan">
      {active ? (
        <ActivePlan plan={active} canWrite={canWrite} />
      ) : canWrite && open ? (
        <PlanForm account={account} />
      ) : (
        <Empty>No active payment plan.</Empty>
      )}
      {ended.length > 0 && (
        <div className="mt-4">
          <h3 className="mb-1 text-sm font-semibold">Earlier plans</h3>
          <ul className="space-y-1 text-sm" aria-label="Earlier plans">
            {ended.map((p) => (
              <li key={p.id}>
                <Badge value={p.status} /> {formatMoney(p.total_amount, p.currency)} {p.frequency}, {p.installments.length} installments
                {p.ended_at ? `, ended ${p.ended_at.slice(0, 10)}` : ""}
              </li>
            ))}
          </ul>
        </div>
      )}
    </Card>
  );
}

function ActivePlan({ plan, canWrite }: { plan: Plan; canWrite: boolean }) {
  const [cancel, { isLoading, error }] = useCancelPlanMutation();
  return (
    <div className="space-y-2">
      <p className="text-sm">
        <Badge value={plan.status} /> {formatMoney(plan.total_amount, plan.currency)} {plan.frequency}: paid{" "}
        {formatMoney(plan.paid_amount, plan.currency)}, {formatMoney(plan.remaining_amount, plan.currency)} to go
        {plan.missed_count > 0 && `, ${plan.missed_count} missed`}
      </p>
      <ScrollX label="Plan schedule">
        <table className="w-full min-w-[28rem] text-left text-sm" data-testid="plan-schedule">
          <thead className="bg-slate-100">
            <tr>
              <th scope="col" className="p-2">#</th>
              <th scope="col" className="p-2">Due</th>
              <th scope="col" className="p-2">Amount</th>
              <th scope="col" className="p-2">Paid</th>
              <th scope="col" className="p-2">Status</th>
            </tr>
          </thead>
          <tbody>
            {plan.installments.map((i) => (
              <tr key={i.number} className="border-t border-slate-200">
                <td className="p-2">{i.number}</td>
                <td className="p-2">{i.due_date}</td>
                <td className="p-2 tabular-nums">{formatMoney(i.amount, plan.currency)}</td>
                <td className="p-2 tabular-nums">{formatMoney(i.paid_amount, plan.currency)}</td>
                <td className="p-2"><Badge value={i.status} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      </ScrollX>
      {canWrite && (
        <Button variant="danger" disabled={isLoading} onClick={() => void cancel({ accountId: plan.account_id, plan }).unwrap().catch(() => {})}>
          Cancel plan
        </Button>
      )}
      {error && <p role="alert" className="text-sm text-red-700">{problemMessage(error)}</p>}
    </div>
  );
}

function PlanForm({ account }: { account: Account }) {
  const [create, { isLoading, error }] = useCreatePlanMutation();
  const [frequency, setFrequency] = useState<NewPlan["frequency"]>("monthly");
  const [firstDue, setFirstDue] = useState("");
  const [by, setBy] = useState<"count" | "amount">("count");
  const [count, setCount] = useState("12");
  const [amount, setAmount] = useState("");
  const [local, setLocal] = useState<Record<string, string>>({});

  async function submit(e: FormEvent) {
    e.preventDefault();
    const v: Record<string, string> = {};
    if (!/^\d{4}-\d{2}-\d{2}$/.test(firstDue)) v.first_due_date = "Pick the first due date.";
    const n = Number(count);
    const minor = parseMoney(amount, account.currency);
    if (by === "count" && !(Number.isInteger(n) && n >= 1 && n <= 120)) v.installment_count = "From 1 to 120 installments.";
    if (by === "amount" && (minor === null || minor < 1)) v.installment_amount = `Enter an amount in ${account.currency}.`;
    setLocal(v);
    if (Object.keys(v).length) return;
    const body: NewPlan = {
      frequency,
      first_due_date: firstDue,
      currency: account.currency,
      ...(by === "count" ? { installment_count: n } : { installment_amount: minor! }),
    };
    await create({ accountId: account.id, body }).unwrap().catch(() => {});
  }

  const api = fieldErrors(error);
  return (
    <form onSubmit={submit} noValidate aria-label="Make a payment plan" className="grid gap-3 sm:grid-cols-2">
      <p className="text-sm text-slate-700 sm:col-span-2">
        Plans cover the balance, {formatMoney(account.balance, account.currency)}.
      </p>
      <Field label="Frequency" error={api.frequency}>
        {(p) => (
          <Select {...p} value={frequency} onChange={(e) => setFrequency(e.target.value as NewPlan["frequency"])}>
            {PLAN_FREQUENCIES.map((f) => <option key={f}>{f}</option>)}
          </Select>
        )}
      </Field>
      <Field label="First due date" error={local.first_due_date ?? api.first_due_date}>
        {(p) => <Input {...p} type="date" value={firstDue} onChange={(e) => setFirstDue(e.target.value)} />}
      </Field>
      <Field label="Split by">
        {(p) => (
          <Select {...p} value={by} onChange={(e) => setBy(e.target.value as "count" | "amount")}>
            <option value="count">number of installments</option>
            <option value="amount">amount per installment</option>
          </Select>
        )}
      </Field>
      {by === "count" ? (
        <Field label="Installments" error={local.installment_count ?? api.installment_count}>
          {(p) => <Input {...p} inputMode="numeric" value={count} onChange={(e) => setCount(e.target.value)} />}
        </Field>
      ) : (
        <Field label={`Per installment (${account.currency})`} error={local.installment_amount ?? api.installment_amount}>
          {(p) => <Input {...p} inputMode="decimal" value={amount} onChange={(e) => setAmount(e.target.value)} />}
        </Field>
      )}
      <div className="flex flex-wrap items-center gap-2 sm:col-span-2">
        <Button type="submit" variant="primary" disabled={isLoading}>{isLoading ? "Saving…" : "Make plan"}</Button>
        {error && !Object.keys(api).length && <p role="alert" className="text-sm text-red-700">{problemMessage(error)}</p>}
      </div>
    </form>
  );
}
