// Deploy with a strategy (replace, A/B, canary, shadow; backend), the routing table, live
// statistics per variant, A/B verdicts with effect and interval over time, canary steps.
import type { Page, Session } from "../context";
import { del, post, type Schemas } from "../http";
import { intervals } from "../charts";
import { action, badge, errorBox, field, fill, fmt, h, section, table } from "../ui";
import { allModels, deploymentOf, enc } from "./common";

type Deployment = Schemas["DeploymentPublic"];
type Verdict = Schemas["VerdictOut"];
interface Point {
  at: number;
  effect: number;
  low: number;
  high: number;
  n: number;
}

/** The verdict's effect and interval as seen at each refresh (this tab's session). */
function history(model: string, verdict: Verdict | undefined): Point[] {
  const key = `ml-workbench-verdicts-${model}`;
  const points: Point[] = JSON.parse(sessionStorage.getItem(key) ?? "[]");
  const ci = verdict?.confidence_interval;
  if (verdict && verdict.effect !== null && ci && ci.length === 2) {
    const n = verdict.baseline_outcomes + verdict.candidate_outcomes;
    const last = points[points.length - 1];
    if (!last || last.n !== n || last.effect !== verdict.effect) {
      points.push({ at: Date.now(), effect: verdict.effect, low: ci[0], high: ci[1], n });
      sessionStorage.setItem(key, JSON.stringify(points.slice(-200)));
    }
  }
  return points;
}

function deployForm(session: Session, model: string, onDone: () => Promise<void>, errors: ReturnType<typeof errorBox>): HTMLElement {
  const strategy = h("select", { name: "strategy" }, ["replace", "ab", "canary", "shadow"].map((s) => h("option", { value: s }, s)));
  const version = h("input", { type: "number", name: "version", min: 1 });
  const backend = h("select", { name: "backend" }, ["ray", "triton", "vllm"].map((b) => h("option", { value: b }, b)));
  const variants = h("input", { type: "text", name: "variants", placeholder: "1:50, 2:50" });
  const steps = h("input", { type: "text", name: "steps", value: "5, 25, 50, 100" });
  const bake = h("input", { type: "number", name: "bake_time_s", value: 60, min: 0 });
  const percent = h("input", { type: "number", name: "percent", value: 100, min: 0, max: 100 });
  const form = h(
    "form",
    { class: "grid-form", "aria-label": "Deploy" },
    field("Strategy", strategy),
    field("Version", version, "replace, canary, shadow"),
    field("Backend", backend),
    field("A/B variants", variants, "version:weight pairs, the first is the baseline"),
    field("Canary steps (%)", steps),
    field("Bake time (s)", bake),
    field("Shadow percent", percent),
    h("button", { type: "submit", "data-write": true, disabled: !session.can("engineer") }, "Deploy"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body: Record<string, unknown> = { strategy: strategy.value, backend: backend.value };
    if (version.value) body.version = Number(version.value);
    if (strategy.value === "ab") {
      body.variants = variants.value
        .split(",")
        .map((pair) => pair.trim())
        .filter(Boolean)
        .map((pair) => {
          const [v, w] = pair.split(":");
          return { version: Number(v), weight: Number(w), backend: backend.value };
        });
    }
    if (strategy.value === "canary") {
      body.steps = steps.value.split(",").map((s) => Number(s.trim()));
      body.bake_time_s = Number(bake.value);
    }
    if (strategy.value === "shadow") body.percent = Number(percent.value);
    try {
      await post(`/models/${enc(model)}/deploy`, body);
      errors.clear();
      await onDone();
    } catch (error) {
      errors.show(error);
    }
  });
  return form;
}

export function deployments(session: Session, params: URLSearchParams): Page {
  const model = params.get("model");
  if (!model) {
    const body = h("div", {}, h("p", {}, "Loading…"));
    void allModels().then(
      (models) =>
        fill(body, 
          table("Models", ["Model", "Production"], models.map((m) => [h("a", { href: `#/deployments?model=${enc(m.name)}` }, m.name), (m.stages.production ?? []).map((v) => `v${v}`).join(", ") || "—"])),
        ),
      (error) => fill(body, String(error)),
    );
    return { element: section("Pick a model", body) };
  }
  const errors = errorBox();
  const current = h("div", { "aria-live": "polite" });
  const refresh = async () => {
    try {
      const deployment: Deployment | null = await deploymentOf(model);
      errors.clear();
      if (!deployment) {
        fill(current, h("p", {}, `${model} is not deployed.`));
        return;
      }
      const ab = deployment.verdicts[0];
      const points = history(model, ab);
      const start = points[0]?.at ?? Date.now();
      fill(current, 
        h("p", {}, `Strategy ${deployment.strategy}, revision ${deployment.revision}, updated ${fmt.when(deployment.updated_at)}.`),
        table(
          "Routing table and live statistics",
          ["Variant", "Role", "Weight", "Backend", "Requests", "Errors", "Error rate", "Latency p50 / p99", "Quality (outcomes)", "Shadow agreement"],
          deployment.variants.map((v) => [
            v.name,
            v.role,
            `${v.weight}%`,
            v.backend,
            String(v.requests),
            String(v.errors),
            fmt.pct(v.error_rate),
            `${fmt.num(v.latency_ms.p50 as number | null)} / ${fmt.num(v.latency_ms.p99 as number | null)} ms`,
            v.quality === null ? "—" : `${fmt.num(v.quality)} (${v.outcomes})`,
            v.shadow_agreement === null || v.shadow_agreement === undefined ? "—" : fmt.pct(v.shadow_agreement),
          ]),
        ),
        deployment.rollout
          ? h(
              "div",
              { class: "rollout" },
              h("h3", {}, "Canary"),
              h("p", {}, `Phase ${deployment.rollout.phase}: step ${deployment.rollout.step + 1} of ${deployment.rollout.steps.length} (${deployment.rollout.steps.join("% → ")}%), now ${deployment.rollout.weight}%. ${deployment.rollout.reason}`),
            )
          : null,
        table(
          "A/B verdicts",
          ["Baseline", "Candidate", "Status", "Effect", "Confidence interval", "p-value", "Sample ratio", "Outcomes", "Winner", "Reason"],
          deployment.verdicts.map((v) => [
            v.baseline,
            v.candidate,
            badge(v.status),
            fmt.num(v.effect),
            v.confidence_interval ? `[${fmt.num(v.confidence_interval[0])}, ${fmt.num(v.confidence_interval[1])}]` : "—",
            fmt.num(v.p_value),
            v.srm_ok ? "ok" : `mismatch (p=${fmt.num(v.srm_p_value)})`,
            `${v.baseline_outcomes} / ${v.candidate_outcomes}`,
            v.winner ?? "—",
            v.reason,
          ]),
          "no A/B test is running.",
        ),
        points.length
          ? intervals(
              "A/B effect with its confidence interval over time",
              points.map((p) => ({ x: Math.round((p.at - start) / 1000), estimate: p.effect, low: p.low, high: p.high })),
              "seconds since first seen",
              "effect (candidate − baseline)",
            )
          : null,
        h(
          "div",
          { class: "toolbar" },
          action("Stop deployment", session.can("engineer"), async () => {
            try {
              await del(`/models/${enc(model)}/deployment`);
              await refresh();
            } catch (error) {
              errors.show(error);
            }
          }),
        ),
      );
    } catch (error) {
      errors.show(error);
    }
  };
  void refresh();
  return {
    element: h(
      "div",
      {},
      h("p", {}, h("a", { href: "#/deployments" }, "All models")),
      errors.element,
      section(`Deployment of ${model}`, current),
      section("Deploy", deployForm(session, model, refresh, errors)),
    ),
    refresh,
  };
}
