// Cameras: each source's state, frame rate, backlog and last error, refreshed every few seconds.
// GET /cameras (GET /status's sources on a server without it).

import { ApiError, request } from "./api.js";
import { el, showError, when } from "./ui.js";

const REFRESH_MS = 3000;

export function show(view) {
  const controller = new AbortController();
  const list = el("ul", { class: "cards cameras", "aria-label": "Cameras" });
  const updated = el("p", { class: "state" }, "Loading…");
  view.append(el("h2", {}, "Cameras"), updated, list);
  let timer = null;

  async function refresh() {
    try {
      const cameras = await readCameras(controller.signal);
      list.replaceChildren(...cameras.map(card));
      if (!cameras.length) list.append(el("li", {}, "No camera has reported yet: is `vigil run` running?"));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshed every ${REFRESH_MS / 1000} s.`;
    } catch (error) {
      showError(error);
    }
    if (!controller.signal.aborted) timer = setTimeout(refresh, REFRESH_MS);
  }
  refresh();
  return () => {
    controller.abort();
    clearTimeout(timer);
  };
}

/** Cameras as {name, state, fps, backlog, last_error, since (ISO)}, from either route. */
async function readCameras(signal) {
  let answer;
  try {
    answer = await request("/cameras", { signal });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    const status = await request("/status", { signal }); // a server without GET /cameras
    answer = {
      items: Object.entries(status.sources ?? {}).map(([name, source]) => ({ name, ...source })),
      bus_waiting: status.bus?.waiting,
    };
  }
  return answer.items.map((camera) => ({
    name: camera.name,
    state: camera.state,
    fps: camera.fps ?? null,
    backlog: camera.backlog ?? answer.bus_waiting ?? null, // the bus is shared by every camera
    last_error: camera.last_error ?? camera.reason ?? null,
    since: typeof camera.since === "number" ? new Date(camera.since * 1000).toISOString() : camera.since,
  }));
}

function card(camera) {
  const number = (value, digits) => (value === null || value === undefined ? "—" : Number(value).toFixed(digits));
  return el(
    "li",
    { class: `camera state-${camera.state}` },
    el("h3", {}, camera.name),
    el(
      "dl",
      {},
      el("dt", {}, "State"),
      el("dd", {}, camera.state ?? "—"),
      el("dt", {}, "Frames/s"),
      el("dd", {}, number(camera.fps, 1)),
      el("dt", {}, "Backlog (all cameras)"),
      el("dd", {}, number(camera.backlog, 0)),
      el("dt", {}, "Last error"),
      el("dd", {}, camera.last_error || "none"),
      camera.since ? [el("dt", {}, "Since"), el("dd", {}, when(camera.since))] : null,
    ),
  );
}
