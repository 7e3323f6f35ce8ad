import { describe, expect, it } from "vitest";
import { can, type Action } from "./roles";

describe("role gating", () => {
  const writes: Action[] = ["account.create", "account.edit", "account.delete", "payment.record", "payment.change_status", "activity.log", "bulk.run", "users.manage"];
  it("a viewer and a pending user may do no write", () => {
    for (const a of writes) {
      expect(can("viewer", a)).toBe(false);
      expect(can("pending", a)).toBe(false);
    }
  });
  it("agents work accounts but neither create, delete, change payment status nor run bulk jobs", () => {
    expect(["account.edit", "payment.record", "activity.log"].every((a) => can("agent", a as Action))).toBe(true);
    expect(["account.create", "account.delete", "payment.change_status", "bulk.run", "users.manage"].some((a) => can("agent", a as Action))).toBe(false);
  });
  it("only admins manage users", () => {
    expect(can("admin", "users.manage")).toBe(true);
    expect(can("manager", "users.manage")).toBe(false);
  });
});
