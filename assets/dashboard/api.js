// Calls to the aistack admin API. Admin actions ride on the login cookie (HttpOnly: the page never sees it).

export class ApiError extends Error {}

export async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { text }; }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `${method} ${path}: HTTP ${response.status}`;
    throw new ApiError(message);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const del = (path) => api("DELETE", path);
