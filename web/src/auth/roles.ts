import type { Role } from "../api/types";

/**
 * What each role may do, mirrored from the API's rules so the UI offers only what will be
 * accepted (the API still refuses everything else). One table, used by every screen.
 */
export type Action =
  | "account.create"
  | "account.edit"
  | "account.edit_all_fields"
  | "account.delete"
  | "payment.record"
  | "payment.change_status"
  | "activity.log"
  | "bulk.run"
  | "imports.run"
  | "users.manage"
  | "dashboard.agents"
  | "audit.account";

const RULES: Record<Action, Role[]> = {
  "account.create": ["admin", "manager"],
  "account.edit": ["admin", "manager", "agent"],
  "account.edit_all_fields": ["admin", "manager"],
  "account.delete": ["admin", "manager"],
  "payment.record": ["admin", "manager", "agent"],
  "payment.change_status": ["admin", "manager"],
  "activity.log": ["admin", "manager", "agent"],
  "bulk.run": ["admin", "manager"],
  "imports.run": ["admin", "manager"],
  "users.manage": ["admin"],
  "dashboard.agents": ["admin", "manager"],
  "audit.account": ["admin", "manager"],
};

export function can(role: Role | undefined | null, action: Action): boolean {
  return !!role && RULES[action].includes(role);
}

/** Fields an agent may change on its own accounts (docs/accounts.md). */
export const AGENT_EDITABLE_FIELDS = ["status", "tags", "debtor_email", "debtor_phone", "debtor_timezone"] as const;
