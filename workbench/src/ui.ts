// Small DOM helpers: elements, tables, forms, errors, pagination, role-aware controls.
import { ApiError } from "./http";

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value as EventListener);
    } else if (value === true) {
      element.setAttribute(key, "");
    } else {
      element.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export const fmt = {
  num: (value: number | null | undefined, digits = 3): string =>
    value === null || value === undefined || Number.isNaN(value)
      ? "—"
      : Math.abs(value) >= 1000
        ? value.toFixed(0)
        : Number(value.toPrecision(digits)).toString(),
  pct: (value: number | null | undefined): string =>
    value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`,
  when: (value: string | null | undefined): string =>
    value ? new Date(value).toLocaleString(undefined, { hour12: false }) : "—",
};

/** A table with a caption (its accessible name), a header row and the rows. */
export function table(caption: string, headers: string[], rows: Child[][], empty = "None yet."): HTMLElement {
  if (!rows.length) return h("p", { class: "empty" }, `${caption}: ${empty}`);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))),
    ),
  );
}

export function section(title: string, ...children: (Child | Child[])[]): HTMLElement {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

/** Where a page shows what went wrong: the problem's detail, and the field it names. */
export function errorBox(): { element: HTMLElement; show: (error: unknown) => void; clear: () => void } {
  const element = h("div", { class: "error", role: "alert", hidden: true });
  return {
    element,
    show(error: unknown) {
      element.hidden = false;
      if (error instanceof ApiError) {
        const fields = error.fields.map((f) => `${f.field}: ${f.message}`);
        fill(element, 
          h("strong", {}, `${error.status} ${error.code || "error"}: `),
          error.detail,
          fields.length ? h("ul", {}, fields.map((text) => h("li", { class: "field-error" }, text))) : null,
        );
      } else {
        element.textContent = String(error instanceof Error ? error.message : error);
      }
    },
    clear() {
      element.hidden = true;
      fill(element);
    },
  };
}

/** A labelled form control. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("small", { id: hintId }, hint) : null,
  );
}

/** Show a server's field errors on the form's controls (by their `name`). */
export function markFields(form: HTMLElement, error: unknown): void {
  for (const old of form.querySelectorAll(".field-message")) old.remove();
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  if (!(error instanceof ApiError)) return;
  for (const { field: name, message } of error.fields) {
    const leaf = name.split(".").pop() ?? name;
    const control = form.querySelector<HTMLElement>(`[name="${leaf}"]`) ?? form.querySelector<HTMLElement>("[name=spec]");
    if (!control) continue;
    control.setAttribute("aria-invalid", "true");
    control.insertAdjacentElement("afterend", h("p", { class: "field-message" }, `${name}: ${message}`));
  }
}

/** A button for a write (`data-write`): disabled, with the reason, when the caller's roles may not do it. */
export function action(label: string, allowed: boolean, onclick: () => void | Promise<void>, attrs: Attrs = {}): HTMLButtonElement {
  const button = h(
    "button",
    { type: "button", "data-write": true, ...attrs, disabled: !allowed, title: allowed ? null : "Your role may not do this" },
    label,
  );
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await onclick();
    } finally {
      button.disabled = !allowed;
    }
  });
  return button;
}

/** Page through a list endpoint that answers `{items, next_page_token}`. */
export function pager<T>(
  load: (pageToken: string | null) => Promise<{ items: T[]; next_page_token?: string | null }>,
  render: (items: T[]) => HTMLElement,
  label: string,
): HTMLElement {
  const body = h("div", {});
  const tokens: (string | null)[] = [null];
  let index = 0;
  const status = h("span", { class: "page-status", "aria-live": "polite" });
  const previous = h("button", { type: "button", disabled: true }, "Previous");
  const next = h("button", { type: "button", disabled: true }, "Next");
  const errors = errorBox();
  const show = async () => {
    try {
      const page = await load(tokens[index]);
      errors.clear();
      fill(body, render(page.items));
      tokens[index + 1] = page.next_page_token ?? null;
      previous.disabled = index === 0;
      next.disabled = !page.next_page_token;
      status.textContent = `Page ${index + 1}`;
    } catch (error) {
      errors.show(error);
    }
  };
  previous.addEventListener("click", () => {
    index = Math.max(0, index - 1);
    void show();
  });
  next.addEventListener("click", () => {
    index += 1;
    void show();
  });
  void show();
  return h("div", {}, errors.element, body, h("nav", { class: "pager", "aria-label": `${label} pages` }, previous, status, next));
}

export function badge(text: string, kind: string = text): HTMLElement {
  return h("span", { class: `badge badge-${kind.replace(/[^a-z_]/gi, "")}` }, text);
}

export function link(href: string, text: string): HTMLAnchorElement {
  return h("a", { href, target: "_blank", rel: "noopener" }, text);
}

/** Replace an element's children (nulls and falses left out, arrays flattened). */
export function fill(element: Element, ...children: (Child | Child[])[]): void {
  element.replaceChildren(
    ...children.flat().filter((c): c is Node | string | number => c !== null && c !== undefined && c !== false).map((c) => (c instanceof Node ? c : String(c))),
  );
}
