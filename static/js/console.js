// Behaviour every page shares, kept out of the markup: the Content-Security-Policy
// allows no inline event handlers.
document.addEventListener("change", (event) => {
  const select = event.target.closest("[data-submit-on-change]");
  if (select && select.form) select.form.submit();
});
