/*
 * engage.js — the little JavaScript engage needs of its own.
 *
 * Plain script, no build step; load it with `defer`, before or after htmx:
 *
 *   <meta name="engage-csrf-token" content="{{ csrf_token() }}">
 *   <script defer src=".../static/engage/engage.js"
 *           data-sw-url=".../sw.js" data-sw-scope=".../"></script>
 *
 * Everything here is an enhancement. Each form still posts without it, and
 * the app works without a service worker.
 */
(function () {
  "use strict";

  // document.currentScript is only set while this file is first run, so
  // take it now; the service worker is registered later, after page load.
  var thisScript = document.currentScript;

  /* ---- The style nonce, for htmx -----------------------------------------
   * Under a Content-Security-Policy without 'unsafe-inline' styles, the
   * <style> htmx adds for its request indicators needs the page's nonce.
   * engage_assets() puts it in a meta tag (Trix reads the same tag). htmx
   * adds its style once the document is parsed, so handing the nonce over
   * now (htmx loaded first) or then (htmx loaded after this file) is in
   * time; a nonce the page's own htmx-config gives wins.
   */
  function shareStyleNonce() {
    var meta = document.querySelector('meta[name="trix-csp-nonce"]');
    if (meta && window.htmx && !window.htmx.config.inlineStyleNonce) {
      window.htmx.config.inlineStyleNonce = meta.getAttribute("content");
    }
  }
  shareStyleNonce();
  document.addEventListener("DOMContentLoaded", shareStyleNonce);

  /* ---- CSRF token on htmx requests --------------------------------------
   * Plain forms carry the token in a hidden field. htmx requests sent from
   * buttons or links have no such field, so the token travels as a header
   * instead, read from the page's meta tag.
   */
  function csrfToken() {
    // Read on every request rather than once: a swapped page may carry a
    // fresh token.
    var meta = document.querySelector('meta[name="engage-csrf-token"]');
    return meta ? meta.getAttribute("content") : null;
  }

  function isSameOrigin(path) {
    try {
      return new URL(path, document.baseURI).origin === window.location.origin;
    } catch (error) {
      return false;
    }
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var token = csrfToken();
    // Never hand the token to another origin.
    if (token && isSameOrigin(event.detail.path)) {
      event.detail.headers["X-CSRFToken"] = token;
    }
  });

  /* ---- Explained refusals are shown, not dropped ------------------------
   * htmx leaves 4xx answers unswapped, which would leave a rep staring at a
   * spinner. engage marks the refusals it explains (no role, form errors,
   * not found) with a header; those are swapped in like any partial. Other
   * errors get a short message in place of the request's target.
   */
  // The wording comes from the server (translated there) through data-msg-*
  // attributes on this script's tag; the fallback is for a host that omits them.
  function message(attribute, fallback) {
    return (thisScript && thisScript.getAttribute(attribute)) || fallback;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || xhr.status < 400) {
      return;
    }
    if (xhr.getResponseHeader("X-Engage-Explained")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // A short error note after the element whose request failed, for engage's own elements.
  function noteAfter(target, text) {
    if (!target || !target.closest || !target.closest("[class*='engage-']")) {
      return;
    }
    var note = document.createElement("p");
    note.className = "engage-notice engage-notice--error";
    note.setAttribute("role", "alert");
    note.textContent = text;
    target.insertAdjacentElement("afterend", note);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? " (" + event.detail.xhr.status + ")" : "";
    noteAfter(event.detail.target, message("data-msg-error", "Something went wrong.") + status);
  });

  document.addEventListener("htmx:sendError", function (event) {
    noteAfter(event.detail.target, message("data-msg-offline", "The server cannot be reached."));
  });

  /* ---- Service worker ----------------------------------------------------
   * The page says where the worker lives and what it controls through
   * data-sw-url and data-sw-scope on this <script> tag, since only the Flask
   * app knows the URL prefix engage was mounted under.
   */
  function registerServiceWorker() {
    var url = thisScript && thisScript.getAttribute("data-sw-url");
    var scope = thisScript && thisScript.getAttribute("data-sw-scope");
    if (!url || !scope) {
      return;
    }
    try {
      if (!("serviceWorker" in navigator)) {
        return;
      }
      navigator.serviceWorker.register(url, { scope: scope }).catch(function (error) {
        // Offline support is a bonus: a failed registration (private window,
        // plain http, a blocked scope) must not disturb the page.
        console.debug("engage: service worker not registered:", error);
      });
    } catch (error) {
      // Some browsers throw on merely touching navigator.serviceWorker when
      // storage is disabled.
      console.debug("engage: service worker not available:", error);
    }
  }

  // Wait for the page to finish loading so the worker's install downloads
  // do not compete with the page's own.
  if (document.readyState === "complete") {
    registerServiceWorker();
  } else {
    window.addEventListener("load", registerServiceWorker);
  }

  /* ---- Popup menus (<details class="engage-menu">) ----------------------
   * <details> opens and closes on its own, and works without this script,
   * but it stays open until its summary is clicked again. People expect a
   * menu to close on Escape, on a click elsewhere and once an item is
   * chosen.
   */
  function openMenus() {
    return document.querySelectorAll("details.engage-menu[open]");
  }

  function closeMenu(menu, returnFocus) {
    menu.removeAttribute("open");
    if (returnFocus) {
      var summary = menu.querySelector("summary");
      if (summary) {
        summary.focus();
      }
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") {
      return;
    }
    openMenus().forEach(function (menu) {
      // Give focus back to the + button if it was inside the menu, so a
      // keyboard user is not dropped at the top of the page.
      closeMenu(menu, menu.contains(document.activeElement));
    });
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    openMenus().forEach(function (menu) {
      if (!menu.contains(target)) {
        closeMenu(menu, false);
      } else if (target.closest && target.closest(".engage-menu__item")) {
        // An item was chosen: htmx may now swap a panel in, and the menu
        // should not stay open on top of it.
        closeMenu(menu, false);
      }
    });
  });
  /* ---- The body editor (SPEC S5) -----------------------------------------
   * Without JavaScript the body is a plain textarea and the server reads it
   * as text. Here it becomes a Trix editor: a hidden input (same name) holds
   * the HTML, and body_format tells the server so. Trix brings bold, italic,
   * lists, links on Ctrl+K / Cmd+K, and cleans pasted HTML.
   */
  /* Trix's toolbar tooltips and link dialog in the reader's language: the
   * server puts the translated words on this script's data-trix-lang, and they
   * must be in Trix.config.lang before the first toolbar is drawn. */
  var trixLanguageSet = false;
  function translateTrix() {
    if (trixLanguageSet || !window.Trix || !window.Trix.config || !thisScript) {
      return;
    }
    trixLanguageSet = true;
    var words = thisScript.getAttribute("data-trix-lang");
    if (!words) {
      return;
    }
    try {
      var lang = JSON.parse(words);
      Object.keys(lang).forEach(function (key) {
        window.Trix.config.lang[key] = lang[key];
      });
    } catch (ignored) {
      // Malformed words: Trix keeps its English.
    }
  }

  function enhanceEditors(root) {
    if (!window.customElements || !window.customElements.get("trix-editor")) {
      return; // Trix did not load: the textarea keeps working.
    }
    translateTrix();
    var textareas = root.querySelectorAll
      ? root.querySelectorAll("textarea[data-engage-editor]")
      : [];
    Array.prototype.forEach.call(textareas, function (textarea) {
      var form = textarea.form;
      var label = form && form.querySelector('label[for="' + textarea.id + '"]');
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = textarea.name;
      input.id = textarea.id + "-html";
      input.value = textarea.getAttribute("data-html") || "";
      var editor = document.createElement("trix-editor");
      editor.setAttribute("input", input.id);
      editor.id = textarea.id;
      editor.className = "engage-editor trix-content";
      if (label) {
        label.id = label.id || textarea.id + "-label";
        editor.setAttribute("aria-labelledby", label.id);
      }
      ["aria-invalid", "aria-describedby", "data-engage-autofocus"].forEach(function (name) {
        if (textarea.hasAttribute(name)) {
          editor.setAttribute(name, textarea.getAttribute(name));
        }
      });
      var format = form && form.querySelector("[data-engage-body-format]");
      if (format) {
        format.value = "html";
      }
      textarea.replaceWith(input);
      input.insertAdjacentElement("afterend", editor);
    });
  }

  // Files are attached through the attachment list, not dropped into the text.
  document.addEventListener("trix-file-accept", function (event) {
    event.preventDefault();
  });

  /* ---- Record typeahead in To, Cc, Bcc and Regarding ---------------------
   * htmx fetches the options as the rep types; this part makes them a proper
   * listbox: arrow keys move, Enter or a click chooses, Escape closes.
   */
  function listFor(input) {
    return document.getElementById(input.getAttribute("aria-controls"));
  }

  function options(list) {
    return Array.prototype.slice.call(
      list.querySelectorAll('[role="option"]:not([aria-disabled="true"])')
    );
  }

  function closeList(input) {
    var list = listFor(input);
    if (list) {
      list.innerHTML = "";
    }
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(input, option) {
    var list = listFor(input);
    Array.prototype.forEach.call(list.querySelectorAll('[aria-selected="true"]'), function (el) {
      el.setAttribute("aria-selected", "false");
    });
    option.setAttribute("aria-selected", "true");
    input.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  }

  function quoted(name) {
    return /[,;"<>@]/.test(name) ? '"' + name.replace(/"/g, "") + '"' : name;
  }

  function choose(input, option) {
    var form = input.form;
    var ref = option.getAttribute("data-ref");
    if (input.getAttribute("data-engage-typeahead") === "regarding") {
      form.querySelector("[data-engage-regarding]").value = ref;
      var shown = form.querySelector("[data-engage-regarding-name]");
      if (shown) {
        shown.textContent = option.getAttribute("data-label");
      }
      input.value = "";
    } else {
      var address = option.getAttribute("data-address");
      var name = option.getAttribute("data-name");
      // Keep what was already written; replace only the entry being typed.
      var entries = input.value.split(/[,;]/).map(function (part) {
        return part.trim();
      });
      entries.pop();
      entries = entries.filter(Boolean);
      entries.push(quoted(name) + " <" + address + ">");
      input.value = entries.join(", ") + ", ";
      var picked = form.querySelector("[data-engage-picked]");
      if (picked) {
        var hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = "picked";
        hidden.value = address.toLowerCase() + "|" + ref;
        picked.appendChild(hidden);
      }
    }
    closeList(input);
    input.focus();
  }

  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("[data-engage-typeahead]")) {
      return;
    }
    var list = listFor(input);
    var choices = list ? options(list) : [];
    if (event.key === "Escape") {
      if (choices.length) {
        event.stopPropagation();
        event.preventDefault(); // only the list closes, not the panel around it
      }
      closeList(input);
      return;
    }
    if (!choices.length) {
      return;
    }
    var current = list.querySelector('[aria-selected="true"]');
    var index = choices.indexOf(current);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      var step = event.key === "ArrowDown" ? 1 : -1;
      var next = index < 0 ? (step > 0 ? 0 : choices.length - 1) : (index + step + choices.length) % choices.length;
      highlight(input, choices[next]);
    } else if (event.key === "Enter" && current) {
      event.preventDefault(); // choose the record, do not submit the form
      choose(input, current);
    }
  });

  document.addEventListener("click", function (event) {
    var option = event.target.closest && event.target.closest('.engage-options [role="option"]');
    if (!option || option.getAttribute("aria-disabled") === "true") {
      return;
    }
    var input = document.querySelector('[aria-controls="' + option.parentElement.id + '"]');
    if (input) {
      choose(input, option);
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var list = event.detail.target;
    if (!list || !list.matches || !list.matches(".engage-options")) {
      return;
    }
    var input = document.querySelector('[aria-controls="' + list.id + '"]');
    if (input) {
      input.setAttribute("aria-expanded", list.children.length ? "true" : "false");
    }
  });

  /* ---- The sender's time zone for Send later ------------------------------
   * Times in the Send later dialog are the sender's own (S19). When their
   * profile has no zone, the server uses the browser's, sent in this field.
   */
  function fillBrowserZone(root) {
    var zone;
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (error) {
      return;
    }
    var fields = root.querySelectorAll ? root.querySelectorAll("[data-engage-browser-zone]") : [];
    Array.prototype.forEach.call(fields, function (field) {
      if (!field.value) {
        field.value = zone || "";
      }
    });
  }

  // A dialog re-rendered by the server (the Send later poll) stays open if it was open: its
  // state travels in a hidden field next to it.
  document.addEventListener(
    "toggle",
    function (event) {
      var details = event.target;
      if (!details.matches || !details.matches("details[data-engage-keep-open]")) {
        return;
      }
      var field = details.parentElement.querySelector("[data-engage-open-state]");
      if (field) {
        field.value = details.open ? "1" : "";
      }
      // A dialog that works its content out again when the rep opens it (Send later, S40)
      // asks the server here: an htmx trigger filter would need eval, which the CSP forbids.
      // Only the rep's own opening counts: a redrawn dialog that arrives open toggles too.
      if (details.open && details.hasAttribute("data-engage-opened-by-rep")) {
        details.removeAttribute("data-engage-opened-by-rep");
        if (window.htmx) {
          window.htmx.trigger(details, "engage-opened");
        }
      }
    },
    true
  );
  // A redraw asked for before the rep opened a dialog (the recipients changed a moment
  // earlier) must not close it: a dialog the rep opened while the request was on its way
  // stays open across the swap. One open when the request left is the server's to close (OK).
  function openDialogs(target) {
    var ids = [];
    if (target && target.querySelectorAll) {
      var open = target.querySelectorAll("details[data-engage-keep-open][open]");
      Array.prototype.forEach.call(open, function (details) {
        var holder = details.closest("[id]");
        if (holder) {
          ids.push(holder.id);
        }
      });
    }
    return ids;
  }
  var openAtRequest = new WeakMap();
  var openedMeanwhile = [];
  document.addEventListener("htmx:beforeRequest", function (event) {
    openAtRequest.set(event.detail.xhr, openDialogs(event.detail.target));
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var before = openAtRequest.get(event.detail.xhr) || [];
    openedMeanwhile = openDialogs(event.detail.target).filter(function (id) {
      return before.indexOf(id) < 0;
    });
  });
  document.addEventListener("htmx:afterSettle", function () {
    openedMeanwhile.forEach(function (id) {
      var holder = document.getElementById(id);
      var details = holder && holder.querySelector("details[data-engage-keep-open]");
      if (details && !details.open) {
        details.open = true;
      }
    });
    openedMeanwhile = [];
  });
  document.addEventListener(
    "click",
    function (event) {
      var summary = event.target.closest && event.target.closest("summary");
      var details = summary && summary.parentElement;
      if (details && !details.open && details.hasAttribute("data-engage-redraw-on-open")) {
        details.setAttribute("data-engage-opened-by-rep", "");
      }
    },
    true
  );

  // A panel that comes back with a field to work on next (the text of an applied template)
  // puts the cursor there.
  function focusMarked(root) {
    var marked = root.querySelector && root.querySelector("[data-engage-autofocus]");
    if (marked) {
      marked.focus();
    }
  }

  document.addEventListener("htmx:load", function (event) {
    enhanceEditors(event.detail.elt);
    fillBrowserZone(event.detail.elt);
    focusMarked(event.detail.elt);
  });
  document.addEventListener("htmx:configRequest", function (event) {
    // The compose panel's first load (a GET) carries no form: send the zone along.
    if (!event.detail.parameters.browser_zone) {
      try {
        event.detail.parameters.browser_zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      } catch (error) {
        /* an old browser: the profile's zone or UTC is used */
      }
    }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      enhanceEditors(document);
      fillBrowserZone(document);
    });
  } else {
    enhanceEditors(document);
    fillBrowserZone(document);
  }
})();

/*
 * Attachments in the compose panel (SPEC S16–S18).
 *
 * The file input and its buttons are part of the compose form and post it
 * as multipart/form-data, with or without this script. Here the upload
 * shows its progress (htmx's htmx:xhr:progress events drive a <progress>
 * bar), and a file over the size limit is refused as soon as it is chosen,
 * before a single byte is sent. The server checks the size again anyway.
 */
(function () {
  "use strict";

  function fileInput(form) {
    return form && form.querySelector("input[type=file][data-engage-attachment-input]");
  }

  function chosenFile(input) {
    return input && input.files && input.files.length ? input.files[0] : null;
  }

  function showError(input, text) {
    var field = input.closest(".engage-attach");
    var error = field && field.querySelector("[data-engage-attachment-error]");
    if (!error) {
      return;
    }
    error.textContent = text;
    error.hidden = !text;
    if (text) {
      input.setAttribute("aria-invalid", "true");
      if ((input.getAttribute("aria-describedby") || "").indexOf(error.id) < 0) {
        input.setAttribute("aria-describedby", (input.getAttribute("aria-describedby") + " " + error.id).trim());
      }
    } else {
      input.removeAttribute("aria-invalid");
    }
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("input[type=file][data-engage-attachment-input]")) {
      return;
    }
    var file = chosenFile(input);
    var limit = Number(input.getAttribute("data-max-bytes")) || 0;
    if (file && limit && file.size > limit) {
      var template = input.getAttribute("data-msg-too-large") || "{name}";
      showError(input, template.split("{name}").join(file.name));
      input.value = ""; // so no request carries it
    } else {
      showError(input, "");
    }
  });

  function progressParts(form) {
    var section = form && form.querySelector("[data-engage-attachments]");
    if (!section) {
      return null;
    }
    return {
      bar: section.querySelector("[data-engage-upload-progress]"),
      status: section.querySelector("[data-engage-upload-status]"),
    };
  }

  document.addEventListener("htmx:xhr:progress", function (event) {
    var elt = event.target;
    var form = elt && elt.closest ? (elt.matches("form") ? elt : elt.closest("form")) : null;
    var file = chosenFile(fileInput(form));
    var parts = file && progressParts(form);
    if (!parts || !parts.bar || !event.detail.lengthComputable || !event.detail.total) {
      return;
    }
    var percent = Math.min(100, Math.round((event.detail.loaded / event.detail.total) * 100));
    parts.bar.hidden = false;
    parts.bar.value = percent;
    if (parts.status) {
      parts.status.textContent = file.name + " " + percent + " %";
    }
  });
})();

/*
 * The template editor's field picker (SPEC S29): a button inserts its dynamic
 * value where the cursor was, in the subject or in the body (the last of the
 * two to have had the focus; the body when neither has). Without this script
 * the snippets are shown next to the buttons, to be typed or copied.
 */
(function () {
  "use strict";

  var lastTarget = null;

  document.addEventListener("focusin", function (event) {
    var target = event.target.closest && event.target.closest("[data-engage-template-target], trix-editor");
    if (target) {
      lastTarget = target;
    }
  });

  function bodyEditor(form) {
    return form.querySelector("trix-editor") || form.querySelector("textarea[data-engage-template-target]");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-engage-insert-field]");
    if (!button) {
      return;
    }
    var snippet = button.getAttribute("data-engage-insert-field");
    var form = button.form;
    var target = lastTarget && form && form.contains(lastTarget) ? lastTarget : bodyEditor(form);
    if (!target) {
      return;
    }
    if (target.tagName === "TRIX-EDITOR") {
      target.editor.insertString(snippet);
    } else {
      var start = target.selectionStart == null ? target.value.length : target.selectionStart;
      var end = target.selectionEnd == null ? start : target.selectionEnd;
      target.setRangeText(snippet, start, end, "end");
    }
    target.focus();
  });
})();

/*
 * The compose panel keeps up (issue 15): the Follow block and the Send later
 * recommendation redraw as the recipients change, Apply template asks before
 * it replaces text, the keyboard gets into the panel and out of it again.
 */
(function () {
  "use strict";

  /* ---- Recipients changed ------------------------------------------------
   * The Follow and Send later fieldsets listen for engage-recipients-changed
   * on their form (hx-trigger) and post it to redraw themselves, without a
   * save. It is raised when an address field changes, shortly after typing
   * stops, and when a record is picked from the typeahead.
   */
  var timers = new WeakMap();

  function recipientsChanged(form) {
    if (form) {
      form.dispatchEvent(new CustomEvent("engage-recipients-changed"));
    }
  }

  function isAddressField(element) {
    return element && element.matches && element.matches('[data-engage-typeahead="address"]');
  }

  document.addEventListener("change", function (event) {
    if (isAddressField(event.target)) {
      clearTimeout(timers.get(event.target));
      recipientsChanged(event.target.form);
    }
  });

  document.addEventListener("input", function (event) {
    var field = event.target;
    if (!isAddressField(field)) {
      return;
    }
    clearTimeout(timers.get(field));
    timers.set(
      field,
      setTimeout(function () {
        recipientsChanged(field.form);
      }, 700)
    );
  });

  // A record picked from the typeahead: engage.js's choose() writes the field and adds a
  // hidden "picked" input, then gives the focus back to the field.
  document.addEventListener("click", function (event) {
    var option = event.target.closest && event.target.closest(".engage-options [role='option']");
    if (option) {
      var input = document.querySelector('[aria-controls="' + option.parentElement.id + '"]');
      if (isAddressField(input)) {
        setTimeout(function () {
          recipientsChanged(input.form);
        }, 0);
      }
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && isAddressField(event.target) && event.defaultPrevented) {
      var form = event.target.form;
      setTimeout(function () {
        recipientsChanged(form);
      }, 0);
    }
  });

  /* ---- Ask before replacing text -----------------------------------------
   * A submit button with data-engage-confirm-if-text="question" asks that
   * question first, but only when the form's subject or text holds
   * something at the moment it is pressed.
   */
  function formHasText(form) {
    var subject = form.querySelector('input[name="subject"]');
    if (subject && subject.value.trim()) {
      return true;
    }
    var editor = form.querySelector("trix-editor");
    if (editor && editor.editor) {
      return editor.editor.getDocument().toString().trim() !== "";
    }
    var body = form.querySelector('textarea[name="body"]');
    return !!(body && body.value.trim());
  }

  document.addEventListener("htmx:confirm", function (event) {
    var trigger = event.detail.triggeringEvent;
    var button = trigger && trigger.submitter;
    if (!button || !button.hasAttribute("data-engage-confirm-if-text")) {
      return;
    }
    var form = event.detail.elt;
    if (!form || form.tagName !== "FORM" || !formHasText(form)) {
      return;
    }
    event.preventDefault();
    if (window.confirm(button.getAttribute("data-engage-confirm-if-text"))) {
      event.detail.issueRequest(true);
    }
  });

  /* ---- Keyboard: into the panel, and out with Escape ----------------------
   * + → Email puts the focus in the new panel's To field; Escape closes the
   * panel (asking first when something was typed since it was drawn) and
   * the focus goes back to the + button of its timeline.
   */
  function plusButtonFor(slot) {
    var timeline = slot && slot.closest(".engage-timeline");
    return timeline && timeline.querySelector("summary.engage-add");
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    var config = event.detail.requestConfig;
    var trigger = config && config.elt;
    if (!trigger || !trigger.matches) {
      return;
    }
    var selector = trigger.getAttribute("hx-target");
    var slot = selector ? document.querySelector(selector) : null;
    if (!slot) {
      return;
    }
    var submitEvent = config.triggeringEvent;
    var submitter = submitEvent && submitEvent.submitter;
    var refused = event.detail.xhr && event.detail.xhr.status >= 400;
    var saved = submitter && submitter.value === "save" && !refused;
    if (trigger.matches("form") && slot.matches(".engage-compose") && !saved) {
      // Redrawn by a panel control (Follow, Send later, a template…): what it carries is
      // still unsaved, so Escape asks before it throws it away.
      slot.setAttribute("data-engage-dirty", "1");
    }
    if (trigger.matches(".engage-menu__item")) {
      var first = slot.querySelector('input[name="to"]') || slot.querySelector("input:not([type=hidden]), textarea");
      if (first) {
        first.focus();
      }
    } else if (trigger.matches("[data-engage-close]")) {
      var plus = plusButtonFor(slot);
      if (plus) {
        plus.focus();
      }
    }
  });

  document.addEventListener("input", function (event) {
    var panel = event.target.closest && event.target.closest(".engage-compose");
    if (panel) {
      panel.setAttribute("data-engage-dirty", "1");
    }
  });
  document.addEventListener("trix-change", function (event) {
    var panel = event.target.closest && event.target.closest(".engage-compose");
    if (panel && event.target.matches(":focus")) {
      panel.setAttribute("data-engage-dirty", "1");
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.defaultPrevented) {
      return;
    }
    var target = event.target;
    var panel = target.closest && target.closest(".engage-compose");
    if (!panel || target.closest(".trix-dialog")) {
      return;
    }
    if (target.getAttribute("aria-expanded") === "true") {
      return; // the typeahead's list closes first
    }
    var close = panel.querySelector("[data-engage-close]");
    if (!close) {
      return;
    }
    if (panel.hasAttribute("data-engage-dirty") && !window.confirm(panel.getAttribute("data-engage-close-question"))) {
      return;
    }
    event.preventDefault();
    close.click();
  });
})();
