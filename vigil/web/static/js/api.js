// The API from the browser: every request carries the key (X-API-Key), every error becomes an
// ApiError with the server's one-line message, and the live stream is read with fetch(),
// because EventSource cannot send a header.

const PREFIX = "/api/v1";
const KEY_STORAGE = "vigil.api_key";
const RECONNECT_MS = [1000, 2000, 5000, 10000];

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function signIn(key) {
  sessionStorage.setItem(KEY_STORAGE, key.trim());
}

export function signOut() {
  sessionStorage.removeItem(KEY_STORAGE);
  window.dispatchEvent(new CustomEvent("vigil:signed-out"));
}

function url(path) {
  return path.startsWith(PREFIX) ? path : PREFIX + path;
}

async function send(path, { method = "GET", json, form, signal, headers = {} } = {}) {
  const init = { method, signal, headers: { ...headers, "X-API-Key": apiKey() ?? "" } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(url(path), init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "the server cannot be reached; is `vigil serve` running?");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  let code = "http_" + response.status;
  let message = `the server answered ${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    // not our error shape (a proxy's page): keep the status line
  }
  if (response.status === 401) {
    signOut(); // the key is unknown or revoked: ask for another
  } else if (response.status === 403) {
    message = `this key may only read (${message})`;
  }
  return new ApiError(response.status, code, message);
}

/** The JSON answer of a request; throws ApiError. */
export async function request(path, options) {
  const response = await send(path, options);
  return response.status === 204 ? null : response.json();
}

/** An object URL of an image the API serves, or null when there is none (404). */
export async function imageUrl(path, signal) {
  try {
    const response = await send(path, { signal });
    return URL.createObjectURL(await response.blob());
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/**
 * Follow a Server-Sent Events route until `signal` aborts, reconnecting with Last-Event-ID.
 *
 * onEvent(data, id) gets each message's parsed JSON; onOpen() runs once the server has
 * subscribed us (its first comment line); onError(error) on each failure before a retry.
 */
export async function follow(path, { signal, onEvent, onOpen = () => {}, onError = () => {} }) {
  let lastId = null;
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await send(path, { signal, headers });
      attempt = 0;
      for await (const message of messages(response.body, signal)) {
        if (message.comment !== undefined) {
          if (message.comment === "subscribed") onOpen();
          continue;
        }
        if (message.id) lastId = message.id;
        if (message.data) onEvent(JSON.parse(message.data), message.id);
      }
    } catch (error) {
      if (signal.aborted || error.name === "AbortError") return;
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) throw error;
      onError(error);
    }
    const wait = RECONNECT_MS[Math.min(attempt, RECONNECT_MS.length - 1)];
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** The messages of an SSE body: {id, event, data} or {comment}, per the HTML standard's parser. */
export async function* messages(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
  let buffer = "";
  let message = { data: [] };
  while (true) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop(); // an incomplete line waits for the next chunk
    for (const line of lines) {
      if (line === "") {
        if (message.data.length) yield { id: message.id, event: message.event, data: message.data.join("\n") };
        message = { data: [] };
      } else if (line.startsWith(":")) {
        yield { comment: line.slice(1).trim() };
      } else {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") message.data.push(text);
        else if (field === "id") message.id = text;
        else if (field === "event") message.event = text;
      }
    }
  }
}
