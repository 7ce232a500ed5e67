// Upload page: drag-and-drop, file and folder pickers, zips; one request per file so each gets a
// progress bar; a final report of accepted, duplicate and rejected files with their reasons.
(function () {
  "use strict";
  var root = document.getElementById("uploader");
  if (!root) return;
  var endpoint = root.dataset.endpoint, csrf = root.dataset.csrf;
  var list = document.getElementById("upload-list");
  var dropzone = document.getElementById("dropzone");
  var counts = { accepted: 0, duplicates: 0, rejected: 0 };
  var pending = [], active = 0, total = 0, finished = 0, CONCURRENCY = 3;

  function labelFromPath(path) {
    // "train/ants/x.jpg" -> "ants": the folder a file sits in names its label.
    var parts = (path || "").split("/").filter(Boolean);
    return parts.length >= 2 ? parts[parts.length - 2] : "";
  }

  function addRow(name) {
    var li = document.createElement("li");
    var n = document.createElement("span"); n.textContent = name;
    var bar = document.createElement("div"); bar.className = "progress";
    var fill = document.createElement("span"); fill.style.width = "0%"; bar.appendChild(fill);
    var st = document.createElement("span"); st.textContent = "waiting";
    li.append(n, bar, st); list.appendChild(li);
    return { fill: fill, status: st, row: li };
  }

  function reject(name, message) {
    counts.rejected++;
    var li = document.createElement("li");
    li.className = "err";
    li.textContent = name + ": " + message;
    document.getElementById("rejections").appendChild(li);
  }

  function updateSummary() {
    document.getElementById("upload-summary").hidden = false;
    document.getElementById("overall-bar").style.width = (total ? 100 * finished / total : 0) + "%";
    document.getElementById("overall-text").textContent = finished + " / " + total + " files";
    document.getElementById("count-accepted").textContent = counts.accepted;
    document.getElementById("count-duplicates").textContent = counts.duplicates;
    document.getElementById("count-rejected").textContent = counts.rejected;
    if (finished === total && total > 0) document.getElementById("upload-report").hidden = false;
  }

  function handleResponse(item, xhr) {
    var body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    var samples = body && body.samples ? body.samples : [];
    if (!samples.length && body && body.error) samples = [{ error: body.error, filename: item.file.name }];
    if (!body) samples = [{ error: { message: "The server answered " + xhr.status + "." }, filename: item.file.name }];
    var ok = 0, dup = 0, bad = 0;
    samples.forEach(function (s) {
      if (s.error) { bad++; reject(s.filename || item.file.name, s.error.message); }
      else if (s.duplicate) { dup++; counts.duplicates++; }
      else { ok++; counts.accepted++; }
    });
    item.ui.fill.style.width = "100%";
    if (bad && !ok && !dup) { item.ui.status.textContent = samples.length > 1 ? bad + " rejected" : "rejected: " + samples[0].error.message; item.ui.status.className = "err"; }
    else {
      var parts = [];
      if (ok) parts.push(ok + " new"); if (dup) parts.push(dup + " duplicate"); if (bad) parts.push(bad + " rejected");
      item.ui.status.textContent = parts.join(", "); item.ui.status.className = bad ? "err" : "ok";
    }
  }

  function isVideo(file) {
    // The server decides by content; this only picks which files get the sampling rate.
    return /^video\//.test(file.type || "") || /\.(mp4|m4v|mov|qt|webm|mkv)$/i.test(file.name || "");
  }

  function videoFps() {
    var v = parseFloat(document.getElementById("video-fps").value);
    return isFinite(v) && v > 0 ? v : 1;
  }

  function next() {
    while (active < CONCURRENCY && pending.length) {
      send(pending.shift());
    }
  }

  function send(item) {
    active++;
    var form = new FormData();
    form.append("file", item.file, item.file.name);
    if (item.label) form.append("label", item.label);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", isVideo(item.file) ? endpoint + "?fps=" + encodeURIComponent(videoFps()) : endpoint);
    xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    item.ui.status.textContent = "uploading";
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) item.ui.fill.style.width = Math.round(95 * e.loaded / e.total) + "%";
    };
    xhr.onload = function () { handleResponse(item, xhr); done(); };
    xhr.onerror = function () {
      reject(item.file.name, "the upload failed (network error)");
      item.ui.status.textContent = "failed"; item.ui.status.className = "err"; done();
    };
    xhr.send(form);
  }

  function done() { active--; finished++; updateSummary(); next(); }

  function enqueue(file, path) {
    var extra = document.getElementById("label-all").value.trim();
    var label = extra || labelFromPath(path || file.webkitRelativePath || "");
    total++;
    pending.push({ file: file, label: label, ui: addRow((path || file.name) + (label ? "  →  " + label : "")) });
  }

  function addFiles(files) {
    Array.prototype.forEach.call(files, function (f) { enqueue(f, f.webkitRelativePath || f.name); });
    updateSummary(); next();
  }

  function walk(entry, path, out) {
    return new Promise(function (resolve) {
      if (entry.isFile) { entry.file(function (f) { out.push([f, path + f.name]); resolve(); }, resolve); return; }
      var reader = entry.createReader(), all = [];
      (function read() {
        reader.readEntries(function (batch) {
          if (!batch.length) {
            Promise.all(all.map(function (e) { return walk(e, path + entry.name + "/", out); })).then(resolve);
          } else { all = all.concat(Array.prototype.slice.call(batch)); read(); }
        }, resolve);
      })();
    });
  }

  document.getElementById("file-input").addEventListener("change", function (e) { addFiles(e.target.files); e.target.value = ""; });
  document.getElementById("folder-input").addEventListener("change", function (e) { addFiles(e.target.files); e.target.value = ""; });
  dropzone.addEventListener("keydown", function (e) {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); document.getElementById("file-input").click(); }
  });
  ["dragenter", "dragover"].forEach(function (t) {
    dropzone.addEventListener(t, function (e) { e.preventDefault(); dropzone.classList.add("over"); });
  });
  dropzone.addEventListener("dragleave", function () { dropzone.classList.remove("over"); });
  dropzone.addEventListener("drop", function (e) {
    e.preventDefault(); dropzone.classList.remove("over");
    var items = e.dataTransfer.items;
    var entries = items ? Array.prototype.map.call(items, function (i) { return i.webkitGetAsEntry && i.webkitGetAsEntry(); }).filter(Boolean) : [];
    if (!entries.length) { addFiles(e.dataTransfer.files); return; }
    var out = [];
    Promise.all(entries.map(function (en) { return walk(en, "", out); })).then(function () {
      out.forEach(function (pair) { enqueue(pair[0], pair[1]); });
      updateSummary(); next();
    });
  });
})();
