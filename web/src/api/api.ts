import { createApi } from "@reduxjs/toolkit/query/react";
import { baseQuery } from "./baseQuery";
import type {
  Account,
  AccountWithEtag,
  Activity,
  CreatedImport,
  Import,
  ImportMode,
  ImportRowError,
  Job,
  JobFailure,
  Page,
  NewPlan,
  Payment,
  PaymentStatus,
  Plan,
  Role,
  Summary,
  TokenPair,
  User,
} from "./types";

/** Query parameters of `GET /accounts` (all strings, as they live in the URL). */
export interface AccountQuery {
  status?: string;
  agent_id?: string;
  min_balance?: string;
  max_balance?: string;
  dpd_bucket?: string;
  q?: string;
  sort?: string;
  limit?: string;
  cursor?: string;
}

export type NewAccount = Omit<
  Account,
  "id" | "balance" | "version" | "created_at" | "updated_at" | "deleted_at" | "days_past_due" | "dpd_bucket"
>;

export interface RecordPayment {
  accountId: string;
  idempotencyKey: string;
  body: { amount: number; currency: string; method: string; reference?: string; received_at?: string; status?: string };
}

export interface LogActivity {
  accountId: string;
  body: { type: string; note?: string; outcome?: string; promise_amount?: number; promise_date?: string };
}

export interface BulkRequest {
  account_ids?: string[];
  filter?: Record<string, string | number>;
  changes: { status?: string; assigned_agent_id?: string | null };
}

export interface CreateImport {
  size: number;
  file_name: string;
  column_mapping?: Record<string, string>;
  mode?: ImportMode;
}

/**
 * Headers a browser sets itself and a script may not (`fetch` drops or refuses them): the
 * presigned URL signs `content-length`, which the browser sends from the body's size.
 */
const BROWSER_HEADERS = new Set(["content-length", "host"]);

function clean(params: object): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") out[k] = String(v);
  return out;
}

/** The last dashboard answer and its ETag, sent back as If-None-Match (304 keeps it). */
let summaryCache: { etag: string; body: Summary } | null = null;
export function resetSummaryCache() {
  summaryCache = null;
}

export const api = createApi({
  reducerPath: "api",
  baseQuery,
  tagTypes: ["Me", "Account", "AccountList", "Payments", "Plans", "Activities", "Jobs", "Imports", "Users", "Summary"],
  endpoints: (b) => ({
    login: b.mutation<TokenPair, { email: string; password: string }>({
      query: (body) => ({ url: "/auth/login", method: "POST", body }),
    }),
    register: b.mutation<User, { email: string; name: string; password: string }>({
      query: (body) => ({ url: "/auth/register", method: "POST", body }),
    }),
    logout: b.mutation<void, { refresh_token: string }>({
      query: (body) => ({ url: "/auth/logout", method: "POST", body }),
    }),
    logoutAll: b.mutation<void, void>({
      query: () => ({ url: "/auth/logout-all", method: "POST" }),
    }),
    me: b.query<User, void>({ query: () => "/auth/me", providesTags: ["Me"] }),

    accounts: b.query<Page<Account>, AccountQuery>({
      query: (params) => ({ url: "/accounts", params: clean(params) }),
      providesTags: (r) => [
        "AccountList",
        ...(r?.items ?? []).map((a) => ({ type: "Account" as const, id: a.id })),
      ],
    }),
    account: b.query<AccountWithEtag, string>({
      query: (id) => ({ url: `/accounts/${encodeURIComponent(id)}`, cache: "no-store" }),
      transformResponse: (account: Account, meta) => ({
        account,
        etag: meta?.response?.headers.get("etag") ?? `"${account.version}"`,
      }),
      providesTags: (_r, _e, id) => [{ type: "Account", id }],
    }),
    createAccount: b.mutation<Account, NewAccount>({
      query: (body) => ({ url: "/accounts", method: "POST", body }),
      invalidatesTags: ["AccountList", "Summary"],
    }),
    updateAccount: b.mutation<AccountWithEtag, { id: string; etag: string; changes: Partial<Account> }>({
      query: ({ id, etag, changes }) => ({
        url: `/accounts/${encodeURIComponent(id)}`,
        method: "PATCH",
        headers: { "if-match": etag },
        body: changes,
      }),
      transformResponse: (account: Account, meta) => ({
        account,
        etag: meta?.response?.headers.get("etag") ?? `"${account.version}"`,
      }),
      invalidatesTags: (_r, _e, { id }) => [{ type: "Account", id }, "AccountList", { type: "Activities", id }],
    }),
    deleteAccount: b.mutation<void, { id: string; etag?: string }>({
      query: ({ id, etag }) => ({
        url: `/accounts/${encodeURIComponent(id)}`,
        method: "DELETE",
        headers: etag ? { "if-match": etag } : undefined,
      }),
      invalidatesTags: (_r, _e, { id }) => [{ type: "Account", id }, "AccountList", "Summary"],
    }),

    payments: b.query<Page<Payment>, { accountId: string; cursor?: string }>({
      query: ({ accountId, cursor }) => ({
        url: `/accounts/${encodeURIComponent(accountId)}/payments`,
        params: clean({ cursor, limit: 25 }),
      }),
      providesTags: (_r, _e, { accountId }) => [{ type: "Payments", id: accountId }],
    }),
    recordPayment: b.mutation<Payment, RecordPayment>({
      query: ({ accountId, idempotencyKey, body }) => ({
        url: `/accounts/${encodeURIComponent(accountId)}/payments`,
        method: "POST",
        headers: { "idempotency-key": idempotencyKey },
        body,
      }),
      invalidatesTags: (_r, _e, { accountId }) => [
        { type: "Account", id: accountId },
        { type: "Payments", id: accountId },
        { type: "Plans", id: accountId },
        { type: "Activities", id: accountId },
        "AccountList",
        "Summary",
      ],
    }),
    changePaymentStatus: b.mutation<Payment, { accountId: string; payment: Payment; status: PaymentStatus }>({
      query: ({ accountId, payment, status }) => ({
        url: `/accounts/${encodeURIComponent(accountId)}/payments/${encodeURIComponent(payment.id)}`,
        method: "PATCH",
        headers: { "if-match": `"${payment.version}"` },
        body: { status },
      }),
      invalidatesTags: (_r, _e, { accountId }) => [
        { type: "Account", id: accountId },
        { type: "Payments", id: accountId },
        { type: "Activities", id: accountId },
        "AccountList",
        "Summary",
      ],
    }),

    plans: b.query<Page<Plan>, string>({
      query: (accountId) => ({ url: `/accounts/${encodeURIComponent(accountId)}/plans`, cache: "no-store" }),
      providesTags: (_r, _e, accountId) => [{ type: "Plans", id: accountId }],
    }),
    createPlan: b.mutation<Plan, { accountId: string; body: NewPlan }>({
      query: ({ accountId, body }) => ({ url: `/accounts/${encodeURIComponent(accountId)}/plans`, method: "POST", body }),
      invalidatesTags: (_r, _e, { accountId }) => [
        { type: "Plans", id: accountId },
        { type: "Account", id: accountId },
        { type: "Activities", id: accountId },
        "AccountList",
        "Summary",
      ],
    }),
    cancelPlan: b.mutation<Plan, { accountId: string; plan: Plan }>({
      query: ({ accountId, plan }) => ({
        url: `/accounts/${encodeURIComponent(accountId)}/plans/${encodeURIComponent(plan.id)}/cancel`,
        method: "POST",
        headers: { "if-match": `"${plan.version}"` },
      }),
      invalidatesTags: (_r, _e, { accountId }) => [
        { type: "Plans", id: accountId },
        { type: "Account", id: accountId },
        { type: "Activities", id: accountId },
        "AccountList",
        "Summary",
      ],
    }),

    activities: b.query<Page<Activity>, { accountId: string; cursor?: string }>({
      query: ({ accountId, cursor }) => ({
        url: `/accounts/${encodeURIComponent(accountId)}/activities`,
        params: clean({ cursor, limit: 20 }),
      }),
      providesTags: (_r, _e, { accountId }) => [{ type: "Activities", id: accountId }],
    }),
    logActivity: b.mutation<Activity, LogActivity>({
      query: ({ accountId, body }) => ({
        url: `/accounts/${encodeURIComponent(accountId)}/activities`,
        method: "POST",
        body,
      }),
      invalidatesTags: (_r, _e, { accountId }) => [
        { type: "Account", id: accountId },
        { type: "Activities", id: accountId },
        "AccountList",
        "Summary",
      ],
    }),
    activitiesBatch: b.query<
      { results: { account_id: string; activities: Activity[] }[]; errors: { account_id: string; reason: string }[] },
      { account_ids: string[]; limit?: number }
    >({
      query: (body) => ({ url: "/activities/batch", method: "POST", body }),
      providesTags: ["Activities"],
    }),

    summary: b.query<Summary, void>({
      async queryFn(_arg, api, extra, fetchWithBQ) {
        void api;
        void extra;
        const res = await fetchWithBQ({
          url: "/dashboard/summary",
          cache: "no-store",
          headers: summaryCache ? { "if-none-match": summaryCache.etag } : undefined,
          validateStatus: (r: Response) => r.ok || r.status === 304,
        });
        if (res.error) return { error: res.error };
        const response = (res.meta as { response?: Response } | undefined)?.response;
        if (response?.status === 304 && summaryCache) return { data: summaryCache.body };
        const body = res.data as Summary;
        const etag = response?.headers.get("etag");
        summaryCache = etag ? { etag, body } : null;
        return { data: body };
      },
      providesTags: ["Summary"],
    }),

    jobs: b.query<Page<Job>, { cursor?: string } | void>({
      query: (a) => ({ url: "/bulk/jobs", params: clean({ cursor: a?.cursor ?? undefined, limit: 20 }) }),
      providesTags: ["Jobs"],
    }),
    job: b.query<Job, string>({
      query: (id) => `/bulk/jobs/${encodeURIComponent(id)}`,
      providesTags: (_r, _e, id) => [{ type: "Jobs", id }],
    }),
    jobFailures: b.query<Page<JobFailure>, { id: string; cursor?: string }>({
      query: ({ id, cursor }) => ({ url: `/bulk/jobs/${encodeURIComponent(id)}/failures`, params: clean({ cursor }) }),
      providesTags: (_r, _e, { id }) => [{ type: "Jobs", id }],
    }),
    startBulk: b.mutation<{ job_id: string }, BulkRequest>({
      query: (body) => ({ url: "/bulk/accounts", method: "POST", body }),
      invalidatesTags: ["Jobs"],
    }),
    cancelJob: b.mutation<Job, string>({
      query: (id) => ({ url: `/bulk/jobs/${encodeURIComponent(id)}/cancel`, method: "POST" }),
      invalidatesTags: (_r, _e, id) => ["Jobs", { type: "Jobs", id }],
    }),

    createImport: b.mutation<CreatedImport, CreateImport>({
      query: (body) => ({ url: "/imports", method: "POST", body }),
      invalidatesTags: ["Imports"],
    }),
    /**
     * The file's bytes straight to S3 at the presigned URL (not through the API, and without
     * our bearer token: the URL is its own authorisation).
     */
    uploadImportFile: b.mutation<null, { upload: CreatedImport["upload"]; file: Blob }>({
      async queryFn({ upload, file }) {
        const headers = Object.fromEntries(Object.entries(upload.headers).filter(([k]) => !BROWSER_HEADERS.has(k.toLowerCase())));
        try {
          const r = await fetch(upload.url, { method: upload.method, headers, body: file });
          if (r.ok) return { data: null };
          return { error: { status: "CUSTOM_ERROR", error: `The file storage refused the upload (HTTP ${r.status}).` } };
        } catch {
          return { error: { status: "FETCH_ERROR", error: "Cannot reach the file storage." } };
        }
      },
    }),
    imports: b.query<Page<Import>, void>({
      query: () => ({ url: "/imports", params: { limit: 20 } }),
      providesTags: ["Imports"],
    }),
    importById: b.query<Import, string>({
      query: (id) => `/imports/${encodeURIComponent(id)}`,
      providesTags: (_r, _e, id) => [{ type: "Imports", id }],
    }),
    importErrors: b.query<Page<ImportRowError>, { id: string; cursor?: string }>({
      query: ({ id, cursor }) => ({ url: `/imports/${encodeURIComponent(id)}/errors`, params: clean({ cursor }) }),
      providesTags: (_r, _e, { id }) => [{ type: "Imports", id }],
    }),
    /** Every row error as CSV (`Accept: text/csv`), for a download. */
    importErrorsCsv: b.mutation<string, string>({
      query: (id) => ({
        url: `/imports/${encodeURIComponent(id)}/errors`,
        headers: { accept: "text/csv" },
        responseHandler: "text",
      }),
    }),

    users: b.query<Page<User>, { cursor?: string; limit?: number } | void>({
      query: (a) => ({ url: "/users", params: clean({ cursor: a?.cursor, limit: a?.limit ?? 50 }) }),
      providesTags: ["Users"],
    }),
    createUser: b.mutation<User, { email: string; name: string; password: string; role: Role }>({
      query: (body) => ({ url: "/users", method: "POST", body }),
      invalidatesTags: ["Users"],
    }),
    updateUser: b.mutation<User, { id: string; changes: { role?: Role; disabled?: boolean; unlock?: boolean; name?: string } }>({
      query: ({ id, changes }) => ({ url: `/users/${encodeURIComponent(id)}`, method: "PATCH", body: changes }),
      invalidatesTags: ["Users"],
    }),
    revokeSessions: b.mutation<void, string>({
      query: (id) => ({ url: `/users/${encodeURIComponent(id)}/sessions/revoke`, method: "POST" }),
      invalidatesTags: ["Users"],
    }),
  }),
});

export const {
  useLoginMutation,
  useRegisterMutation,
  useLogoutMutation,
  useLogoutAllMutation,
  useAccountsQuery,
  useAccountQuery,
  useCreateAccountMutation,
  useUpdateAccountMutation,
  useDeleteAccountMutation,
  usePaymentsQuery,
  useRecordPaymentMutation,
  useChangePaymentStatusMutation,
  usePlansQuery,
  useCreatePlanMutation,
  useCancelPlanMutation,
  useActivitiesQuery,
  useLogActivityMutation,
  useActivitiesBatchQuery,
  useSummaryQuery,
  useJobsQuery,
  useJobQuery,
  useJobFailuresQuery,
  useStartBulkMutation,
  useCancelJobMutation,
  useCreateImportMutation,
  useUploadImportFileMutation,
  useImportsQuery,
  useImportByIdQuery,
  useImportErrorsQuery,
  useImportErrorsCsvMutation,
  useUsersQuery,
  useCreateUserMutation,
  useUpdateUserMutation,
  useRevokeSessionsMutation,
} = api;
