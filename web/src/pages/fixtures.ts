import type { Account } from "../api/types";

export function account(over: Partial<Account> = {}): Account {
  return {
    id: "A1",
    reference: "REF-1",
    debtor_name: "Dana Debtor",
    debtor_email: "dana@example.com",
    debtor_phone: "+14155550123",
    debtor_timezone: "America/New_York",
    currency: "USD",
    original_balance: 100000,
    balance: 100000,
    status: "active",
    assigned_agent_id: "U-agent",
    due_date: "2026-10-01",
    days_past_due: 61,
    dpd_bucket: "61-90",
    tags: [],
    version: 1,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    deleted_at: null,
    ...over,
  };
}
