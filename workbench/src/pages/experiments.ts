// Runs with filter and sort; pick 2-5 to compare side by side (metric histories charted,
// differing parameters highlighted); links into the MLflow UI.
import type { Page, Session } from "../context";
import { get, q, type Schemas } from "../http";
import { lines } from "../charts";
import { errorBox, field, fill, fmt, h, link, pager, section, table } from "../ui";
import { enc } from "./common";

type Run = Schemas["RunPublic"];
const MAX_COMPARED = 5;

export function experiments(_session: Session, params: URLSearchParams): Page {
  const experimentId = params.get("experiment");
  if (!experimentId) {
    const list = pager<Schemas["ExperimentPublic"]>(
      (pageToken) => get(`/experiments${q({ page_size: 20, page_token: pageToken })}`),
      (items) =>
        table(
          "Experiments",
          ["Experiment", "Created by", "Created", "MLflow"],
          items.map((e) => [
            h("a", { href: `#/experiments?experiment=${enc(e.id)}` }, e.name),
            e.created_by ?? "—",
            fmt.when(e.created_at),
            link(e.links.mlflow_ui, "Open in MLflow"),
          ]),
        ),
      "Experiments",
    );
    return { element: section("Experiments", list) };
  }

  const errors = errorBox();
  const filter = h("input", { type: "text", name: "filter", value: params.get("filter") ?? "", placeholder: "metrics.accuracy > 0.8" });
  const order = h("input", { type: "text", name: "order_by", value: params.get("order_by") ?? "", placeholder: "metrics.accuracy DESC" });
  const chosen = new Set<string>();
  const compareButton = h("button", { type: "button", disabled: true }, "Compare selected");
  const chosenStatus = h("span", { role: "status" }, "Select 2 to 5 runs.");
  const comparison = h("div", {});
  const updateChosen = () => {
    compareButton.disabled = chosen.size < 2 || chosen.size > MAX_COMPARED;
    chosenStatus.textContent = `${chosen.size} selected (2 to ${MAX_COMPARED}).`;
  };
  const runsBox = h("div", {});
  const loadRuns = () => {
    fill(runsBox, 
      pager<Run>(
        (pageToken) =>
          get(
            `/experiments/${enc(experimentId)}/runs${q({ filter: filter.value, order_by: order.value, page_size: 25, page_token: pageToken })}`,
          ),
        (runs) => {
          const metricKeys = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort().slice(0, 4);
          return table(
            "Runs",
            ["Compare", "Run", "Status", "Started", ...metricKeys, "MLflow"],
            runs.map((run) => {
              const box = h("input", { type: "checkbox", "aria-label": `Compare ${run.name ?? run.id}`, checked: chosen.has(run.id) });
              box.addEventListener("change", () => {
                if (box.checked) chosen.add(run.id);
                else chosen.delete(run.id);
                updateChosen();
              });
              return [
                box,
                run.name ?? run.id,
                run.status,
                fmt.when(run.start_time),
                ...metricKeys.map((key) => fmt.num(run.metrics[key]?.value)),
                link(run.links.mlflow_ui, "Open"),
              ];
            }),
          );
        },
        "Runs",
      ),
    );
  };
  const filters = h("form", { class: "toolbar", "aria-label": "Filter runs" }, field("Filter (MLflow syntax)", filter), field("Sort by", order), h("button", { type: "submit" }, "Apply"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    loadRuns();
  });
  compareButton.addEventListener("click", async () => {
    try {
      const ids = [...chosen];
      const result = await get<Schemas["RunComparisonPublic"]>(`/experiments/${enc(experimentId)}/runs/compare${q({ run_ids: ids.join(",") })}`);
      const names = Object.fromEntries(result.runs.map((r) => [r.id, r.name ?? r.id]));
      const charts = [];
      for (const row of result.metrics) {
        const series = [];
        for (const id of result.run_ids) {
          const history = await get<Schemas["MetricHistory"]>(`/experiments/${enc(experimentId)}/runs/${enc(id)}/metrics/${enc(row.key)}`);
          series.push({ label: names[id], points: history.points.map((p) => ({ x: p.step, y: p.value })) });
        }
        charts.push(lines(`${row.key} by step`, series, "step", row.key));
      }
      errors.clear();
      fill(comparison, 
        h("h3", {}, "Comparison"),
        table(
          "Parameters (differing ones highlighted)",
          ["Parameter", ...result.run_ids.map((id) => names[id])],
          result.params.map((row) => [
            row.differs ? h("mark", {}, row.key) : row.key,
            ...result.run_ids.map((id) => (row.differs ? h("mark", {}, row.values[id] ?? "—") : row.values[id] ?? "—")),
          ]),
        ),
        table(
          "Metrics (best marked)",
          ["Metric", "Goal", ...result.run_ids.map((id) => names[id])],
          result.metrics.map((row) => [
            row.key,
            row.goal,
            ...result.run_ids.map((id) => {
              const text = fmt.num(row.values[id]);
              return row.best_run_ids.includes(id) ? h("strong", {}, `${text} (best)`) : text;
            }),
          ]),
        ),
        h("div", { class: "charts" }, charts),
      );
    } catch (error) {
      errors.show(error);
    }
  });
  loadRuns();
  return {
    element: h(
      "div",
      {},
      h("p", {}, h("a", { href: "#/experiments" }, "All experiments")),
      section(`Runs of experiment ${experimentId}`, filters, errors.element, runsBox, h("div", { class: "toolbar" }, compareButton, chosenStatus)),
      comparison,
    ),
  };
}
