// The ML Workbench shell: sign-in, navigation (hash routes), live refresh of the page.
import "./style.css";
import { Session, type Page } from "./context";
import { ApiError, get, token, type Schemas } from "./http";
import { errorBox, field, fill, h } from "./ui";
import { overview } from "./pages/overview";
import { features } from "./pages/features";
import { training } from "./pages/training";
import { experiments } from "./pages/experiments";
import { registry } from "./pages/registry";
import { deployments } from "./pages/deployments";
import { monitoring } from "./pages/monitoring";

const PAGES: { path: string; title: string; build: (session: Session, params: URLSearchParams) => Page }[] = [
  { path: "overview", title: "Overview", build: overview },
  { path: "features", title: "Features", build: features },
  { path: "training", title: "Training", build: training },
  { path: "experiments", title: "Experiments", build: experiments },
  { path: "registry", title: "Registry", build: registry },
  { path: "deployments", title: "Deployments", build: deployments },
  { path: "monitoring", title: "Monitoring", build: monitoring },
];
const REFRESH_MS = 5000;

const root = document.getElementById("app") as HTMLElement;
let timer: number | undefined;

function signIn(message?: string): void {
  window.clearInterval(timer);
  const input = h("input", { type: "password", name: "token", autocomplete: "off", required: true, spellcheck: "false" });
  const errors = errorBox();
  if (message) errors.show(message);
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "ML Workbench"),
    h("p", {}, "Sign in with a service token. It is kept for this browser tab's session only."),
    field("Service token", input, "An API token (from the service's admin or `ml tokens create`)"),
    errors.element,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    token.set(input.value.trim());
    try {
      await start();
    } catch (error) {
      token.clear();
      errors.show(error);
    }
  });
  fill(root, h("main", { id: "main" }, form));
  input.focus();
}

async function start(): Promise<void> {
  const caller = await get<Schemas["Caller"]>("/auth/me");
  const session = new Session(caller);
  window.onhashchange = () => render(session);
  if (!location.hash) history.replaceState(null, "", "#/overview");
  render(session);
}

function render(session: Session): void {
  window.clearInterval(timer);
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const current = PAGES.find((page) => page.path === path) ?? PAGES[0];
  const nav = h(
    "nav",
    { "aria-label": "Workbench" },
    h(
      "ul",
      {},
      PAGES.map((page) =>
        h("li", {}, h("a", { href: `#/${page.path}`, "aria-current": page === current ? "page" : null }, page.title)),
      ),
    ),
  );
  const signOut = h("button", { type: "button", class: "link" }, "Sign out");
  signOut.addEventListener("click", () => {
    token.clear();
    window.onhashchange = null;
    signIn();
  });
  const header = h(
    "header",
    {},
    h("a", { class: "skip", href: "#main" }, "Skip to content"),
    h("span", { class: "brand" }, "ML Workbench"),
    nav,
    h("span", { class: "who" }, `${session.caller.name} (${session.caller.roles.join(", ")})`, signOut),
  );
  const page = current.build(session, new URLSearchParams(query));
  const main = h("main", { id: "main", tabindex: "-1" }, h("h1", {}, current.title), page.element);
  fill(root, header, main);
  document.title = `${current.title} · ML Workbench`;
  if (page.refresh) {
    timer = window.setInterval(() => {
      if (!document.hidden) void page.refresh?.().catch(() => undefined);
    }, REFRESH_MS);
  }
}

if (token.get()) {
  start().catch((error) => {
    token.clear();
    signIn(error instanceof ApiError ? error.detail : String(error));
  });
} else {
  signIn();
}
