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

// The API page's try-it panel: drop or choose an image, see the deployed model's answer. The form
// works without this (it posts and the page shows the answer); here it answers in place.
(function () {
  function render(box, body, ok) {
    box.replaceChildren();
    if (!ok) {
      var err = document.createElement("p");
      err.className = "msg msg-error";
      err.setAttribute("role", "alert");
      err.textContent = (body && body.error && body.error.message) || "The image could not be tried.";
      box.appendChild(err);
      return;
    }
    var head = document.createElement("p");
    var best = document.createElement("strong");
    best.textContent = body.label !== undefined ? body.label : (body.present.join(", ") || "no label present");
    var model = document.createElement("span");
    model.className = "muted";
    model.textContent = " model v" + body.model.version + (body.model.mode ? " (" + body.model.mode + ")" : "");
    head.append(best, model);
    var list = document.createElement("ul");
    body.labels.forEach(function (x) {
      var li = document.createElement("li");
      var bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.round(120 * x.confidence) + "px";
      li.append(x.label + ": " + x.confidence.toFixed(3) + " ", bar);
      list.appendChild(li);
    });
    box.append(head, list);
  }

  function send(form, file) {
    var box = document.getElementById("try-result");
    var data = new FormData();
    data.append("file", file);
    box.textContent = "Asking the model…";
    fetch(form.action, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value },
    }).then(function (r) {
      return r.json().then(function (body) { render(box, body, r.ok); });
    }).catch(function () { render(box, null, false); });
  }

  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!form.hasAttribute || !form.hasAttribute("data-try-it")) return;
    var input = form.querySelector("input[type=file]");
    if (!input.files.length) return;
    evt.preventDefault();
    send(form, input.files[0]);
  });
  document.addEventListener("change", function (evt) {
    var form = evt.target.form;
    if (form && form.hasAttribute("data-try-it") && evt.target.files.length) send(form, evt.target.files[0]);
  });
  ["dragover", "dragleave", "drop"].forEach(function (name) {
    document.addEventListener(name, function (evt) {
      var zone = evt.target.closest && evt.target.closest("form[data-try-it]");
      if (!zone) return;
      evt.preventDefault();
      zone.classList.toggle("over", name === "dragover");
      if (name === "drop" && evt.dataTransfer.files.length) send(zone, evt.dataTransfer.files[0]);
    });
  });
})();
