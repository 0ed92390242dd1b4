// The feature catalog with freshness; start a materialization.
import type { Page, Session } from "../context";
import { get, post, type Schemas } from "../http";
import { action, badge, errorBox, fill, fmt, h, section, table } from "../ui";

const FRESHNESS: Record<string, string> = { never_materialized: "never", fresh: "fresh", stale: "stale" };

export function features(session: Session): Page {
  const body = h("div", {}, h("p", {}, "Loading…"));
  const errors = errorBox();
  const status = h("p", { role: "status" });
  const refresh = async () => {
    try {
      const catalog = await get<Schemas["CatalogOut"]>("/features");
      errors.clear();
      fill(body, 
        table(
          `Feature views of project ${catalog.project}`,
          ["View", "Features", "Entities", "Freshness", "Last materialized", "TTL"],
          catalog.feature_views.map((view) => [
            view.name,
            view.features.map((f) => `${f.name} (${f.dtype})`).join(", "),
            view.entities.join(", ") || (view.on_demand ? "on demand" : "—"),
            view.freshness ? badge(FRESHNESS[view.freshness] ?? view.freshness, view.freshness) : "—",
            fmt.when(view.last_materialized),
            view.ttl_seconds === null ? "—" : `${view.ttl_seconds} s`,
          ]),
        ),
        table(
          "Feature services",
          ["Service", "Features", "Description"],
          catalog.feature_services.map((s) => [s.name, s.features.join(", "), s.description]),
        ),
      );
    } catch (error) {
      errors.show(error);
    }
  };
  const materialize = action("Materialize now", session.can("engineer"), async () => {
    status.textContent = "Materializing…";
    try {
      const result = await post<Schemas["MaterializeResponse"]>("/features/materialize", {});
      errors.clear();
      status.textContent = `Materialized ${result.views.map((v) => v.name).join(", ")}.`;
      await refresh();
    } catch (error) {
      status.textContent = "";
      errors.show(error);
    }
  });
  void refresh();
  return { element: section("Catalog and freshness", h("div", { class: "toolbar" }, materialize, status), errors.element, body), refresh };
}
