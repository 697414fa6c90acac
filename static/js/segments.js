// Segment builder: keeps what the user typed while htmx re-rendered the criteria, and moves the
// keyboard focus sensibly after "add" and "remove". The builder works without this file (and
// without JavaScript at all: its buttons then submit the whole form).
(function () {
  "use strict";
  var pending = null;
  var sentValues = null;
  var edited = {};

  function builder() {
    return document.getElementById("segment-builder");
  }

  function valuesOf(root) {
    var values = {};
    root.querySelectorAll("input[id], select[id]:not([multiple])").forEach(function (el) {
      if (el.type !== "hidden") values[el.id] = el.value;
    });
    return values;
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var root = builder();
    if (!root || !elt || !root.contains(elt)) return;
    // What the server is about to re-render from: anything edited after this moment is newer.
    sentValues = valuesOf(root);
    pending = elt.name === "action" ? elt.value : null;
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var root = builder();
    if (!root || event.detail.target !== root || !sentValues) return;
    var now = valuesOf(root);
    edited = {};
    Object.keys(now).forEach(function (id) {
      if (id in sentValues && now[id] !== sentValues[id]) edited[id] = now[id];
    });
    sentValues = null;
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var root = builder();
    if (!root || (event.detail.elt !== root && !root.contains(event.detail.elt))) return;
    var restored = false;
    Object.keys(edited).forEach(function (id) {
      var el = document.getElementById(id);
      // Only typed text goes back, into an input still there (selects re-render on purpose).
      if (el && el.tagName === "INPUT" && el.type !== "hidden") {
        el.value = edited[id];
        restored = true;
      }
    });
    edited = {};
    if (restored) root.dispatchEvent(new Event("input", { bubbles: true }));  // refresh the count
    var action = pending;
    pending = null;
    if (!action) return;
    var target = null;
    if (action.indexOf("add-condition:") === 0) {
      var groupOp = document.getElementById(action.slice("add-condition:".length) + "-op");
      var box = groupOp && groupOp.closest("[data-testid='segment-group']");
      var subjects = box ? box.querySelectorAll("[data-testid='condition-subject']") : [];
      target = subjects.length ? subjects[subjects.length - 1] : null;
    } else if (action === "add-condition" || action === "add-group") {
      var all = root.querySelectorAll("[data-testid='condition-subject']");
      target = all.length ? all[all.length - (action === "add-group" ? 2 : 1)] : null;
    } else if (action.indexOf("remove:") === 0) {
      target = root.querySelector("[data-testid='add-condition']");
    }
    if (target) target.focus();
  });
})();
