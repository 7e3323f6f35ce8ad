import { act, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { Job } from "../api/types";
import { applyToCache } from "../live/LiveProvider";
import { fakeApi, json, renderPage } from "../test/utils";
import BulkPage from "./BulkPage";

const job = (over: Partial<Job> = {}): Job => ({
  id: "J1",
  state: "running",
  total: 50,
  processed: 10,
  succeeded: 9,
  failed: 1,
  cancelled: 0,
  created_by: "U-admin",
  created_at: "2026-12-01T00:00:00Z",
  finished_at: null,
  ...over,
});

describe("bulk job page", () => {
  it("moves the progress bar on job.progress, lists failures with reasons, and cancels", async () => {
    // The server's job: what GET answers and what each job.progress message carries.
    let current = job();
    const progress = (over: Partial<Job>) => {
      current = job(over);
      return { type: "job.progress", id: `ev-${current.processed}`, data: current as never };
    };
    const { calls } = fakeApi((c) => {
      if (c.path === "/bulk/jobs/J1") return json(200, current);
      if (c.path === "/bulk/jobs/J1/failures") return json(200, { items: [{ account_id: "A9", reason: "deleted", message: "the account was deleted" }], next_cursor: null });
      if (c.path === "/bulk/jobs/J1/cancel") return json(200, current);
      if (c.path === "/bulk/jobs") return json(200, { items: [job()], next_cursor: null });
      return json(200, { date: "x", scope: "all", agents: [] });
    });
    const { store } = renderPage(<BulkPage />, { path: "/bulk/:jobId", route: "/bulk/J1" });
    const bar = await screen.findByRole("progressbar");
    expect(bar).toHaveAttribute("aria-valuenow", "20");
    expect(await screen.findByText(/the account was deleted/)).toBeInTheDocument();
    expect(screen.getByText("deleted")).toBeInTheDocument();

    await act(async () => applyToCache(store, progress({ processed: 30, succeeded: 29 })));
    await waitFor(() => expect(screen.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "60"));

    await userEvent.click(screen.getByRole("button", { name: "Cancel the rest" }));
    await waitFor(() => expect(calls.some((c) => c.method === "POST" && c.path === "/bulk/jobs/J1/cancel")).toBe(true));

    await act(async () => applyToCache(store, progress({ state: "completed_with_errors", processed: 50, succeeded: 49, finished_at: "2026-12-01T00:01:00Z" })));
    await waitFor(() => expect(screen.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100"));
    expect(screen.queryByRole("button", { name: "Cancel the rest" })).toBeNull();
  });

  it("a selection from the accounts list is what the job updates", async () => {
    const { calls } = fakeApi((c) => {
      if (c.path === "/bulk/accounts") return json(202, { job_id: "J2" });
      if (c.path === "/bulk/jobs") return json(200, { items: [], next_cursor: null });
      if (c.path === "/bulk/jobs/J2") return json(200, job({ id: "J2", state: "queued", processed: 0, succeeded: 0, failed: 0 }));
      return json(200, { date: "x", scope: "all", agents: [] });
    });
    const { router } = renderPage(<BulkPage />, { path: "/bulk/:jobId?", route: "/bulk" });
    await act(async () => {
      await router.navigate("/bulk", { state: { account_ids: ["A1", "A2"] } });
    });
    expect(await screen.findByTestId("bulk-target")).toHaveTextContent("2 selected accounts");
    await userEvent.click(screen.getByRole("button", { name: "Start bulk update" }));
    expect(screen.getByRole("alert")).toHaveTextContent("Choose a change");
    await userEvent.selectOptions(screen.getByLabelText("Set status"), "closed");
    await userEvent.click(screen.getByRole("button", { name: "Start bulk update" }));
    await waitFor(() => expect(router.state.location.pathname).toBe("/bulk/J2"));
    expect(calls.find((c) => c.path === "/bulk/accounts")!.body).toEqual({ account_ids: ["A1", "A2"], changes: { status: "closed" } });
  });
});
