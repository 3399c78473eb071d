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

  document.addEventListener("htmx:responseError", function (event) {
    var target = event.detail.target;
    if (!target || !target.closest || !target.closest("[class*='engage-']")) {
      return;
    }
    var note = document.createElement("p");
    note.className = "engage-notice engage-notice--error";
    note.setAttribute("role", "alert");
    note.textContent = message("data-msg-error", "Something went wrong.") + " (" + event.detail.xhr.status + ")";
    target.insertAdjacentElement("afterend", note);
  });

  document.addEventListener("htmx:sendError", function (event) {
    var target = event.detail.target;
    if (!target || !target.closest || !target.closest("[class*='engage-']")) {
      return;
    }
    var note = document.createElement("p");
    note.className = "engage-notice engage-notice--error";
    note.setAttribute("role", "alert");
    note.textContent = message("data-msg-offline", "The server cannot be reached.");
    target.insertAdjacentElement("afterend", note);
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
})();
