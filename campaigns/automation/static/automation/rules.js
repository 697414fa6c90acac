// The trigger rule form: show only the fields of the chosen event ("which link" for clicks, the
// days for "has not opened") and the address field for "Another address…". Without JavaScript
// every field shows and the server checks the combination either way.
(function () {
  "use strict";
  function sync(form) {
    var checked = form.querySelector("input[name='event']:checked");
    var event = checked ? checked.value : "";
    form.querySelectorAll("[data-show-for]").forEach(function (section) {
      section.hidden = section.getAttribute("data-show-for") !== event;
    });
    var link = form.querySelector("select[name='link']");
    form.querySelectorAll("[data-show-for-link]").forEach(function (section) {
      section.hidden = !link || link.value !== section.getAttribute("data-show-for-link");
    });
  }
  function all() {
    document.querySelectorAll("form[data-trigger-form]").forEach(sync);
  }
  document.addEventListener("change", function (event) {
    var form = event.target.closest && event.target.closest("form[data-trigger-form]");
    if (form) sync(form);
  });
  document.body.addEventListener("htmx:afterSettle", all);
  all();
})();
