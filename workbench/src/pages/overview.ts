// Every deployed model at a glance: traffic, errors, latency, quality, drift alerts, rollouts.
import type { Page, Session } from "../context";
import { get, q, type Schemas } from "../http";
import { badge, errorBox, fill, fmt, h, section, table } from "../ui";
import { allModels, deploymentOf, enc } from "./common";

export function overview(_session: Session): Page {
  const body = h("div", { "aria-live": "polite" }, h("p", {}, "Loading…"));
  const errors = errorBox();
  const refresh = async () => {
    try {
      const models = await allModels();
      const alerts: Schemas["Page_AlertPublic_"] = await get(`/monitoring/alerts${q({ state: "open", page_size: 200 })}`);
      const rows = [];
      for (const model of models) {
        const deployment = await deploymentOf(model.name);
        if (!deployment) continue;
        const monitoring = await get<Schemas["ModelMonitoring"]>(`/models/${enc(model.name)}/monitoring`).catch(() => null);
        for (const variant of deployment.variants) {
          const live = monitoring?.variants.find((v) => v.variant === variant.name);
          const open = alerts.items.filter((a) => a.model === model.name && a.version === variant.version);
          rows.push([
            h("a", { href: `#/deployments?model=${enc(model.name)}` }, model.name),
            `${variant.name} (${variant.role}, ${variant.weight}%)`,
            String(variant.requests),
            fmt.pct(variant.error_rate),
            live ? `${fmt.num(live.latency_ms.p50)} / ${fmt.num(live.latency_ms.p99)} ms` : "—",
            variant.quality === null ? "—" : `${fmt.num(variant.quality)} (${variant.outcomes})`,
            open.length ? badge(`${open.length} open`, "alert") : "none",
            deployment.rollout ? `${deployment.rollout.phase}: step ${deployment.rollout.step + 1}/${deployment.rollout.steps.length} at ${deployment.rollout.weight}%` : deployment.strategy,
          ]);
        }
      }
      errors.clear();
      fill(body, 
        table(
          "Deployed models",
          ["Model", "Variant", "Requests", "Error rate", "Latency p50 / p99", "Quality (outcomes)", "Drift alerts", "Rollout"],
          rows,
          "no model is deployed.",
        ),
        h("p", {}, `${models.length} registered models; ${alerts.items.length} open drift alerts.`),
      );
    } catch (error) {
      errors.show(error);
    }
  };
  void refresh();
  return { element: section("The morning review", errors.element, body), refresh };
}
