// Unknowns: clusters of strangers the cameras kept, each with its face when one is kept; name
// one (it becomes an enrolled person) or forget it; group the kept tracks anew.

import { imageUrl, request } from "./api.js";
import { announce, busy, el, showError, when } from "./ui.js";

export async function show(view) {
  const controller = new AbortController();
  const urls = [];
  const list = el("ul", { class: "cards clusters", "aria-label": "Clusters of unknown faces" });
  const summary = el("p", { "aria-live": "polite" });
  const recluster = el("button", { type: "button" }, "Re-cluster");
  recluster.addEventListener("click", () =>
    busy(recluster, async () => {
      const answer = await request("/unknowns/cluster", { method: "POST" });
      summary.textContent = `${answer.tracks} track(s) grouped into ${answer.items.length} cluster(s).`;
      render(answer.items);
    }),
  );
  view.append(
    el("h2", {}, "Unknown faces"),
    el("div", { class: "toolbar" }, recluster),
    summary,
    list,
  );

  async function load() {
    const answer = await request("/unknowns", { signal: controller.signal });
    render(answer.items ?? answer);
  }

  function render(clusters) {
    for (const url of urls.splice(0)) URL.revokeObjectURL(url);
    list.replaceChildren(...clusters.map(card));
    if (!clusters.length) list.append(el("li", {}, "No clusters: none kept yet, or run Re-cluster."));
  }

  function card(cluster) {
    const id = cluster.cluster;
    const figure = el("div", { class: "thumb" });
    if (cluster.face_url) {
      imageUrl(cluster.face_url, controller.signal)
        .then((url) => {
          if (!url) return;
          urls.push(url);
          figure.append(el("img", { src: url, alt: `Face of unknown cluster ${id}` }));
        })
        .catch(() => {});
    }
    const item = el(
      "li",
      { class: "cluster", "data-cluster": String(id) },
      figure,
      el("h3", {}, `Cluster ${id}`),
    );
    if (cluster.enrolled_as) {
      item.append(el("p", {}, "Enrolled already: its faces became a person's templates."));
      return item;
    }
    item.append(
      el(
        "p",
        {},
        `${cluster.tracks} track(s) on ${cluster.cameras.join(", ") || "no camera"}; ` +
          `seen ${when(cluster.first_seen)} to ${when(cluster.last_seen)}.`,
      ),
    );
    const input = el("input", { id: `name-${id}`, required: true, autocomplete: "off" });
    const enrol = el("button", { type: "submit" }, "Enrol");
    const form = el("form", { class: "inline" }, el("label", { for: `name-${id}` }, `Name cluster ${id}`), input, enrol);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(enrol, async () => {
        const done = await request(`/unknowns/${id}/enrol`, { method: "POST", json: { name: input.value.trim() } });
        announce(`Cluster ${id} enrolled as ${done.person.name} (${done.templates} templates).`);
        summary.textContent = `Cluster ${id} is now ${done.person.name}.`;
        await load();
      });
    });
    const forget = el("button", { type: "button", class: "danger" }, `Forget cluster ${id}`);
    forget.addEventListener("click", () => {
      if (!window.confirm(`Forget cluster ${id}? Its kept faces and embeddings are deleted.`)) return;
      busy(forget, async () => {
        await request(`/unknowns/${id}`, { method: "DELETE" });
        announce(`Cluster ${id} forgotten.`);
        await load();
      });
    });
    item.append(form, forget);
    return item;
  }

  load().catch(showError);
  return () => {
    controller.abort();
    for (const url of urls) URL.revokeObjectURL(url);
  };
}
