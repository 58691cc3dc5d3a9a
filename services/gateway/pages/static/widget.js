/*
 * Doorman chat widget. Embed:
 *   <script src="https://GATEWAY/widget.js" data-bot-id="BOT_ID" data-token="ACCESS_TOKEN"
 *           data-user-id data-email data-name data-phone-number data-external-workspace-id data-lang></script>
 *
 * data-name, data-email and data-phone-number also prefill the Collect Information form: only defaults
 * the visitor can change, sent only as what the visitor submits.
 *
 * For single-page sites: window.Doorman.identify(accessToken, fields?) after an in-page login or a token
 * refresh, window.Doorman.logout() when the visitor logs out (see the block "logout and re-identification").
 * window.Doorman.init({getFreshToken, sessionCheckSeconds}): a function giving a fresh access token (or a
 * promise of one), asked about a minute before the verified identity expires; and how often a verified
 * session is re-read, to show a visitor signed out elsewhere (see the block "freshness and logout elsewhere").
 *
 * No other globals, no dependencies, no build step. Works under a strict Content-Security-Policy that
 * allows only the gateway's origin: styles come from GATEWAY/widget.css (no inline style), the DOM
 * is built with DOM APIs and textContent only. The access token is read once, removed from the
 * element, and only ever sent in a POST body, never in a URL.
 */
(function () {
  "use strict";

  var STRINGS = {
    launcherOpen: "Open chat",
    dialogLabel: "Chat with us",
    title: "Chat with us",
    subtitle: "We usually reply in a few minutes",
    close: "Close chat",
    waiting: "Checking who you are\u2026",
    greeting: "Hi {name}!",
    greetingFallbackName: "there",
    verifiedNote: "You're signed in, so there's no need to introduce yourself. An agent will be with you shortly.",
    formIntro: "Before we start, tell us how we can reach you.",
    nameLabel: "Name",
    namePlaceholder: "Your name",
    emailLabel: "Email",
    emailPlaceholder: "name@example.com",
    phoneLabel: "Phone",
    phonePlaceholder: "+84 912 345 678",
    phoneHint: "Include your country code, e.g. +84 912 345 678",
    submit: "Start chat",
    submitting: "Sending\u2026",
    thanks: "Thanks, {name}! An agent will be with you shortly.",
    thanksNoName: "Thanks! An agent will be with you shortly.",
    errorEmail: "Enter an email address like name@example.com.",
    errorPhone: "Enter a phone number with its country code, like +84 912 345 678.",
    errorEmpty: "Fill in at least one of name, email or phone.",
    errorTooLong: "This is too long.",
    errorSubmit: "We couldn't send this. Please try again.",
    unavailable: "This chat isn't available right now.",
    connectFailed: "We couldn't connect.",
    retry: "Try again",
    formIntroOptional: "Tell us how we can reach you, or chat without sharing.",
    skip: "Chat without sharing",
    anonymous: "An agent will be with you shortly.",
    anonymousNote: "You're chatting without sharing your details.",
    ended: "You've been signed out of this chat.",
    startAgain: "Start a new chat",
    poweredBy: "Secured by Doorman"
  };

  // The open asks the gateway to hold its answer this long for the outcome (POST ?wait=): most
  // visitors then need one request, no stream. A slower outcome still gets the usual 202 and is
  // awaited on the event stream (or by polling). A refusal as busy comes back at once.
  var OPEN_WAIT_SECONDS = 3;
  var POLL_INTERVAL_MS = 1000;
  var REFRESH_BEFORE_MS = 60000; // ask the host page for a fresh token this long before the identity expires
  var SESSION_CHECK_SECONDS = 30; // a verified session is re-read this often (and when the page is shown again)
  var MAX_TIMER_MS = 2147483647; // setTimeout's longest delay
  var POLL_GIVE_UP_MS = 30000;
  var STREAM_GIVE_UP_MS = 30000;
  var SVG_NS = "http://www.w3.org/2000/svg";

  // ---- find our own script element and read the embed --------------------------------------
  function findScript() {
    var current = document.currentScript;
    if (current && current.hasAttribute("data-bot-id")) return current;
    var candidates = document.querySelectorAll("script[data-bot-id]");
    for (var i = 0; i < candidates.length; i++) {
      var src = candidates[i].getAttribute("src") || "";
      if (/\/widget\.js(?:[?#].*)?$/.test(src)) return candidates[i];
    }
    return null;
  }

  var script = findScript();
  if (!script || script.getAttribute("data-doorman-loaded") !== null) return;
  script.setAttribute("data-doorman-loaded", "");

  var base;
  try {
    base = new URL(script.src, document.baseURI).origin;
  } catch (e) {
    return;
  }

  function attr(name) {
    var value = script.getAttribute(name);
    if (value === null) return null;
    value = value.trim();
    return value === "" ? null : value;
  }

  var embed = {
    bot_id: attr("data-bot-id"),
    access_token: attr("data-token"),
    user_id: attr("data-user-id"),
    email: attr("data-email"),
    name: attr("data-name"),
    phone_number: attr("data-phone-number") || attr("data-phone"),
    // The business's own workspace (OpenCX's externalId): forwarded when the bot selects it, never trusted.
    external_workspace_id: attr("data-external-workspace-id"),
    lang: attr("data-lang")
  };
  // The token now lives only in this closure: not in the live DOM for other scripts to read.
  script.removeAttribute("data-token");

  function sessionBody() {
    var body = {};
    for (var key in embed) {
      if (Object.prototype.hasOwnProperty.call(embed, key) && embed[key] !== null) body[key] = embed[key];
    }
    return body;
  }

  // ---- tiny DOM helpers (no innerHTML anywhere) ---------------------------------------------
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function svgIcon(className, paths) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", className);
    for (var i = 0; i < paths.length; i++) {
      var p = document.createElementNS(SVG_NS, "path");
      p.setAttribute("d", paths[i]);
      svg.appendChild(p);
    }
    return svg;
  }

  function fill(template, name) {
    return template.replace("{name}", name);
  }

  // ---- build the widget ---------------------------------------------------------------------
  var host = document.createElement("div");
  host.setAttribute("data-doorman-widget", "");
  var root = host.attachShadow({ mode: "open" });

  var sheet = document.createElement("link");
  sheet.rel = "stylesheet";
  sheet.href = base + "/widget.css";
  root.appendChild(sheet);

  // Hidden (by the UA's [hidden] rule) until our stylesheet is in, so nothing flashes unstyled.
  var frame = el("div", "dm-frame");
  frame.hidden = true;
  function reveal() { frame.hidden = false; }
  sheet.addEventListener("load", reveal);
  sheet.addEventListener("error", reveal);
  root.appendChild(frame);

  var launcher = el("button", "dm-launcher");
  launcher.type = "button";
  launcher.setAttribute("aria-label", STRINGS.launcherOpen);
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", "dm-panel");
  launcher.appendChild(svgIcon("dm-icon dm-icon-chat", [
    "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"
  ]));
  launcher.appendChild(svgIcon("dm-icon dm-icon-close", ["M6 6l12 12M18 6L6 18"]));

  var panel = el("div", "dm-panel");
  panel.id = "dm-panel";
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", STRINGS.dialogLabel);
  panel.setAttribute("lang", "en");
  panel.hidden = true;

  var header = el("div", "dm-header");
  var avatar = el("div", "dm-avatar");
  avatar.appendChild(svgIcon("dm-icon", [
    "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"
  ]));
  var titles = el("div", "dm-titles");
  var title = el("h2", "dm-title", STRINGS.title);
  title.id = "dm-title";
  titles.appendChild(title);
  titles.appendChild(el("p", "dm-subtitle", STRINGS.subtitle));
  var closeButton = el("button", "dm-close");
  closeButton.type = "button";
  closeButton.setAttribute("aria-label", STRINGS.close);
  closeButton.appendChild(svgIcon("dm-icon", ["M6 6l12 12M18 6L6 18"]));
  header.appendChild(avatar);
  header.appendChild(titles);
  header.appendChild(closeButton);

  var body = el("div", "dm-body");
  body.setAttribute("aria-live", "polite");
  var footer = el("div", "dm-footer", STRINGS.poweredBy);

  panel.appendChild(header);
  panel.appendChild(body);
  panel.appendChild(footer);
  frame.appendChild(panel);
  frame.appendChild(launcher);

  // ---- state ----------------------------------------------------------------------------------
  var opened = false;
  var started = false;
  var generation = 0; // bumps on every (re)start: late answers from an earlier attempt are dropped
  var sessionId = null;
  var stream = null;
  var timer = null;

  function setState(state, content) {
    panel.setAttribute("data-state", state);
    body.setAttribute("aria-busy", state === "waiting" ? "true" : "false");
    while (body.firstChild) body.removeChild(body.firstChild);
    body.appendChild(content);
  }

  function stopWaiting() {
    if (stream) {
      stream.close();
      stream = null;
    }
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
  }

  function showWaiting() {
    var view = el("div", "dm-view dm-waiting");
    var spinner = el("div", "dm-spinner");
    spinner.setAttribute("aria-hidden", "true");
    view.appendChild(spinner);
    view.appendChild(el("p", "dm-waiting-text", STRINGS.waiting));
    setState("waiting", view);
  }

  function showVerified(contact) {
    var name = (contact && (contact.name || contact.email)) || STRINGS.greetingFallbackName;
    var view = el("div", "dm-view dm-chat");
    var bubble = el("div", "dm-bubble");
    bubble.appendChild(el("p", "dm-greeting", fill(STRINGS.greeting, name)));
    bubble.appendChild(el("p", "dm-note", STRINGS.verifiedNote));
    view.appendChild(bubble);
    setState("verified", view);
  }

  function showThanks(name) {
    var view = el("div", "dm-view dm-chat");
    var bubble = el("div", "dm-bubble");
    bubble.appendChild(el("p", "dm-thanks", name ? fill(STRINGS.thanks, name) : STRINGS.thanksNoName));
    view.appendChild(bubble);
    setState("thanks", view);
  }

  function showError(message, canRetry) {
    var view = el("div", "dm-view dm-error");
    var icon = el("div", "dm-error-icon", "!");
    icon.setAttribute("aria-hidden", "true");
    view.appendChild(icon);
    var text = el("p", "dm-error-text", message);
    text.setAttribute("role", "alert");
    view.appendChild(text);
    if (canRetry) {
      var retry = el("button", "dm-button dm-retry", STRINGS.retry);
      retry.type = "button";
      retry.addEventListener("click", start);
      view.appendChild(retry);
    }
    setState("error", view);
    if (canRetry && opened) retry.focus();
  }

  // ---- HTTP ---------------------------------------------------------------------------------
  // Resolves {status, data}; rejects on network failure. Nothing about the visitor goes in a URL.
  function request(method, path, payload) {
    var init = {
      method: method,
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "strict-origin-when-cross-origin",
      headers: { "Accept": "application/json" }
    };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(base + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try {
          data = text ? JSON.parse(text) : null;
        } catch (e) {
          data = null;
        }
        return { status: response.status, data: data };
      });
    });
  }

  function sessionPath(suffix) {
    return "/v1/widget/sessions/" + encodeURIComponent(sessionId) + (suffix || "");
  }

  // ---- the session: open, then wait for its one outcome -------------------------------------
  function start() {
    stopWaiting();
    stopWatching();
    var gen = ++generation;
    sessionId = null;
    started = true;
    showWaiting();
    if (!embed.bot_id) {
      showError(STRINGS.unavailable, false);
      return;
    }
    request("POST", "/v1/widget/sessions?wait=" + OPEN_WAIT_SECONDS, sessionBody()).then(function (res) {
      if (gen !== generation) return;
      if ((res.status === 200 || res.status === 202) && res.data && res.data.session_id) {
        sessionId = res.data.session_id;
        // 200: the outcome came within the wait (or the open was refused as busy): show it now.
        if (res.status === 200 && res.data.status && res.data.status !== "pending") resolve(res.data);
        else awaitOutcome(gen);
      } else if (res.status === 404 || res.status === 422) {
        showError(STRINGS.unavailable, false);
      } else {
        showError(STRINGS.connectFailed, true);
      }
    }, function () {
      if (gen === generation) showError(STRINGS.connectFailed, true);
    });
  }

  function awaitOutcome(gen) {
    if (typeof window.EventSource !== "function") {
      poll(gen, Date.now() + POLL_GIVE_UP_MS);
      return;
    }
    var source;
    try {
      source = new window.EventSource(base + sessionPath("/events"));
    } catch (e) {
      poll(gen, Date.now() + POLL_GIVE_UP_MS);
      return;
    }
    stream = source;
    var fallBackToPolling = function () {
      if (stream !== source) return;
      stopWaiting();
      if (gen === generation) poll(gen, Date.now() + POLL_GIVE_UP_MS);
    };
    // "outcome" when the session resolves; "ended" when it was ended first (a logout elsewhere, a revocation).
    var onView = function (event) {
      if (stream !== source) return;
      var view;
      try {
        view = JSON.parse(event.data);
      } catch (e) {
        fallBackToPolling();
        return;
      }
      stopWaiting();
      if (gen === generation) resolve(view);
    };
    source.addEventListener("outcome", onView);
    source.addEventListener("ended", onView);
    source.addEventListener("error", fallBackToPolling);
    timer = setTimeout(fallBackToPolling, STREAM_GIVE_UP_MS);
  }

  function poll(gen, giveUpAt) {
    request("GET", sessionPath()).then(function (res) {
      if (gen !== generation) return;
      if (res.status === 200 && res.data && res.data.status && res.data.status !== "pending") {
        resolve(res.data);
      } else if (res.status === 404) {
        showError(STRINGS.connectFailed, true);
      } else {
        again();
      }
    }, function () {
      if (gen === generation) again();
    });

    function again() {
      if (Date.now() + POLL_INTERVAL_MS > giveUpAt) {
        showError(STRINGS.connectFailed, true);
        return;
      }
      timer = setTimeout(function () {
        timer = null;
        poll(gen, giveUpAt);
      }, POLL_INTERVAL_MS);
    }
  }

  // Every fallback reason (CA off, domain refused, the business's API said no or failed, no token,
  // Doorman too busy to verify: "busy") gets the same treatment, as the bot's collect_information says:
  // "required" the Collect Information form, "optional" the form with a way to skip it, "off" no form.
  function resolve(view) {
    if (view.status === "verified") {
      showVerified(view.contact);
      watchVerified(view);
    } else if (view.status === "fallback") {
      if (view.collected) showThanks(null);
      else if (view.collect_information === "off") showAnonymous(whyNotRecognised(view));
      else showForm(view.collect_information === "optional", whyNotRecognised(view));
    } else if (view.status === "ended") {
      forgetVisitor(); // the server ended it (a revocation, a logout in another tab): nothing of them stays
      showEnded();
    } else {
      showError(STRINGS.connectFailed, true);
    }
  }

  // A visitor who came signed in (the embed gave a token) is told why they were not recognised: the view's
  // fallback.detail, a message the server chose by the reason alone (never the business's own words).
  // A visitor who came without one is not told they are not signed in.
  function whyNotRecognised(view) {
    var message = embed.access_token && view.fallback && view.fallback.detail;
    return message ? el("p", "dm-reason", message) : null;
  }

  // ---- anonymous chat: no form (collect_information "off", or skipped when "optional") ---------
  function showAnonymous(reason) {
    var view = el("div", "dm-view dm-chat");
    if (reason) view.appendChild(reason);
    var bubble = el("div", "dm-bubble");
    bubble.appendChild(el("p", "dm-anonymous", STRINGS.anonymous));
    bubble.appendChild(el("p", "dm-note", STRINGS.anonymousNote));
    view.appendChild(bubble);
    setState("anonymous", view);
  }

  // ---- the Collect Information form -----------------------------------------------------------
  var EMAIL_SHAPE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
  var PHONE_CHARS = /^[0-9+()\-.\s]+$/;

  // The embed's data-name, data-email and data-phone-number, as the fields' starting values.
  var PREFILL = { name: embed.name, email: embed.email, phone: embed.phone_number };

  function showForm(skippable, reason) {
    var form = el("form", "dm-view dm-form");
    form.noValidate = true;
    if (reason) form.appendChild(reason);
    form.appendChild(el("p", "dm-intro", skippable ? STRINGS.formIntroOptional : STRINGS.formIntro));

    var fields = {};
    function field(key, label, type, autocomplete, placeholder, hint) {
      var id = "dm-field-" + key;
      var wrap = el("div", "dm-field");
      var labelEl = el("label", "dm-label", label);
      labelEl.htmlFor = id;
      var input = el("input", "dm-input");
      input.id = id;
      input.name = key;
      input.type = type;
      input.autocomplete = autocomplete;
      input.placeholder = placeholder;
      input.maxLength = key === "phone" ? 40 : 200;
      if (PREFILL[key]) input.value = PREFILL[key].slice(0, input.maxLength);
      var describedBy = [];
      wrap.appendChild(labelEl);
      wrap.appendChild(input);
      if (hint) {
        var hintEl = el("p", "dm-hint", hint);
        hintEl.id = id + "-hint";
        describedBy.push(hintEl.id);
        wrap.appendChild(hintEl);
      }
      var errorEl = el("p", "dm-field-error");
      errorEl.id = id + "-error";
      errorEl.hidden = true;
      describedBy.push(errorEl.id);
      wrap.appendChild(errorEl);
      input.setAttribute("aria-describedby", describedBy.join(" "));
      input.addEventListener("input", function () { setFieldError(key, null); });
      form.appendChild(wrap);
      fields[key] = { input: input, error: errorEl, wrap: wrap };
    }

    field("name", STRINGS.nameLabel, "text", "name", STRINGS.namePlaceholder, null);
    field("email", STRINGS.emailLabel, "email", "email", STRINGS.emailPlaceholder, null);
    field("phone", STRINGS.phoneLabel, "tel", "tel", STRINGS.phonePlaceholder, STRINGS.phoneHint);

    var formError = el("p", "dm-form-error");
    formError.setAttribute("role", "alert");
    formError.hidden = true;
    form.appendChild(formError);

    // The buttons stick to the bottom of the scrolling body: never hidden behind the footer, however long the
    // errors make the form.
    var actions = el("div", "dm-actions");
    var submit = el("button", "dm-button dm-submit", STRINGS.submit);
    submit.type = "submit";
    actions.appendChild(submit);

    var skip = null;
    if (skippable) {
      skip = el("button", "dm-skip", STRINGS.skip);
      skip.type = "button";
      skip.addEventListener("click", function () {
        if (!sending) showAnonymous();
      });
      actions.appendChild(skip);
    }
    form.appendChild(actions);

    function setFieldError(key, message) {
      var f = fields[key];
      f.error.textContent = message || "";
      f.error.hidden = !message;
      f.wrap.classList.toggle("dm-invalid", !!message);
      if (message) f.input.setAttribute("aria-invalid", "true");
      else f.input.removeAttribute("aria-invalid");
    }

    function setFormError(message) {
      formError.textContent = message || "";
      formError.hidden = !message;
    }

    function clearErrors() {
      for (var key in fields) {
        if (Object.prototype.hasOwnProperty.call(fields, key)) setFieldError(key, null);
      }
      setFormError(null);
    }

    function focusFirstError() {
      var order = ["name", "email", "phone"];
      for (var i = 0; i < order.length; i++) {
        if (!fields[order[i]].error.hidden) {
          fields[order[i]].input.focus();
          return;
        }
      }
    }

    function validate(values) {
      var ok = true;
      if (values.email && !EMAIL_SHAPE.test(values.email)) {
        setFieldError("email", STRINGS.errorEmail);
        ok = false;
      }
      if (values.phone) {
        var digits = values.phone.replace(/\D/g, "").length;
        if (!PHONE_CHARS.test(values.phone) || digits < 6) {
          setFieldError("phone", STRINGS.errorPhone);
          ok = false;
        }
      }
      if (ok && !values.name && !values.email && !values.phone) {
        setFormError(STRINGS.errorEmpty);
        fields.name.input.focus();
        ok = false;
      }
      return ok;
    }

    var SERVER_FIELDS = { name: "name", email: "email", phone_number: "phone", country_code: "phone" };

    function showServerErrors(data) {
      var list = data && data.error && data.error.fields;
      var shown = false;
      if (list && list.length) {
        for (var i = 0; i < list.length; i++) {
          var key = SERVER_FIELDS[list[i].field];
          var message = String(list[i].message || "").replace(/^Value error, /, "");
          message = message.charAt(0).toUpperCase() + message.slice(1);
          if (message && !/[.!?]$/.test(message)) message += ".";
          if (key) {
            setFieldError(key, key === "email" ? STRINGS.errorEmail : key === "phone" ? STRINGS.errorPhone : message);
            shown = true;
          } else if (list[i].field === "body") {
            setFormError(STRINGS.errorEmpty);
            shown = true;
          }
        }
      }
      if (!shown) setFormError(STRINGS.errorSubmit);
      focusFirstError();
    }

    var sending = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (sending) return;
      clearErrors();
      var values = {
        name: fields.name.input.value.trim(),
        email: fields.email.input.value.trim(),
        phone: fields.phone.input.value.trim()
      };
      if (!validate(values)) {
        focusFirstError();
        return;
      }
      var payload = {};
      if (values.name) payload.name = values.name;
      if (values.email) payload.email = values.email;
      if (values.phone) payload.phone_number = values.phone;

      var gen = generation;
      sending = true;
      submit.disabled = true;
      if (skip) skip.disabled = true;
      submit.textContent = STRINGS.submitting;
      function done() {
        sending = false;
        submit.disabled = false;
        if (skip) skip.disabled = false;
        submit.textContent = STRINGS.submit;
      }
      request("POST", sessionPath("/contact"), payload).then(function (res) {
        if (gen !== generation) return;
        done();
        var code = res.data && res.data.error && res.data.error.code;
        if (res.status === 202 || (res.status === 409 && code === "already_collected")) {
          showThanks(values.name);
        } else if (res.status === 422) {
          showServerErrors(res.data);
        } else {
          setFormError(STRINGS.errorSubmit);
        }
      }, function () {
        if (gen !== generation) return;
        done();
        setFormError(STRINGS.errorSubmit);
      });
    });

    setState("form", form);
    if (opened && panel.contains(root.activeElement)) fields.name.input.focus();
  }

  // ---- logout and re-identification (window.Doorman) ----------------------------------------------
  // A single-page site logs visitors in and out without a reload: identify() ends the current session
  // on the server (DELETE), takes the new token (and fields), opens a new session and re-renders;
  // logout() ends the session and forgets the visitor: the embed's data-* attributes, the form's
  // prefill, the view on screen and anything stored under STORAGE_PREFIX. The widget itself keeps
  // nothing in sessionStorage or localStorage; any key it ever stores must start with STORAGE_PREFIX.
  var STORAGE_PREFIX = "doorman.widget.";
  var IDENTITY_FIELDS = ["user_id", "email", "name", "phone_number", "external_workspace_id"];
  var IDENTITY_ATTRIBUTES = ["data-token", "data-user-id", "data-email", "data-name", "data-phone-number",
                             "data-phone", "data-external-workspace-id"];

  // Ends the current session on the server (the session id only, in the path; no token). Resolves
  // either way: a visitor who logs out is logged out here even when the network is away.
  function endSession() {
    stopWaiting();
    stopWatching();
    generation++;
    var ending = sessionId;
    sessionId = null;
    if (!ending) return Promise.resolve();
    return fetch(base + "/v1/widget/sessions/" + encodeURIComponent(ending), {
      method: "DELETE", mode: "cors", credentials: "omit", cache: "no-store"
    }).then(function () {}, function () {});
  }

  function clearStorage(storage) {
    try {
      for (var i = storage.length - 1; i >= 0; i--) {
        var key = storage.key(i);
        if (key && key.indexOf(STORAGE_PREFIX) === 0) storage.removeItem(key);
      }
    } catch (e) { /* storage blocked (privacy settings, sandboxed frame): nothing was stored either */ }
  }

  function forgetVisitor() {
    embed.access_token = null;
    for (var i = 0; i < IDENTITY_FIELDS.length; i++) embed[IDENTITY_FIELDS[i]] = null;
    for (var j = 0; j < IDENTITY_ATTRIBUTES.length; j++) script.removeAttribute(IDENTITY_ATTRIBUTES[j]);
    PREFILL.name = PREFILL.email = PREFILL.phone = null;
    try { clearStorage(window.sessionStorage); } catch (e) { /* no storage */ }
    try { clearStorage(window.localStorage); } catch (e) { /* no storage */ }
  }

  function clearView() {
    panel.removeAttribute("data-state");
    body.setAttribute("aria-busy", "false");
    while (body.firstChild) body.removeChild(body.firstChild);
  }

  function showEnded() {
    var view = el("div", "dm-view dm-chat");
    var bubble = el("div", "dm-bubble");
    bubble.appendChild(el("p", "dm-ended", STRINGS.ended));
    view.appendChild(bubble);
    var again = el("button", "dm-button dm-retry", STRINGS.startAgain);
    again.type = "button";
    again.addEventListener("click", start);
    view.appendChild(again);
    setState("ended", view);
  }

  // Begin again as whoever the embed now says: at once if the widget had started, else on the next open.
  function restart() {
    started = false;
    clearView();
    if (opened) start();
  }

  function given(value) {
    if (value === undefined || value === null) return null;
    value = String(value).trim();
    return value === "" ? null : value;
  }

  // Returns a promise settled once the previous session's DELETE is answered; the new session is
  // opened at once (if the widget had started), in parallel.
  function identify(accessToken, fields) {
    var values = fields && typeof fields === "object" ? fields : {};
    var ended = endSession();
    forgetVisitor(); // nothing of the previous visitor carries over to the new one
    embed.access_token = given(accessToken);
    for (var i = 0; i < IDENTITY_FIELDS.length; i++) embed[IDENTITY_FIELDS[i]] = given(values[IDENTITY_FIELDS[i]]);
    if (embed.phone_number === null) embed.phone_number = given(values.phone);
    PREFILL.name = embed.name;
    PREFILL.email = embed.email;
    PREFILL.phone = embed.phone_number;
    restart();
    return ended;
  }

  function logout() {
    var ended = endSession();
    forgetVisitor();
    restart();
    return ended;
  }

  // ---- freshness and logout elsewhere ----------------------------------------------------------------
  // A verified view may say when its identity expires (identity_expires_at: the signed token's or the
  // introspected token's exp). About a minute before, the host page's getFreshToken() is asked for a new token
  // and a new session opened with it, the visitor's other fields kept, with no page reload; with no token, the
  // session is ended and the visitor shown signed out. Meanwhile the session is re-read every
  // sessionCheckSeconds and when the page is shown again: ended elsewhere (a back-channel logout at the
  // business's OpenID Provider, a revocation) shows the visitor signed out.
  var options = { getFreshToken: null, sessionCheckSeconds: SESSION_CHECK_SECONDS };
  var freshTimer = null;
  var checkTimer = null;
  var watched = null; // {gen, id} of the verified session being watched

  function stopWatching() {
    if (freshTimer !== null) clearTimeout(freshTimer);
    if (checkTimer !== null) clearTimeout(checkTimer);
    freshTimer = checkTimer = null;
    watched = null;
  }

  function watchVerified(view) {
    stopWatching();
    watched = { gen: generation, id: sessionId };
    var expires = view.identity_expires_at ? Date.parse(view.identity_expires_at) : NaN;
    if (!isNaN(expires)) {
      var delay = Math.min(Math.max(expires - REFRESH_BEFORE_MS - Date.now(), 0), MAX_TIMER_MS);
      var gen = generation;
      freshTimer = setTimeout(function () {
        freshTimer = null;
        if (gen === generation) refresh(gen);
      }, delay);
    }
    scheduleCheck();
  }

  function scheduleCheck() {
    if (checkTimer !== null) clearTimeout(checkTimer);
    checkTimer = setTimeout(function () {
      checkTimer = null;
      checkSession();
    }, options.sessionCheckSeconds * 1000);
  }

  function checkSession() {
    if (!watched || watched.gen !== generation) return;
    var gen = generation;
    request("GET", sessionPath()).then(function (res) {
      if (gen !== generation) return;
      if (res.status === 200 && res.data && res.data.status === "ended") {
        signedOut();
        return;
      }
      scheduleCheck();
    }, function () {
      if (gen === generation) scheduleCheck(); // the network blinked: ask again later
    });
  }

  function signedOut() {
    stopWatching();
    stopWaiting();
    generation++;
    sessionId = null;
    forgetVisitor();
    showEnded();
  }

  // The host page's fresh token, or null: getFreshToken may return it or a promise of it, throw or reject.
  function freshToken() {
    if (typeof options.getFreshToken !== "function") return Promise.resolve(null);
    try {
      return Promise.resolve(options.getFreshToken()).then(given, function () { return null; });
    } catch (e) {
      return Promise.resolve(null);
    }
  }

  function refresh(gen) {
    freshToken().then(function (token) {
      if (gen !== generation) return; // the visitor logged out or was re-identified meanwhile
      if (token === null) {
        endSession();
        forgetVisitor();
        showEnded();
        return;
      }
      endSession();
      embed.access_token = token; // the same visitor, a fresh proof: the other fields stay
      restart();
    });
  }

  function init(settings) {
    var chosen = settings && typeof settings === "object" ? settings : {};
    if (typeof chosen.getFreshToken === "function") options.getFreshToken = chosen.getFreshToken;
    var seconds = Number(chosen.sessionCheckSeconds);
    if (isFinite(seconds) && seconds >= 1) options.sessionCheckSeconds = seconds;
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && watched) checkSession();
  });

  window.Doorman = Object.freeze({ init: init, identify: identify, logout: logout });

  // ---- open / close -----------------------------------------------------------------------------
  function open() {
    opened = true;
    panel.hidden = false;
    frame.classList.add("dm-open");
    launcher.setAttribute("aria-expanded", "true");
    if (!started) start();
    closeButton.focus();
  }

  function close() {
    opened = false;
    panel.hidden = true;
    frame.classList.remove("dm-open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (opened) close();
    else open();
  });
  closeButton.addEventListener("click", close);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      event.stopPropagation();
      close();
    }
  });

  function mount() {
    document.body.appendChild(host);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
