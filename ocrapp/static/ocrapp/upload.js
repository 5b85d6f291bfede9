/* Upload page: send each photo to POST /api/v1/captures (progress per file), wait for the read
 * with GET /api/v1/captures/{id}?wait=10, then draw the result card (review decision, photo +
 * SVG polygons, fields with their checks, codes, lines, quality warnings, failure), saying the
 * same as the server-rendered templates/ocrapp/_read_body.html. Plain JavaScript, no build step.
 * Translated strings come from the JSON script tag #ui-strings rendered by the server.
 */
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form) return;

  var T = JSON.parse(document.getElementById("ui-strings").textContent);
  var SVG_NS = "http://www.w3.org/2000/svg";
  var WAIT_SECONDS = 10;
  var MAX_POLLS = 60;           // 60 x 10 s: give up showing live progress after 10 minutes
  var SLOW_AFTER_POLLS = 3;     // say "taking longer than usual" after 30 s
  var MAX_PARALLEL_UPLOADS = 2;

  var createUrl = form.dataset.createUrl;
  var detailTemplate = form.dataset.detailUrl;
  var zeroUuid = form.dataset.zeroUuid;
  var serialTemplate = form.dataset.serialUrl;
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var stationSelect = document.getElementById("station");
  var productSelect = document.getElementById("product_type");
  var results = document.getElementById("results");
  var cardTemplate = document.getElementById("result-template");
  var dropzone = document.getElementById("dropzone");

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

  function percent(value) {
    var v = Number(value);
    return isFinite(v) ? (v * 100).toFixed(1) + "%" : "";
  }

  function confClass(value, threshold) {
    var v = Number(value);
    if (v >= threshold) return "conf conf-high";
    return v >= 0.5 ? "conf conf-mid" : "conf conf-low";
  }

  function pointsOf(polygon) {
    if (!Array.isArray(polygon)) return "";
    return polygon.map(function (p) { return Number(p[0]) + "," + Number(p[1]); }).join(" ");
  }

  function fieldLabel(name) {
    return (T.field_labels && T.field_labels[name]) || name;
  }

  function warningText(w) {
    var line = w.params && w.params.line;
    if (w.code === "glare_text") {
      return line ? T.warnings.glare_text.replace("%(n)s", line) : T.warnings.glare_text_plain;
    }
    return T.warnings[w.code] || w.message || w.code;
  }

  // "%(name)s" placeholders, as in the Python catalogue strings
  function fmt(template, params) {
    return String(template || "").replace(/%\((\w+)\)s/g, function (all, key) {
      var v = params[key];
      return v === undefined || v === null ? "" : String(v);
    });
  }

  // --- review, checks and codes: the same sentences as ocrui.py for _read_body.html -------
  var ID_SEPARATORS = /[\s\-:./]/g;

  function codeFormatLabel(format) {
    format = format || "";
    return (T.code_formats && T.code_formats[format]) || format;
  }

  function fieldReasonTexts(reasons, fallback) {
    var out = [];
    (Array.isArray(reasons) ? reasons : []).forEach(function (r) {
      if (!r || typeof r !== "object") return;
      var text = T.field_reasons[r.code] || r.message || r.code || "";
      if (text) out.push(text);
    });
    if (!out.length && fallback) out.push(fallback);
    return out;
  }

  // the format of the code that carries a field (see ocrui.field_code_format)
  function fieldCodeFormat(name, value, codes, mismatches) {
    var i, j;
    for (i = 0; i < mismatches.length; i++) {
      var m = mismatches[i];
      if (m && m.field === name && m.code_format) return m.code_format;
    }
    for (i = 0; i < codes.length; i++) {
      var gs1 = codes[i].gs1 || [];
      for (j = 0; j < gs1.length; j++) {
        if (gs1[j] && gs1[j].field === name) return codes[i].format || "";
      }
    }
    var bare = String(value || "").replace(ID_SEPARATORS, "").toUpperCase();
    if (bare) {
      for (i = 0; i < codes.length; i++) {
        var c = codes[i];
        if ((!c.gs1 || !c.gs1.length) &&
            String(c.text || "").replace(ID_SEPARATORS, "").toUpperCase().indexOf(bare) >= 0) {
          return c.format || "";
        }
      }
    }
    return "";
  }

  // {kind: "match" | "mismatch" | "code" | "", text} (see ocrui.code_check)
  function codeCheck(f, codes, mismatches) {
    var format = codeFormatLabel(fieldCodeFormat(f.name, f.value, codes, mismatches));
    var C = T.code_checks;
    if (f.code_match === false) {
      var coded = f.code_value || "";
      mismatches.forEach(function (m) {
        if (m && m.field === f.name && !coded) coded = m.coded || "";
      });
      return { kind: "mismatch",
        text: fmt(format ? C.mismatch : C.mismatch_plain, { code: format, coded: coded }) };
    }
    if (f.source === "code") {
      return { kind: "code", text: fmt(format ? C.from_code : C.from_code_plain, { code: format }) };
    }
    if (f.code_match === true) {
      return { kind: "match", text: fmt(format ? C.match : C.match_plain, { code: format }) };
    }
    return { kind: "", text: "" };
  }

  // "corrected from <raw>" with the changed characters marked (see ocrui.correction_html)
  function correctionNode(f) {
    var corr = (f.correction && typeof f.correction === "object") ? f.correction : {};
    var raw = String(corr.from || f.raw_value || "");
    var changed = {};
    (corr.changes || []).forEach(function (c) {
      if (c && typeof c.position === "number") changed[c.position] = true;
    });
    var small = el("small", "corrected");
    var parts = T.corrected_from.split("%(raw)s");
    small.appendChild(document.createTextNode(parts[0]));
    var span = el("span", "mono raw");
    var run = "";
    for (var i = 0; i < raw.length; i++) {
      if (changed[i]) {
        if (run) { span.appendChild(document.createTextNode(run)); run = ""; }
        span.appendChild(el("mark", "chg", raw.charAt(i)));
      } else {
        run += raw.charAt(i);
      }
    }
    if (run) span.appendChild(document.createTextNode(run));
    small.appendChild(span);
    small.appendChild(document.createTextNode(parts.slice(1).join("%(raw)s")));
    return small;
  }

  function reviewThreshold(review, fallback) {
    return (review && typeof review.auto_accept === "number") ? review.auto_accept : fallback;
  }

  // translated {code, field, text} of each review reason (see ocrui.review_reasons)
  function reviewReasons(review, fields, codes, mismatches, threshold) {
    var M = T.review_messages;
    var byName = {};
    fields.forEach(function (f) { if (!(f.name in byName)) byName[f.name] = f; });
    var mm = {};
    mismatches.forEach(function (m) { if (m && !(m.field in mm)) mm[m.field] = m; });
    var auto = reviewThreshold(review, threshold);
    var out = [];
    ((review && review.reasons) || []).forEach(function (r) {
      if (!r || typeof r !== "object") return;
      var code = String(r.code || ""), name = String(r.field || "");
      var label = fieldLabel(name);
      var f = byName[name], m = mm[name];
      var params = { field: label };
      var key;
      if (code === "missing") {
        key = "missing";
      } else if (code === "invalid") {
        var detail = f ? fieldReasonTexts(f.reasons, "").join("; ") : "";
        key = detail ? "invalid" : "invalid_plain";
        params.detail = detail;
      } else if (code === "low_confidence") {
        key = f ? "low_confidence" : "low_confidence_plain";
        params.confidence = f ? percent(f.confidence) : "";
        params.threshold = percent(auto);
      } else if (code === "mislabel") {
        var format = codeFormatLabel(fieldCodeFormat(name, f ? f.value : "", codes, mismatches));
        if (m && format) {
          params.printed = m.printed || ""; params.coded = m.coded || ""; params.code = format;
          key = "mislabel";
        } else if (f && f.code_value && format) {
          params.printed = f.value; params.coded = f.code_value; params.code = format;
          key = "mislabel";
        } else {
          key = "mislabel_plain";
        }
      } else {
        out.push({ code: code, field: name, text: label + ": " + (r.message || "") });
        return;
      }
      out.push({ code: code, field: name, text: fmt(M[key], params) });
    });
    return out;
  }

  function renderReview(read, fields, threshold) {
    var review = (read.review && typeof read.review === "object") ? read.review : {};
    var codes = Array.isArray(read.codes) ? read.codes : [];
    var mismatches = Array.isArray(read.mismatches) ? read.mismatches : [];
    var box;
    if (read.needs_review) {
      box = el("div", "review review-needed");
      box.setAttribute("role", "alert");
      box.dataset.review = "needs_review";
      box.appendChild(el("strong", "review-title", T.needs_review));
      var reasons = reviewReasons(review, fields, codes, mismatches, threshold);
      if (reasons.length) {
        var ul = el("ul", "review-reasons");
        reasons.forEach(function (r) {
          var li = el("li", "", r.text);
          li.dataset.code = r.code;
          li.dataset.field = r.field;
          ul.appendChild(li);
        });
        box.appendChild(ul);
      }
    } else {
      box = el("div", "review review-ok");
      box.dataset.review = "auto_accepted";
      box.appendChild(el("strong", "review-title", T.auto_accepted));
      box.appendChild(el("span", "review-detail",
        fmt(T.auto_accepted_detail, { threshold: percent(reviewThreshold(review, threshold)) })));
    }
    return box;
  }

  function renderCodes(codes) {
    var ul = el("ul", "codes");
    codes.forEach(function (c, index) {
      var li = el("li", "code-item");
      li.dataset.code = index;
      li.appendChild(el("span", "badge badge-code", codeFormatLabel(c.format)));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", "mono wrap code-text", c.text || ""));
      var elements = Array.isArray(c.gs1) ? c.gs1 : [];
      if (elements.length) {
        var gs1 = el("ul", "gs1");
        elements.forEach(function (e) {
          if (!e || typeof e !== "object") return;
          var item = el("li", e.valid ? "" : "is-invalid");
          item.dataset.ai = e.ai;
          item.appendChild(el("span", "mono", "(" + e.ai + ")"));
          item.appendChild(document.createTextNode(" " + (e.name || "") + ": "));
          item.appendChild(el("span", "mono wrap", e.value || ""));
          if (e.normalised && e.normalised !== e.value) {
            item.appendChild(document.createTextNode(" "));
            item.appendChild(el("small", "muted", "(" + e.normalised + ")"));
          }
          if (!e.valid) {
            item.appendChild(document.createTextNode(" "));
            item.appendChild(el("span", "badge badge-bad", T.invalid));
            if (e.reason) {
              item.appendChild(document.createTextNode(" "));
              item.appendChild(el("small", "", e.reason));
            }
          }
          gs1.appendChild(item);
        });
        li.appendChild(gs1);
      }
      if (Array.isArray(c.gs1_errors) && c.gs1_errors.length) {
        li.appendChild(el("small", "muted gs1-errors", c.gs1_errors.join("; ")));
      }
      ul.appendChild(li);
    });
    return ul;
  }

  function errorMessage(xhrStatus, body) {
    if (body && body.error && body.error.message) return body.error.message;
    if (!xhrStatus) return T.network_error;
    return T.server_error.replace("%(status)s", xhrStatus);
  }

  // --- card state ---------------------------------------------------------------------------
  function newCard(file) {
    var card = cardTemplate.content.firstElementChild.cloneNode(true);
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
    var option = productSelect.options[productSelect.selectedIndex];
    var threshold = parseFloat(option && option.dataset.threshold) || 0.85;
    files.forEach(function (file) {
      var job = {
        file: file,
        station: stationSelect.value,
        productType: productSelect.value,
        threshold: threshold,
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
      render(job, capture);
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

  // --- result card --------------------------------------------------------------------------
  function render(job, capture) {
    var card = job.card;
    var failed = capture.status === "FAILED";
    setState(job, capture.status, T[capture.status] || capture.status, "");
    card.dataset.captureId = capture.id;
    var body = card.querySelector(".result-body");
    body.textContent = "";
    body.className = "result-body result-grid";
    var read = capture.read || null;
    var lines = (read && read.lines) || [];
    var fields = (read && read.fields) || [];

    body.appendChild(renderFigure(capture, lines, fields,
      (read && Array.isArray(read.codes)) ? read.codes : []));

    var codes = (read && Array.isArray(read.codes)) ? read.codes : [];
    var data = el("div", "result-data");
    if (read && !failed) data.appendChild(renderReview(read, fields, job.threshold));
    var serial = capture.fields && capture.fields.serial_number;
    if (serial) {
      var big = el("p", "serial-big");
      big.appendChild(el("span", "label", T.serial_number));
      var link = el("a", "serial-value", serial);
      link.href = serialTemplate.replace("__VALUE__", encodeURIComponent(serial));
      big.appendChild(link);
      data.appendChild(big);
    }
    if (failed) {
      var failure = capture.failure || {};
      var alert = el("div", "alert alert-error failure");
      alert.setAttribute("role", "alert");
      alert.appendChild(el("strong", "", T.failures[failure.code] || T.failed_title));
      if (failure.reason) {
        alert.appendChild(document.createElement("br"));
        alert.appendChild(el("small", "", failure.reason + " (" + failure.code + ")"));
      }
      data.appendChild(alert);
    }
    var warnings = (read && read.quality && read.quality.warnings) || [];
    if (warnings.length) {
      var ul = el("ul", "warnings");
      ul.setAttribute("aria-label", T.quality);
      warnings.forEach(function (w) {
        var li = el("li", "warn", warningText(w));
        li.dataset.code = w.code;
        ul.appendChild(li);
      });
      data.appendChild(ul);
    }
    if (read) {
      data.appendChild(el("h3", "", T.fields));
      data.appendChild(fields.length ? renderFields(fields, job.threshold, read)
        : el("p", "muted", T.no_fields));
      if (codes.length) {
        data.appendChild(el("h3", "", T.codes));
        data.appendChild(renderCodes(codes));
      }
      data.appendChild(el("h3", "", T.lines));
      data.appendChild(lines.length ? renderLines(lines, job.threshold)
        : el("p", "muted", T.no_lines));
    }
    body.appendChild(data);

    var foot = card.querySelector(".result-foot");
    foot.textContent = "";
    var open = el("a", "btn btn-small", T.open_detail);
    open.href = detailTemplate.replace(zeroUuid, capture.id);
    foot.appendChild(open);
  }

  function renderFigure(capture, lines, fields, codes) {
    var figure = el("figure", "shot");
    var frame = el("div", "shot-frame");
    // same box as the photo, at most 70vh tall (see app.css)
    frame.style.maxWidth = "calc(70vh * " + capture.width + " / " + capture.height + ")";
    var img = document.createElement("img");
    img.src = pathOf(capture.image_url);
    img.width = capture.width;
    img.height = capture.height;
    img.alt = T.photo_alt;
    frame.appendChild(img);
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "overlay");
    svg.setAttribute("viewBox", "0 0 " + capture.width + " " + capture.height);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    lines.forEach(function (line) {
      svg.appendChild(polygon("poly-line", line.polygon, line.text, { line: line.order }));
    });
    fields.forEach(function (f) {
      var poly = f.box;
      if (!poly && f.line !== null && f.line !== undefined) {
        var src = lines.filter(function (l) { return l.order === f.line; })[0];
        poly = src ? src.polygon : null;
      }
      if (poly) {
        svg.appendChild(polygon("poly-field" + (f.valid ? "" : " is-invalid"), poly,
          fieldLabel(f.name) + ": " + f.value, { field: f.name }));
      }
    });
    codes.forEach(function (c, index) {
      if (Array.isArray(c.polygon) && c.polygon.length) {
        svg.appendChild(polygon("poly-code", c.polygon,
          codeFormatLabel(c.format) + ": " + (c.text || ""), { code: index }));
      }
    });
    frame.appendChild(svg);
    figure.appendChild(frame);
    if (lines.length) {
      var legend = el("figcaption", "legend");
      legend.appendChild(el("span", "key key-line"));
      legend.appendChild(document.createTextNode(T.text_line));
      legend.appendChild(el("span", "key key-field"));
      legend.appendChild(document.createTextNode(T.field));
      if (codes.length) {
        legend.appendChild(el("span", "key key-code"));
        legend.appendChild(document.createTextNode(T.code));
      }
      figure.appendChild(legend);
    }
    return figure;
  }

  function polygon(className, points, title, data) {
    var p = document.createElementNS(SVG_NS, "polygon");
    p.setAttribute("class", className);
    p.setAttribute("points", pointsOf(points));
    Object.keys(data).forEach(function (k) { p.setAttribute("data-" + k, data[k]); });
    var t = document.createElementNS(SVG_NS, "title");
    t.textContent = title;
    p.appendChild(t);
    return p;
  }

  function renderFields(fields, threshold, read) {
    var codes = Array.isArray(read.codes) ? read.codes : [];
    var mismatches = Array.isArray(read.mismatches) ? read.mismatches : [];
    var table = el("table", "data fields stack-sm");
    var head = el("thead");
    var hr = el("tr");
    [T.field, T.value, T.confidence, T.check].forEach(function (h) { hr.appendChild(el("th", "", h)); });
    head.appendChild(hr);
    table.appendChild(head);
    var tbody = el("tbody");
    fields.forEach(function (f) {
      var cc = codeCheck(f, codes, mismatches);
      var tr = el("tr", (f.valid ? "is-valid" : "is-invalid") +
        (cc.kind === "mismatch" ? " is-mismatch" : ""));
      tr.dataset.field = f.name;
      var th = el("th", "", fieldLabel(f.name));
      th.scope = "row";
      th.dataset.label = T.field;
      tr.appendChild(th);
      var value = el("td", "mono");
      value.dataset.label = T.value;
      value.appendChild(document.createTextNode(f.value || "—"));
      if (f.corrected) {
        value.appendChild(document.createElement("br"));
        value.appendChild(correctionNode(f));
      } else if (f.raw_value && f.raw_value !== f.value) {
        value.appendChild(document.createElement("br"));
        value.appendChild(el("small", "muted read-as", T.read_as + " " + f.raw_value));
      }
      tr.appendChild(value);
      var conf = el("td");
      conf.dataset.label = T.confidence;
      conf.appendChild(el("span", confClass(f.confidence, threshold), percent(f.confidence)));
      tr.appendChild(conf);
      var check = el("td");
      check.dataset.label = T.check;
      check.appendChild(el("span", f.valid ? "badge badge-ok" : "badge badge-bad",
        f.valid ? T.valid : T.invalid));
      var reasons = f.valid ? [] : fieldReasonTexts(f.reasons, f.reason);
      if (reasons.length) {
        check.appendChild(document.createTextNode(" "));
        check.appendChild(el("small", "check-reasons", reasons.join("; ")));
      }
      if (cc.kind) check.appendChild(el("span", "code-check code-" + cc.kind, cc.text));
      tr.appendChild(check);
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    return table;
  }

  function renderLines(lines, threshold) {
    var ol = el("ol", "lines");
    lines.forEach(function (line) {
      var li = el("li");
      li.dataset.line = line.order;
      li.appendChild(el("span", "mono", line.text));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", confClass(line.confidence, threshold), percent(line.confidence)));
      ol.appendChild(li);
    });
    return ol;
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
