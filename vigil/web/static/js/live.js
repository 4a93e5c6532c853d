// Live: events as they happen, newest first, optionally of one camera. The stream is
// subscribed first and the recent past read after, so nothing falls between the two; an event
// seen twice (past and live) is shown once, by its event_id.

import { ApiError, follow, imageUrl, request } from "./api.js";
import { announce, busy, el, showError, when } from "./ui.js";

const RECENT = 50;
const KEPT = 200; // rows on the page at most; older ones go, with their thumbnails
const PAGE = 1000;
const PAGES_AT_MOST = 20;
const HOUR_MS = 3600 * 1000;

export function show(view, camera) {
  const controller = new AbortController();
  const signal = controller.signal;
  const list = el("ol", { class: "events", "aria-label": "Events, newest first" });
  const state = el("p", { class: "state" }, "Connecting…");
  const shown = new Set();
  const urls = [];

  const select = el(
    "select",
    { id: "camera-filter", onchange: () => (location.hash = select.value ? `#/live/${encodeURIComponent(select.value)}` : "#/live") },
    el("option", { value: "" }, "All cameras"),
  );
  view.append(
    el("h2", {}, "Live events"),
    el("div", { class: "toolbar" }, el("label", { for: "camera-filter" }, "Camera"), select),
    state,
    list,
  );
  if (camera) noteCamera(select, camera);
  select.value = camera ?? "";
  fillCameras(select, signal);

  function add(event, live) {
    noteCamera(select, event.camera);
    if (shown.has(event.event_id + event.type)) return;
    shown.add(event.event_id + event.type);
    const row = render(event, signal, urls);
    if (live) list.prepend(row);
    else list.append(row);
    while (list.children.length > KEPT) list.lastElementChild.remove();
    if (!live) return;
    state.textContent = "Live: new events appear at the top.";
    announce(`${event.name ?? "unknown"} — ${event.type} on ${event.camera}`);
  }

  const query = camera ? `?camera=${encodeURIComponent(camera)}` : "";
  let opened = false;
  follow(`/events/live${query}`, {
    signal,
    onEvent: (event) => add(event, true),
    onOpen: async () => {
      state.textContent = "Live: new events appear at the top.";
      if (opened) return;
      opened = true;
      try {
        const recent = await recentEvents(camera, signal);
        for (const event of recent.reverse()) add(event, false);
        if (!list.children.length) state.textContent = "Live: no events yet; new ones appear here.";
      } catch (error) {
        showError(error);
      }
    },
    onError: (error) => {
      state.textContent = `Disconnected (${error.message}); reconnecting…`;
    },
  }).catch(showError);

  return () => {
    controller.abort();
    for (const url of urls) URL.revokeObjectURL(url);
  };
}

/**
 * The last RECENT events, oldest first. GET /events pages forward from `since`, so the last
 * hour is read first, and everything kept only when that hour holds too few.
 */
async function recentEvents(camera, signal) {
  let recent = [];
  for (const start of [new Date(Date.now() - HOUR_MS).toISOString(), "0"]) {
    recent = [];
    let since = start;
    for (let page = 0; page < PAGES_AT_MOST && since; page++) {
      const params = new URLSearchParams({ since, limit: PAGE });
      if (camera) params.set("camera", camera);
      const answer = await request(`/events?${params}`, { signal });
      recent = recent.concat(answer.items).slice(-RECENT);
      since = answer.next;
    }
    if (recent.length >= RECENT) break;
  }
  return recent;
}

async function fillCameras(select, signal) {
  try {
    const status = await request("/status", { signal });
    for (const name of Object.keys(status.sources ?? {}).sort()) noteCamera(select, name);
  } catch (error) {
    if (!(error instanceof ApiError)) return; // left the page
    showError(error);
  }
}

/** Offer `name` in the camera filter (cameras come from the status and from events seen). */
function noteCamera(select, name) {
  if (Array.from(select.options).some((option) => option.value === name)) return;
  select.append(el("option", { value: name }, name));
}

function render(event, signal, urls) {
  const attributes = event.attributes;
  const figure = el("div", { class: "thumb" });
  const row = el(
    "li",
    { class: `event ${event.type}` },
    figure,
    el(
      "dl",
      {},
      el("dt", {}, "Time"),
      el("dd", {}, el("time", { datetime: event.captured_at }, when(event.captured_at))),
      el("dt", {}, "Camera"),
      el("dd", {}, event.camera),
      el("dt", {}, "Type"),
      el("dd", {}, event.type.replace("_", " ")),
      el("dt", {}, "Who"),
      el("dd", { class: "who" }, event.name ?? "unknown"),
      el("dt", {}, "Score"),
      el("dd", {}, event.score === null ? "—" : event.score.toFixed(3)),
      attributes
        ? [el("dt", {}, "Age, gender"), el("dd", {}, `${Math.round(attributes.age)}, ${attributes.gender}`)]
        : null,
    ),
  );
  if (event.type === "recognized" && event.name) {
    const button = el("button", { type: "button", class: "secondary" }, `Not ${event.name}?`);
    button.addEventListener("click", () =>
      busy(button, async () => {
        await request("/feedback", {
          method: "POST",
          json: { event_id: event.event_id, verdict: "not", name: event.name },
        });
        button.replaceWith(el("p", {}, `Noted: not ${event.name}.`));
        announce(`Noted: this face is not ${event.name}.`);
      }),
    );
    row.append(button);
  }
  imageUrl(`/events/${event.event_id}/thumbnail`, signal)
    .then((url) => {
      if (!url) return;
      urls.push(url);
      figure.append(el("img", { src: url, alt: `Face of ${event.name ?? "an unknown person"}` }));
    })
    .catch(() => {}); // no thumbnail is no error worth showing on a live list
  return row;
}
