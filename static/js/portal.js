// Small progressive enhancements; the portal works without JavaScript.
(function () {
  "use strict";
  // Copy-to-clipboard buttons: <button data-copy-target="#id">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var target = document.querySelector(button.getAttribute("data-copy-target"));
    if (!target || !navigator.clipboard) return;
    navigator.clipboard.writeText(target.value || target.textContent.trim()).then(function () {
      var original = button.textContent;
      button.textContent = button.getAttribute("data-copied-label") || "Copied";
      setTimeout(function () { button.textContent = original; }, 2000);
    });
  });
  // Confirmation for destructive forms: <form data-confirm="...">.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
  // A role's "Client" field only matters for client users: hide it for the other roles. The server
  // checks the combination either way; this only keeps the invite and role forms short.
  function syncClientField(roleSelect) {
    if (!roleSelect.form) return;
    var client = roleSelect.form.elements.namedItem(roleSelect.name.replace(/role$/, "client"));
    if (!client || !client.closest) return;
    var wrapper = client.closest(".mb-3") || client.parentElement;
    wrapper.hidden = roleSelect.value !== "client_user";
  }
  document.querySelectorAll("select[name$='role']").forEach(syncClientField);
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[name$='role']")) syncClientField(event.target);
  });
  // Row-action popovers (<details class="xes-popover">): one open at a time; Escape or a click elsewhere closes.
  function closePopovers(except) {
    document.querySelectorAll("details.xes-popover[open]").forEach(function (d) {
      if (d !== except) d.open = false;
    });
  }
  document.addEventListener("toggle", function (event) {
    if (event.target.matches && event.target.matches("details.xes-popover") && event.target.open) closePopovers(event.target);
  }, true);
  document.addEventListener("click", function (event) {
    if (!event.target.closest("details.xes-popover")) closePopovers(null);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = event.target.closest && event.target.closest("details.xes-popover[open]");
    if (!open) return;
    open.open = false;
    open.querySelector("summary").focus();
  });
  // Progress bars without inline styles (CSP): <div class="progress-bar" data-progress="42">,
  // sized on page load and again after every htmx swap (live progress panels).
  function sizeBars() {
    document.querySelectorAll("[data-progress]").forEach(function (bar) {
      bar.style.width = Math.max(0, Math.min(100, parseFloat(bar.getAttribute("data-progress")) || 0)) + "%";
    });
  }
  sizeBars();
  document.body.addEventListener("htmx:afterSettle", sizeBars);
})();
