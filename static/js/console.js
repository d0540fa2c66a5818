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
  // data-change-from="<selector>": a change event counts only from such elements.
  const only = element.dataset.changeFrom;
  const trigger = event.detail.triggeringEvent;
  if (only && trigger && trigger.type === "change" && !trigger.target.matches(only)) {
    event.preventDefault();
  }
});
