// The public API, called with the user's bearer token (kept in sessionStorage: this
// browser tab's session only, never in a URL or a log).
import type { components } from "./api";

export type Schemas = components["schemas"];
export const BASE = "/api/v1/ml";
const TOKEN_KEY = "ml-workbench-token";

/** A problem+json answer: its `detail`, and the failing field where the server names one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly code: string,
    readonly fields: { field: string; message: string }[],
    readonly body: Record<string, unknown> = {},
  ) {
    super(detail);
  }
  /** The message for one field (e.g. "version"), if the server named it. */
  forField(name: string): string | undefined {
    return this.fields.find((f) => f.field === name || f.field.endsWith(`.${name}`))?.message;
  }
}

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (value: string): void => sessionStorage.setItem(TOKEN_KEY, value),
  clear: (): void => sessionStorage.removeItem(TOKEN_KEY),
};

async function problem(response: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    body = await response.json();
  } catch {
    /* not JSON: the status line is all there is */
  }
  const errors = Array.isArray(body.errors) ? (body.errors as Record<string, unknown>[]) : [];
  return new ApiError(
    response.status,
    String(body.detail ?? body.title ?? response.statusText),
    String(body.code ?? ""),
    errors.map((e) => ({ field: String(e.field ?? ""), message: String(e.message ?? e.msg ?? "") })),
    body,
  );
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const bearer = token.get();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await problem(response);
  if (response.status === 204) return undefined as T;
  const type = response.headers.get("content-type") ?? "";
  return (type.includes("json") ? await response.json() : await response.text()) as T;
}

export const get = <T>(path: string): Promise<T> => call<T>("GET", path);
export const post = <T>(path: string, body?: unknown): Promise<T> => call<T>("POST", path, body);
export const put = <T>(path: string, body?: unknown): Promise<T> => call<T>("PUT", path, body);
export const del = <T>(path: string): Promise<T> => call<T>("DELETE", path);

export const q = (params: Record<string, string | number | undefined | null>): string => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
};
