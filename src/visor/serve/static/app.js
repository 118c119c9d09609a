/* visor web UI: plain JavaScript, no build step, no external resources.
 *
 * Talks to the visor REST API under /v1 (see the service docs). Every request carries the
 * API key from the header box (saved in localStorage) as X-API-Key.
 */
(function () {
  "use strict";

  var KEY_STORAGE = "visor.apiKey";
  var STATUSES = ["pending", "accepted", "corrected", "rejected"];
  var COLORS = { objects: "#2563eb", faces: "#16a34a", text: "#dc2626" };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name === "text") node.textContent = value;
        else if (name === "className") node.className = value;
        else node.setAttribute(name, value === true ? "" : String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function pct(value) {
    if (typeof value !== "number" || !isFinite(value)) return "";
    if (value > 0 && value < 0.001) return "<0.1%";
    return (value * 100).toFixed(value >= 0.995 || value < 0.1 ? 1 : 0) + "%";
  }

  function clamp01(value) {
    return typeof value === "number" && isFinite(value) ? Math.max(0, Math.min(1, value)) : 0;
  }

  function showBanner(node, message) {
    if (!node) return;
    if (message) {
      node.textContent = message;
      node.hidden = false;
    } else {
      node.textContent = "";
      node.hidden = true;
    }
  }

  /* ------------------------------------------------------------------ API key and fetch */

  var storage = (function () {
    try {
      var probe = "__visor_probe__";
      window.localStorage.setItem(probe, probe);
      window.localStorage.removeItem(probe);
      return window.localStorage;
    } catch (e) {
      return null;
    }
  })();

  function getKey() { return (storage && storage.getItem(KEY_STORAGE)) || ""; }

  function setKey(value) {
    if (!storage) return;
    if (value) storage.setItem(KEY_STORAGE, value);
    else storage.removeItem(KEY_STORAGE);
  }

  function ApiError(status, type, code, message) {
    this.name = "ApiError";
    this.status = status;
    this.type = type || "Error";
    this.code = code || "error";
    this.message = message || "request failed";
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  function errorFromBody(status, body) {
    var err = body && body.error;
    if (err && typeof err === "object") {
      return new ApiError(status, err.type, err.code, err.message || err.type);
    }
    if (body && typeof body.detail === "string") return new ApiError(status, "Error", "error", body.detail);
    if (body && Array.isArray(body.detail)) {
      var parts = body.detail.map(function (d) { return d && d.msg ? d.msg : JSON.stringify(d); });
      return new ApiError(status, "ValidationError", "invalid", parts.join("; "));
    }
    return new ApiError(status, "HTTPError", "http_" + status, "HTTP " + status);
  }

  function authRequired(required) {
    $("auth-message").hidden = !required;
    $("api-key").classList.toggle("needs-key", !!required);
    $("api-key").setAttribute("aria-invalid", required ? "true" : "false");
    if (required && document.activeElement !== $("api-key")) $("api-key").focus();
  }

  /** fetch() with the API key; resolves to the Response, rejects with ApiError when not ok. */
  function api(path, options) {
    options = options || {};
    var headers = new Headers(options.headers || {});
    var key = getKey();
    if (key) headers.set("X-API-Key", key);
    if (!headers.has("Accept")) headers.set("Accept", "application/json");
    var init = { method: options.method || "GET", headers: headers, body: options.body, cache: "no-store" };
    if (options.json !== undefined) {
      headers.set("Content-Type", "application/json");
      init.body = JSON.stringify(options.json);
    }
    return fetch(path, init).then(
      function (response) {
        if (response.status === 401) authRequired(true);
        if (response.ok || options.allowError) return response;
        return readJson(response).then(
          function (body) { throw errorFromBody(response.status, body); },
          function () { throw new ApiError(response.status, "HTTPError", "http_" + response.status,
                                           "HTTP " + response.status + " " + response.statusText); }
        );
      },
      function (err) {
        throw new ApiError(0, "NetworkError", "network", "Cannot reach the visor server (" + err.message + ")");
      }
    );
  }

  function readJson(response) {
    return response.text().then(function (text) { return text ? JSON.parse(text) : {}; });
  }

  function apiJson(path, options) {
    return api(path, options).then(readJson);
  }

  function describe(err) {
    if (err instanceof ApiError) {
      if (err.status === 401) return "API key required: " + err.message;
      return err.message + (err.code && err.code !== "error" ? " (" + err.code + ")" : "");
    }
    return (err && err.message) || String(err);
  }

  /* ------------------------------------------------------------------ tabs */

  var TABS = ["analyze", "review", "collections"];
  var currentTab = null;
  var tabLoaders = {};

  function selectTab(name, focus) {
    if (TABS.indexOf(name) < 0) name = "analyze";
    TABS.forEach(function (tab) {
      var button = $("tab-" + tab);
      var selected = tab === name;
      button.setAttribute("aria-selected", selected ? "true" : "false");
      button.tabIndex = selected ? 0 : -1;
      $("panel-" + tab).hidden = !selected;
    });
    if (focus) $("tab-" + name).focus();
    var changed = currentTab !== name;
    currentTab = name;
    if (window.location.hash !== "#" + name) {
      history.replaceState(null, "", "#" + name);
    }
    if (changed && tabLoaders[name]) tabLoaders[name]();
  }

  function initTabs() {
    TABS.forEach(function (tab, index) {
      var button = $("tab-" + tab);
      button.addEventListener("click", function () { selectTab(tab); });
      button.addEventListener("keydown", function (event) {
        var delta = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
        if (event.key === "Home") { selectTab(TABS[0], true); event.preventDefault(); return; }
        if (event.key === "End") { selectTab(TABS[TABS.length - 1], true); event.preventDefault(); return; }
        if (!delta) return;
        event.preventDefault();
        event.stopPropagation();
        selectTab(TABS[(index + delta + TABS.length) % TABS.length], true);
      });
    });
    window.addEventListener("hashchange", function () {
      selectTab(window.location.hash.replace(/^#/, ""));
    });
  }

  /* ------------------------------------------------------------------ API key form */

  function initKeyForm() {
    $("api-key").value = getKey();
    $("api-key-form").addEventListener("submit", function (event) {
      event.preventDefault();
      setKey($("api-key").value.trim());
      authRequired(false);
      $("api-key").blur();
      reloadAll();
    });
  }

  function reloadAll() {
    loadModels();
    refreshCounts();
    if (currentTab && tabLoaders[currentTab]) tabLoaders[currentTab]();
  }

  /* ------------------------------------------------------------------ Analyze */

  var analyze = { file: null, objectUrl: null, busy: false, seq: 0 };

  function loadModels() {
    return apiJson("/v1/models").then(function (body) {
      var models = (body && body.models) || [];
      var hasDetector = models.some(function (m) { return m && m.role === "detector"; });
      var label = $("feature-objects-label");
      if (hasDetector && label.hidden) $("feature-objects").checked = true;
      label.hidden = !hasDetector;
      if (!hasDetector) $("feature-objects").checked = false;
    }).catch(function () { /* 401 is shown by the banner; other errors surface on use */ });
  }

  function selectedFeatures() {
    var boxes = document.querySelectorAll("#features input[type=checkbox]");
    var out = [];
    Array.prototype.forEach.call(boxes, function (box) {
      if (box.checked && !box.closest("[hidden]")) out.push(box.value);
    });
    return out;
  }

  function setFile(file) {
    if (!file) return;
    analyze.file = file;
    $("file-name").textContent = file.name + " (" + Math.max(1, Math.round(file.size / 1024)) + " KB)";
    $("analyze-submit").disabled = false;
    runAnalyze();
  }

  function initAnalyze() {
    var input = $("file-input");
    var zone = $("drop-zone");
    input.addEventListener("change", function () {
      if (input.files && input.files[0]) setFile(input.files[0]);
    });
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
        zone.classList.add("dragover");
      });
    });
    ["dragleave", "dragend"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragover"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("dragover");
      var files = event.dataTransfer && event.dataTransfer.files;
      if (files && files.length) setFile(files[0]);
    });
    // Dropping outside the zone must not navigate away from the page.
    window.addEventListener("dragover", function (event) { event.preventDefault(); });
    window.addEventListener("drop", function (event) { event.preventDefault(); });
    $("analyze-form").addEventListener("submit", function (event) {
      event.preventDefault();
      runAnalyze();
    });
  }

  function runAnalyze() {
    if (!analyze.file) return;
    var features = selectedFeatures();
    if (!features.length) {
      showBanner($("analyze-error"), "Choose at least one feature.");
      return;
    }
    var seq = ++analyze.seq;
    var file = analyze.file;
    showBanner($("analyze-error"), null);
    $("analyze-status").textContent = "Analyzing " + file.name + "…";
    $("analyze-submit").disabled = true;
    $("analyze-results").setAttribute("aria-busy", "true");
    var form = new FormData();
    form.append("images", file, file.name);
    var url = "/v1/annotate?features=" + encodeURIComponent(features.join(","));
    var started = performance.now();
    var imagePromise = loadImage(file);
    imagePromise.catch(function () { /* handled below; avoid an unhandled rejection */ });
    api(url, { method: "POST", body: form, allowError: true })
      .then(function (response) {
        return readJson(response).catch(function () { return {}; }).then(function (body) {
          return { status: response.status, ok: response.ok, body: body };
        });
      })
      .then(function (res) {
        if (seq !== analyze.seq) return;
        var body = res.body || {};
        var doc = body.results && body.results[0];
        if (!res.ok && !(doc && doc.error)) throw errorFromBody(res.status, body);
        if (!doc) throw new ApiError(res.status, "EmptyResponse", "empty", "The server returned no result.");
        if (doc.error) throw errorFromBody(res.status, doc);
        $("analyze-status").textContent = "Done in " + Math.round(performance.now() - started) + " ms.";
        $("analyze-json").textContent = JSON.stringify(body, null, 2);
        renderResults(doc);
        return imagePromise.then(function (img) { if (seq === analyze.seq) draw(img, doc); },
                                 function () { drawPlaceholder("The browser cannot display this image."); });
      })
      .catch(function (err) {
        if (seq !== analyze.seq) return;
        $("analyze-status").textContent = "";
        clearResults();
        showBanner($("analyze-error"), describe(err));
        imagePromise.then(function (img) { draw(img, null); }, function () { drawPlaceholder(""); });
      })
      .then(function () {
        if (seq !== analyze.seq) return;
        $("analyze-submit").disabled = !analyze.file;
        $("analyze-results").removeAttribute("aria-busy");
      });
  }

  function loadImage(file) {
    if (analyze.objectUrl) URL.revokeObjectURL(analyze.objectUrl);
    var url = URL.createObjectURL(file);
    analyze.objectUrl = url;
    return new Promise(function (resolve, reject) {
      var img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = function () { reject(new Error("cannot decode image")); };
      img.src = url;
    });
  }

  function drawPlaceholder(message) {
    var canvas = $("analyze-canvas");
    canvas.width = 0;
    canvas.height = 0;
    canvas.hidden = true;
    $("canvas-placeholder").hidden = false;
    $("canvas-placeholder").textContent = message || "No image yet.";
  }

  function featureOk(slot) { return slot && typeof slot === "object" && !slot.error; }

  function draw(img, doc) {
    var canvas = $("analyze-canvas");
    var width = (doc && doc.width) || img.naturalWidth;
    var height = (doc && doc.height) || img.naturalHeight;
    canvas.width = width;
    canvas.height = height;
    canvas.hidden = false;
    $("canvas-placeholder").hidden = true;
    var ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    ctx.drawImage(img, 0, 0, width, height);
    if (!doc) return;
    var line = Math.max(2, Math.round(Math.max(width, height) / 300));
    var font = Math.max(12, Math.round(Math.max(width, height) / 45));
    ctx.lineWidth = line;
    ctx.font = "600 " + font + "px system-ui, sans-serif";
    ctx.textBaseline = "top";

    function tag(text, x, y, color) {
      var pad = Math.round(font / 4);
      var w = ctx.measureText(text).width + 2 * pad;
      var h = font + 2 * pad;
      var ty = y - h >= 0 ? y - h : y;
      ctx.fillStyle = color;
      ctx.fillRect(x, ty, w, h);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, x + pad, ty + pad);
    }

    function box(xyxy, color, text) {
      if (!Array.isArray(xyxy) || xyxy.length !== 4) return;
      ctx.strokeStyle = color;
      ctx.strokeRect(xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]);
      if (text) tag(text, xyxy[0], xyxy[1], color);
    }

    if (featureOk(doc.objects)) {
      (doc.objects.detections || []).forEach(function (d) {
        box(d.xyxy, COLORS.objects, objectName(d) + " " + pct(d.confidence));
      });
    }
    if (featureOk(doc.faces)) {
      (doc.faces.faces || []).forEach(function (f, i) {
        box(f.xyxy, COLORS.faces, f.name ? f.name : "face " + (i + 1));
        ctx.fillStyle = COLORS.faces;
        (f.landmarks || []).forEach(function (p) {
          ctx.beginPath();
          ctx.arc(p[0], p[1], line * 1.2, 0, 2 * Math.PI);
          ctx.fill();
        });
      });
    }
    if (featureOk(doc.text)) {
      ctx.strokeStyle = COLORS.text;
      (doc.text.lines || []).forEach(function (l) {
        var poly = l.polygon || [];
        if (poly.length < 3) return;
        ctx.beginPath();
        ctx.moveTo(poly[0][0], poly[0][1]);
        for (var i = 1; i < poly.length; i++) ctx.lineTo(poly[i][0], poly[i][1]);
        ctx.closePath();
        ctx.stroke();
      });
    }
  }

  function objectName(d) {
    return d.class_name || d.label || ("class " + d.class_id);
  }

  function barItem(name, confidence, extra) {
    var value = clamp01(confidence);
    var hasConf = typeof confidence === "number";
    return el("li", { "data-label": name, "data-confidence": hasConf ? String(confidence) : null }, [
      el("span", { className: "item-name", text: name }),
      hasConf
        ? el("span", { className: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
                       "aria-valuenow": String(Math.round(value * 100)),
                       "aria-label": name + " confidence" },
             [el("span", { style: "width:" + (value * 100).toFixed(1) + "%" })])
        : el("span", { className: "bar bar-none", "aria-hidden": "true" }),
      el("span", { className: "item-value", text: hasConf ? pct(confidence) : "" }),
      extra ? el("span", { className: "item-extra muted", text: extra }) : null
    ]);
  }

  /* A face's "confidence" is dlib's raw detector score (the HOG SVM margin or the CNN's MMOD
     score: above 1 for a clear face, below 0 for a doubtful one), not a probability: it is shown
     as a labelled number, never as a percentage or a bar. */
  function faceScore(score) {
    return typeof score === "number" && isFinite(score) ? "score " + score.toFixed(2) : "";
  }

  function faceItem(name, score, extra) {
    var text = faceScore(score);
    return el("li", { "data-label": name, "data-score": text ? String(score) : null }, [
      el("span", { className: "item-name", text: name }),
      el("span", { className: "bar bar-none", "aria-hidden": "true" }),
      el("span", { className: "item-value", text: text,
                   title: text ? "raw detector score (not a probability)" : null }),
      extra ? el("span", { className: "item-extra muted", text: extra }) : null
    ]);
  }

  function fillList(listId, emptyId, slot, requested, build) {
    var list = $(listId);
    var empty = $(emptyId);
    clear(list);
    if (!requested) {
      empty.textContent = "not requested";
      empty.hidden = false;
      return;
    }
    if (slot && slot.error) {
      empty.textContent = "Error: " + (slot.error.message || slot.error.type || "failed");
      empty.classList.add("error-text");
      empty.hidden = false;
      return;
    }
    empty.classList.remove("error-text");
    var items = build(slot) || [];
    items.forEach(function (node) { list.appendChild(node); });
    empty.textContent = "none found";
    empty.hidden = items.length > 0;
  }

  function renderResults(doc) {
    $("objects-section").hidden = !("objects" in doc);
    fillList("labels", "labels-empty", doc.labels, "labels" in doc, function (slot) {
      return (slot.predictions || []).map(function (p) { return barItem(p.label, p.confidence); });
    });
    fillList("objects", "objects-empty", doc.objects, "objects" in doc, function (slot) {
      return (slot.detections || []).map(function (d) {
        return barItem(objectName(d), d.confidence, boxText(d.xyxy));
      });
    });
    fillList("faces", "faces-empty", doc.faces, "faces" in doc, function (slot) {
      return (slot.faces || []).map(function (f, i) {
        var name = f.name ? f.name : "Face " + (i + 1);
        return faceItem(name, f.confidence, boxText(f.xyxy));
      });
    });
    fillList("text-lines", "text-empty", doc.text, "text" in doc, function (slot) {
      return (slot.lines || []).map(function (l) {
        return el("li", { "data-confidence": String(l.confidence) }, [
          el("span", { className: "text-line", text: l.text }),
          el("span", { className: "muted", text: " " + pct(l.confidence) })
        ]);
      });
    });
  }

  function boxText(xyxy) {
    if (!Array.isArray(xyxy)) return "";
    return "[" + xyxy.map(function (v) { return Math.round(v); }).join(", ") + "]";
  }

  function clearResults() {
    ["labels", "objects", "faces", "text-lines"].forEach(function (id) { clear($(id)); });
    ["labels-empty", "objects-empty", "faces-empty", "text-empty"].forEach(function (id) {
      $(id).textContent = "—";
      $(id).classList.remove("error-text");
      $(id).hidden = false;
    });
    $("analyze-json").textContent = "";
  }

  /* ------------------------------------------------------------------ Review */

  var review = { items: [], index: 0, busy: false, loaded: false, imageUrl: null, imageSeq: 0 };

  function setCounts(counts) {
    counts = counts || {};
    STATUSES.forEach(function (status) {
      $("review-count-" + status).textContent = String(counts[status] || 0);
    });
    var pending = counts.pending || 0;
    var badge = $("tab-review-badge");
    badge.textContent = String(pending);
    badge.hidden = !pending;
  }

  function refreshCounts() {
    return apiJson("/v1/review/items?status=pending&limit=1").then(function (body) {
      setCounts(body.counts);
    }).catch(function () { /* shown elsewhere */ });
  }

  /** Reload the pending list; keep the current item, or the one now at the same position. */
  function loadReview(keepId, position) {
    showBanner($("review-error"), null);
    $("review-status").textContent = "Loading…";
    return apiJson("/v1/review/items?status=pending&limit=200&offset=0").then(function (body) {
      review.items = (body && body.items) || [];
      review.loaded = true;
      setCounts(body && body.counts);
      var index = -1;
      if (keepId !== undefined && keepId !== null) {
        index = review.items.findIndex(function (item) { return item.id === keepId; });
      }
      if (index < 0) index = typeof position === "number" ? position : review.index;
      review.index = Math.max(0, Math.min(index, review.items.length - 1));
      $("review-status").textContent = "";
      renderReview();
    }).catch(function (err) {
      $("review-status").textContent = "";
      showBanner($("review-error"), describe(err));
    });
  }

  function currentItem() { return review.items[review.index] || null; }

  function renderReview() {
    var item = currentItem();
    var empty = !item;
    $("review-empty").hidden = !empty;
    $("review-item").hidden = empty;
    if (empty) {
      $("review-item").removeAttribute("data-item-id");
      setReviewImage(null);
      return;
    }
    $("review-item").setAttribute("data-item-id", String(item.id));
    $("review-position").textContent = (review.index + 1) + " of " + review.items.length;
    $("review-id").textContent = "#" + item.id;
    var meta = [item.image, item.model, item.task, item.created_at].filter(Boolean).join(" · ");
    $("review-meta").textContent = meta;
    $("review-predicted").textContent = item.predicted_label || "(none)";
    $("review-confidence").textContent = typeof item.confidence === "number" ? pct(item.confidence) : "";
    $("review-confidence-bar").style.width = (clamp01(item.confidence) * 100).toFixed(1) + "%";
    $("review-reason").textContent = item.reason ? "Queued: " + item.reason : "";
    var input = $("review-correct-input");
    input.value = "";
    input.placeholder = "type the right label";
    var datalist = $("review-labels");
    clear(datalist);
    (item.labels || []).forEach(function (label) { datalist.appendChild(el("option", { value: label })); });
    $("review-prev").disabled = review.index <= 0;
    $("review-next").disabled = review.index >= review.items.length - 1;
    $("review-image").alt = "Image under review: " + (item.image || "item " + item.id);
    setReviewImage(item);
  }

  function setReviewImage(item) {
    var img = $("review-image");
    var seq = ++review.imageSeq;
    if (!item) {
      img.removeAttribute("src");
      if (review.imageUrl) URL.revokeObjectURL(review.imageUrl);
      review.imageUrl = null;
      return;
    }
    img.classList.add("loading");
    var path = item.image_url || "/v1/review/items/" + encodeURIComponent(item.id) + "/image";
    api(path, { headers: { Accept: "image/*" } })
      .then(function (response) { return response.blob(); })
      .then(function (blob) {
        if (seq !== review.imageSeq) return;
        var url = URL.createObjectURL(blob);
        if (review.imageUrl) URL.revokeObjectURL(review.imageUrl);
        review.imageUrl = url;
        img.src = url;
        img.classList.remove("loading");
      })
      .catch(function (err) {
        if (seq !== review.imageSeq) return;
        img.classList.remove("loading");
        showBanner($("review-error"), "Cannot load the image: " + describe(err));
      });
  }

  function move(delta) {
    if (!review.items.length) return;
    var next = Math.max(0, Math.min(review.index + delta, review.items.length - 1));
    if (next === review.index) return;
    review.index = next;
    renderReview();
  }

  function decide(action, label) {
    var item = currentItem();
    if (!item || review.busy) return;
    var payload = { action: action };
    if (action === "correct") {
      label = (label || "").trim();
      if (!label) {
        showBanner($("review-error"), "Type the correct label first.");
        $("review-correct-input").focus();
        return;
      }
      payload.label = label;
    }
    review.busy = true;
    setReviewButtons(true);
    showBanner($("review-error"), null);
    var position = review.index;
    api("/v1/review/items/" + encodeURIComponent(item.id), { method: "POST", json: payload })
      .then(readJson)
      .then(function (updated) {
        var word = { accept: "Accepted", correct: "Corrected", reject: "Rejected" }[action];
        $("review-status").textContent = word + " item #" + item.id +
          (updated && updated.label ? " as “" + updated.label + "”" : "") + ".";
        review.busy = false;
        setReviewButtons(false);
        if (document.activeElement === $("review-correct-input")) $("review-correct-input").blur();
        return loadReview(null, position);
      })
      .catch(function (err) {
        review.busy = false;
        setReviewButtons(false);
        showBanner($("review-error"), describe(err));
      });
  }

  function setReviewButtons(disabled) {
    ["review-accept", "review-reject", "review-correct"].forEach(function (id) { $(id).disabled = disabled; });
    $("review-item").setAttribute("aria-busy", disabled ? "true" : "false");
  }

  function isTyping(target) {
    if (!target) return false;
    var tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  function initReview() {
    $("review-accept").addEventListener("click", function () { decide("accept"); });
    $("review-reject").addEventListener("click", function () { decide("reject"); });
    $("review-prev").addEventListener("click", function () { move(-1); });
    $("review-next").addEventListener("click", function () { move(1); });
    $("review-refresh").addEventListener("click", function () {
      var item = currentItem();
      loadReview(item ? item.id : null);
    });
    $("review-correct-form").addEventListener("submit", function (event) {
      event.preventDefault();
      decide("correct", $("review-correct-input").value);
    });
    $("review-correct-input").addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        $("review-correct-input").blur();
      }
    });

    document.addEventListener("keydown", function (event) {
      if (currentTab !== "review") return;
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (isTyping(event.target)) return;
      var onControl = event.target && (event.target.tagName === "BUTTON" || event.target.tagName === "A" ||
                                       event.target.tagName === "SUMMARY");
      var onTab = event.target && event.target.getAttribute && event.target.getAttribute("role") === "tab";
      var key = event.key;
      if (key === "Enter" && onControl) return; // let the focused control act on Enter
      if ((key === "ArrowLeft" || key === "ArrowRight") && onTab) return;
      switch (key) {
        case "a": case "A": case "Enter":
          event.preventDefault();
          decide("accept");
          break;
        case "r": case "R":
          event.preventDefault();
          decide("reject");
          break;
        case "c": case "C":
          if (!currentItem()) return;
          event.preventDefault(); // do not type the "c" into the box
          $("review-correct-input").focus();
          $("review-correct-input").select();
          break;
        case "j": case "J": case "ArrowRight": case "ArrowDown":
          event.preventDefault();
          move(1);
          break;
        case "k": case "K": case "ArrowLeft": case "ArrowUp":
          event.preventDefault();
          move(-1);
          break;
        default:
          break;
      }
    });
  }

  /* ------------------------------------------------------------------ Collections */

  var collections = { selected: null };

  function loadCollections() {
    showBanner($("collections-error"), null);
    return apiJson("/v1/collections").then(function (body) {
      var list = $("collections-list");
      clear(list);
      var items = (body && body.collections) || [];
      $("collections-empty").hidden = items.length > 0;
      items.forEach(function (c) {
        var button = el("button", { type: "button", className: "linklike", "data-collection": c.name,
                                    "aria-pressed": c.name === collections.selected ? "true" : "false" }, [
          el("span", { className: "item-name", text: c.name }),
          el("span", { className: "muted small",
                       text: " " + (c.people || 0) + " people · " + (c.faces || 0) + " faces" })
        ]);
        button.addEventListener("click", function () { showCollection(c.name); });
        list.appendChild(el("li", { "data-collection": c.name }, [button]));
      });
      if (collections.selected && items.some(function (c) { return c.name === collections.selected; })) {
        showCollection(collections.selected);
      } else {
        collections.selected = null;
        $("collection-detail").hidden = true;
      }
    }).catch(function (err) {
      showBanner($("collections-error"), describe(err));
    });
  }

  function showCollection(name) {
    collections.selected = name;
    Array.prototype.forEach.call(document.querySelectorAll("#collections-list button"), function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-collection") === name ? "true" : "false");
    });
    return apiJson("/v1/collections/" + encodeURIComponent(name)).then(function (body) {
      if (collections.selected !== name) return;
      $("collection-detail").hidden = false;
      $("collection-name").textContent = body.name || name;
      var people = $("people");
      clear(people);
      var list = (body && body.people) || [];
      list.forEach(function (p) {
        people.appendChild(el("li", { "data-person": p.name }, [
          el("span", { className: "item-name", text: p.name }),
          el("span", { className: "muted", text: " " + (p.faces || 0) + (p.faces === 1 ? " face" : " faces") })
        ]));
      });
      $("people-empty").hidden = list.length > 0;
    }).catch(function (err) {
      showBanner($("collections-error"), describe(err));
    });
  }

  function initCollections() {
    $("collections-refresh").addEventListener("click", loadCollections);
  }

  /* ------------------------------------------------------------------ start */

  function start() {
    tabLoaders.review = function () { return loadReview(); };
    tabLoaders.collections = loadCollections;
    initKeyForm();
    initTabs();
    initAnalyze();
    initReview();
    initCollections();
    selectTab(window.location.hash.replace(/^#/, "") || "analyze");
    loadModels();
    if (currentTab !== "review") refreshCounts();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
