import { screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { AuditEntry } from "../api/audit";
import type { Role } from "../api/types";
import { fakeApi, json, renderPage } from "../test/utils";
import AccountPage from "./AccountPage";
import { account } from "./fixtures";

function entry(over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    id: "E1",
    at: "2027-02-21T10:00:00Z",
    entity: "account:A1",
    subject: "account:A1",
    action: "update",
    actor_id: "U-MANAGER",
    actor_role: "manager",
    request_id: "R1",
    source_ip: "203.0.113.7",
    via: null,
    changes: [{ field: "debtor_name", old: "Dana Debtor", new: "Dana Renamed" }],
    ...over,
  };
}

/** The account API with a two-page audit trail. */
function auditApi() {
  return fakeApi((c) => {
    if (c.method === "GET" && c.path === "/accounts/A1") {
      const a = account();
      return json(200, a, { etag: `"${a.version}"` });
    }
    if (c.path === "/audit") {
      if (c.search.get("cursor") === "C2") {
        return json(200, { items: [entry({ id: "E2", action: "create", actor_id: "U-ADMIN", actor_role: "admin", changes: [{ field: "balance", old: null, new: 10000 }] })], next_cursor: null });
      }
      return json(200, { items: [entry(), entry({ id: "E3", entity: "payment:P1", action: "refund", via: null, changes: [{ field: "status", old: "completed", new: "refunded" }] })], next_cursor: "C2" });
    }
    if (c.method === "GET") return json(200, { items: [], next_cursor: null });
    return json(404, { title: "Not Found", status: 404 });
  });
}

function renderAccount(role: Role) {
  return renderPage(<AccountPage />, { role, path: "/accounts/:id", route: "/accounts/A1" });
}

describe("the account's audit trail", () => {
  it("shows who changed what, newest first, and loads older changes", async () => {
    const { calls } = auditApi();
    renderAccount("manager");
    await userEvent.click(await screen.findByRole("button", { name: "Show audit trail" }));
    const rows = await screen.findAllByTestId("audit-entry");
    expect(rows).toHaveLength(2);
    expect(within(rows[0]).getByText(/U-MANAGER/)).toBeTruthy();
    expect(rows[0].textContent).toContain("Dana Debtor → Dana Renamed");
    expect(rows[1].textContent).toContain("refund");
    expect(rows[1].textContent).toContain("completed → refunded");
    const request = calls.find((c) => c.path === "/audit");
    expect(request?.search.get("entity")).toBe("account:A1");
    await userEvent.click(screen.getByRole("button", { name: "Older changes" }));
    expect(await screen.findByText(/U-ADMIN/)).toBeTruthy();
    expect(screen.getAllByTestId("audit-entry")).toHaveLength(3);
    expect(screen.getAllByTestId("audit-entry")[2].textContent).toContain("balance: — → 10000");
  });

  it("is not offered to agents and viewers", async () => {
    const { calls } = auditApi();
    for (const role of ["agent", "viewer"] as Role[]) {
      const { unmount } = renderAccount(role);
      await screen.findAllByText(/Dana Debtor/);
      expect(screen.queryByRole("button", { name: "Show audit trail" })).toBeNull();
      unmount();
    }
    expect(calls.some((c) => c.path === "/audit")).toBe(false);
  });
});
