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
