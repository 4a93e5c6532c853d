// The shell: asks for a key, routes #/page[/argument] to a page module, and signs out.
// Each page module exports show(view, argument) and may return a function that stops it
// (closes its live stream, clears its timer) when the reader leaves the page.

import { apiKey, request, signIn, signOut } from "./api.js";
import * as cameras from "./cameras.js";
import * as live from "./live.js";
import * as people from "./people.js";
import * as settings from "./settings.js";
import * as unknowns from "./unknowns.js";
import { announce, clearErrors, showError } from "./ui.js";

const PAGES = { live, people, unknowns, cameras, settings };
const HOME = "#/live";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");
let leave = null;

function stopPage() {
  if (leave) leave();
  leave = null;
}

function showKeyForm() {
  stopPage();
  nav.hidden = signOutButton.hidden = true;
  const form = document.getElementById("key-form").content.cloneNode(true);
  view.replaceChildren(form);
  const input = view.querySelector("#api-key");
  view.querySelector("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    signIn(input.value);
    try {
      await request("/status"); // any read route: is the key known?
    } catch (error) {
      showError(error);
      return;
    }
    clearErrors();
    announce("Signed in.");
    route();
  });
  input.focus();
}

function route() {
  if (!apiKey()) return showKeyForm();
  nav.hidden = signOutButton.hidden = false;
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = PAGES[name];
  if (!page) {
    location.replace(HOME);
    return;
  }
  stopPage();
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  view.replaceChildren();
  const argument = rest.length ? decodeURIComponent(rest.join("/")) : null;
  Promise.resolve(page.show(view, argument))
    .then((stop) => {
      leave = typeof stop === "function" ? stop : null;
    })
    .catch(showError);
  const heading = view.querySelector("h2");
  document.title = heading ? `${heading.textContent} · Vigil` : "Vigil";
}

signOutButton.addEventListener("click", () => {
  signOut();
  announce("Signed out.");
});
nav.addEventListener("click", (event) => {
  // the link to the page already shown changes no hash: move the focus to the page all the same
  if (event.target.closest("a")?.getAttribute("href") === location.hash) view.focus();
});
window.addEventListener("vigil:signed-out", showKeyForm);
window.addEventListener("hashchange", () => {
  clearErrors();
  route();
  view.focus(); // keyboard and screen-reader users land on the new page
});
route();
