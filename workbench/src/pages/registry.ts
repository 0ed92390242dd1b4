// Models and versions (semver, stage, lineage), promotion with every gate's result and
// reason, approvals, the audit timeline with its verification and an as-of view.
import type { Page, Session } from "../context";
import { ApiError, get, post, q, type Schemas } from "../http";
import { badge, errorBox, field, fill, fmt, h, link, pager, section, table } from "../ui";
import { enc } from "./common";

type Check = Schemas["CheckOut"];
const STAGES: Schemas["ModelStage"][] = ["development", "staging", "production", "archived"];

function checks(caption: string, rows: Check[]): HTMLElement {
  return table(
    caption,
    ["Gate", "Result", "Reason"],
    rows.map((c) => [c.gate, c.waived ? badge("waived") : c.passed ? badge("passed") : badge("refused"), c.reason]),
    "no gate on this edge.",
  );
}

function lineage(v: Schemas["ModelVersionPublic"]): string {
  const l = v.lineage;
  const parts = [
    l.datasets?.length ? `data ${l.datasets.map((d) => `${String(d.name ?? d.source ?? "?")}@${String(d.digest ?? "").slice(0, 8)}`).join(", ")}` : "",
    l.feature_service ? `features ${l.feature_service}` : "",
    l.code_version ? `code ${l.code_version.slice(0, 10)}` : "",
    l.parent_version ? `parent v${l.parent_version}` : "",
  ].filter(Boolean);
  return parts.join("; ") || "—";
}

export function registry(session: Session, params: URLSearchParams): Page {
  const model = params.get("model");
  if (!model) {
    return {
      element: section(
        "Models",
        pager<Schemas["ModelPublic"]>(
          (pageToken) => get(`/models${q({ page_size: 20, page_token: pageToken })}`),
          (items) =>
            table(
              "Registered models",
              ["Model", "Latest", "In production", "In staging", "Policy", "MLflow"],
              items.map((m) => [
                h("a", { href: `#/registry?model=${enc(m.name)}` }, m.name),
                m.latest_semver ? `v${m.latest_version} (${m.latest_semver})` : "—",
                (m.stages.production ?? []).map((v) => `v${v}`).join(", ") || "—",
                (m.stages.staging ?? []).map((v) => `v${v}`).join(", ") || "—",
                m.policy_source,
                link(m.mlflow_ui, "Open"),
              ]),
            ),
          "Models",
        ),
      ),
    };
  }

  const errors = errorBox();
  const versionsBox = h("div", {});
  const result = h("div", { "aria-live": "polite" });
  const approvalsBox = h("div", {});
  const auditBox = h("div", {});
  const versionInput = h("input", { type: "number", name: "version", min: 1, required: true });
  const stageInput = h("select", { name: "to" }, STAGES.map((s) => h("option", { value: s }, s)));
  const promoteForm = h(
    "form",
    { class: "toolbar", "aria-label": "Promote a version" },
    field("Version", versionInput),
    field("To stage", stageInput),
    h("button", { type: "submit", "data-write": true, disabled: !session.can("engineer") }, "Promote"),
  );
  promoteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const done = await post<Schemas["PromotionPublic"]>(`/models/${enc(model)}/promote`, {
        version: Number(versionInput.value),
        to: stageInput.value,
      });
      errors.clear();
      fill(result, 
        h("p", { class: "ok" }, `Promoted v${done.version.version} to ${done.version.stage}.`),
        checks("Gates of this promotion", done.checks),
      );
      await refresh();
    } catch (error) {
      errors.show(error);
      const context = error instanceof ApiError ? (error.body.context as { checks?: Check[] } | undefined) : undefined;
      fill(result, context?.checks ? checks("Gates of the refused promotion", context.checks) : "");
    }
  });
  const approveVersion = h("input", { type: "number", name: "version", min: 1, required: true });
  const approveComment = h("input", { type: "text", name: "comment" });
  const approveForm = h(
    "form",
    { class: "toolbar", "aria-label": "Approve a version" },
    field("Version", approveVersion),
    field("Comment", approveComment),
    h("button", { type: "submit", "data-write": true, disabled: !session.can("approver") }, "Approve for production"),
  );
  approveForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await post(`/models/${enc(model)}/approvals`, { version: Number(approveVersion.value), comment: approveComment.value });
      errors.clear();
      fill(result, h("p", { class: "ok" }, `Approved v${approveVersion.value}.`));
      await refresh();
    } catch (error) {
      errors.show(error);
    }
  });
  const asOf = h("input", { type: "datetime-local", name: "as_of", step: 1 });
  const auditForm = h("form", { class: "toolbar", "aria-label": "Audit as of" }, field("As of (local time)", asOf), h("button", { type: "submit" }, "Show"));
  auditForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void loadAudit();
  });
  const loadAudit = async () => {
    const when = asOf.value ? new Date(asOf.value).toISOString() : undefined;
    const audit = await get<Schemas["AuditPublic"]>(`/models/${enc(model)}/audit${q({ as_of: when })}`);
    const chain = audit.verification;
    fill(auditBox, 
      h(
        "p",
        { class: chain.valid ? "ok" : "error" },
        chain.valid ? `Audit chain verified: ${chain.events_checked} events, unbroken.` : `Audit chain broken at event ${chain.broken_at}: ${chain.reason}`,
      ),
      audit.stages_as_of
        ? h("p", {}, `Stages as of ${fmt.when(audit.as_of)}: ${Object.entries(audit.stages_as_of).map(([s, vs]) => `${s} ${(vs as number[]).map((v) => `v${v}`).join(", ")}`).join("; ") || "none"}`)
        : null,
      h(
        "ol",
        { class: "timeline", "aria-label": "Audit timeline" },
        audit.events.map((e) =>
          h("li", {}, h("time", { datetime: e.at }, fmt.when(e.at)), ` ${e.type}`, e.version ? ` v${e.version}` : "", ` by ${e.actor}`),
        ),
      ),
    );
  };
  const refresh = async () => {
    try {
      const detail = await get<Schemas["ModelDetail"]>(`/models/${enc(model)}`);
      errors.clear();
      fill(versionsBox, 
        table(
          "Versions",
          ["Version", "Semver", "Stage", "Metrics", "Lineage", "Registered", "MLflow"],
          detail.versions.map((v) => [
            `v${v.version}`,
            v.semver,
            badge(v.stage),
            Object.entries(v.metrics).slice(0, 4).map(([k, x]) => `${k}=${fmt.num(x)}`).join(", ") || "—",
            lineage(v),
            `${fmt.when(v.registered_at)} by ${v.registered_by}`,
            link(v.mlflow_ui, "Open"),
          ]),
        ),
      );
      fill(approvalsBox, 
        table(
          "Approvals",
          ["Version", "Approver", "At", "Comment"],
          detail.approvals.map((a) => [`v${a.version}`, a.approver, fmt.when(a.at), a.comment]),
        ),
      );
      await loadAudit();
    } catch (error) {
      errors.show(error);
    }
  };
  void refresh();
  return {
    element: h(
      "div",
      {},
      h("p", {}, h("a", { href: "#/registry" }, "All models")),
      section(`Model ${model}`, errors.element, versionsBox),
      section("Promote", promoteForm, result),
      section("Approve", approveForm, approvalsBox),
      section("Audit", auditForm, auditBox),
    ),
    refresh,
  };
}
