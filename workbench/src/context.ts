import type { Schemas } from "./http";

type Role = Schemas["app__core__access__Role"];

const GRANTS: Record<Role, Role[]> = {
  viewer: ["viewer"],
  engineer: ["viewer", "engineer"],
  approver: ["viewer", "approver"],
  admin: ["viewer", "engineer", "approver", "admin"],
};

/** Who is signed in, and what their roles let them do (the server enforces it anyway). */
export class Session {
  readonly granted: Set<Role>;
  constructor(readonly caller: Schemas["Caller"]) {
    this.granted = new Set(caller.roles.flatMap((role) => GRANTS[role] ?? [role]));
  }
  can(role: Role): boolean {
    return this.granted.has(role);
  }
}

/** What a page gives the shell: its content, and how to refresh it in place (live views). */
export interface Page {
  element: HTMLElement;
  refresh?: () => Promise<void>;
}
