import { api } from "./api";
import type { Page } from "./types";

/** One changed field of an audit entry (`null`: absent before or after). */
export interface FieldChange {
  field: string;
  old: unknown;
  new: unknown;
}

/** An audit trail entry (`GET /audit`, docs/audit.md). */
export interface AuditEntry {
  id: string;
  at: string;
  entity: string;
  subject: string;
  action: string;
  actor_id: string;
  actor_role: string;
  request_id: string | null;
  source_ip: string | null;
  via: string | null;
  changes: FieldChange[];
}

/** The audit endpoints, injected into the one API slice (no tag: the trail only grows). */
export const auditApi = api.injectEndpoints({
  endpoints: (b) => ({
    auditTrail: b.query<Page<AuditEntry>, { entity: string; cursor?: string }>({
      query: ({ entity, cursor }) => ({
        url: "/audit",
        params: cursor ? { entity, cursor, limit: 25 } : { entity, limit: 25 },
        cache: "no-store",
      }),
    }),
  }),
});

export const { useAuditTrailQuery } = auditApi;
