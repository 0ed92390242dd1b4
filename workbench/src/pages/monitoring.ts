// Drift per feature (reference against current histograms), alerts and their history,
// the monitoring policy and its retraining trigger.
import type { Page, Session } from "../context";
import { get, post, q, type Schemas } from "../http";
import { histogram } from "../charts";
import { action, badge, errorBox, fill, fmt, h, pager, section, table } from "../ui";
import { allModels, enc } from "./common";

type Alert = Schemas["AlertPublic"];

function alertsTable(caption: string, alerts: Alert[]): HTMLElement {
  return table(
    caption,
    ["Model", "Version", "State", "Features", "Opened", "Last seen", "Resolved", "Occurrences", "Delivery", "Retraining job"],
    alerts.map((a) => [
      h("a", { href: `#/monitoring?model=${enc(a.model)}` }, a.model),
      `v${a.version}`,
      badge(a.state, a.state === "open" ? "alert" : "resolved"),
      a.features.join(", "),
      fmt.when(a.opened_at),
      fmt.when(a.last_seen_at),
      fmt.when(a.resolved_at),
      String(a.occurrences),
      `${a.delivery}${a.delivery_detail ? `: ${a.delivery_detail}` : ""}`,
      a.retraining_job ? h("a", { href: `#/training?job=${enc(a.retraining_job)}` }, a.retraining_job) : "—",
    ]),
    "none.",
  );
}

function drift(d: Schemas["DriftOut"]): HTMLElement {
  const features = d.features ?? [];
  return h(
    "div",
    { class: "drift" },
    h("p", {}, `v${d.version}: window ${fmt.when(d.window.start)} – ${fmt.when(d.window.end)}, ${d.window.rows} rows; reference ${d.reference_source ?? (d.reference ? "set" : "missing")}. Drifted: ${(d.drifted ?? []).join(", ") || "none"}.`),
    table(
      `Drift of v${d.version} per feature`,
      ["Feature", "Kind", "Drifted", "PSI", "KS", "p-value", "Samples", "Missing", "Reason"],
      features.map((f) => [
        f.feature,
        f.kind,
        f.drifted ? badge("drifted", "alert") : badge("stable", "passed"),
        fmt.num(f.psi),
        fmt.num(f.ks_statistic),
        fmt.num(f.p_value),
        String(f.samples),
        fmt.pct(f.missing_rate),
        f.reason,
      ]),
    ),
    h(
      "div",
      { class: "charts" },
      features
        .filter((f) => f.bin_labels.length)
        .map((f) => histogram(`${f.feature}: reference against current (v${d.version})`, f.bin_labels, f.reference_hist, f.current_hist)),
    ),
  );
}

export function monitoring(session: Session, params: URLSearchParams): Page {
  const model = params.get("model");
  const errors = errorBox();
  if (!model) {
    const models = h("div", {}, h("p", {}, "Loading…"));
    void allModels().then(
      (all) => fill(models, h("ul", {}, all.map((m) => h("li", {}, h("a", { href: `#/monitoring?model=${enc(m.name)}` }, m.name))))),
      (error) => errors.show(error),
    );
    return {
      element: h(
        "div",
        {},
        errors.element,
        section(
          "Alerts",
          pager<Alert>((pageToken) => get(`/monitoring/alerts${q({ page_size: 25, page_token: pageToken })}`), (items) => alertsTable("Drift alerts, newest first", items), "Alerts"),
        ),
        section("Models", models),
      ),
    };
  }
  const body = h("div", { "aria-live": "polite" }, h("p", {}, "Loading…"));
  const refresh = async () => {
    try {
      const state = await get<Schemas["ModelMonitoring"]>(`/models/${enc(model)}/monitoring`);
      errors.clear();
      const policy = state.policy;
      fill(body, 
        table(
          "Live statistics per variant",
          ["Variant", "Requests", "Error rate", "Requests/s", "Latency p50 / p99", "Quality (outcomes)"],
          state.variants.map((v) => [
            v.variant,
            String(v.requests),
            fmt.pct(v.error_rate),
            fmt.num(v.request_rate_per_s),
            `${fmt.num(v.latency_ms.p50)} / ${fmt.num(v.latency_ms.p99)} ms`,
            `${fmt.num(v.quality.mean)} (${v.quality.outcomes})`,
          ]),
        ),
        alertsTable("Open alerts", state.open_alerts),
        h("h3", {}, "Drift"),
        state.drift.length ? state.drift.map(drift) : h("p", {}, "No drift evaluation yet."),
        h("h3", {}, "Policy"),
        h(
          "dl",
          {},
          h("dt", {}, "Window"),
          h("dd", {}, `${policy.window_s} s, sample rate ${policy.sample_rate}, cool-down ${policy.cooldown_s} s (${policy.own ? "own" : "default"} policy)`),
          h("dt", {}, "Thresholds"),
          h("dd", {}, policy.thresholds ? Object.entries(policy.thresholds).map(([k, v]) => `${k}=${v}`).join(", ") : "—"),
          h("dt", {}, "Retraining trigger"),
          h("dd", {}, policy.retrain ? JSON.stringify(policy.retrain) : "none"),
          h("dt", {}, "Webhook"),
          h("dd", {}, policy.webhook_url ? "set" : "none"),
        ),
      );
    } catch (error) {
      errors.show(error);
    }
  };
  const evaluate = action("Evaluate drift now", session.can("engineer"), async () => {
    try {
      await post(`/models/${enc(model)}/monitoring/evaluate`);
      await refresh();
    } catch (error) {
      errors.show(error);
    }
  });
  void refresh();
  return {
    element: h(
      "div",
      {},
      h("p", {}, h("a", { href: "#/monitoring" }, "All alerts")),
      errors.element,
      h("div", { class: "toolbar" }, evaluate),
      section(`Monitoring of ${model}`, body),
      section(
        "Alert history",
        pager<Alert>((pageToken) => get(`/monitoring/alerts${q({ model, page_size: 25, page_token: pageToken })}`), (items) => alertsTable("Alerts of this model", items), "Alert history"),
      ),
    ),
    refresh,
  };
}
