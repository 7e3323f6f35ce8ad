import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { Plan, Role } from "../api/types";
import { fakeApi, json, renderPage } from "../test/utils";
import AccountPage from "./AccountPage";
import { account } from "./fixtures";

function plan(over: Partial<Plan> = {}): Plan {
  return {
    id: "PL1",
    account_id: "A1",
    status: "active",
    frequency: "monthly",
    currency: "USD",
    total_amount: 30000,
    paid_amount: 12000,
    remaining_amount: 18000,
    missed_count: 1,
    installments: [
      { number: 1, due_date: "2027-01-15", amount: 10000, paid_amount: 10000, status: "paid" },
      { number: 2, due_date: "2027-02-15", amount: 10000, paid_amount: 2000, status: "missed" },
      { number: 3, due_date: "2027-03-15", amount: 10000, paid_amount: 0, status: "due" },
    ],
    created_by: "U1",
    version: 3,
    created_at: "2027-01-01T00:00:00Z",
    updated_at: "2027-02-21T00:25:00Z",
    ended_at: null,
    ...over,
  };
}

/** The account API with a plans store: GET lists it, POST makes one, cancel ends it. */
function plansApi(initial: Plan[], answer?: (body: unknown) => Response) {
  let plans = initial;
  return fakeApi((c) => {
    if (c.method === "GET" && c.path === "/accounts/A1") {
      const a = account();
      return json(200, a, { etag: `"${a.version}"` });
    }
    if (c.path === "/accounts/A1/plans" && c.method === "GET") return json(200, { items: plans, next_cursor: null });
    if (c.path === "/accounts/A1/plans" && c.method === "POST") {
      if (answer) return answer(c.body);
      plans = [plan({ paid_amount: 0, missed_count: 0, version: 1 })];
      return json(201, plans[0]);
    }
    if (c.path === "/accounts/A1/plans/PL1/cancel" && c.method === "POST") {
      plans = [plan({ status: "cancelled", version: 4, ended_at: "2027-02-22T00:00:00Z" })];
      return json(200, plans[0]);
    }
    if (c.method === "GET") return json(200, { items: [], next_cursor: null });
    return json(404, { title: "Not Found", status: 404 });
  });
}

function renderAccount(role: Role = "admin") {
  return renderPage(<AccountPage />, { role, path: "/accounts/:id", route: "/accounts/A1" });
}

describe("payment plan section", () => {
  it("makes a plan from the form and shows its schedule", async () => {
    const { calls } = plansApi([]);
    renderAccount();
    const form = await screen.findByRole("form", { name: "Make a payment plan" });
    await userEvent.type(within(form).getByLabelText("First due date"), "2027-01-15");
    await userEvent.clear(within(form).getByLabelText("Installments"));
    await userEvent.type(within(form).getByLabelText("Installments"), "3");
    await userEvent.click(within(form).getByRole("button", { name: "Make plan" }));
    const table = await screen.findByTestId("plan-schedule");
    expect(within(table).getAllByRole("row")).toHaveLength(4);
    const post = calls.find((c) => c.method === "POST" && c.path === "/accounts/A1/plans")!;
    expect(post.body).toEqual({ frequency: "monthly", first_due_date: "2027-01-15", currency: "USD", installment_count: 3 });
  });

  it("shows paid, missed and due installments and cancels with the plan's ETag", async () => {
    const { calls } = plansApi([plan()]);
    renderAccount();
    const table = await screen.findByTestId("plan-schedule");
    expect(table).toHaveTextContent("missed");
    expect(table).toHaveTextContent("$20.00");
    expect(screen.getByText(/1 missed/)).toBeInTheDocument();
    await userEvent.click(screen.getByRole("button", { name: "Cancel plan" }));
    await waitFor(() => expect(screen.getByRole("list", { name: "Earlier plans" })).toHaveTextContent("cancelled"));
    const cancel = calls.find((c) => c.path === "/accounts/A1/plans/PL1/cancel")!;
    expect(cancel.headers.get("if-match")).toBe('"3"');
  });

  it("shows the API's field errors and hides the form and cancel from viewers", async () => {
    plansApi([], () => json(400, { title: "Invalid request", status: 400, errors: [{ field: "first_due_date", message: "must be today or later" }] }));
    const view = renderAccount();
    const form = await screen.findByRole("form", { name: "Make a payment plan" });
    await userEvent.type(within(form).getByLabelText("First due date"), "2020-01-01");
    await userEvent.click(within(form).getByRole("button", { name: "Make plan" }));
    expect(await within(form).findByText("must be today or later")).toBeInTheDocument();
    view.unmount();

    plansApi([plan()]);
    renderAccount("viewer");
    await screen.findByTestId("plan-schedule");
    expect(screen.queryByRole("button", { name: "Cancel plan" })).toBeNull();
  });
});
