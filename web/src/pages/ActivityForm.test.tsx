import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { fakeApi, json, renderPage } from "../test/utils";
import { ActivityForm } from "./ActivityForm";
import { account } from "./fixtures";

describe("log an activity", () => {
  it.each([
    ["call-outside-hours", /outside 08:00–21:00 in the debtor's time zone/],
    ["call-after-conversation", /spoke with the debtor in the last 7 days/],
    ["call-frequency-limit", /7 call attempts in the last 7 days/],
  ])("a %s refusal is shown as its reason", async (kind, reason) => {
    fakeApi(() =>
      json(422, { type: `https://collectpro.dev/problems/${kind}`, title: "Unprocessable", status: 422, detail: "refused" }),
    );
    renderPage(<ActivityForm account={account()} />);
    await userEvent.click(screen.getByRole("button", { name: "Log activity" }));
    expect(await screen.findByTestId("refusal")).toHaveTextContent(reason);
  });

  it("a promise is checked before sending, then sent in minor units with its date", async () => {
    const { calls } = fakeApi(() => json(201, { id: "X" }));
    renderPage(<ActivityForm account={account({ balance: 5000 })} />);
    await userEvent.selectOptions(screen.getByLabelText("Type"), "promise_to_pay");
    await userEvent.type(screen.getByLabelText(/Promised amount/), "60");
    await userEvent.click(screen.getByRole("button", { name: "Log activity" }));
    expect(screen.getByText("The promise is more than the balance.")).toBeInTheDocument();
    expect(screen.getByText("Pick the date the debtor promised to pay.")).toBeInTheDocument();
    expect(calls).toHaveLength(0);
    await userEvent.clear(screen.getByLabelText(/Promised amount/));
    await userEvent.type(screen.getByLabelText(/Promised amount/), "12.50");
    await userEvent.type(screen.getByLabelText("Promised date"), "2026-12-10");
    await userEvent.click(screen.getByRole("button", { name: "Log activity" }));
    await screen.findByText("Activity logged.");
    expect(calls[0].body).toEqual({ type: "promise_to_pay", promise_amount: 1250, promise_date: "2026-12-10" });
  });

  it("the API's field errors appear next to their fields", async () => {
    fakeApi(() =>
      json(400, { title: "Bad Request", status: 400, errors: [{ field: "promise_date", message: "must be within 90 days" }] }),
    );
    renderPage(<ActivityForm account={account()} />);
    await userEvent.selectOptions(screen.getByLabelText("Type"), "promise_to_pay");
    await userEvent.type(screen.getByLabelText(/Promised amount/), "1");
    await userEvent.type(screen.getByLabelText("Promised date"), "2027-12-10");
    await userEvent.click(screen.getByRole("button", { name: "Log activity" }));
    const date = screen.getByLabelText("Promised date");
    expect(await screen.findByText("must be within 90 days")).toBeInTheDocument();
    expect(date).toHaveAttribute("aria-invalid", "true");
    expect(date.getAttribute("aria-describedby")).toContain(screen.getByText("must be within 90 days").id);
  });
});
