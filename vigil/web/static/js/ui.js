// What every page uses: building elements, announcing to screen readers, showing errors.

/** An element: el("button", {type: "button", onclick}, "Save"). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/** Read out `text` politely (new events, finished actions). */
export function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  // a fresh text node after a tick makes screen readers speak a repeated message again
  setTimeout(() => (region.textContent = text), 50);
}

/** Show an error (an ApiError's message) at once, in the alert region. */
export function showError(error) {
  if (error && error.name === "AbortError") return;
  const region = document.getElementById("errors");
  const message = error && error.message ? error.message : String(error);
  region.replaceChildren(
    el("p", {}, message, " ", el("button", { type: "button", onclick: clearErrors }, "Dismiss")),
  );
  region.hidden = false;
  if (!(error && error.status === 401)) console.error(error);
}

export function clearErrors() {
  const region = document.getElementById("errors");
  region.replaceChildren();
  region.hidden = true;
}

/** An ISO time as the reader's local date and time. */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** Run `action` for a button, disabling it meanwhile and showing any error. */
export async function busy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** A file input and a drop zone around it: keyboard users pick files, others may drop them. */
export function photoPicker(id, labelText) {
  const input = el("input", { type: "file", id, name: "photos", multiple: true, accept: "image/*", required: true });
  const chosen = el("ul", { class: "chosen", "aria-live": "polite" });
  const show = () =>
    chosen.replaceChildren(...Array.from(input.files, (file) => el("li", {}, file.name)));
  input.addEventListener("change", show);
  const zone = el(
    "div",
    { class: "drop-zone" },
    el("label", { for: id }, labelText),
    el("p", { class: "hint" }, "Drop photos here, or choose them with the button."),
    input,
    chosen,
  );
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = new DataTransfer();
    for (const file of event.dataTransfer.files) if (file.type.startsWith("image/")) files.items.add(file);
    input.files = files.files;
    show();
  });
  return { zone, input };
}

/** What an enrolment answered: photos accepted, each refused one's reason, warnings. */
export function enrolmentReport(result) {
  return el(
    "div",
    { class: "report" },
    el("p", {}, `${result.person.name}: ${result.accepted.length} photo(s) accepted.`),
    result.accepted.length ? el("ul", { class: "accepted" }, result.accepted.map((photo) => el("li", {}, photo))) : null,
    result.rejected.length
      ? [
          el("p", {}, "Refused:"),
          el("ul", { class: "rejected" }, result.rejected.map((r) => el("li", {}, `${r.photo}: ${r.reason}`))),
        ]
      : null,
    result.warnings.length ? el("ul", { class: "warnings" }, result.warnings.map((w) => el("li", {}, w))) : null,
  );
}
