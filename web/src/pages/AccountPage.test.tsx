import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { Role } from "../api/types";
import { fakeApi, json, renderPage, type Call } from "../test/utils";
import AccountPage from "./AccountPage";
import { account } from "./fixtures";

/** The account API as far as this page uses it, with a version that other writers can bump. */
function accountApi(opts: { onPayment?: (c: Call) => Response } = {}) {
  let current = account();
  const api = fakeApi((c) => {
    if (c.method === "GET" && c.path === "/accounts/A1") return json(200, current, { etag: `"${current.version}"` });
    if (c.method === "PATCH" && c.path === "/accounts/A1") {
      if (c.headers.get("if-match") !== `"${current.version}"`) return json(412, { title: "Precondition Failed", status: 412 });
      current = { ...current, ...(c.body as object), version: current.version + 1 };
      return json(200, current, { etag: `"${current.version}"` });
    }
    if (c.path === "/accounts/A1/payments" && c.method === "GET") return json(200, { items: [], next_cursor: null });
    if (c.path === "/accounts/A1/payments" && c.method === "POST") return opts.onPayment!(c);
    if (c.path === "/accounts/A1/activities") return json(200, { items: [], next_cursor: null });
    if (c.path === "/accounts/A1/plans" && c.method === "GET") return json(200, { items: [], next_cursor: null });
    return json(404, { title: "Not Found", status: 404 });
  });
  return { ...api, bump: (over: object) => (current = { ...current, ...over, version: current.version + 1 }) };
}

function renderAccount(role: Role = "admin") {
  return renderPage(<AccountPage />, { role, path: "/accounts/:id", route: "/accounts/A1" });
}

describe("account page", () => {
  it("a double click on 'Record payment' sends one key; the API's replay means one payment", async () => {
    const keys: string[] = [];
    const { calls } = accountApi({
      onPayment: (c) => {
        keys.push(c.headers.get("idempotency-key")!);
        return json(201, { id: "P1", account_id: "A1", amount: 2500, currency: "USD", method: "card", status: "completed", version: 1 });
      },
    });
    renderAccount();
    const form = await screen.findByRole("form", { name: "Record a payment" });
    await userEvent.type(within(form).getByLabelText(/Amount/), "25.00");
    const button = within(form).getByRole("button", { name: "Record payment" });
    fireEvent.click(button);
    fireEvent.click(button);
    await screen.findByText("Payment recorded.");
    expect(calls.filter((c) => c.method === "POST")).toHaveLength(1);
    expect(keys[0]).toMatch(/^[0-9a-f-]{32,36}$/);
    expect(calls.find((c) => c.method === "POST")!.body).toEqual({ amount: 2500, currency: "USD", method: "card" });
  });

  it("a retry after a network error reuses the key; the next payment gets a new one", async () => {
    const keys: string[] = [];
    let fail = true;
    accountApi({
      onPayment: (c) => {
        keys.push(c.headers.get("idempotency-key")!);
        if (fail) {
          fail = false;
          throw new TypeError("network down");
        }
        return json(201, { id: "P1", account_id: "A1", amount: 100, currency: "USD", method: "card", status: "completed", version: 1 });
      },
    });
    renderAccount();
    const form = await screen.findByRole("form", { name: "Record a payment" });
    await userEvent.type(within(form).getByLabelText(/Amount/), "1");
    await userEvent.click(within(form).getByRole("button", { name: "Record payment" }));
    await userEvent.click(await within(form).findByRole("button", { name: "Try again" }));
    await screen.findByText("Payment recorded.");
    await userEvent.type(within(form).getByLabelText(/Amount/), "2");
    await userEvent.click(within(form).getByRole("button", { name: "Record payment" }));
    await waitFor(() => expect(keys).toHaveLength(3));
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[0]);
  });

  it("an edit on a stale version gets the 412 message and the new version in the form", async () => {
    const api = accountApi();
    renderAccount();
    await userEvent.click(await screen.findByRole("button", { name: "Edit" }));
    // Someone else saves first.
    api.bump({ debtor_name: "Dana Other" });
    const form = screen.getByRole("form", { name: "Edit account" });
    const name = within(form).getByLabelText("Debtor name");
    await userEvent.clear(name);
    await userEvent.type(name, "Dana Mine");
    await userEvent.click(within(form).getByRole("button", { name: "Save changes" }));
    expect(await screen.findByTestId("conflict")).toHaveTextContent(/Someone else changed this account/);
    const patch = api.calls.find((c) => c.method === "PATCH")!;
    expect(patch.headers.get("if-match")).toBe('"1"');
    await waitFor(() => expect(screen.getByLabelText("Debtor name")).toHaveValue("Dana Other"));
    expect(screen.getByTestId("conflict")).toHaveTextContent("version 2");
    // Saving again now sends the new ETag and succeeds.
    await userEvent.clear(screen.getByLabelText("Debtor name"));
    await userEvent.type(screen.getByLabelText("Debtor name"), "Dana Mine");
    await userEvent.click(screen.getByRole("button", { name: "Save changes" }));
    await waitFor(() => expect(screen.getByRole("heading", { level: 1 })).toHaveTextContent("Dana Mine"));
    expect(api.calls.filter((c) => c.method === "PATCH").map((c) => c.headers.get("if-match"))).toEqual(['"1"', '"2"']);
  });

  it("a viewer is offered no write action", async () => {
    accountApi();
    renderAccount("viewer");
    await screen.findByTestId("balance");
    expect(screen.queryByRole("button", { name: "Edit" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Delete" })).toBeNull();
    expect(screen.queryByRole("form", { name: "Record a payment" })).toBeNull();
    expect(screen.queryByRole("form", { name: "Log an activity" })).toBeNull();
    expect(screen.queryAllByRole("button").map((b) => b.textContent)).toEqual([]);
  });

  it("an agent may edit only its fields and cannot delete", async () => {
    accountApi();
    renderAccount("agent");
    await userEvent.click(await screen.findByRole("button", { name: "Edit" }));
    const form = screen.getByRole("form", { name: "Edit account" });
    expect(within(form).queryByLabelText("Debtor name")).toBeNull();
    expect(within(form).queryByLabelText("Reference")).toBeNull();
    expect(within(form).getByLabelText("Email")).toBeInTheDocument();
    expect(within(form).getByLabelText("Status")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Delete" })).toBeNull();
    expect(screen.getByRole("form", { name: "Record a payment" })).toBeInTheDocument();
  });
});
