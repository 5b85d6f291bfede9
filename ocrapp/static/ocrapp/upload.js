/* Upload page: send each photo to POST /api/v1/captures (progress per file), wait for the read
 * with GET /api/v1/captures/{id}?wait=10, then put the server-rendered result section of the
 * capture (views.capture_card: the same template as the capture page) into the card, and
 * refresh "Recent captures" (views.capture_recent). The script draws nothing of a read itself.
 * Plain JavaScript, no build step. Translated strings come from the JSON script tag #ui-strings.
 */
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form) return;

  var T = JSON.parse(document.getElementById("ui-strings").textContent);
  var WAIT_SECONDS = 10;
  var MAX_POLLS = 60;           // 60 x 10 s: give up showing live progress after 10 minutes
  var SLOW_AFTER_POLLS = 3;     // say "taking longer than usual" after 30 s
  var MAX_PARALLEL_UPLOADS = 2;

  var createUrl = form.dataset.createUrl;
  var detailTemplate = form.dataset.detailUrl;
  var cardTemplate = form.dataset.cardUrl;
  var zeroUuid = form.dataset.zeroUuid;
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var stationSelect = document.getElementById("station");
  var productSelect = document.getElementById("product_type");
  var results = document.getElementById("results");
  var cardShell = document.getElementById("result-template");
  var dropzone = document.getElementById("dropzone");
  var recent = document.getElementById("recent-captures");

  var queue = [];
  var active = 0;

  // --- remember the station and product type of this device -------------------------------
  function restoreChoice(select, key) {
    try {
      var saved = window.localStorage.getItem(key);
      if (saved && select.querySelector('option[value="' + CSS.escape(saved) + '"]')) {
        select.value = saved;
      }
      select.addEventListener("change", function () {
        window.localStorage.setItem(key, select.value);
      });
    } catch (e) { /* private mode: no storage */ }
  }
  restoreChoice(stationSelect, "serialread.station");
  restoreChoice(productSelect, "serialread.product_type");

  // --- helpers ------------------------------------------------------------------------------
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function pathOf(url) {
    try { var u = new URL(url, window.location.href); return u.pathname + u.search; }
    catch (e) { return url; }
  }

  function errorMessage(xhrStatus, body) {
    if (body && body.error && body.error.message) return body.error.message;
    if (!xhrStatus) return T.network_error;
    return T.server_error.replace("%(status)s", xhrStatus);
  }

  // GET a server-rendered fragment of this page (session cookie); rejects on an error status
  // or when the session has ended (the login page answers instead).
  function fetchFragment(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) {
          throw new Error(errorMessage(response.redirected ? 401 : response.status, null));
        }
        return response.text();
      });
  }

  // --- "Recent captures": the server's list, newest answer wins -----------------------------
  var recentAsked = 0;
  var recentShown = 0;

  function refreshRecent() {
    if (!recent) return;
    var asked = ++recentAsked;
    fetchFragment(recent.dataset.url).then(function (html) {
      if (asked < recentShown) return;  // an older answer that arrived late
      recentShown = asked;
      recent.innerHTML = html;
    }).catch(function () { /* keep the list as it is; the next read refreshes it */ });
  }

  // --- card state ---------------------------------------------------------------------------
  function newCard(file) {
    var card = cardShell.content.firstElementChild.cloneNode(true);
    card.querySelector(".result-name").textContent = file.name || "photo";
    results.insertBefore(card, results.firstChild);
    return card;
  }

  function setState(job, state, label, message) {
    var card = job.card;
    card.dataset.status = state;
    var badge = card.querySelector(".result-status");
    badge.className = "badge result-status status-" + state.toLowerCase();
    badge.textContent = label;
    card.querySelector(".result-message").textContent = message || "";
    var progress = card.querySelector(".progress");
    progress.hidden = !(state === "uploading" || state === "reading");
  }

  function setProgress(job, fraction) {
    job.card.querySelector(".progress-bar").style.width = Math.round(fraction * 100) + "%";
  }

  function showRetry(job) {
    var foot = job.card.querySelector(".result-foot");
    foot.textContent = "";
    var retry = el("button", "btn btn-small", T.retry);
    retry.type = "button";
    retry.addEventListener("click", function () {
      foot.textContent = "";
      if (job.capture) { poll(job, 0); } else { enqueue(job); }
    });
    foot.appendChild(retry);
  }

  // --- upload -------------------------------------------------------------------------------
  function handleFiles(fileList) {
    var files = Array.prototype.slice.call(fileList || []);
    if (!files.length) return;
    if (!stationSelect.value || !productSelect.value) {
      window.alert(T.choose_station);
      return;
    }
    files.forEach(function (file) {
      var job = {
        file: file,
        station: stationSelect.value,
        productType: productSelect.value,
        card: newCard(file),
        capture: null,
      };
      if (file.type && file.type.indexOf("image/") !== 0) {
        setState(job, "FAILED", T.FAILED, T.not_image);
        return;
      }
      enqueue(job);
    });
  }

  function enqueue(job) {
    setState(job, "queued", T.queued, "");
    queue.push(job);
    pump();
  }

  function pump() {
    while (active < MAX_PARALLEL_UPLOADS && queue.length) {
      active += 1;
      upload(queue.shift());
    }
  }

  function upload(job) {
    setState(job, "uploading", T.uploading, "");
    setProgress(job, 0);
    var data = new FormData();
    data.append("image", job.file, job.file.name || "photo.jpg");
    data.append("station", job.station);
    data.append("product_type", job.productType);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", createUrl);
    xhr.setRequestHeader("X-CSRFToken", csrfToken);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) setProgress(job, e.loaded / e.total);
    });
    function done() { active -= 1; pump(); }
    xhr.addEventListener("load", function () {
      done();
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status >= 200 && xhr.status < 300 && body && body.id) {
        job.capture = body;
        setProgress(job, 1);
        setState(job, "reading", T.uploaded, "");
        refreshRecent();
        poll(job, 0);
      } else {
        setState(job, "FAILED", T.FAILED, errorMessage(xhr.status, body));
        if (xhr.status === 0 || xhr.status >= 500) showRetry(job);
      }
    });
    xhr.addEventListener("error", function () {
      done();
      setState(job, "FAILED", T.FAILED, T.network_error);
      showRetry(job);
    });
    xhr.send(data);
  }

  // --- wait for the read --------------------------------------------------------------------
  function poll(job, count) {
    var capture = job.capture;
    if (capture.status === "DONE" || capture.status === "FAILED") {
      showResult(job, capture);
      return;
    }
    if (count >= MAX_POLLS) {
      setState(job, "reading", T[capture.status] || capture.status, T.still_waiting);
      showRetry(job);
      return;
    }
    setState(job, "reading", T[capture.status] || capture.status,
      count >= SLOW_AFTER_POLLS ? T.still_waiting : "");
    var url = pathOf(capture.url);
    url += (url.indexOf("?") >= 0 ? "&" : "?") + "wait=" + WAIT_SECONDS;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (!response.ok) {
            var err = new Error(errorMessage(response.status, body));
            err.fatal = response.status >= 400 && response.status < 500;
            throw err;
          }
          return body;
        });
      })
      .then(function (body) {
        job.capture = body;
        poll(job, count + 1);
      })
      .catch(function (err) {
        if (err.fatal) {
          setState(job, "FAILED", T.FAILED, err.message);
          return;
        }
        // network blip or 5xx: try again after a pause, counting it as a poll
        setState(job, "reading", T.PROCESSING, err.message || T.network_error);
        window.setTimeout(function () { poll(job, count + 1); }, 2000);
      });
  }

  // --- result card: the capture page's result section, rendered by the server --------------
  function showResult(job, capture) {
    fetchFragment(pathOf(cardTemplate.replace(zeroUuid, capture.id)))
      .then(function (html) {
        var parsed = document.createElement("template");
        parsed.innerHTML = html;
        var section = parsed.content.querySelector(".result-body");
        if (!section) throw new Error(T.server_error.replace("%(status)s", "200"));
        var card = job.card;
        card.querySelector(".result-body").replaceWith(section);
        card.dataset.captureId = capture.id;
        var status = section.dataset.status || capture.status;
        setState(job, status, T[status] || status, "");
        var foot = card.querySelector(".result-foot");
        foot.textContent = "";
        var open = el("a", "btn btn-small", T.open_detail);
        open.href = detailTemplate.replace(zeroUuid, capture.id);
        foot.appendChild(open);
        refreshRecent();
      })
      .catch(function (err) {
        setState(job, "reading", T[capture.status] || capture.status,
          err.message || T.network_error);
        showRetry(job);
      });
  }

  // --- inputs: camera, file picker, drag and drop -------------------------------------------
  ["camera-input", "file-input"].forEach(function (id) {
    var input = document.getElementById(id);
    input.addEventListener("change", function () {
      var files = Array.prototype.slice.call(input.files || []);
      input.value = "";  // the same photo can be picked again
      handleFiles(files);
    });
  });

  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (e) {
      e.preventDefault();
      dropzone.classList.add("is-over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function () { dropzone.classList.remove("is-over"); });
  });
  dropzone.addEventListener("drop", function (e) {
    e.preventDefault();
    handleFiles(e.dataTransfer && e.dataTransfer.files);
  });
  // A photo dropped next to the zone must not replace the page.
  window.addEventListener("dragover", function (e) { e.preventDefault(); });
  window.addEventListener("drop", function (e) { e.preventDefault(); });
})();
