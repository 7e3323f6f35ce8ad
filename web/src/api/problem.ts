import type { Problem } from "./types";

/**
 * The error every endpoint rejects with: the HTTP status (or a fetch failure), the API's
 * problem+json body as sent, and `Retry-After` in seconds where the API set it (423, 429, 409).
 */
export interface ApiError {
  status: number | "FETCH_ERROR" | "PARSING_ERROR" | "TIMEOUT_ERROR" | "CUSTOM_ERROR";
  data?: Problem;
  retryAfter?: number;
  error?: string;
}

export function asApiError(e: unknown): ApiError | null {
  if (e && typeof e === "object" && "status" in e) return e as ApiError;
  return null;
}

/** The problem's `type` without its URI prefix (`https://…/problems/call-outside-hours` → `call-outside-hours`). */
export function problemKind(e: ApiError | null | undefined): string | undefined {
  const t = e?.data?.type;
  if (!t) return undefined;
  return t.split("/").pop();
}

/** "in 14 min" / "in 40 s" for a Retry-After. */
export function formatWait(seconds: number): string {
  if (seconds >= 90) return `${Math.ceil(seconds / 60)} min`;
  return `${Math.max(1, Math.round(seconds))} s`;
}

/**
 * One sentence for a person: the API's own words (`detail`, else `title`), with the wait
 * where the API gave one. Network failures say so instead of showing a code.
 */
export function problemMessage(e: unknown): string {
  const err = asApiError(e);
  if (!err) return "Something went wrong.";
  if (err.status === "FETCH_ERROR") return "Cannot reach the server. Check your connection and try again.";
  if (typeof err.status !== "number") return err.error ?? "Something went wrong.";
  const words = err.data?.detail || err.data?.title || `The server answered ${err.status}.`;
  if (err.retryAfter !== undefined && (err.status === 423 || err.status === 429)) {
    return `${words} Try again in ${formatWait(err.retryAfter)}.`;
  }
  return words;
}

/** Field errors by field name, for showing next to the inputs. */
export function fieldErrors(e: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const fe of asApiError(e)?.data?.errors ?? []) {
    out[fe.field] = out[fe.field] ? `${out[fe.field]}; ${fe.message}` : fe.message;
  }
  return out;
}
