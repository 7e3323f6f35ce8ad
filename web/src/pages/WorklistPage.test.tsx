import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { Activity } from "../api/types";
import { fakeApi, json, renderPage } from "../test/utils";
import { account } from "./fixtures";
import WorklistPage from "./WorklistPage";

function localDate(offsetDays: number) {
  const d = new Date();
  d.setDate(d.getDate() + offsetDays);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

const promise = (account_id: string, promise_date: string, promise_amount = 5000): Activity => ({
  id: `P-${account_id}`,
  account_id,
  type: "promise_to_pay",
  note: "",
  promise_amount,
  promise_date,
  outcome: null,
  actor_id: "U-agent",
  created_at: "2026-11-01T00:00:00Z",
});

describe("agent worklist", () => {
  it("splits promises into due today and broken, and lists accounts by dpd and balance", async () => {
    const accounts = [
      account({ id: "A1", reference: "DUE-TODAY", status: "promise_to_pay" }),
      account({ id: "A2", reference: "BROKEN", status: "promise_to_pay" }),
      account({ id: "A3", reference: "LATER", status: "promise_to_pay" }),
    ];
    const { calls } = fakeApi((c) => {
      if (c.path === "/accounts" && c.search.get("status") === "promise_to_pay") return json(200, { items: accounts, next_cursor: null });
      if (c.path === "/accounts")
        return json(200, {
          items: [
            account({ id: "A8", reference: `PAID-${c.search.get("sort")}`, status: "paid" }),
            account({ id: "A9", reference: `BY-${c.search.get("sort")}` }),
          ],
          next_cursor: null,
        });
      if (c.path === "/activities/batch")
        return json(200, {
          results: [
            { account_id: "A1", activities: [promise("A1", localDate(0))] },
            { account_id: "A2", activities: [promise("A2", localDate(-2))] },
            { account_id: "A3", activities: [promise("A3", localDate(5))] },
          ],
          errors: [],
        });
      return json(404, {});
    });
    renderPage(<WorklistPage />, { role: "agent" });
    const due = (await screen.findByRole("heading", { name: "Promises due today (1)" })).closest("section")!;
    expect(within(due).getByText(/DUE-TODAY/)).toBeInTheDocument();
    expect(within(due).getByText(/\$50\.00 by/)).toBeInTheDocument();
    const broken = screen.getByRole("heading", { name: "Broken promises (1)" }).closest("section")!;
    expect(within(broken).getByText(/BROKEN/)).toBeInTheDocument();
    expect(screen.queryByText(/LATER/)).toBeNull();
    expect(await screen.findByText(/BY--days_past_due/)).toBeInTheDocument();
    expect(screen.getByText(/BY--balance/)).toBeInTheDocument();
    // settled accounts have nothing left to work
    expect(screen.queryByText(/PAID-/)).toBeNull();
    expect(calls.find((c) => c.path === "/activities/batch")!.body).toEqual({ account_ids: ["A1", "A2", "A3"], limit: 10 });
  });
});
