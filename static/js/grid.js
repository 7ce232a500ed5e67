// Grid labeling: click to select, shift-click selects a range, "select all on page".
(function () {
  "use strict";
  var last = null;
  function boxes() { return Array.prototype.slice.call(document.querySelectorAll("#sample-grid .pick")); }
  function refresh() {
    var n = 0;
    boxes().forEach(function (b) { b.closest(".tile").classList.toggle("selected", b.checked); if (b.checked) n++; });
    var c = document.getElementById("selected-count"); if (c) c.textContent = n + " selected";
  }
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t.id === "select-all") {
      var all = boxes(), on = !all.every(function (b) { return b.checked; });
      all.forEach(function (b) { b.checked = on; }); refresh(); return;
    }
    if (!t.classList || !t.classList.contains("pick")) return;
    var list = boxes(), i = list.indexOf(t);
    if (e.shiftKey && last !== null && last !== i) {
      var lo = Math.min(last, i), hi = Math.max(last, i);
      for (var k = lo; k <= hi; k++) list[k].checked = t.checked;
    }
    last = i; refresh();
  });
  document.addEventListener("htmx:afterSwap", function () { last = null; refresh(); });
})();
