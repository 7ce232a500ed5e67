// Sample page: ask the deployed model where it looked, lay the heat map over the image.
(function () {
  "use strict";
  var box = document.getElementById("explain-box");
  var button = document.getElementById("explain-button");
  if (!box || !button) return;
  button.addEventListener("click", function () {
    var text = document.getElementById("explain-text"), overlay = document.getElementById("explain-overlay");
    if (!overlay.hidden) { overlay.hidden = true; button.textContent = "Show where the model looks"; return; }
    text.textContent = "Asking the model…";
    fetch(box.dataset.url, { method: "POST", headers: { "X-CSRFToken": box.dataset.csrf } })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        if (!res.ok) { text.textContent = res.body.error ? res.body.error.message : "The model could not answer."; return; }
        var b = res.body;
        var img = document.getElementById("sample-image");
        overlay.style.width = img.clientWidth + "px";
        overlay.style.height = img.clientHeight + "px";
        overlay.src = "data:image/png;base64," + b.explanation.heatmap_png;
        overlay.hidden = false;
        button.textContent = "Hide heat map";
        var conf = b.confidence !== undefined ? " (" + Math.round(100 * b.confidence) + " %)" : "";
        text.textContent = "Model v" + b.model.version + " says " + (b.label || (b.present || []).join(", ")) + conf +
          "; red marks the regions whose hiding lowers that answer most.";
      })
      .catch(function () { text.textContent = "The request failed."; });
  });
})();
