// People: the face library. #/people lists and enrols; #/people/NAME shows one person, their
// templates and history (with undo), and adds photos, renames or deletes them.

import { request } from "./api.js";
import { announce, busy, el, enrolmentReport, photoPicker, showError, when } from "./ui.js";

const PAGE_SIZE = 20;

export function show(view, name) {
  return name === null ? showList(view) : showPerson(view, name);
}

function personHref(name) {
  return `#/people/${encodeURIComponent(name)}`;
}

async function showList(view) {
  const list = el("ul", { class: "cards people", "aria-label": "Enrolled people" });
  const pager = el("nav", { class: "pager", "aria-label": "Pages of people" });
  const result = el("div", { "aria-live": "polite" });
  let offset = 0;

  async function load() {
    const page = await request(`/people?offset=${offset}&limit=${PAGE_SIZE}`);
    list.replaceChildren(
      ...page.items.map((person) =>
        el(
          "li",
          {},
          el("a", { href: personHref(person.name) }, person.name),
          el("span", {}, ` ${person.templates} template(s), since ${when(person.created_at)}`),
        ),
      ),
    );
    if (!page.items.length) list.append(el("li", {}, "Nobody is enrolled yet."));
    const last = Math.min(offset + page.items.length, page.total);
    pager.replaceChildren(
      el("button", { type: "button", disabled: offset === 0, onclick: () => turn(-PAGE_SIZE) }, "Previous"),
      el("span", {}, page.total ? ` ${offset + 1} to ${last} of ${page.total} ` : " "),
      el("button", { type: "button", disabled: last >= page.total, onclick: () => turn(PAGE_SIZE) }, "Next"),
    );
  }
  const turn = (step) => {
    offset = Math.max(0, offset + step);
    load().catch(showError);
  };

  const picker = photoPicker("enrol-photos", "Photos (one face each, up to 20)");
  const nameInput = el("input", { id: "enrol-name", name: "name", required: true, autocomplete: "off" });
  const submit = el("button", { type: "submit" }, "Enrol");
  const form = el(
    "form",
    { class: "enrol" },
    el("label", { for: "enrol-name" }, "Name"),
    nameInput,
    picker.zone,
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      const body = new FormData();
      body.append("name", nameInput.value.trim());
      for (const file of picker.input.files) body.append("photos", file);
      const enrolment = await request("/people", { method: "POST", form: body });
      result.replaceChildren(enrolmentReport(enrolment), el("a", { href: personHref(enrolment.person.name) }, `Open ${enrolment.person.name}`));
      announce(`Enrolled ${enrolment.person.name}.`);
      form.reset();
      picker.input.dispatchEvent(new Event("change"));
      await load();
    });
  });

  view.append(
    el("h2", {}, "People"),
    el("section", { "aria-labelledby": "enrol-heading" }, el("h3", { id: "enrol-heading" }, "Enrol someone"), form, result),
    el("section", { "aria-labelledby": "list-heading" }, el("h3", { id: "list-heading" }, "Enrolled"), list, pager),
  );
  await load();
}

async function showPerson(view, name) {
  const heading = el("h2", {}, name);
  const details = el("div");
  const history = el("div");
  const result = el("div", { "aria-live": "polite" });
  view.append(el("p", {}, el("a", { href: "#/people" }, "← All people")), heading, details, result, history);

  async function load() {
    const [person, past] = await Promise.all([
      request(`/people/${encodeURIComponent(name)}`),
      request(`/people/${encodeURIComponent(name)}/history`).catch(() => null), // route may be absent
    ]);
    details.replaceChildren(
      el("p", {}, `Enrolled ${when(person.created_at)}; ${person.templates} template(s).`),
      el("h3", {}, "Templates"),
      el(
        "ul",
        { class: "cards templates" },
        person.template_records.map((t) =>
          el(
            "li",
            {},
            `#${t.template_id} from ${t.source} (${t.origin}), quality ${t.quality.toFixed(2)}, ` +
              `${t.embedder_version}, ${when(t.created_at)}`,
          ),
        ),
      ),
    );
    history.replaceChildren(...(past ? historyList(past.items ?? past) : []));
  }

  function historyList(entries) {
    return [
      el("h3", {}, "History"),
      el(
        "ol",
        { class: "cards history" },
        entries.map((entry) => {
          const undo = el("button", { type: "button", class: "secondary" }, `Undo entry ${entry.entry}`);
          undo.addEventListener("click", () =>
            busy(undo, async () => {
              await request(`/people/${encodeURIComponent(name)}/history/${entry.entry}/undo`, { method: "POST" });
              announce(`Undid entry ${entry.entry}.`);
              await load();
            }),
          );
          return el(
            "li",
            {},
            `${when(entry.at)}: ${entry.action} ${entry.item} #${entry.item_id} (${entry.origin})`,
            entry.note ? ` — ${entry.note}` : "",
            entry.action === "added" ? [" ", undo] : null,
          );
        }),
      ),
    ];
  }

  const picker = photoPicker("more-photos", "More photos");
  const addButton = el("button", { type: "submit" }, "Add photos");
  const addForm = el("form", {}, picker.zone, addButton);
  addForm.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(addButton, async () => {
      const body = new FormData();
      for (const file of picker.input.files) body.append("photos", file);
      const enrolment = await request(`/people/${encodeURIComponent(name)}/photos`, { method: "POST", form: body });
      result.replaceChildren(enrolmentReport(enrolment));
      addForm.reset();
      picker.input.dispatchEvent(new Event("change"));
      await load();
    });
  });

  const newName = el("input", { id: "new-name", required: true, value: name, autocomplete: "off" });
  const renameButton = el("button", { type: "submit" }, "Rename");
  const renameForm = el("form", { class: "inline" }, el("label", { for: "new-name" }, "New name"), newName, renameButton);
  renameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(renameButton, async () => {
      const person = await request(`/people/${encodeURIComponent(name)}`, { method: "PATCH", json: { name: newName.value.trim() } });
      announce(`Renamed to ${person.name}.`);
      location.replace(personHref(person.name));
    });
  });

  const deleteButton = el("button", { type: "button", class: "danger" }, `Delete ${name}`);
  deleteButton.addEventListener("click", () => {
    const question = `Delete ${name}? Their templates, photos, events and history are erased everywhere; this cannot be undone.`;
    if (!window.confirm(question)) return;
    busy(deleteButton, async () => {
      await request(`/people/${encodeURIComponent(name)}`, { method: "DELETE" });
      announce(`${name} was deleted.`);
      location.hash = "#/people";
    });
  });

  view.append(
    el("section", {}, el("h3", {}, "Add photos"), addForm),
    el("section", {}, el("h3", {}, "Rename"), renameForm),
    el("section", {}, el("h3", {}, "Delete"), deleteButton),
  );
  await load();
}
