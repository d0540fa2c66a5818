// Behaviour every page shares, kept out of the markup: the Content-Security-Policy
// allows no inline event handlers and no eval, so htmx's trigger filters
// ("every 5s [expression]") are written as data attributes read here.
document.addEventListener("change", (event) => {
  const select = event.target.closest("[data-submit-on-change]");
  if (select && select.form) select.form.submit();
});

document.addEventListener("htmx:confirm", (event) => {
  const element = event.detail.elt;
  // data-pause-while="<selector>": skip the request while such an element exists
  // (the job list's refresh waits while an operations menu is open).
  const pause = element.dataset.pauseWhile;
  if (pause && document.querySelector(pause)) {
    event.preventDefault();
    return;
  }
  // data-while-open: a folded section (运行配置预览) asks only while it is unfolded.
  if (element.hasAttribute("data-while-open") && !element.open) {
    event.preventDefault();
    return;
  }
  // data-change-from="<selector>": a change event counts only from such elements.
  const only = element.dataset.changeFrom;
  const trigger = event.detail.triggeringEvent;
  if (only && trigger && trigger.type === "change" && !trigger.target.matches(only)) {
    event.preventDefault();
  }
});

// The create form's cascading selects re-render its fields (task type -> scenario ->
// algorithm, the data and save-model choices). What the user types or picks while
// that refresh is in flight must not be lost: the values each refresh sent are
// recorded, and when its answer lands, every field the user changed since keeps the
// user's value in the new fields, wherever the field is still there. A cascading
// select changed meanwhile sends a refresh of its own (hx-sync replace), so those
// are left to it.
const FORM_FIELDS = "job-form-fields";
const sentValues = new WeakMap();
const typedValues = new WeakMap();

function fieldValues(container) {
  const values = {};
  for (const element of container.querySelectorAll("input[name], select[name], textarea[name]")) {
    if (element.type === "hidden" || element.hasAttribute("data-cascade")) continue;
    const list = (values[element.name] ||= []);
    if (element.type === "checkbox" || element.type === "radio") {
      if (element.checked) list.push(element.value);
    } else if (element.multiple) {
      for (const option of element.selectedOptions) list.push(option.value);
    } else {
      list.push(element.value);
    }
  }
  return values;
}

function setValues(container, name, values) {
  // Several fields may share a name (the node specs' ordered selects): the n-th
  // gets the n-th value.
  let index = 0;
  for (const element of container.querySelectorAll(`[name="${CSS.escape(name)}"]`)) {
    if (element.type === "checkbox" || element.type === "radio") {
      element.checked = values.includes(element.value);
    } else if (element.multiple) {
      for (const option of element.options) option.selected = values.includes(option.value);
    } else {
      element.value = index < values.length ? values[index] : "";
      index += 1;
    }
  }
}

document.addEventListener("htmx:beforeRequest", (event) => {
  const target = event.detail.target;
  if (target && target.id === FORM_FIELDS) sentValues.set(event.detail.xhr, fieldValues(target));
});

// A section the user unfolded (高级参数, 运行配置预览) stays open across a refresh of
// the part of the page that holds it.
const unfolded = new WeakMap();
document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  if (!target) return;
  const open = [...target.querySelectorAll("details[id][open]")].map((fold) => fold.id);
  if (target.matches("details[id][open]")) open.push(target.id);
  unfolded.set(event.detail.xhr, open);
});
document.addEventListener("htmx:afterSwap", (event) => {
  for (const id of unfolded.get(event.detail.xhr) || []) {
    const fold = document.getElementById(id);
    if (fold) fold.open = true;
  }
});

document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  const sent = sentValues.get(event.detail.xhr);
  if (!target || target.id !== FORM_FIELDS || !sent) return;
  const now = fieldValues(target);
  const typed = {};
  for (const [name, values] of Object.entries(now)) {
    if (JSON.stringify(values) !== JSON.stringify(sent[name] || [])) typed[name] = values;
  }
  typedValues.set(event.detail.xhr, typed);
});

document.addEventListener("htmx:afterSwap", (event) => {
  const typed = typedValues.get(event.detail.xhr);
  const fields = document.getElementById(FORM_FIELDS);
  if (!fields || !typed || !Object.keys(typed).length) return;
  for (const [name, values] of Object.entries(typed)) setValues(fields, name, values);
  // The queue prediction follows the form's changes: tell it about the kept values.
  const first = fields.querySelector(`[name="${CSS.escape(Object.keys(typed)[0])}"]`);
  if (first) first.dispatchEvent(new Event("change", { bubbles: true }));
});

// An open operations menu closes when another opens, on a click elsewhere and on
// Escape, so it never stays over the next row's button.
function closeMenus(except) {
  for (const menu of document.querySelectorAll("details.dropdown[open]")) {
    if (menu !== except) menu.removeAttribute("open");
  }
}
document.addEventListener("click", (event) => {
  closeMenus(event.target.closest("details.dropdown"));
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeMenus(null);
});
