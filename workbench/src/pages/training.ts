// Submit a job from a sample config, watch its progress and streamed log, cancel it;
// a tuning job's trials as a table and a chart.
import type { Page, Session } from "../context";
import { BASE, get, post, q, token, type Schemas } from "../http";
import { lines } from "../charts";
import samples from "../samples.json";
import { action, badge, errorBox, field, fill, fmt, h, link, markFields, section, table } from "../ui";
import { enc } from "./common";

type Job = Schemas["JobPublic"];
const ENDED = new Set(["succeeded", "failed", "stopped"]);

function progress(job: Job): HTMLElement | string {
  const p = job.progress;
  if (!p) return "—";
  const max = p.total ?? Math.max(p.done, 1);
  return h(
    "span",
    { class: "progress" },
    h("progress", { max, value: p.done, "aria-label": `${job.job_id} progress` }),
    ` ${p.done}/${p.total ?? "?"} ${p.unit}`,
  );
}

export function training(session: Session, params: URLSearchParams): Page {
  const errors = errorBox();
  const choose = h("select", { name: "sample" }, samples.map((s) => h("option", { value: s.name }, s.name)));
  const spec = h("textarea", { name: "spec", rows: 16, spellcheck: "false", class: "code" });
  const fillSpec = () => {
    const sample = samples.find((s) => s.name === choose.value) ?? samples[0];
    spec.value = JSON.stringify(sample.spec, null, 2);
  };
  choose.addEventListener("change", fillSpec);
  fillSpec();
  const submit = h("button", { type: "submit", "data-write": true, disabled: !session.can("engineer") }, "Submit job");
  const form = h(
    "form",
    { "aria-label": "Submit a job" },
    field("Sample config", choose),
    field("Job spec (JSON)", spec, "Edit before submitting; the server validates every field."),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body: unknown;
    try {
      body = JSON.parse(spec.value);
    } catch (error) {
      errors.show(`The spec is not JSON: ${(error as Error).message}`);
      return;
    }
    try {
      const job = await post<Job>("/training/submit", body);
      errors.clear();
      markFields(form, null);
      location.hash = `#/training?job=${enc(job.job_id)}`;
    } catch (error) {
      errors.show(error);
      markFields(form, error);
    }
  });

  const jobsBody = h("div", {}, h("p", {}, "Loading…"));
  const detail = h("div", {});
  const selected = params.get("job");
  let logAbort: AbortController | null = null;
  let logStarted = false;

  const streamLog = async (jobId: string, into: HTMLElement) => {
    logAbort?.abort();
    logAbort = new AbortController();
    const response = await fetch(`${BASE}/training/${enc(jobId)}/logs?follow=true`, {
      headers: { Authorization: `Bearer ${token.get()}` },
      signal: logAbort.signal,
    });
    if (!response.ok || !response.body) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done || !into.isConnected) break;
      into.textContent += value;
      into.scrollTop = into.scrollHeight;
    }
  };

  const trials = async (job: Job): Promise<HTMLElement | null> => {
    const found = job.mlflow_ui?.match(/experiments\/([^/]+)\/runs\/([^/?#]+)/);
    if (job.kind !== "tune" || !found) return null;
    const [, experimentId, parent] = found;
    const page: Schemas["Page_RunPublic_"] = await get(
      `/experiments/${enc(experimentId)}/runs${q({ filter: `tags.\`mlflow.parentRunId\` = '${parent}'`, page_size: 100 })}`,
    );
    const keys = Object.keys(page.items[0]?.metrics ?? {}).sort();
    const metric = keys.includes("val_loss") ? "val_loss" : keys[0];
    return h(
      "div",
      {},
      table(
        "Trials",
        ["Trial", "Status", "Params", "Metrics"],
        page.items.map((run) => [
          run.name ?? run.id,
          run.status,
          Object.entries(run.params).map(([k, v]) => `${k}=${v}`).join(", "),
          Object.entries(run.metrics).map(([k, v]) => `${k}=${fmt.num(v.value)}`).join(", "),
        ]),
      ),
      metric
        ? lines(`Trials: ${metric}`, [{ label: metric, points: page.items.map((run, i) => ({ x: i + 1, y: Number(run.metrics[metric]?.value) })) }], "trial", metric)
        : null,
    );
  };

  const showJob = async (jobId: string) => {
    const job = await get<Job>(`/training/${enc(jobId)}`);
    if (!logStarted) {
      logStarted = true;
      const log = h("pre", { class: "log", tabindex: "0", role: "log", "aria-label": `Log of ${jobId}` });
      fill(detail, 
        h("h3", {}, `Job ${jobId}`),
        h("div", { class: "job-status" }),
        h("div", { class: "job-trials" }),
        h("h4", {}, "Log"),
        log,
      );
      if (ENDED.has(job.state)) {
        void get<string>(`/training/${enc(jobId)}/logs`).then((text) => (log.textContent = text), () => undefined);
      } else {
        void streamLog(jobId, log).catch(() => undefined);  // until the job ends
      }
    }
    const status = detail.querySelector(".job-status") as HTMLElement;
    fill(status, 
      h(
        "dl",
        {},
        h("dt", {}, "State"),
        h("dd", { "data-state": job.state }, badge(job.state)),
        h("dt", {}, "Progress"),
        h("dd", {}, progress(job)),
        h("dt", {}, "Metrics"),
        h("dd", {}, Object.entries(job.metrics).map(([k, v]) => `${k}=${fmt.num(v)}`).join(", ") || "—"),
        h("dt", {}, "Registered"),
        h("dd", {}, job.registered ? `${job.registered.model} version ${job.registered.version}` : "—"),
        h("dt", {}, "Message"),
        h("dd", {}, job.message ?? "—"),
      ),
      job.mlflow_ui ? link(job.mlflow_ui, "Run in the MLflow UI") : null,
      " ",
      action("Cancel job", session.can("engineer") && !ENDED.has(job.state), async () => {
        try {
          await post(`/training/${enc(jobId)}/cancel`);
          await showJob(jobId);
        } catch (error) {
          errors.show(error);
        }
      }),
    );
    const trialBox = detail.querySelector(".job-trials") as HTMLElement;
    const shown = await trials(job).catch(() => null);
    fill(trialBox, shown ?? "");
  };

  const refresh = async () => {
    try {
      const jobs = await get<Job[]>("/training");
      fill(jobsBody, 
        table(
          "Jobs",
          ["Job", "Kind", "State", "Progress", "Submitted by", "Started", "Ended"],
          jobs.map((job) => [
            h("a", { href: `#/training?job=${enc(job.job_id)}` }, job.job_id),
            job.kind ?? "—",
            badge(job.state),
            progress(job),
            job.submitted_by ?? "—",
            fmt.when(job.started_at),
            fmt.when(job.ended_at),
          ]),
        ),
      );
      if (selected) await showJob(selected);
    } catch (error) {
      errors.show(error);
    }
  };
  void refresh();
  return {
    element: h("div", {}, errors.element, section("Submit a job", form), section("Jobs", jobsBody, detail)),
    refresh,
  };
}
