// The import wizard: show a new field's inputs when "A new field…" is chosen (progress bars are
// sized by portal.js, also after htmx refreshes). No inline styles: CSP.
(function () {
  "use strict";
  function syncNewField(select) {
    var box = document.querySelector("[data-new-field-for='" + select.id + "']");
    if (box) box.hidden = select.value !== "new";
  }
  document.querySelectorAll("select[data-import-target]").forEach(syncNewField);
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-import-target]")) syncNewField(event.target);
  });
})();
