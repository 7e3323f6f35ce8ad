import { act, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Provider } from "react-redux";
import { createMemoryRouter, RouterProvider } from "react-router";
import { afterEach, describe, expect, it, vi } from "vitest";
import { routes } from "../App";
import type { Import, Role } from "../api/types";
import { applyToCache } from "../live/LiveProvider";
import { makeStore } from "../store";
import { fakeApi, json, renderPage, user, type Call } from "../test/utils";
import { MAX_IMPORT_BYTES, parseFirstRecord } from "./csvHeader";
import ImportsPage from "./ImportsPage";

const imp = (over: Partial<Import> = {}): Import => ({
  id: "I1",
  state: "running",
  mode: "create",
  size: 120,
  file_name: "placement.csv",
  column_mapping: { "Acct No": "reference" },
  total_rows: 4,
  rows_read: 0,
  created: 0,
  updated: 0,
  duplicates: 0,
  failed: 0,
  error: null,
  created_by: "U-admin",
  created_at: "2026-12-01T00:00:00Z",
  finished_at: null,
  ...over,
});

const UPLOAD_URL = "http://s3.test/imports-bucket/imports/I1.csv?X-Amz-Signature=abc";
const CSV = "Acct No,debtor_name,debtor_email,debtor_phone,debtor_timezone,currency,original_balance,due_date\nR-1,Ann,a@x.io,+15550100,America/New_York,USD,100.00,2026-12-31\n";

const csvFile = (text = CSV, name = "placement.csv") => new File([text], name, { type: "text/csv" });

/** The page at `/imports`, as the app routes it (one route with an optional id). */
const renderImports = (route = "/imports", role: Role = "admin") =>
  renderPage(<ImportsPage />, { path: "/imports/:importId?", route, role });

afterEach(() => vi.unstubAllGlobals());

describe("imports page", () => {
  it("creates the import with the mapping, PUTs the file to S3, and follows its progress to the row errors", async () => {
    let current = imp({ state: "awaiting_upload", total_rows: null });
    const progress = (over: Partial<Import>) => {
      current = imp(over);
      return { type: "import.progress", id: `ev-${current.rows_read}-${current.state}`, data: current as never };
    };
    const { calls } = fakeApi((c: Call) => {
      if (c.method === "POST" && c.path === "/imports") {
        return json(201, { import: current, upload: { method: "PUT", url: UPLOAD_URL, headers: { "content-length": String(CSV.length), host: "s3.test" }, expires_at: "2026-12-01T00:15:00Z" } }, { location: "/imports/I1" });
      }
      if (c.method === "PUT") return new Response(null, { status: 200 });
      if (c.path === "/imports/I1") return json(200, current);
      if (c.path === "/imports/I1/errors" && c.headers.get("accept") === "text/csv") return new Response("line,column,reason,message\n3,,duplicate,already imported\n", { headers: { "content-type": "text/csv" } });
      if (c.path === "/imports/I1/errors") return json(200, { items: [{ line: 3, column: "", reason: "duplicate", message: "reference R-2 already exists" }, { line: 4, column: "due_date", reason: "invalid", message: "due_date: not a date" }], next_cursor: null });
      return json(404, { status: 404, title: "Not Found" });
    });
    const { router, store } = renderImports();

    await userEvent.upload(screen.getByLabelText("CSV file"), csvFile());
    // The header row is read in the browser: a column not named after a field gets a choice.
    await userEvent.selectOptions(await screen.findByLabelText("Acct No →"), "reference");
    expect(screen.getByLabelText("debtor_name →")).toHaveDisplayValue("debtor_name (by its name)");
    await userEvent.click(screen.getByRole("button", { name: "Upload" }));

    await waitFor(() => expect(router.state.location.pathname).toBe("/imports/I1"));
    const post = calls.find((c) => c.method === "POST" && c.path === "/imports")!;
    expect(post.body).toEqual({ size: CSV.length, file_name: "placement.csv", column_mapping: { "Acct No": "reference" }, mode: "create" });
    const put = calls.find((c) => c.method === "PUT")!;
    expect(put.url.href).toBe(UPLOAD_URL);
    // The presigned URL is the authorisation: our bearer token never goes to S3.
    expect(put.headers.get("authorization")).toBeNull();

    expect(await screen.findByText("Waiting for the file to arrive…")).toBeInTheDocument();
    await act(async () => applyToCache(store, progress({ rows_read: 2, created: 2 })));
    await waitFor(() => expect(screen.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "50"));
    expect(screen.getByTestId("progress-text")).toHaveTextContent("2 of 4");
    expect(screen.queryByText("Rows not created")).toBeNull();

    await act(async () => applyToCache(store, progress({ state: "completed_with_errors", rows_read: 4, created: 2, duplicates: 1, failed: 1, finished_at: "2026-12-01T00:01:00Z" })));
    await waitFor(() => expect(screen.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100"));
    expect(screen.getByText("completed with errors")).toBeInTheDocument();
    expect(screen.getByTestId("import-duplicates")).toHaveTextContent("1");
    expect(screen.getByTestId("import-failed")).toHaveTextContent("1");
    const rows = await screen.findByTestId("row-errors");
    expect(within(rows).getByText(/reference R-2 already exists/)).toBeInTheDocument();
    expect(within(rows).getByText(/due_date: not a date/)).toHaveTextContent("Line 4, column due_date: invalid — due_date: not a date");

    const createObjectURL = vi.fn(() => "blob:errors");
    vi.stubGlobal("URL", Object.assign(URL, { createObjectURL, revokeObjectURL: vi.fn() }));
    const saved = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(() => {});
    await userEvent.click(screen.getByRole("button", { name: "Download all (CSV)" }));
    await waitFor(() => expect(saved).toHaveBeenCalled());
    expect(saved.mock.contexts[0]).toHaveAttribute("download", "import-I1-errors.csv");
    expect(createObjectURL).toHaveBeenCalled();
    const csvCall = calls.find((c) => c.headers.get("accept") === "text/csv")!;
    expect(csvCall.headers.get("authorization")).toBe("Bearer T1");
  });

  it("sends the chosen mode and shows how many existing accounts were updated", async () => {
    const { calls } = fakeApi((c: Call) => {
      if (c.method === "POST" && c.path === "/imports") {
        return json(201, { import: imp({ state: "awaiting_upload", mode: "upsert" }), upload: { method: "PUT", url: UPLOAD_URL, headers: {}, expires_at: "2026-12-01T00:15:00Z" } });
      }
      if (c.method === "PUT") return new Response(null, { status: 200 });
      if (c.path === "/imports/I1") return json(200, imp({ state: "completed", mode: "upsert", rows_read: 4, created: 1, updated: 3, finished_at: "2026-12-01T00:01:00Z" }));
      return json(404, { status: 404, title: "Not Found" });
    });
    const { router } = renderImports();

    const createOnly = screen.getByRole("radio", { name: "Create new accounts only (existing references are reported as duplicates)" });
    expect(createOnly).toBeChecked();
    await userEvent.click(screen.getByRole("radio", { name: "Create new and update existing accounts" }));
    expect(createOnly).not.toBeChecked();
    await userEvent.upload(screen.getByLabelText("CSV file"), csvFile("reference,debtor_name\nR-1,Ann\n"));
    await userEvent.click(screen.getByRole("button", { name: "Upload" }));

    await waitFor(() => expect(router.state.location.pathname).toBe("/imports/I1"));
    const post = calls.find((c) => c.method === "POST" && c.path === "/imports")!;
    expect(post.body).toMatchObject({ file_name: "placement.csv", mode: "upsert" });
    expect(await screen.findByTestId("import-updated")).toHaveTextContent("3");
    expect(screen.getByTestId("import-created")).toHaveTextContent("1");
    expect(screen.getByText("Existing accounts are updated from their rows.")).toBeInTheDocument();
  });

  it("shows the API's error on the mode", async () => {
    fakeApi(() => json(400, { type: "about:blank", status: 400, title: "Bad Request", detail: "The request is invalid.", errors: [{ field: "mode", message: "mode must be create or upsert" }] }));
    renderImports();
    await userEvent.upload(screen.getByLabelText("CSV file"), csvFile("reference\nR-1\n"));
    await userEvent.click(screen.getByRole("button", { name: "Upload" }));
    expect(await screen.findByText("mode must be create or upsert")).toBeInTheDocument();
  });

  it("a failed import shows why the file was refused", async () => {
    fakeApi((c) => (c.path === "/imports/I1" ? json(200, imp({ state: "failed", rows_read: 0, error: 'unknown column "Acct No" (column 1): name it after a field or map it in column_mapping' })) : json(404, {})));
    renderImports("/imports/I1");
    expect(await screen.findByRole("alert")).toHaveTextContent('The file was refused; no account was created. unknown column "Acct No"');
    expect(screen.getByText("failed")).toBeInTheDocument();
    expect(screen.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "0");
  });

  it("refuses no file, an empty file, one over 256 MiB and an unmapped unknown column before calling the API, and shows the API's field errors", async () => {
    const { calls } = fakeApi((c) =>
      c.method === "GET" && c.path === "/imports"
        ? json(200, { items: [], next_cursor: null })
        : json(400, { type: "about:blank", status: 400, title: "Bad Request", detail: "The request is invalid.", errors: [{ field: "column_mapping.Acct No", message: "reference is mapped from two columns" }] }),
    );
    renderImports();
    // Only the recent imports were read before the form was sent.
    const sent = () => calls.filter((c) => !(c.method === "GET" && c.path === "/imports"));
    const upload = () => userEvent.click(screen.getByRole("button", { name: "Upload" }));

    await upload();
    expect(screen.getByText("Choose a CSV file to import.")).toBeInTheDocument();

    await userEvent.upload(screen.getByLabelText("CSV file"), csvFile("", "empty.csv"));
    await upload();
    expect(screen.getByText("The file is empty: nothing to import.")).toBeInTheDocument();

    const huge = csvFile();
    Object.defineProperty(huge, "size", { value: MAX_IMPORT_BYTES + 1 });
    await userEvent.upload(screen.getByLabelText("CSV file"), huge);
    await upload();
    expect(screen.getByText(/an import takes at most 256 MiB/)).toBeInTheDocument();

    // A column that is neither a field's name nor mapped would fail the whole file.
    await userEvent.upload(screen.getByLabelText("CSV file"), csvFile());
    await upload();
    expect(await screen.findByText(/Map "Acct No" to a field/)).toBeInTheDocument();
    expect(sent()).toHaveLength(0);

    await userEvent.selectOptions(screen.getByLabelText("Acct No →"), "reference");
    await upload();
    expect(await screen.findByRole("alert")).toHaveTextContent("The request is invalid.");
    expect(screen.getByText("reference is mapped from two columns")).toBeInTheDocument();
    expect(screen.getByLabelText("Acct No →")).toHaveAttribute("aria-invalid", "true");
    expect(calls.some((c) => c.method === "PUT")).toBe(false);
  });

  it("lists the recent imports with their state and counts, each linked to its progress", async () => {
    const { calls } = fakeApi((c) =>
      c.path === "/imports"
        ? json(200, {
            items: [
              imp({ id: "I2", file_name: "march.csv", state: "completed_with_errors", created: 7, duplicates: 2, failed: 1, created_at: "2026-12-01T10:00:00Z" }),
              imp({ id: "I1", file_name: "", state: "running", created: 3 }),
            ],
            next_cursor: null,
          })
        : json(404, {}),
    );
    renderImports();
    const list = await screen.findByTestId("import-list");
    const items = within(list).getAllByRole("listitem");
    expect(items).toHaveLength(2);
    expect(within(items[0]).getByRole("link", { name: "march.csv" })).toHaveAttribute("href", "/imports/I2");
    expect(items[0]).toHaveTextContent("completed with errors");
    expect(items[0]).toHaveTextContent("7 created · 3 not created");
    // A file without a name is listed by its id.
    expect(within(items[1]).getByRole("link", { name: "I1" })).toHaveAttribute("href", "/imports/I1");
    expect(calls.find((c) => c.path === "/imports")!.search.get("limit")).toBe("20");
  });

  it("says so when there are no imports yet, and shows a failed list with a retry", async () => {
    let fail = true;
    fakeApi((c) => (c.path === "/imports" ? (fail ? json(503, { status: 503, title: "Service Unavailable", detail: "try again" }) : json(200, { items: [], next_cursor: null })) : json(404, {})));
    renderImports();
    expect(await screen.findByRole("alert")).toHaveTextContent("try again");
    const retry = screen.getByRole("button", { name: "Try again" });
    fail = false;
    await userEvent.click(retry);
    expect(await screen.findByText("No imports yet.")).toBeInTheDocument();
  });

  it("agents and viewers get neither the nav entry nor the page; managers get both", async () => {
    for (const role of ["agent", "viewer", "manager"] as const) {
      const { calls } = fakeApi((c) => (c.path === "/auth/me" ? json(200, user(role)) : json(200, { items: [], next_cursor: null })));
      const store = makeStore({ auth: { accessToken: "T1", expiresAt: null, user: null, signedOutReason: null } });
      const router = createMemoryRouter(routes, { initialEntries: ["/imports"] });
      const { unmount } = render(
        <Provider store={store}>
          <RouterProvider router={router} />
        </Provider>,
      );
      const nav = await screen.findByRole("navigation", { name: "Main" });
      if (role === "manager") {
        expect(within(nav).getByRole("link", { name: "Imports" })).toHaveAttribute("href", "/imports");
        expect(await screen.findByRole("heading", { name: "Imports" })).toBeInTheDocument();
      } else {
        expect(within(nav).queryByRole("link", { name: "Imports" })).toBeNull();
        expect(await screen.findByText("Your role cannot import accounts.")).toBeInTheDocument();
        expect(calls.some((c) => c.path.startsWith("/imports"))).toBe(false);
      }
      unmount();
      vi.unstubAllGlobals();
    }
  });
});

describe("a CSV file's header row", () => {
  it("is split with RFC 4180 quoting; an unfinished first line of a longer file is not guessed", () => {
    expect(parseFirstRecord('"Acct, No",debtor_name,"say ""hi"""\r\nx,y,z', true)).toEqual(["Acct, No", "debtor_name", 'say "hi"']);
    expect(parseFirstRecord("reference,debtor_name", true)).toEqual(["reference", "debtor_name"]);
    expect(parseFirstRecord("reference,debtor_na", false)).toEqual([]);
    expect(parseFirstRecord("", true)).toEqual([]);
  });
});
