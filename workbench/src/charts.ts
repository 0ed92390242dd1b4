// Chart.js, registered with only what the pages draw (keeps the bundle small).
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
} from "chart.js";
import { h } from "./ui";

Chart.register(BarController, BarElement, CategoryScale, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip);
Chart.defaults.animation = false;

const PALETTE = ["#1f5fa8", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0e7490"];

/** A chart in a figure with a caption; the canvas gets a text alternative. */
function figure(caption: string, summary: string, config: ChartConfiguration): HTMLElement {
  const canvas = h("canvas", { role: "img", "aria-label": `${caption}. ${summary}` });
  const element = h("figure", { class: "chart" }, h("div", { class: "chart-box" }, canvas), h("figcaption", {}, caption));
  new Chart(canvas, config);
  return element;
}

export function lines(
  caption: string,
  series: { label: string; points: { x: number; y: number }[] }[],
  xLabel: string,
  yLabel: string,
): HTMLElement {
  const summary = series.map((s) => `${s.label}: ${s.points.length} points`).join("; ");
  return figure(caption, summary, {
    type: "line",
    data: {
      datasets: series.map((s, i) => ({
        label: s.label,
        data: s.points,
        borderColor: PALETTE[i % PALETTE.length],
        backgroundColor: PALETTE[i % PALETTE.length],
        pointRadius: 2,
      })),
    },
    options: {
      maintainAspectRatio: false,
      parsing: false,
      scales: { x: { type: "linear", title: { display: true, text: xLabel } }, y: { title: { display: true, text: yLabel } } },
    },
  });
}

/** An interval plot: each point's estimate with its confidence interval (error bars as lines). */
export function intervals(
  caption: string,
  points: { x: number; estimate: number; low: number; high: number }[],
  xLabel: string,
  yLabel: string,
): HTMLElement {
  const summary = points.length
    ? `latest estimate ${points[points.length - 1].estimate.toPrecision(3)}, interval ${points[points.length - 1].low.toPrecision(3)} to ${points[points.length - 1].high.toPrecision(3)}`
    : "no verdict yet";
  return figure(caption, summary, {
    type: "line",
    data: {
      datasets: [
        { label: "effect", data: points.map((p) => ({ x: p.x, y: p.estimate })), borderColor: PALETTE[0], backgroundColor: PALETTE[0] },
        { label: "interval low", data: points.map((p) => ({ x: p.x, y: p.low })), borderColor: PALETTE[1], borderDash: [4, 4], pointRadius: 0 },
        { label: "interval high", data: points.map((p) => ({ x: p.x, y: p.high })), borderColor: PALETTE[1], borderDash: [4, 4], pointRadius: 0 },
      ],
    },
    options: {
      maintainAspectRatio: false,
      parsing: false,
      scales: { x: { type: "linear", title: { display: true, text: xLabel } }, y: { title: { display: true, text: yLabel } } },
    },
  });
}

export function histogram(caption: string, labels: string[], reference: number[], current: number[]): HTMLElement {
  return figure(caption, `${labels.length} bins, reference against current`, {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "reference", data: reference, backgroundColor: PALETTE[0] },
        { label: "current", data: current, backgroundColor: PALETTE[1] },
      ],
    },
    options: { maintainAspectRatio: false, scales: { y: { title: { display: true, text: "share of rows" } } } },
  });
}

export function bars(caption: string, labels: string[], values: number[], yLabel: string): HTMLElement {
  return figure(caption, labels.map((l, i) => `${l}: ${values[i]}`).join(", "), {
    type: "bar",
    data: { labels, datasets: [{ label: yLabel, data: values, backgroundColor: PALETTE[0] }] },
    options: { maintainAspectRatio: false, plugins: { legend: { display: false } } },
  });
}
