import type { AccountQuery } from "../api/api";

/** The list's state lives in the URL: these keys, nothing else, so a link reproduces the view. */
export const FILTER_KEYS = ["status", "agent_id", "dpd_bucket", "min_balance", "max_balance", "q", "sort", "limit", "cursor"] as const;

export function queryFromSearch(search: URLSearchParams): AccountQuery {
  const q: AccountQuery = {};
  for (const k of FILTER_KEYS) {
    const v = search.get(k);
    if (v !== null && v !== "") q[k] = v;
  }
  return q;
}

/** Keys in a fixed order, empty values left out, so equal views have equal URLs. */
export function searchFromQuery(q: AccountQuery): URLSearchParams {
  const s = new URLSearchParams();
  for (const k of FILTER_KEYS) {
    const v = q[k];
    if (v !== undefined && v !== null && v !== "") s.set(k, v);
  }
  return s;
}

/** Changing a filter, the sort or the page size starts again at the first page. */
export function withChange(q: AccountQuery, change: Partial<AccountQuery>): AccountQuery {
  const next: AccountQuery = { ...q, ...change };
  if (!("cursor" in change)) delete next.cursor;
  // The API does not sort a search (prefix match order); a search drops the sort.
  if (next.q && next.sort) delete next.sort;
  return next;
}

/** The filter a bulk job takes (`filter{...}`): the list's filters without paging or search. */
export function bulkFilter(q: AccountQuery): Record<string, string | number> {
  const f: Record<string, string | number> = {};
  if (q.status) f.status = q.status;
  if (q.agent_id) f.agent_id = q.agent_id;
  if (q.dpd_bucket) f.dpd_bucket = q.dpd_bucket;
  if (q.min_balance) f.min_balance = Number(q.min_balance);
  if (q.max_balance) f.max_balance = Number(q.max_balance);
  return f;
}

/** The sort after a click on a column: the column ascending, again → descending. */
export function toggleSort(current: string | undefined, column: string): string {
  if (current === column) return `-${column}`;
  return column;
}
