import { useSummaryQuery } from "../api/api";
import { can } from "../auth/roles";
import { useUser } from "../components/Layout";

/**
 * Agents by id with their names, for pickers and tables. `GET /users` is admin-only, but the
 * dashboard's per-agent list (admins and managers) names every agent, so both roles get names.
 */
export function useAgents(): { id: string; name: string }[] {
  const user = useUser();
  const { data } = useSummaryQuery(undefined, { skip: !can(user.role, "dashboard.agents") });
  return (data?.agents ?? []).map((a) => ({ id: a.agent_id, name: a.name ?? a.agent_id }));
}
