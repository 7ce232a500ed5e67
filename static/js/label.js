// Keyboard for the labeling page: label keys, Enter, S(kip), Z (undo), arrows for history.
(function () {
  "use strict";
  function labeler() { return document.getElementById("labeler"); }
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" && t.type === "text" || t.tagName === "TEXTAREA" || t.isContentEditable);
  }
  function click(id) { var el = document.getElementById(id); if (el) { el.click(); return true; } return false; }

  document.addEventListener("keydown", function (e) {
    var root = labeler();
    if (!root || e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(e)) {
      if (e.key === "Escape") e.target.blur();
      return;  // Enter in the new-label box submits the form natively
    }
    var form = document.getElementById("label-form");
    var key = e.key.toLowerCase();
    var multi = root.dataset.multi === "1";
    if (key === "arrowleft") { e.preventDefault(); click("back-link"); return; }
    if (key === "arrowright") { e.preventDefault(); click("forward-link"); return; }
    if (!form) return;
    if (key === "s") { e.preventDefault(); click("skip-button"); return; }
    if (key === "z") { e.preventDefault(); click("undo-button"); return; }
    if (key === "enter") {
      e.preventDefault();
      if (multi) { form.requestSubmit(); return; }
      var s = document.getElementById("suggestion");
      if (s) {
        var btn = form.querySelector('button[name="label"][value="' + CSS.escape(s.dataset.label) + '"]');
        if (btn) btn.click();
      }
      return;
    }
    if (key.length !== 1) return;
    var target = form.querySelector('[data-key="' + CSS.escape(key) + '"]');
    if (!target) return;
    e.preventDefault();
    if (multi) {
      target.checked = !target.checked;
      if (target.suggestionPreselected) target.suggestionPreselected = false;
    } else {
      target.click();
    }
  });

  // Multi-label: the model's suggestion starts ticked, so Enter accepts it.
  function preselect() {
    var root = labeler();
    if (!root || root.dataset.multi !== "1" || root.dataset.back !== "0") return;
    var s = document.getElementById("suggestion");
    if (!s) return;
    var box = root.querySelector('input[type=checkbox][value="' + CSS.escape(s.dataset.label) + '"]');
    if (box && !root.querySelector("input[type=checkbox]:checked")) box.checked = true;
  }
  document.addEventListener("DOMContentLoaded", preselect);
  document.addEventListener("htmx:afterSwap", preselect);
})();
