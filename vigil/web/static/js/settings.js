// Models: the calibration in force and its operating point, and every trained artifact, with
// promote and rollback (admin keys). A read-only key sees the same, and is told so on trying.

import { ApiError, request } from "./api.js";
import { announce, busy, el, showError, when } from "./ui.js";

export async function show(view) {
  const inForce = el("section", { "aria-labelledby": "in-force-heading" });
  const kinds = el("div");
  view.append(el("h2", {}, "Models"), inForce, kinds);

  async function load() {
    let answer;
    try {
      answer = await request("/models");
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        kinds.replaceChildren(el("p", {}, "This server does not list models (GET /api/v1/models)."));
        return;
      }
      throw error;
    }
    const artifacts = answer.items ?? answer;
    const calibration = artifacts.find((a) => a.kind === "calibration" && a.in_force);
    const point = answer.operating_point;
    inForce.replaceChildren(
      el("h3", { id: "in-force-heading" }, "Operating point"),
      point
        ? metrics({
            threshold: point.threshold,
            margin: point.margin,
            target_fpir: point.target_fpir,
            people: point.people,
            from: point.source,
          })
        : el("p", {}, answer.operating_point_error ?? "No decision rule is in force."),
      el("h3", {}, "Calibration in force"),
      calibration
        ? [el("p", {}, `${calibration.version}, for ${calibration.embedder_version}`), metrics(calibration.metrics)]
        : el("p", {}, "None promoted: the shipped default calibration applies."),
    );
    const byKind = Map.groupBy ? Map.groupBy(artifacts, (a) => a.kind) : group(artifacts);
    kinds.replaceChildren(...Array.from(byKind, ([kind, items]) => section(kind, items)));
    if (!artifacts.length) kinds.append(el("p", {}, "No trained artifacts yet (vigil train, vigil calibrate)."));
  }

  function section(kind, items) {
    const rollback = el("button", { type: "button", class: "secondary" }, `Roll back ${kind}`);
    rollback.addEventListener("click", () =>
      busy(rollback, async () => {
        await request(`/models/${encodeURIComponent(kind)}/rollback`, { method: "POST" });
        announce(`Rolled back the ${kind}.`);
        await load();
      }),
    );
    return el(
      "section",
      {},
      el("h3", {}, kind),
      el("ul", { class: "cards artifacts" }, items.map(artifact)),
      items.some((a) => a.in_force) ? rollback : null,
    );
  }

  function artifact(item) {
    const promote = el("button", { type: "button" }, `Promote ${item.version}`);
    promote.addEventListener("click", () =>
      busy(promote, async () => {
        await request(`/models/${encodeURIComponent(item.version)}/promote`, { method: "POST" });
        announce(`${item.version} is in force.`);
        await load();
      }),
    );
    return el(
      "li",
      { class: item.in_force ? "in-force" : "" },
      el("h4", {}, item.version, item.in_force ? el("strong", {}, " (in force)") : null),
      el("p", {}, `Made ${when(item.created_at)} for ${item.embedder_version}.`),
      metrics(item.metrics),
      item.in_force ? null : promote,
    );
  }

  await load().catch(showError);
}

function metrics(values) {
  const entries = Object.entries(values ?? {});
  if (!entries.length) return el("p", {}, "No metrics.");
  return el(
    "dl",
    { class: "metrics" },
    entries.map(([name, value]) => [
      el("dt", {}, name.replaceAll("_", " ")),
      el("dd", {}, typeof value === "number" ? String(Number(value.toPrecision(4))) : String(value)),
    ]),
  );
}

function group(items) {
  const groups = new Map();
  for (const item of items) groups.set(item.kind, [...(groups.get(item.kind) ?? []), item]);
  return groups;
}
