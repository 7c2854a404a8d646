// The API client of the page: every request goes to this origin, with the key in a header.
// Nothing here knows about the page; app.js decides what an answer means to a person.

const KEY_STORAGE = "spillway.apiKey";

export class ApiError extends Error {
  /** An answer of 4xx/5xx: its status and the API's {"error": {code, message, field}}. */
  constructor(status, error, headers) {
    super(error.message || `the API answered ${status}`);
    this.status = status;
    this.code = error.code || "error";
    this.field = error.field || null;
    this.retryAfter = headers.get("Retry-After");
  }
}

export class NetworkError extends Error {}

export const keyStore = {
  get: () => sessionStorage.getItem(KEY_STORAGE),
  set: (key) => sessionStorage.setItem(KEY_STORAGE, key),
  clear: () => sessionStorage.removeItem(KEY_STORAGE),
};

// Integers are sent as JSON numbers with every digit: a bigint filter such as
// 9007199254740993 is past what a JavaScript number holds exactly, so the form keeps integers as
// BigInt and they are written into the JSON text as they are.
const BIGINT_MARK = "\u0000bigint:";

export function toJson(value) {
  const text = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? BIGINT_MARK + v.toString() : v));
  return text.replace(/"\\u0000bigint:(-?[0-9]+)"/g, "$1");
}

let clockOffsetMs = 0; // the server's clock minus this browser's, from the Date header

/** Now, on the server's clock (elapsed times are computed against its timestamps). */
export function serverNow() {
  return Date.now() + clockOffsetMs;
}

function noteServerClock(headers) {
  const date = Date.parse(headers.get("Date") || "");
  if (!Number.isNaN(date)) clockOffsetMs = date + 500 - Date.now(); // Date has whole seconds
}

/**
 * One request. Resolves to the Response for 2xx (the caller reads it: JSON, or a file for an
 * inline export); rejects with ApiError for 4xx/5xx and NetworkError when nothing answered.
 */
export async function request(method, path, { body, headers = {} } = {}) {
  const key = keyStore.get();
  const init = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store" };
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = toJson(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    throw new NetworkError(`the API did not answer (${exc.message})`);
  }
  noteServerClock(response.headers);
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      error = { message: `the API answered ${response.status} ${response.statusText}` };
    }
    throw new ApiError(response.status, error, response.headers);
  }
  return response;
}

export async function getJson(path) {
  return (await request("GET", path)).json();
}

export const api = {
  datasets: () => getJson("/datasets"),
  exports: (cursor) => getJson(`/exports?limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
  export: (id) => getJson(`/exports/${encodeURIComponent(id)}`),
  cancel: async (id) => (await request("POST", `/exports/${encodeURIComponent(id)}/cancel`)).json(),
  create: (spec, idempotencyKey) =>
    request("POST", "/exports", { body: spec, headers: { "Idempotency-Key": idempotencyKey } }),
};
