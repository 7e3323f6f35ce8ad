/** Resource shapes of the HTTP API (field names are the contract in DESIGN.md). */
export type Role = "admin" | "manager" | "agent" | "viewer" | "pending";

export interface User {
  id: string;
  email: string;
  name: string;
  role: Role;
  created_at: string;
  updated_at: string;
  locked_until: string | null;
  disabled: boolean;
}

export const ACCOUNT_STATUSES = ["active", "promise_to_pay", "payment_plan", "disputed", "paid", "closed"] as const;
export type AccountStatus = (typeof ACCOUNT_STATUSES)[number];
export const DPD_BUCKETS = ["current", "1-30", "31-60", "61-90", "90+"] as const;
export type DpdBucket = (typeof DPD_BUCKETS)[number];

export interface Account {
  id: string;
  reference: string;
  debtor_name: string;
  debtor_email: string;
  debtor_phone: string;
  debtor_timezone: string;
  currency: string;
  original_balance: number;
  balance: number;
  status: AccountStatus;
  assigned_agent_id: string | null;
  due_date: string;
  days_past_due: number;
  dpd_bucket: DpdBucket;
  tags: string[];
  version: number;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
}

/** An account with the ETag it was read with (sent back as If-Match). */
export interface AccountWithEtag {
  account: Account;
  etag: string;
}

export const PAYMENT_METHODS = ["card", "ach", "check", "cash", "wire"] as const;
export type PaymentMethod = (typeof PAYMENT_METHODS)[number];
export type PaymentStatus = "pending" | "completed" | "failed" | "refunded" | "reversed";

export interface Payment {
  id: string;
  account_id: string;
  amount: number;
  currency: string;
  method: PaymentMethod;
  status: PaymentStatus;
  reference: string | null;
  received_at: string;
  created_by: string;
  version: number;
  created_at: string;
  updated_at: string;
}

export const PLAN_FREQUENCIES = ["weekly", "biweekly", "monthly"] as const;
export type PlanFrequency = (typeof PLAN_FREQUENCIES)[number];
export type PlanStatus = "active" | "completed" | "cancelled" | "broken";
export type InstallmentStatus = "due" | "partly_paid" | "paid" | "missed";

/** One installment of a payment plan, with what the plan's payments cover of it. */
export interface Installment {
  number: number;
  due_date: string;
  amount: number;
  paid_amount: number;
  status: InstallmentStatus;
}

/** A payment plan (docs/plans.md). */
export interface Plan {
  id: string;
  account_id: string;
  status: PlanStatus;
  frequency: PlanFrequency;
  currency: string;
  total_amount: number;
  paid_amount: number;
  remaining_amount: number;
  missed_count: number;
  installments: Installment[];
  created_by: string;
  version: number;
  created_at: string;
  updated_at: string;
  ended_at: string | null;
}

/** `POST /accounts/{id}/plans`: a count or an amount per installment, not both. */
export interface NewPlan {
  frequency: PlanFrequency;
  first_due_date: string;
  installment_count?: number;
  installment_amount?: number;
  total_amount?: number;
  currency: string;
}

/** The status machine of DESIGN.md: which changes a payment in a status may take. */
export const PAYMENT_TRANSITIONS: Record<PaymentStatus, PaymentStatus[]> = {
  pending: ["completed", "failed"],
  completed: ["refunded", "reversed"],
  failed: [],
  refunded: [],
  reversed: [],
};

export const LOGGABLE_ACTIVITY_TYPES = ["call", "email", "sms", "letter", "note", "promise_to_pay", "dispute"] as const;
export type ActivityType = (typeof LOGGABLE_ACTIVITY_TYPES)[number] | "status_change" | "payment";
export const CALL_OUTCOMES = ["right_party_contact", "no_answer", "left_message", "wrong_number"] as const;

export interface Activity {
  id: string;
  account_id: string;
  type: ActivityType;
  note: string;
  promise_amount: number | null;
  promise_date: string | null;
  outcome: string | null;
  actor_id: string;
  created_at: string;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export type JobState = "queued" | "running" | "completed" | "completed_with_errors" | "failed" | "cancelled";
export interface Job {
  id: string;
  state: JobState;
  total: number;
  processed: number;
  succeeded: number;
  failed: number;
  cancelled?: number;
  created_by: string;
  created_at: string;
  finished_at: string | null;
  source?: string;
  changes?: Record<string, unknown>;
}
export interface JobFailure {
  account_id: string;
  reason: string;
  message: string;
}

export type ByCurrency = Record<string, number>;
export interface PeriodTotals {
  collected: ByCurrency;
  payments_by_method: Record<string, { count: number; amount: ByCurrency }>;
  activities: Record<string, number>;
  promises: { due: number; kept: number; broken: number };
}
export interface Totals {
  accounts: { total: number; by_status: Record<string, number>; by_dpd_bucket: Record<string, number> };
  outstanding: ByCurrency;
  today: PeriodTotals;
  month: PeriodTotals;
}
/** `GET /dashboard/summary`: the figures of the caller's scope, flattened beside date/scope. */
export interface Summary extends Totals {
  date: string;
  scope: string;
  agent_id?: string | null;
  agents?: (Totals & { agent_id: string; name: string | null })[] | null;
}

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
}

/** RFC 9457 problem details as the API sends them. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: { field: string; message: string }[];
}

export type ImportState = "awaiting_upload" | "running" | "completed" | "completed_with_errors" | "failed";
/** The fields a placement file's column may fill (`shared::imports::Field`). */
export const IMPORT_FIELDS = [
  "reference",
  "debtor_name",
  "debtor_email",
  "debtor_phone",
  "debtor_timezone",
  "currency",
  "original_balance",
  "due_date",
  "status",
  "assigned_agent_id",
  "tags",
] as const;
export type ImportField = (typeof IMPORT_FIELDS)[number];
/**
 * What a row whose reference already exists does: `create` reports it as a duplicate;
 * `upsert` updates that account's debtor details, due date, tags and agent (never its
 * balance, currency or status).
 */
export type ImportMode = "create" | "upsert";
export interface Import {
  id: string;
  state: ImportState;
  mode: ImportMode;
  size: number;
  file_name: string;
  column_mapping: Record<string, ImportField>;
  total_rows: number | null;
  rows_read: number;
  created: number;
  /** Existing accounts brought up to date by their row (mode `upsert`). */
  updated: number;
  duplicates: number;
  failed: number;
  error: string | null;
  created_by: string;
  created_at: string;
  finished_at: string | null;
}
export interface ImportRowError {
  line: number;
  column: string;
  reason: "duplicate" | "invalid";
  message: string;
}
/** `POST /imports`: the import and where to PUT its file. */
export interface CreatedImport {
  import: Import;
  upload: { method: string; url: string; headers: Record<string, string>; expires_at: string };
}
