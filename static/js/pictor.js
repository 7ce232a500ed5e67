// Small progressive enhancements; every page works without this file.
document.addEventListener("htmx:responseError", function (evt) {
  var box = document.getElementById("messages");
  if (!box) return;
  var p = document.createElement("p");
  p.className = "msg msg-error";
  p.setAttribute("role", "alert");
  p.textContent = "The server answered " + evt.detail.xhr.status + ". Please try again.";
  box.replaceChildren(p);
});

// Forms that need a second thought carry data-confirm (no inline handlers: the CSP forbids them).
document.addEventListener("submit", function (evt) {
  var form = evt.target;
  var question = form && form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    evt.preventDefault();
    evt.stopImmediatePropagation();
  }
}, true);

// Shown-once secrets (API keys, invite links) are selected on focus, ready to copy.
document.addEventListener("focusin", function (evt) {
  var el = evt.target;
  if (el && el.hasAttribute && el.hasAttribute("data-select-on-focus")) el.select();
});
