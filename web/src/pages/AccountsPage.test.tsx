import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { fakeApi, json, renderPage } from "../test/utils";
import AccountsPage from "./AccountsPage";
import { queryFromSearch, searchFromQuery, withChange } from "./accountFilters";
import { account } from "./fixtures";

describe("filters in the URL", () => {
  it("round-trips every filter, sort, size and cursor", () => {
    const q = { status: "disputed", agent_id: "U1", dpd_bucket: "90+", min_balance: "1000", max_balance: "5000", sort: "-balance", limit: "50", cursor: "abc" };
    const s = searchFromQuery(q);
    expect(queryFromSearch(new URLSearchParams(s.toString()))).toEqual(q);
    expect(searchFromQuery(queryFromSearch(new URLSearchParams("?q=smi&junk=1&status=")))).toEqual(new URLSearchParams("q=smi"));
  });

  it("a changed filter starts at the first page; a search drops the sort", () => {
    expect(withChange({ status: "paid", cursor: "c" }, { status: "active" })).toEqual({ status: "active" });
    expect(withChange({ sort: "balance" }, { q: "smith" })).toEqual({ q: "smith" });
  });

  it("the page reads its view from the URL and writes applied filters back to it", async () => {
    const { calls } = fakeApi((c) =>
      c.path === "/accounts"
        ? json(200, { items: [account()], next_cursor: "NEXT" })
        : json(200, { date: "2026-01-01", scope: "all", agents: [] }),
    );
    const { router } = renderPage(<AccountsPage />, { path: "/accounts", route: "/accounts?status=disputed&sort=-balance&limit=50" });
    await screen.findAllByText("REF-1");
    const first = calls.find((c) => c.path === "/accounts")!;
    expect(Object.fromEntries(first.search)).toEqual({ status: "disputed", sort: "-balance", limit: "50" });
    expect(screen.getByLabelText("Status")).toHaveValue("disputed");

    await userEvent.selectOptions(screen.getByLabelText("Days past due"), "90+");
    await userEvent.type(screen.getByLabelText("Min balance"), "10.50");
    await userEvent.click(screen.getByRole("button", { name: "Apply filters" }));
    await waitFor(() =>
      expect(router.state.location.search).toBe("?status=disputed&dpd_bucket=90%2B&min_balance=1050&sort=-balance&limit=50"),
    );

    // Next carries the signed cursor; Previous goes back to the first page.
    await userEvent.click(screen.getByRole("button", { name: "Next" }));
    await waitFor(() => expect(new URLSearchParams(router.state.location.search).get("cursor")).toBe("NEXT"));
    await userEvent.click(screen.getByRole("button", { name: "Previous" }));
    await waitFor(() => expect(new URLSearchParams(router.state.location.search).get("cursor")).toBeNull());

    // A column header sorts (ascending, then descending).
    await userEvent.click(screen.getByRole("button", { name: /Days past due/ }));
    await waitFor(() => expect(new URLSearchParams(router.state.location.search).get("sort")).toBe("days_past_due"));
  });

  it("a viewer sees no create or bulk action", async () => {
    fakeApi(() => json(200, { items: [account()], next_cursor: null }));
    renderPage(<AccountsPage />, { role: "viewer", path: "/accounts", route: "/accounts" });
    await screen.findAllByText("REF-1");
    expect(screen.queryByRole("link", { name: "New account" })).toBeNull();
    expect(screen.queryByRole("button", { name: /Bulk update/ })).toBeNull();
    expect(screen.queryByRole("checkbox")).toBeNull();
  });
});
