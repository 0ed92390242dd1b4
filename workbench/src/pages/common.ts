// What several pages read: the registered models (every page of them), a model's deployment.
import { ApiError, get, q, type Schemas } from "../http";

export async function allModels(): Promise<Schemas["ModelPublic"][]> {
  const models: Schemas["ModelPublic"][] = [];
  let pageToken: string | null | undefined = null;
  do {
    const page: Schemas["Page_ModelPublic_"] = await get(`/models${q({ page_size: 100, page_token: pageToken })}`);
    models.push(...page.items);
    pageToken = page.next_page_token;
  } while (pageToken);
  return models;
}

/** The model's deployment, or null when it has none (404). */
export async function deploymentOf(model: string): Promise<Schemas["DeploymentPublic"] | null> {
  try {
    return await get<Schemas["DeploymentPublic"]>(`/models/${encodeURIComponent(model)}/deployment`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export const enc = encodeURIComponent;
