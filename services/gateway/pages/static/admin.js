/* Doorman admin page. Plain DOM code, no build step.
 *
 * Everything shown here may come from an attacker (contact names, the business's answers,
 * bot names), so text only ever goes into the page through textContent, never as HTML.
 * The admin token lives in sessionStorage (this tab only) and is sent as a bearer token.
 */
"use strict";

(() => {
  const TOKEN_KEY = "doorman.adminToken";
  const PAGE_SIZE = 25;
  const TABS = ["settings", "testing", "contacts", "activity"];
  const REJECTED = "That token was not accepted";

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    bots: [],
    botId: null,
    tab: "settings",
    settingsFor: null,   // bot id whose settings are in the form
    contacts: { seq: 0, cursor: null },
    events: { seq: 0, cursor: null },
    contactSeq: 0,
    lastContact: null,
    discovered: null,    // the Discover action's last result, for the issuer in the form
  };

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message, fields) {
      super(message);
      this.status = status;
      this.code = code;
      this.fields = fields || [];
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, "network", "Doorman could not be reached; check your connection and try again.");
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    if (resp.status === 401) {
      signOut(REJECTED);
      throw new ApiError(401, "unauthorized", REJECTED);
    }
    if (!resp.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(resp.status, e.code || "http_" + resp.status, e.message || `The server answered HTTP ${resp.status}.`, e.fields);
    }
    return data;
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- DOM helpers

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function setText(node, text) {
    node.textContent = text === null || text === undefined ? "" : String(text);
    node.hidden = !node.textContent;
  }

  const dateFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  const shortFormat = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  function fmtTime(iso, short) {
    if (!iso) return "—";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    const thisYear = date.getFullYear() === new Date().getFullYear();
    return (short && thisYear ? shortFormat : dateFormat).format(date);
  }

  function timeCell(iso) {
    return h("td", { class: "nowrap", title: iso || undefined }, fmtTime(iso, true));
  }

  function dash(value) {
    return value === null || value === undefined || value === "" ? h("span", { class: "muted" }, "—") : String(value);
  }

  function badge(text, kind) {
    return h("span", { class: `badge badge-${kind}` }, text);
  }

  function statusBadge(status) {
    const kind = status === "verified" ? "ok" : status === "fallback" ? "warn" : "neutral";
    return badge(status, kind);
  }

  function cleanMessage(message) {
    return String(message || "").replace(/^Value error, /, "");
  }

  function pretty(value) {
    return JSON.stringify(value, null, 2);
  }

  function prettyText(text) {
    try {
      return pretty(JSON.parse(text));
    } catch (_) {
      return text;
    }
  }

  // ---------------------------------------------------------------- sign in / out

  function showSignIn(message) {
    show($("app-view"), false);
    show($("bot-bar"), false);
    show($("sign-out"), false);
    show($("signin-view"), true);
    setText($("signin-error"), message || "");
    $("token-input").value = "";
    $("token-input").focus();
  }

  function showApp() {
    show($("signin-view"), false);
    show($("app-view"), true);
    show($("sign-out"), true);
  }

  function signOut(message) {
    state.token = null;
    state.bots = [];
    state.botId = null;
    state.settingsFor = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage may be off */ }
    $("bot-select").replaceChildren();
    $("settings-form").reset();
    $("ca-header-token").value = "";
    show($("bot-view"), false);
    show($("bots-view"), false);
    setText($("app-error"), "");
    showSignIn(message);
  }

  async function signIn(token, { quiet = false } = {}) {
    state.token = token;
    if (!quiet) {
      showApp();
      show($("bots-loading"), true);
    }
    try {
      await loadBots();
    } finally {
      show($("bots-loading"), false);
    }
    showApp();
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch (_) { /* storage may be off: this tab only, then */ }
    route();
  }

  async function onSignInSubmit(event) {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) {
      setText($("signin-error"), "Enter the admin token.");
      return;
    }
    const button = $("signin-submit");
    button.disabled = true;
    setText($("signin-error"), "");
    try {
      await signIn(token, { quiet: true });
      $("token-input").value = "";
    } catch (err) {
      if (err.status !== 401) {
        state.token = null;
        showSignIn(err.message);
      }
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- bots

  async function loadBots() {
    const all = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ limit: "100" });
      if (cursor) query.set("cursor", cursor);
      const page = await api("GET", `/v1/bots?${query}`);
      all.push(...page.bots);
      cursor = page.next_cursor;
    } while (cursor && all.length < 2000);
    state.bots = all;
    renderBotSelect();
  }

  function botLabel(bot) {
    return `${bot.name} · ${String(bot.bot_id).slice(0, 8)}`;
  }

  function renderBotSelect() {
    const select = $("bot-select");
    const placeholder = h("option", { value: "", disabled: true }, "Choose a bot…");
    select.replaceChildren(placeholder, ...state.bots.map((bot) => h("option", { value: bot.bot_id }, botLabel(bot))));
    select.value = state.botId || "";
    show($("bot-bar"), true);
    renderBotList();
  }

  // The list of bots (the page's home, #bots): each opens its settings.
  function renderBotList() {
    const count = state.bots.length;
    $("bots-count").textContent = count ? `${count} bot${count === 1 ? "" : "s"}` : "";
    $("bots-body").replaceChildren(...state.bots.map((bot) => h("tr", { dataset: { testid: "bot-row", botId: bot.bot_id } },
      h("td", {}, h("a", { class: "row-link", href: hashFor(bot.bot_id, "settings") }, bot.name)),
      h("td", { class: "mono small" }, bot.bot_id),
      timeCell(bot.created_at))));
    show($("bots-card"), count > 0);
    show($("no-bots"), count === 0);
  }

  function showBotList() {
    state.botId = null;
    state.settingsFor = null;
    resetBotPanels();
    $("bot-select").value = "";
    document.title = "Doorman admin";
    show($("bot-view"), false);
    show($("bots-view"), true);
  }

  function parseHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const tab = params.get("tab");
    return { bot: params.get("bot"), tab: TABS.includes(tab) ? tab : "settings" };
  }

  function hashFor(bot, tab) {
    return `#bot=${enc(bot)}` + (tab && tab !== "settings" ? `&tab=${tab}` : "");
  }

  function go(bot, tab) {
    const hash = hashFor(bot, tab);
    if (location.hash === hash) route();
    else location.hash = hash;  // hashchange -> route()
  }

  function route() {
    if (!state.token) return;
    const { bot, tab } = parseHash();
    if (!bot) {
      showBotList();
      return;
    }
    show($("bots-view"), false);
    if (bot !== state.botId) {
      selectBot(bot, tab);
    } else {
      showTab(tab);
    }
  }

  async function selectBot(id, tab) {
    state.botId = id;
    state.settingsFor = null;
    resetBotPanels();
    setText($("app-error"), "");
    let bot = state.bots.find((b) => b.bot_id === id);
    if (!bot) {
      try {
        bot = await api("GET", `/v1/bots/${enc(id)}`);
      } catch (err) {
        if (err.status === 401 || state.botId !== id) return;
        show($("bot-view"), false);
        setText($("app-error"), err.status === 404 ? "No bot has this id. Pick one from the list or create a new bot." : err.message);
        $("bot-select").value = "";
        return;
      }
      if (state.botId !== id) return;
      state.bots.push(bot);
      renderBotSelect();
    }
    $("bot-select").value = id;
    $("bot-name").textContent = bot.name;
    $("bot-id").textContent = bot.bot_id;
    document.title = `${bot.name} · Doorman admin`;
    show($("bot-view"), true);
    showTab(tab);
  }

  function resetBotPanels() {
    $("settings-form").reset();
    $("ca-header-token").value = "";
    show($("settings-form"), false);
    clearSettingsErrors();
    $("ca-status").textContent = "";
    hideTokenSecret();
    $("test-form").reset();
    clearTestErrors();
    show($("test-result"), false);
    show($("test-empty"), true);
    $("test-raw").open = false;
    $("test-status").textContent = "";
    $("contacts-q").value = "";
    $("contacts-body").replaceChildren();
    show($("contacts-more"), false);
    closeContact();
    $("events-reason").value = "";
    $("events-status").value = "";
    $("events-body").replaceChildren();
    show($("events-more"), false);
    resetWebhook();
  }

  function toggleNewBot(open) {
    const form = $("new-bot-form");
    show(form, open);
    $("new-bot-toggle").setAttribute("aria-expanded", String(open));
    setText($("new-bot-error"), "");
    $("new-bot-name").removeAttribute("aria-invalid");
    if (open) {
      $("new-bot-name").value = "";
      $("new-bot-name").focus();
    }
  }

  async function onNewBotSubmit(event) {
    event.preventDefault();
    const name = $("new-bot-name").value.trim();
    if (!name) {
      setText($("new-bot-error"), "Give the bot a name.");
      $("new-bot-name").setAttribute("aria-invalid", "true");
      $("new-bot-name").focus();
      return;
    }
    const button = $("new-bot-create");
    button.disabled = true;
    try {
      const bot = await api("POST", "/v1/bots", { name });
      state.bots.unshift(bot);
      renderBotSelect();
      toggleNewBot(false);
      go(bot.bot_id, "settings");
    } catch (err) {
      if (err.status !== 401) {
        const field = err.fields.find((f) => f.field === "name");
        setText($("new-bot-error"), field ? cleanMessage(field.message) : err.message);
      }
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- tabs

  function showTab(tab) {
    state.tab = tab;
    for (const name of TABS) {
      const button = $(`tab-${name}`);
      const selected = name === tab;
      button.setAttribute("aria-selected", String(selected));
      button.tabIndex = selected ? 0 : -1;
      show($(`panel-${name}`), selected);
    }
    if ((tab === "settings" || tab === "testing") && state.settingsFor !== state.botId) loadSettings();
    if (tab === "settings" && webhook.botId !== state.botId) loadWebhook();  // Webhook block (issue 14)
    if (tab === "contacts" && $("contact-details").hidden) loadContacts(true);
    if (tab === "activity") loadEvents(true);
  }

  function onTabKey(event) {
    const index = TABS.indexOf(event.target.dataset.tab);
    let next = null;
    if (event.key === "ArrowRight") next = (index + 1) % TABS.length;
    else if (event.key === "ArrowLeft") next = (index - 1 + TABS.length) % TABS.length;
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = TABS.length - 1;
    if (next === null) return;
    event.preventDefault();
    $(`tab-${TABS[next]}`).focus();
    go(state.botId, TABS[next]);
  }

  // ---------------------------------------------------------------- Custom Authentication settings

  const FIELD_TARGETS = [
    // [API field path prefix, error element, input]
    ["enabled", "err-enabled", "ca-enabled"],
    ["auth_url", "err-auth_url", "ca-auth-url"],
    ["header_token", "err-header_token", "ca-header-token"],
    ["identify_method", "err-identify_method", "ca-identify-method"],
    ["request_fields", "err-request_fields", null],
    ["domain_whitelist.domains", "err-domains", "wl-domains"],
    ["domain_whitelist.api_url", "err-api_url", "wl-api-url"],
    ["domain_whitelist", "err-whitelist", null],
    ["identity_source", "err-identity_source", null],
    ["signed_token.jwks_url", "err-st-jwks_url", "st-jwks-url"],
    ["signed_token.issuer", "err-st-issuer", "st-issuer"],
    ["signed_token.max_lifetime_seconds", "err-st-max_lifetime_seconds", "st-max-lifetime"],
    ["signed_token.claims", "err-st-claims", null],
    ["signed_token", "err-st-jwks_url", "st-jwks-url"],  // "jwks_url is required for RS256"
    ["oidc.issuer", "err-oidc-issuer", "oidc-issuer"],
    ["oidc.client_id", "err-oidc-client_id", "oidc-client-id"],
    ["oidc.client_secret", "err-oidc-client_secret", "oidc-client-secret"],
    ["oidc", "err-oidc-issuer", "oidc-issuer"],  // "required when the identity source is 'oidc'"
    ["accepted_clients", "err-accepted_clients", "oidc-accepted-clients"],
    ["collect_information", "err-collect_information", "ci-mode"],
    ["outage_grace_seconds", "err-outage_grace_seconds", "ca-outage-grace"],
  ];

  function requestFieldBoxes() {
    return Array.from(document.querySelectorAll('input[name="request_fields"]'));
  }

  function sourceValue() {
    const checked = document.querySelector('input[name="wl-source"]:checked');
    return checked ? checked.value : "manual";
  }

  function updateSourceFields() {
    const api = sourceValue() === "api";
    show($("wl-domains-field"), !api);
    show($("wl-api-field"), api);
    applySources();
  }

  // Each identity source shows only what it uses: an element's data-sources lists the sources (and
  // "whitelist_api": a whitelist read from the business's API, which takes the header token too) it is shown for.
  // The settings form follows the choice being made; the Testing panel follows the saved settings it runs with.
  function applySources() {
    const active = new Set([identitySourceValue()]);
    if ($("wl-enabled").checked && sourceValue() === "api") active.add("whitelist_api");
    showForSources($("settings-form"), active);
  }

  function showForSources(root, active) {
    for (const node of root.querySelectorAll("[data-sources]")) {
      node.hidden = !node.dataset.sources.split(" ").some((source) => active.has(source));
    }
  }

  function applyTestSources() {
    showForSources($("panel-testing"), new Set([state.savedSource || "auth_url"]));
  }

  function updateTokenState(isSet) {
    const input = $("ca-header-token");
    input.placeholder = isSet ? "set — leave empty to keep" : "not set";
    const tag = $("ca-token-state");
    tag.textContent = isSet ? "set" : "not set";
    tag.className = `badge ${isSet ? "badge-ok" : "badge-neutral"}`;
    $("ca-clear-token").closest("label").hidden = !isSet;
  }

  function fillSettings(settings) {
    $("ca-enabled").checked = Boolean(settings.enabled);
    $("ca-auth-url").value = settings.auth_url || "";
    $("ca-header-token").value = "";
    $("ca-header-token").disabled = false;
    $("ca-clear-token").checked = false;
    updateTokenState(Boolean(settings.header_token_set));
    $("ca-identify-method").value = settings.identify_method || "id";
    const fields = settings.request_fields || [];
    for (const box of requestFieldBoxes()) box.checked = fields.includes(box.value);
    const wl = settings.domain_whitelist || {};
    $("wl-enabled").checked = Boolean(wl.enabled);
    $(wl.source === "api" ? "wl-source-api" : "wl-source-manual").checked = true;
    $("wl-domains").value = (wl.domains || []).join("\n");
    $("wl-api-url").value = wl.api_url || "";
    updateSourceFields();
    fillTokenSettings(settings);
    fillOidcSettings(settings);
    fillCollectInformation(settings);
    fillGrace(settings);
  }

  // Collect Information: one sentence for each mode, shown under the select.
  const COLLECT_INFORMATION_HELP = {
    required: "The widget shows the Collect Information form (name, email, phone); what the visitor types becomes a non-verified contact.",
    optional: "The widget shows the form with a “Chat without sharing” button: the visitor may skip it and chat anonymously.",
    off: "No form: the visitor chats anonymously at once, and no contact is made for them.",
  };

  function updateCollectInformationHelp() {
    setText($("ci-help"), COLLECT_INFORMATION_HELP[$("ci-mode").value] || "");
  }

  function fillCollectInformation(settings) {
    $("ci-mode").value = COLLECT_INFORMATION_HELP[settings.collect_information] ? settings.collect_information : "required";
    updateCollectInformationHelp();
  }

  async function loadSettings() {
    const bot = state.botId;
    show($("settings-form"), false);
    show($("settings-loading"), true);
    try {
      const settings = await api("GET", `/v1/bots/${enc(bot)}/custom-auth`);
      if (bot !== state.botId) return;
      fillSettings(settings);
      state.settingsFor = bot;
      state.savedSource = settings.identity_source;
      applyTestSources();
      clearSettingsErrors();
      $("ca-status").textContent = "";
      show($("settings-form"), true);
    } catch (err) {
      if (err.status === 401 || bot !== state.botId) return;
      setText($("app-error"), `The settings could not be loaded: ${err.message}`);
    } finally {
      if (bot === state.botId) show($("settings-loading"), false);
    }
  }

  function domainLines() {
    return $("wl-domains").value.split("\n").map((line) => line.trim()).filter(Boolean);
  }

  function settingsBody() {
    const body = {
      enabled: $("ca-enabled").checked,
      auth_url: $("ca-auth-url").value.trim() || null,
      identify_method: $("ca-identify-method").value,
      request_fields: requestFieldBoxes().filter((box) => box.checked).map((box) => box.value),
      domain_whitelist: {
        enabled: $("wl-enabled").checked,
        source: sourceValue(),
        domains: domainLines(),
        api_url: $("wl-api-url").value.trim() || null,
      },
    };
    body.collect_information = $("ci-mode").value;
    body.outage_grace_seconds = graceSeconds();
    if ($("ca-clear-token").checked) body.header_token = null;
    else if ($("ca-header-token").value !== "") body.header_token = $("ca-header-token").value;
    Object.assign(body, tokenSettingsBody(), oidcSettingsBody());
    return body;
  }

  function clearSettingsErrors() {
    for (const [, errorId, inputId] of FIELD_TARGETS) {
      const node = $(errorId);
      node.replaceChildren();
      node.hidden = true;
      if (inputId) $(inputId).removeAttribute("aria-invalid");
    }
    $("settings-form-errors").replaceChildren();
    show($("settings-form-errors"), false);
  }

  function addError(node, message) {
    node.append(h("span", { class: "error-line" }, message));
    node.hidden = false;
  }

  function showSettingsErrors(err, domains) {
    const top = $("settings-form-errors");
    let firstInput = null;
    const fields = err.fields.length ? err.fields : [{ field: "body", message: err.message }];
    for (const { field, message } of fields) {
      let text = cleanMessage(message);
      const target = FIELD_TARGETS.find(([path]) => field === path || field.startsWith(`${path}.`));
      if (!target || field === "body") {
        if (!top.childElementCount) top.append(h("strong", {}, "The settings were not saved."));
        addError(top, field === "body" || !field ? text : `${field}: ${text}`);
        continue;
      }
      let [path, errorId, inputId] = target;
      if (field === "domain_whitelist" && sourceValue() === "api") {
        errorId = "err-api_url";  // "api_url is required when the whitelist source is 'api'"
        inputId = "wl-api-url";
      }
      if (path === "domain_whitelist.domains") {
        const index = Number(field.split(".")[2]);
        if (Number.isInteger(index) && domains[index] !== undefined) text = `“${domains[index]}”: ${text}`;
      }
      addError($(errorId), text);
      if (inputId) {
        $(inputId).setAttribute("aria-invalid", "true");
        firstInput = firstInput || $(inputId);
      }
    }
    if (!top.childElementCount && fields.length) {
      top.append(h("strong", {}, "The settings were not saved: fix the fields marked below."));
    }
    top.hidden = false;
    (firstInput || top).focus();
  }

  async function onSettingsSubmit(event) {
    event.preventDefault();
    const bot = state.botId;
    const body = settingsBody();
    const domains = body.domain_whitelist.domains;
    const button = $("ca-save");
    const status = $("ca-status");
    clearSettingsErrors();
    status.className = "status";
    status.textContent = "Saving…";
    button.disabled = true;
    try {
      const saved = await api("PUT", `/v1/bots/${enc(bot)}/custom-auth`, body);
      if (bot !== state.botId) return;
      fillSettings(saved);  // clears the header token and client secret inputs: secrets never stay in the page
      state.savedSource = saved.identity_source;
      applyTestSources();
      status.className = "status status-ok";
      status.textContent = "Saved";
    } catch (err) {
      if (err.status === 401) return;
      status.textContent = "";
      showSettingsErrors(err, domains);
    } finally {
      button.disabled = false;
    }
  }

  function onSettingsInput(event) {
    if (event.target.id === "ca-clear-token") {
      const clear = event.target.checked;
      const input = $("ca-header-token");
      input.disabled = clear;
      if (clear) input.value = "";
    }
    if (event.target.name === "wl-source" || event.target.id === "wl-enabled") updateSourceFields();
    if (event.target.name === "identity-source" || event.target.id === "st-algorithm") updateTokenFields();
    if (event.target.id === "ci-mode") updateCollectInformationHelp();
    const status = $("ca-status");
    if (status.textContent === "Saved") {
      status.textContent = "";
      status.className = "status";
    }
  }

  // ---------------------------------------------------------------- Identity source (signed identity tokens)

  const CLAIM_FIELDS = ["id", "email", "name", "phone_number", "metadata"];
  const DEFAULT_CLAIMS = { id: "sub", email: "email", name: "name", phone_number: "phone_number", metadata: "metadata" };

  function identitySourceValue() {
    const checked = document.querySelector('input[name="identity-source"]:checked');
    return checked ? checked.value : "auth_url";
  }

  function updateTokenFields() {
    applySources();
    const hs = $("st-algorithm").value === "HS256";
    show($("st-jwks-field"), !hs);
    show($("st-secret-field"), hs);
  }

  // The kids this page knows: the current one (from the settings), and the one a rotation made previous here
  // (it keeps verifying for 24 hours, unless revoked).
  const tokenKids = { current: null, previous: null };

  function updateSecretState(kid) {
    tokenKids.current = kid || null;
    const tag = $("st-secret-state");
    tag.textContent = kid ? `kid ${kid}` : "none yet";
    tag.className = `badge ${kid ? "badge-ok" : "badge-neutral"}`;
    show($("st-revoke-secret"), Boolean(kid));
    const previous = $("st-revoke-previous");
    previous.textContent = tokenKids.previous ? `Revoke previous secret (kid ${tokenKids.previous})…` : "";
    show(previous, Boolean(tokenKids.previous));
  }

  function fillTokenSettings(settings) {
    const st = settings.signed_token || {};
    const radio = { signed_token: "ids-signed-token", oidc: "ids-oidc" }[settings.identity_source] || "ids-auth-url";
    $(radio).checked = true;
    $("st-algorithm").value = st.algorithm || "HS256";
    $("st-jwks-url").value = st.jwks_url || "";
    $("st-issuer").value = st.issuer || "";
    $("st-max-lifetime").value = String(st.max_lifetime_seconds || 3600);
    const claims = { ...DEFAULT_CLAIMS, ...(st.claims || {}) };
    for (const field of CLAIM_FIELDS) $(`st-claim-${field}`).value = claims[field];
    updateSecretState(st.secret_kid);
    updateTokenFields();
  }

  function tokenSettingsBody() {
    const claims = {};
    for (const field of CLAIM_FIELDS) {
      const value = $(`st-claim-${field}`).value.trim();
      if (value) claims[field] = value;
    }
    const signed = {
      algorithm: $("st-algorithm").value,
      jwks_url: $("st-jwks-url").value.trim() || null,
      issuer: $("st-issuer").value.trim() || null,
      claims,
    };
    const lifetime = $("st-max-lifetime").value.trim();
    if (lifetime) signed.max_lifetime_seconds = Number(lifetime);
    return { identity_source: identitySourceValue(), signed_token: signed };
  }

  // ---------------------------------------------------------------- Identity source: the business's OpenID Provider

  // The form always carries the stored OpenID Provider (as shown, whichever source is chosen), so saving a bot
  // from this page never drops it; the client secret is write-only: sent only when typed (absent keeps it).
  function fillOidcSettings(settings) {
    const oidc = settings.oidc || {};
    $("oidc-issuer").value = oidc.issuer || "";
    $("oidc-method").value = oidc.method || "introspection";
    $("oidc-client-id").value = oidc.client_id || "";
    $("oidc-client-secret").value = "";
    const isSet = Boolean(oidc.client_secret_set);
    $("oidc-client-secret").placeholder = isSet ? "set — leave empty to keep" : "not set";
    const tag = $("oidc-secret-state");
    tag.textContent = isSet ? "set" : "not set";
    tag.className = `badge ${isSet ? "badge-ok" : "badge-neutral"}`;
    const accepted = settings.accepted_clients || [];
    // The default ([client_id]) is shown as empty: it follows the client id.
    const isDefault = accepted.length === 1 && accepted[0] === oidc.client_id;
    $("oidc-accepted-clients").value = isDefault ? "" : accepted.join("\n");
    $("oidc-logout-uri").textContent = `${location.origin}/v1/bots/${state.botId}/oidc/backchannel-logout`;
    resetDiscover();
  }

  function oidcSettingsBody() {
    const issuer = $("oidc-issuer").value.trim();
    const clientId = $("oidc-client-id").value.trim();
    if (identitySourceValue() !== "oidc" && !issuer && !clientId) return {};  // none stored, none typed
    const oidc = { issuer, method: $("oidc-method").value, client_id: clientId };
    const secret = $("oidc-client-secret").value;
    if (secret !== "") oidc.client_secret = secret;
    const accepted = $("oidc-accepted-clients").value.split("\n").map((line) => line.trim()).filter(Boolean);
    return accepted.length ? { oidc, accepted_clients: accepted } : { oidc };
  }

  // ---------------------------------------------------------------- OpenID Provider: Discover

  // What the provider publishes, field by field: [field, label, value shown, or what its absence means].
  const DISCOVERED_ROWS = [
    ["issuer", "Issuer", (p, r) => p.issuer === null ? "none named"
      : `${p.issuer} (${r.issuer_matches ? "exactly the issuer you entered" : "not the issuer you entered"})`],
    ["userinfo_endpoint", "Userinfo endpoint", (p) => p.userinfo_endpoint || "none published"],
    ["introspection_endpoint", "Introspection endpoint", (p) => p.introspection_endpoint
      || "none: this provider publishes no introspection endpoint, so use userinfo"],
    ["introspection_auth_methods", "Introspection accepts", (p) => p.introspection_auth_methods.join(", ") || "no client authentication method"],
    ["jwks_uri", "Keys (JWKS)", (p) => p.jwks_uri || "none published"],
    ["signing_algs", "Signing algorithms", (p) => p.signing_algs.join(", ") || "none published"],
    ["end_session_endpoint", "Logout page", (p) => p.end_session_endpoint || "none published"],
    ["backchannel_logout_supported", "Back-channel logout", (p) => p.backchannel_logout_supported
      ? "supported: paste the back-channel logout URI below into your provider" : "not announced by this provider"],
  ];

  function resetDiscover() {
    state.discovered = null;
    show($("oidc-discovered"), false);
    $("oidc-discover-status").textContent = "";
    $("oidc-discover-error").replaceChildren();
    show($("oidc-discover-error"), false);
  }

  async function onDiscover() {
    const bot = state.botId;
    const issuer = $("oidc-issuer").value.trim();
    resetDiscover();
    setText($("err-oidc-issuer"), "");
    $("oidc-issuer").removeAttribute("aria-invalid");
    const button = $("oidc-discover");
    button.disabled = true;
    $("oidc-discover-status").textContent = "Reading your provider's discovery document…";
    try {
      // No issuer typed: the saved one is read.
      const result = await api("POST", `/v1/bots/${enc(bot)}/custom-auth/oidc/discover`, issuer ? { issuer } : {});
      if (bot !== state.botId) return;
      state.discovered = result;
      renderDiscovered();
    } catch (err) {
      if (err.status === 401 || bot !== state.botId) return;
      const issuerErrors = err.fields.filter((f) => f.field === "issuer").map((f) => cleanMessage(f.message));
      if (issuerErrors.length) {
        const said = issuerErrors.join(" ");
        setText($("err-oidc-issuer"), said.charAt(0).toUpperCase() + said.slice(1));
        $("oidc-issuer").setAttribute("aria-invalid", "true");
        $("oidc-issuer").focus();
      } else if (err.code === "verifier_unavailable") {
        // The document is read by a verifier service (the gateway calls no one itself): none answered in time.
        addError($("oidc-discover-error"), "Discover could not run: no verifier service answered. The verifier is the " +
          "part of Doorman that calls your provider; check that it is running, then try again.");
      } else {
        addError($("oidc-discover-error"), err.message);
      }
      show($("oidc-discover-error"), $("oidc-discover-error").childElementCount > 0);
    } finally {
      button.disabled = false;
      if (bot === state.botId) $("oidc-discover-status").textContent = "";
    }
  }

  // Each method's meaning for this provider, the one chosen in "Check tokens with" first.
  function renderDiscoverMethods() {
    const r = state.discovered;
    if (!r) return;
    const chosen = $("oidc-method").value;
    const order = chosen === "userinfo" ? ["userinfo", "introspection"] : ["introspection", "userinfo"];
    $("oidc-discover-methods").replaceChildren(...order.map((method) => h("li",
      { class: method === chosen ? "chosen" : undefined, dataset: { method } },
      `${r[method].usable ? "✓" : "✕"} ${method}${method === chosen ? " (your choice)" : ""}: ${r[method].why}`)));
  }

  function renderDiscovered() {
    const r = state.discovered;
    $("oidc-discover-verdict").className = `verdict ${r.ok ? "verdict-ok" : "verdict-fail"}`;
    setText($("oidc-discover-title"), r.verdict);
    setText($("oidc-discover-detail"), r.ok ? "" : `Doorman's note: ${r.detail || ""}`);
    renderDiscoverMethods();
    const status = r.http_status === null ? "no answer" : `HTTP ${r.http_status}`;
    setText($("oidc-discover-meta"), `${r.document_url} · ${status} · ${r.elapsed_ms} ms` + (r.ok ? "" : ` · ${r.failure}`));
    const provider = r.provider;
    $("oidc-found").replaceChildren(...(provider ? DISCOVERED_ROWS : []).flatMap(([field, label, value]) =>
      [h("dt", {}, label), h("dd", { dataset: { testid: `found-${field}` } }, value(provider, r))]));
    show($("oidc-found"), Boolean(provider));
    $("oidc-document-url").textContent = `GET ${r.document_url}`;
    $("oidc-document").textContent = r.document === null ? "(no answer)" : r.document ? prettyText(r.document) : "(empty body)";
    setText($("oidc-document-truncated"), r.document_truncated
      ? `Truncated: showing the first ${r.document.length.toLocaleString()} characters.` : "");
    show($("oidc-discovered"), true);
  }

  function hideTokenSecret() {
    $("st-secret-kid").textContent = "";
    $("st-secret-value").textContent = "";
    show($("st-secret-shown"), false);
    setText($("err-st-secret"), "");
    $("st-secret-status").textContent = "";
    tokenKids.previous = null;
  }

  // POST .../custom-auth/token-secret: the secret is shown here once, never stored in the page.
  async function onNewTokenSecret() {
    const bot = state.botId;
    const button = $("st-new-secret");
    const replacing = tokenKids.current;
    if (replacing && !await confirmAction({
      title: "Make a new token secret?",
      body: `It replaces the current secret (kid ${replacing}). Tokens signed with the current one keep verifying for 24 hours, ` +
        "unless you revoke it.",
      confirm: "Make a new secret",
    })) return;
    hideTokenSecret();
    button.disabled = true;
    try {
      const made = await api("POST", `/v1/bots/${enc(bot)}/custom-auth/token-secret`);
      if (bot !== state.botId) return;
      $("st-secret-kid").textContent = made.kid;
      $("st-secret-value").textContent = made.secret;
      show($("st-secret-shown"), true);
      tokenKids.previous = replacing;
      updateSecretState(made.kid);
    } catch (err) {
      if (err.status !== 401 && bot === state.botId) setText($("err-st-secret"), `No secret was made: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  // DELETE .../custom-auth/token-secret/{kid}: a leaked secret stops verifying at once.
  async function onRevokeTokenSecret(which) {
    const bot = state.botId;
    const kid = tokenKids[which];
    if (!kid || !await confirmAction({
      title: `Revoke the token secret ${kid}?`,
      body: "From the next widget open on, a token naming this kid is refused (unknown_kid) and its visitor falls back. " +
        (which === "current" ? "The bot then has no current secret until you make a new one. " : "") + "This cannot be undone.",
      confirm: "Revoke secret",
    })) return;
    setText($("err-st-secret"), "");
    try {
      await api("DELETE", `/v1/bots/${enc(bot)}/custom-auth/token-secret/${enc(kid)}`);
    } catch (err) {
      if (err.status === 401 || bot !== state.botId) return;
      if (err.code !== "token_secret_not_found") {
        setText($("err-st-secret"), `The secret was not revoked: ${err.message}`);
        return;
      }
    }
    if (bot !== state.botId) return;
    if (which === "previous") tokenKids.previous = null;
    else show($("st-secret-shown"), false);
    updateSecretState(which === "current" ? null : tokenKids.current);
    const status = $("st-secret-status");
    status.className = "status status-ok";
    status.textContent = `Revoked: tokens naming kid ${kid} are refused.`;
  }

  // ---------------------------------------------------------------- Confirmations

  // Resolves true when the admin confirms in the dialog, false when they cancel (or press Escape).
  function confirmAction({ title, body, confirm }) {
    const dialog = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-body").textContent = body;
    $("confirm-ok").textContent = confirm;
    dialog.returnValue = "";
    const opener = document.activeElement;
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        if (opener && opener.focus) opener.focus();
        resolve(dialog.returnValue === "confirm");
      }, { once: true });
    });
  }

  // The Testing panel's view of a pasted JWT: header, claims (decoded without trusting them), the failed check.
  function renderTokenView(r) {
    const token = r.token;
    show($("test-exchange"), !token);
    show($("test-token"), Boolean(token));
    if (!token) return;
    $("test-token-check").textContent = token.failed_check
      ? `Failed check: ${token.failed_check}`
      : `Every check passed (${token.algorithm}).`;
    $("test-token-header").textContent = token.header ? pretty(token.header) : "(the header cannot be read)";
    $("test-token-claims").textContent = token.claims ? pretty(token.claims) : "(the claims cannot be read)";
  }

  // ---------------------------------------------------------------- Outage grace and the circuit breaker

  function graceSeconds() {
    const raw = $("ca-outage-grace").value.trim();
    if (raw === "") return 0;
    return /^\d+$/.test(raw) ? Number(raw) : raw;  // anything else: the API's field error says why
  }

  function fillGrace(settings) {
    $("ca-outage-grace").value = String(settings.outage_grace_seconds || 0);
    loadBreaker();
  }

  function degradedBadge(title) {
    const node = badge("degraded", "warn");
    node.title = title;
    node.dataset.testid = "degraded";
    return node;
  }

  function graceMarks(e) {
    const marks = [];
    if (e.degraded) marks.push(" ", degradedBadge("Verified from the outage grace: your Authentication URL was unavailable."));
    if (e.circuit_open) {
      const node = badge("circuit open", "neutral");
      node.title = "Not called: this bot's circuit breaker for its Authentication URL was open.";
      node.dataset.testid = "circuit-open";
      marks.push(" ", node);
    }
    return marks;
  }

  const BREAKER_TEXT = {
    closed: ["closed", "ok", "calls go through"],
    open: ["open", "warn", "this bot's calls to your Authentication URL kept failing: it is not called until the next probe"],
    half_open: ["half-open", "info", "one probe call is checking whether your Authentication URL is back"],
  };

  async function loadBreaker() {
    const bot = state.botId;
    try {
      const b = await api("GET", `/v1/bots/${enc(bot)}/custom-auth/breaker`);
      if (bot !== state.botId) return;
      const [label, kind, meaning] = BREAKER_TEXT[b.state] || [b.state, "neutral", ""];
      $("breaker-host").textContent = b.host ? `for ${b.host}` : "(no Authentication URL yet)";
      $("breaker-state").replaceChildren(badge(label, kind), ` ${meaning}`);
      $("breaker").dataset.state = b.state;
      $("breaker-replicas").replaceChildren(...b.replicas.map((r) => h("li", { dataset: { testid: "breaker-replica" } },
        `${r.replica}: ${(BREAKER_TEXT[r.state] || [r.state])[0]} since ${fmtTime(r.since)}`,
        r.detail ? ` (${r.detail})` : "", r.opened ? `, opened ${r.opened}×` : "")));
    } catch (err) {
      if (err.status === 401 || bot !== state.botId) return;
      $("breaker-state").textContent = `The breaker state could not be loaded: ${err.message}`;
    }
  }

  // ---------------------------------------------------------------- Webhooks to the business (issue 14)

  const webhook = { botId: null, seq: 0, cursor: null, enabled: false };
  const DELIVERY_KINDS = { delivered: "ok", pending: "info", dead: "warn" };

  function webhookEventBoxes() {
    return Array.from(document.querySelectorAll('input[name="webhook_events"]'));
  }

  function resetWebhook() {
    webhook.botId = null;
    webhook.seq += 1;
    $("webhook-form").reset();
    show($("webhook-card"), false);
    show($("wh-secret-shown"), false);
    $("wh-secret-value").textContent = "";
    setText($("wh-secret-previous"), "");
    setText($("err-wh-secret"), "");
    clearWebhookErrors();
    $("wh-status").textContent = "";
    $("wh-deliveries-body").replaceChildren();
    show($("wh-more"), false);
  }

  function clearWebhookErrors() {
    for (const id of ["wh-errors", "err-wh-enabled", "err-wh-url", "err-wh-events"]) setText($(id), "");
  }

  function fillWebhook(w) {
    $("wh-enabled").checked = w.enabled;
    $("wh-url").value = w.url || "";
    for (const box of webhookEventBoxes()) box.checked = w.events.includes(box.value);
    $("wh-secret-state").textContent = w.signing_secret_set ? "set" : "none yet";
    $("wh-secret-state").className = `badge ${w.signing_secret_set ? "badge-ok" : "badge-neutral"}`;
    webhook.enabled = w.enabled;
  }

  function showSigningSecret(secret, previousUntil) {
    $("wh-secret-value").textContent = secret;
    setText($("wh-secret-previous"), previousUntil
      ? `The previous secret keeps signing too until ${fmtTime(previousUntil)}.` : "");
    show($("wh-secret-shown"), true);
  }

  // POST .../custom-auth/signing-secret: a new secret, shown once; the previous one keeps signing for 24 hours.
  async function onRotateSigningSecret() {
    const bot = state.botId;
    const replacing = $("wh-secret-state").textContent === "set";
    if (!await confirmAction({
      title: replacing ? "Make a new signing secret?" : "Make a signing secret?",
      body: replacing
        ? "Webhooks and identity calls are then signed with the new secret, and with the current one as well for 24 hours: " +
          "switch your server to the new secret within that time. The new secret is shown once."
        : "Webhooks and identity calls are then signed with it (Doorman-Signature). It is shown once.",
      confirm: replacing ? "Make a new secret" : "Make a secret",
    })) return;
    const button = $("wh-rotate-secret");
    button.disabled = true;
    setText($("err-wh-secret"), "");
    try {
      const made = await api("POST", `/v1/bots/${enc(bot)}/custom-auth/signing-secret`);
      if (bot !== state.botId) return;
      showSigningSecret(made.signing_secret, made.previous_valid_until);
      $("wh-secret-state").textContent = "set";
      $("wh-secret-state").className = "badge badge-ok";
    } catch (err) {
      if (err.status !== 401 && bot === state.botId) setText($("err-wh-secret"), `No secret was made: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  // POST .../webhook/deliveries/{id}/retry: a dead delivery goes out again (the same body and id).
  async function onRetryDelivery(delivery, button) {
    const bot = state.botId;
    button.disabled = true;
    try {
      await api("POST", `/v1/bots/${enc(bot)}/webhook/deliveries/${enc(delivery.delivery_id)}/retry`);
      if (bot !== state.botId) return;
      button.replaceWith(h("span", { class: "status status-ok", dataset: { testid: "wh-retried" } }, "Sent again"));
      setTimeout(() => { if (bot === state.botId) loadDeliveries(true); }, 1500);
    } catch (err) {
      if (err.status === 401 || bot !== state.botId) return;
      button.disabled = false;
      button.replaceWith(h("span", { class: "field-error", role: "alert" },
        err.code === "invalid_state" ? "Not dead any more: refresh the log." : `Not retried: ${err.message}`));
    }
  }

  async function loadWebhook() {
    const bot = state.botId;
    webhook.botId = bot;
    try {
      const w = await api("GET", `/v1/bots/${enc(bot)}/webhook`);
      if (bot !== state.botId) return;
      fillWebhook(w);
      show($("webhook-card"), true);
    } catch (err) {
      if (err.status === 401 || bot !== state.botId) return;
      webhook.botId = null;
      setText($("app-error"), `The webhook could not be loaded: ${err.message}`);
      return;
    }
    loadDeliveries(true);
  }

  async function onWebhookSubmit(event) {
    event.preventDefault();
    const bot = state.botId;
    clearWebhookErrors();
    const body = {
      enabled: $("wh-enabled").checked,
      url: $("wh-url").value.trim() || null,
      events: webhookEventBoxes().filter((b) => b.checked).map((b) => b.value),
    };
    $("wh-save").disabled = true;
    $("wh-status").textContent = "Saving…";
    try {
      const w = await api("PUT", `/v1/bots/${enc(bot)}/webhook`, body);
      if (bot !== state.botId) return;
      fillWebhook(w);
      if (w.signing_secret) showSigningSecret(w.signing_secret, null);  // made now, shown this once: never again
      $("wh-status").textContent = "Saved.";
    } catch (err) {
      if (err.status === 401 || bot !== state.botId) return;
      $("wh-status").textContent = "";
      const targets = { enabled: "err-wh-enabled", url: "err-wh-url", events: "err-wh-events" };
      const general = [];
      for (const f of err.fields) {
        const target = targets[String(f.field).split(".")[0]];
        if (target) setText($(target), cleanMessage(f.message));
        else general.push(cleanMessage(f.message));
      }
      if (!err.fields.length || general.length) {
        setText($("wh-errors"), general.length ? general.join(" ") : err.message);
        $("wh-errors").focus();
      }
    } finally {
      $("wh-save").disabled = false;
    }
  }

  function deliveryRow(d) {
    let action = null;
    if (d.status === "dead") {
      action = h("button", { type: "button", class: "btn btn-small", dataset: { testid: "wh-retry" },
        "aria-label": `Retry the ${d.type} delivery ${d.delivery_id}` }, "Retry");
      action.addEventListener("click", () => onRetryDelivery(d, action));
    }
    return h("tr", { dataset: { testid: "wh-delivery", status: d.status, type: d.type } },
      timeCell(d.created_at),
      h("td", { class: "mono small nowrap" }, d.type),
      h("td", {}, badge(d.status, DELIVERY_KINDS[d.status] || "neutral")),
      h("td", { class: "num" }, String(d.attempts)),
      h("td", { class: "small" }, dash(d.last_error)),
      d.delivered_at ? timeCell(d.delivered_at) : h("td", {}, dash(null)),
      h("td", { class: "mono small" }, d.delivery_id),
      h("td", {}, action));
  }

  async function loadDeliveries(fresh) {
    const bot = state.botId;
    const seq = ++webhook.seq;
    if (fresh) webhook.cursor = null;
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (webhook.cursor) params.set("cursor", webhook.cursor);
    try {
      const page = await api("GET", `/v1/bots/${enc(bot)}/webhook/deliveries?${params}`);
      if (seq !== webhook.seq || bot !== state.botId) return;
      const rows = page.deliveries.map(deliveryRow);
      if (fresh) $("wh-deliveries-body").replaceChildren(...rows);
      else $("wh-deliveries-body").append(...rows);
      webhook.cursor = page.next_cursor;
      show($("wh-more"), Boolean(page.next_cursor));
      setText($("wh-deliveries-state"), $("wh-deliveries-body").children.length ? "" : webhook.enabled
        ? "No deliveries yet: each event the webhook takes is listed here as it is sent."
        : "No deliveries: turn the webhook on to have Doorman send events to your server.");
    } catch (err) {
      if (err.status === 401 || seq !== webhook.seq) return;
      setText($("wh-deliveries-state"), `The delivery log could not be loaded: ${err.message}`);
    }
  }

  function initWebhook() {
    $("webhook-form").addEventListener("submit", onWebhookSubmit);
    $("wh-refresh").addEventListener("click", () => loadDeliveries(true));
    $("wh-more").addEventListener("click", () => loadDeliveries(false));
    $("wh-rotate-secret").addEventListener("click", onRotateSigningSecret);
  }

  // ---------------------------------------------------------------- Testing panel

  const TEST_FIELDS = [
    ["user_id", "test-user-id"],
    ["email", "test-email"],
    ["name", "test-name"],
    ["phone_number", "test-phone"],
    ["external_workspace_id", "test-external-workspace-id"],
    ["origin", "test-origin"],
  ];

  function clearTestErrors() {
    $("test-form-errors").replaceChildren();
    show($("test-form-errors"), false);
    setText($("err-test-access_token"), "");
    setText($("err-test-origin"), "");
    $("test-access-token").removeAttribute("aria-invalid");
  }

  async function onTestSubmit(event) {
    event.preventDefault();
    const bot = state.botId;
    clearTestErrors();
    const accessToken = $("test-access-token").value.trim();
    if (!accessToken) {
      setText($("err-test-access_token"), "Enter an access token to send.");
      $("test-access-token").setAttribute("aria-invalid", "true");
      $("test-access-token").focus();
      return;
    }
    const body = { access_token: accessToken };
    for (const [field, inputId] of TEST_FIELDS) {
      const value = $(inputId).value.trim();
      if (value) body[field] = value;
    }
    const button = $("test-send");
    button.disabled = true;
    // A new run clears the last verdict: what shows is always this run's.
    show($("test-result"), false);
    show($("test-empty"), false);
    $("test-result").setAttribute("aria-busy", "true");
    $("test-status").textContent = { signed_token: "Checking the token…", oidc: "Asking your OpenID Provider…" }[state.savedSource]
      || "Calling your Authentication URL…";
    try {
      const result = await api("POST", `/v1/bots/${enc(bot)}/custom-auth/test`, body);
      if (bot !== state.botId) return;
      renderTestResult(result);
    } catch (err) {
      if (err.status === 401 || bot !== state.botId) return;
      show($("test-result"), false);
      show($("test-empty"), true);
      const top = $("test-form-errors");
      for (const f of err.fields) {
        if (f.field === "access_token") setText($("err-test-access_token"), cleanMessage(f.message));
        else if (f.field === "origin") setText($("err-test-origin"), cleanMessage(f.message));
        else if (f.field === "auth_url") addError(top, "Set the Authentication URL in the Custom Authentication tab and save it first.");
        else addError(top, `${f.field === "body" ? "" : f.field + ": "}${cleanMessage(f.message)}`);
      }
      if (err.code === "verifier_unavailable") {
        // The test runs in a verifier service (the gateway calls no business itself): none answered in time.
        addError(top, "The test could not run: no verifier service answered. The verifier is the part of Doorman " +
          "that calls your Authentication URL; check that it is running, then send the test again.");
      } else if (!err.fields.length) {
        addError(top, err.message);
      }
      top.hidden = !top.childElementCount;
    } finally {
      button.disabled = false;
      $("test-result").removeAttribute("aria-busy");
      $("test-status").textContent = "";
    }
  }

  // What a real widget open would get today: the verifier's own decision, run dry by a verifier.
  const REASON_WORDS = {
    ca_disabled: "Custom Authentication is off for this bot",
    domain_not_allowed: "the site is not on the bot's domain whitelist",
    missing_token: "the widget was opened without an access token",
    auth_rejected: "the token was refused",
    auth_unavailable: "the identity check could not be made in time",
    invalid_response: "the answer could not be understood",
    destination_blocked: "Doorman will not call that address",
    internal_error: "something went wrong inside Doorman",
    busy: "Doorman was too busy",
    misconfigured: "a saved setting cannot be used as it is",
  };

  function visitorOutcomeText(outcome, origin) {
    if (!outcome) return "";
    const who = origin ? `A visitor on ${origin}` : "A visitor";
    if (outcome.status === "verified") return `${who} would be verified.`;
    // Not "gets the form": what a visitor who falls back is offered is the bot's collect_information mode.
    if (outcome.reason === "domain_not_allowed" && !origin) {
      return "A visitor would not be verified: the domain whitelist is on, and only a site on it may open the widget. " +
        "Fill in “Visitor's site” to check a site.";
    }
    return `${who} would not be verified: ${outcome.detail || REASON_WORDS[outcome.reason] || outcome.reason}.`;
  }

  // The part that failed, in plain words.
  function failureTitle(r) {
    const failure = r.failure || {};
    const detail = String(failure.detail || "");
    if (r.token) {
      return failure.reason === "auth_unavailable"
        ? "Your JWKS URL could not be read, so the token could not be checked"
        : `The signed token failed a check: ${r.token.failed_check || failure.reason}`;
    }
    if (!r.request && !r.token && r.identity_source === "auth_url") {  // a widget token: the pushed identity
      return `The widget token was not accepted: ${detail || REASON_WORDS[failure.reason]}`;
    }
    const answered = r.response && r.response.status >= 200 && r.response.status <= 299;
    const status = !r.response ? "" : answered ? " (it answered “status”: false)" : ` (HTTP ${r.response.status})`;
    switch (failure.reason) {
      case "auth_rejected":
        return `Your Authentication URL refused the token${status}`;
      case "auth_unavailable":
        return r.response ? `Your Authentication URL is unavailable${status}` : `Your Authentication URL did not answer: ${detail}`;
      case "invalid_response":
        return `Your Authentication URL's answer was not understood${status}`;
      case "destination_blocked":
        return "Doorman will not call your Authentication URL";
      case "misconfigured":
        return "A saved setting cannot be used as it is";
      default:
        return detail ? detail.charAt(0).toUpperCase() + detail.slice(1) : `Failed: ${failure.reason}`;
    }
  }

  // What the business's endpoint said: a message in its JSON answer, or the start of its text.
  function businessSaid(response) {
    if (!response || !response.body || !response.body.trim()) return null;
    let document = null;
    try {
      document = JSON.parse(response.body);
    } catch (_) {
      return response.body.trim().slice(0, 300);
    }
    if (document && typeof document === "object") {
      for (const key of ["message", "error_description", "error", "detail", "reason"]) {
        const value = document[key];
        if (typeof value === "string" && value.trim()) return value.trim().slice(0, 300);
        if (value && typeof value === "object" && typeof value.message === "string") return value.message.slice(0, 300);
      }
    }
    return null;
  }

  function renderTestResult(r) {
    const verdict = $("test-verdict");
    verdict.className = `verdict ${r.ok ? "verdict-ok" : "verdict-fail"}`;
    const said = r.ok ? null : businessSaid(r.response);
    if (r.ok) {
      const identity = r.identity || {};
      const who = identity.name || identity.identifier || "";
      const action = (r.match && r.match.action) || "create";
      let title = `Verified: would ${action} contact ${who}`.trim();
      if (action === "update" && r.match.contact_id) title += ` (${r.match.contact_id})`;
      setText($("test-verdict-title"), title);
      setText($("test-verdict-detail"), `Matched by ${r.identify_method}: ${identity.identifier}`);
      setText($("test-verdict-hint"), "");
    } else {
      const failure = r.failure || {};
      const title = failureTitle(r);
      setText($("test-verdict-title"), title);
      // The precise detail, unless the title or the quote already says it.
      const detail = String(failure.detail || "");
      const extra = detail && !said && !title.toLowerCase().includes(detail.toLowerCase().replace(/^the authentication url /, ""));
      setText($("test-verdict-detail"), extra ? `Doorman's note: ${detail}` : "");
      setText($("test-verdict-hint"), failure.hint || "");
    }
    show($("test-said"), Boolean(said));
    $("test-said-who").textContent = r.token ? "" : "Your endpoint said:";
    $("test-said-text").textContent = said ? `“${said}”` : "";
    setText($("test-visitor"), visitorOutcomeText(r.visitor_outcome, $("test-origin").value.trim()));
    setText($("test-meta"), `${r.elapsed_ms} ms` + (r.ok ? "" : ` · reason code ${(r.failure || {}).reason}`));

    const req = r.request;
    $("test-request-line").textContent = req ? `${req.method} ${req.url}` : "No call was made.";
    $("test-request").textContent = req ? pretty({ headers: req.headers, body: req.body }) : "";
    show($("test-request"), Boolean(req));

    const resp = r.response;
    const headerBody = $("test-response-headers").tBodies[0];
    if (!resp) {
      $("test-response-line").textContent = req ? "No response: the call did not get an answer." : "No response.";
      headerBody.replaceChildren();
      show($("test-response-headers"), false);
      show($("test-response-body"), false);
      setText($("test-response-truncated"), "");
    } else {
      $("test-response-line").textContent = `HTTP ${resp.status} · ${resp.body_bytes} bytes`;
      headerBody.replaceChildren(...Object.entries(resp.headers || {}).map(([name, value]) =>
        h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, value))));
      show($("test-response-headers"), headerBody.childElementCount > 0);
      $("test-response-body").textContent = resp.body ? prettyText(resp.body) : "(empty body)";
      show($("test-response-body"), true);
      setText($("test-response-truncated"), resp.body_truncated
        ? `Truncated: showing the first ${resp.body.length.toLocaleString()} characters of a ${resp.body_bytes.toLocaleString()}-byte body.`
        : "");
    }
    // A failed run stores nothing: no identity block at all.
    $("test-identity").textContent = r.identity ? pretty(r.identity) : "";
    show($("test-identity-card"), Boolean(r.identity));
    $("test-raw-summary").textContent = r.token ? "The token as read" : req ? "The raw exchange: request as sent, response" : "Details";
    renderTokenView(r);
    show($("test-empty"), false);
    show($("test-result"), true);
  }

  // ---------------------------------------------------------------- Contacts

  let searchTimer = null;

  async function loadContacts(reset) {
    const bot = state.botId;
    const list = state.contacts;
    const seq = ++list.seq;
    const body = $("contacts-body");
    const stateLine = $("contacts-state");
    const more = $("contacts-more");
    if (reset) {
      list.cursor = null;
      body.replaceChildren();
    }
    const q = $("contacts-q").value.trim();
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (q) query.set("q", q);
    if (list.cursor) query.set("cursor", list.cursor);
    stateLine.className = "state";
    setText(stateLine, reset ? "Loading contacts…" : "");
    more.disabled = true;
    try {
      const page = await api("GET", `/v1/bots/${enc(bot)}/contacts?${query}`);
      if (seq !== list.seq || bot !== state.botId) return;
      if (reset) body.replaceChildren();
      body.append(...page.contacts.map(contactRow));
      list.cursor = page.next_cursor;
      show(more, Boolean(page.next_cursor));
      setText(stateLine, body.childElementCount ? "" :
        q ? `No contacts match “${q}”.` : "No contacts yet. They appear here when visitors open the widget.");
    } catch (err) {
      if (err.status === 401 || seq !== list.seq) return;
      stateLine.className = "state state-error";
      setText(stateLine, `The contacts could not be loaded: ${err.message}`);
    } finally {
      more.disabled = false;
    }
  }

  function contactRow(c) {
    const open = () => openContact(c.contact_id);
    return h("tr", { class: "clickable", dataset: { contactId: c.contact_id, testid: "contact-row" }, onclick: open },
      h("td", {}, h("button", { type: "button", class: "row-link", title: "Open contact details" },
        c.name ? c.name : h("span", { class: "muted" }, "(no name)"))),
      h("td", {}, dash(c.email)),
      h("td", { class: "nowrap" }, dash(c.phone_number)),
      h("td", {}, h("span", { class: "mono" }, c.identifier), h("span", { class: "muted small" }, ` ${c.identify_method}`),
        c.external_workspace_id ? h("span", { class: "muted small", dataset: { testid: "contact-workspace" } },
          ` · workspace ${c.external_workspace_id}`) : null),
      h("td", {}, c.verified ? badge("verified", "ok") : badge("not verified", "neutral")),
      timeCell(c.updated_at));
  }

  const CONTACT_FIELDS = [
    ["contact_id", "Contact id", "mono", "system"],
    ["identify_method", "Identify method", null, "system"],
    ["identifier", "Identifier", "mono", "system"],
    ["external_workspace_id", "Your workspace (external_workspace_id)", "mono", "system"],
    ["external_id", "Your id (external_id)", "mono"],
    ["name", "Name"],
    ["email", "Email"],
    ["phone_number", "Phone number"],
    ["country_code", "Country code"],
    ["avatar", "Avatar URL", "break"],
    ["label", "Label"],
    ["verified", "Verified", null, "system"],
    ["created_at", "Created", "time", "system"],
    ["updated_at", "Updated", "time", "system"],
    ["last_verified_at", "Last verified", "time", "system"],
  ];

  function sourceBadge(source) {
    if (!source) return h("span", { class: "muted" }, "—");
    return badge(source === "api" ? "api" : source === "visitor" ? "visitor" : source, source === "api" ? "info" : "violet");
  }

  async function openContact(contactId) {
    const bot = state.botId;
    const seq = ++state.contactSeq;
    state.lastContact = contactId;
    show($("contacts-list-view"), false);
    show($("contact-details"), true);
    show($("contact-card"), false);
    $("contact-name").textContent = "";
    $("contact-fields").replaceChildren();
    $("contact-metadata").textContent = "";
    $("contact-state").className = "state";
    setText($("contact-state"), "Loading contact…");
    $("contact-back").focus();
    try {
      const c = await api("GET", `/v1/bots/${enc(bot)}/contacts/${enc(contactId)}`);
      if (seq !== state.contactSeq || bot !== state.botId) return;
      renderContact(c);
      setText($("contact-state"), "");
      show($("contact-card"), true);
    } catch (err) {
      if (err.status === 401 || seq !== state.contactSeq) return;
      $("contact-state").className = "state state-error";
      setText($("contact-state"), err.status === 404 ? "This contact no longer exists." : `The contact could not be loaded: ${err.message}`);
    }
  }

  function renderContact(c) {
    const sources = c.sources || {};
    $("contact-name").textContent = c.name || c.email || c.phone_number || c.identifier || "(no name)";
    $("contact-verified").replaceChildren(c.verified ? badge("verified", "ok") : badge("not verified", "neutral"));
    if (c.degraded) $("contact-verified").append(" ", degradedBadge("Its last verification was degraded: made from the outage grace while your Authentication URL was unavailable."));
    $("contact-fields").replaceChildren(...CONTACT_FIELDS.map(([key, label, kind, system]) => {
      let value = c[key];
      if (key === "verified") value = value ? "yes" : "no";
      else if (kind === "time") value = value ? fmtTime(value) : null;
      const cell = h("td", { class: kind === "mono" ? "mono" : kind === "break" ? "break" : undefined,
        title: kind === "time" && c[key] ? c[key] : undefined }, dash(value));
      const source = system ? null : sourceBadge(sources[key]);
      return h("tr", { dataset: { field: key } }, h("th", { scope: "row" }, label), cell, h("td", {}, source));
    }));
    const metaRow = h("tr", { dataset: { field: "metadata" } }, h("th", { scope: "row" }, "Metadata"),
      h("td", {}, Object.keys(c.metadata || {}).length ? `${Object.keys(c.metadata).length} keys, below` : dash(null)),
      h("td", {}, sourceBadge(sources.metadata)));
    $("contact-fields").append(metaRow);
    $("contact-metadata").textContent = pretty(c.metadata || {});
    renderLifecycle(c);
  }

  function closeContact() {
    state.contactSeq++;
    show($("contact-details"), false);
    show($("contacts-list-view"), true);
  }

  // ---------------------------------------------------------------- Contact lifecycle: identity history, export, erasure

  const TYPED_LABELS = { name: "name", email: "email", phone_number: "phone", country_code: "country code" };
  let lifecycleContact = null;  // {bot, contactId} of the contact on screen

  function renderLifecycle(c) {
    lifecycleContact = { bot: state.botId, contactId: c.contact_id };
    setText($("contact-lifecycle-error"), "");
    $("contact-lifecycle-status").textContent = "";
    // The impersonation warning: a verified identity took over a contact a visitor made through the form.
    const warning = $("contact-takeover");
    const typed = Object.entries(c.typed || {});
    warning.replaceChildren();
    if (c.taken_over_at) {
      warning.append(h("strong", {}, "Possible impersonation. "),
        `Until ${fmtTime(c.taken_over_at)} this contact was a visitor who was not verified (the Collect Information form); `,
        "a verified identity took it over then, so what was said before may not come from this person.",
        typed.length ? h("span", { class: "block", dataset: { testid: "contact-typed" } },
          "The visitor typed: ", typed.map(([key, value]) => `${TYPED_LABELS[key] || key} “${value}”`).join(", "), ".") : null);
    }
    show(warning, Boolean(c.taken_over_at));
    const history = c.history || [];
    $("contact-history").replaceChildren(...history.slice().reverse().map(historyEntry));  // newest first
    show($("contact-history-empty"), history.length === 0);
  }

  // What an identity change (a contact's history entry, or the activity log's identity_change) says.
  function identityChangeText(e) {
    return e.kind === "identity_changed"
      ? ["Identity changed: your id ", h("code", {}, e.old_external_id), " became ", h("code", {}, e.new_external_id),
        " (the latest verification wins)"]
      : e.kind === "took_over_unverified"
        ? ["A verified identity took over this contact, which an unverified visitor had made through the form"]
        : [e.kind];
  }

  function historyEntry(e) {
    return h("li", { dataset: { testid: "history-entry", kind: e.kind } },
      h("span", { class: "nowrap", title: e.at }, fmtTime(e.at, true)), " · ", ...identityChangeText(e),
      e.session_id ? h("span", { class: "muted small block mono" }, `session ${e.session_id}`) : null);
  }

  async function onExportContact() {
    const target = lifecycleContact;
    if (!target) return;
    const button = $("contact-export");
    button.disabled = true;
    setText($("contact-lifecycle-error"), "");
    try {
      const data = await api("GET", `/v1/bots/${enc(target.bot)}/contacts/${enc(target.contactId)}/export`);
      const url = URL.createObjectURL(new Blob([pretty(data)], { type: "application/json" }));
      const link = h("a", { href: url, download: `contact-${target.contactId}.json`, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      if (err.status !== 401) setText($("contact-lifecycle-error"), `The export failed: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  function onEraseContact() {
    if (!lifecycleContact) return;
    const dialog = $("erase-dialog");
    dialog.returnValue = "";
    dialog.showModal();
  }

  async function onEraseDialogClose() {
    const target = lifecycleContact;
    if ($("erase-dialog").returnValue !== "erase" || !target) return;
    const button = $("contact-erase");
    button.disabled = true;
    setText($("contact-lifecycle-error"), "");
    try {
      await api("DELETE", `/v1/bots/${enc(target.bot)}/contacts/${enc(target.contactId)}`);
    } catch (err) {
      if (err.status === 401) return;
      if (err.code !== "contact_erased") {  // erased already (another tab): the same outcome
        setText($("contact-lifecycle-error"), `The contact could not be erased: ${err.message}`);
        return;
      }
    } finally {
      button.disabled = false;
    }
    const row = document.querySelector(`#contacts-body tr[data-contact-id="${CSS.escape(target.contactId)}"]`);
    if (row) row.remove();
    if (state.lastContact === target.contactId && !$("contact-details").hidden) {
      lifecycleContact = null;
      show($("contact-card"), false);
      $("contact-state").className = "state";
      setText($("contact-state"), "Contact erased: its personal data is gone. If this person is verified again, they become a new contact.");
      $("contact-back").focus();
    }
  }

  // POST .../contacts/{id}/revoke: every session of the contact ends (its widget shows it signed out).
  async function onRevokeSessions() {
    const target = lifecycleContact;
    if (!target || !await confirmAction({
      title: "End all of this contact's sessions?",
      body: "Every open widget session verified as this contact (or made by its form) ends now, on every gateway: " +
        "its chat shows the visitor signed out. The contact itself is kept.",
      confirm: "End sessions",
    })) return;
    const button = $("contact-revoke");
    button.disabled = true;
    setText($("contact-lifecycle-error"), "");
    const status = $("contact-lifecycle-status");
    status.className = "status";
    status.textContent = "";
    try {
      const done = await api("POST", `/v1/bots/${enc(target.bot)}/contacts/${enc(target.contactId)}/revoke`);
      if (lifecycleContact !== target) return;
      status.className = "status status-ok";
      status.textContent = done.ended
        ? `${done.ended} session${done.ended === 1 ? "" : "s"} ended.`
        : "No session was open: nothing to end.";
    } catch (err) {
      if (err.status !== 401) setText($("contact-lifecycle-error"), `The sessions were not ended: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  function initLifecycle() {
    $("contact-revoke").addEventListener("click", onRevokeSessions);
    $("contact-export").addEventListener("click", onExportContact);
    $("contact-erase").addEventListener("click", onEraseContact);
    $("erase-dialog").addEventListener("close", onEraseDialogClose);
  }

  // ---------------------------------------------------------------- Activity

  async function loadEvents(reset) {
    const bot = state.botId;
    const list = state.events;
    const seq = ++list.seq;
    const body = $("events-body");
    const stateLine = $("events-state");
    const more = $("events-more");
    if (reset) {
      list.cursor = null;
      body.replaceChildren();
    }
    const reason = $("events-reason").value;
    const status = $("events-status").value;
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (reason) query.set("reason", reason);
    if (status) query.set("status", status);
    if (list.cursor) query.set("cursor", list.cursor);
    stateLine.className = "state";
    setText(stateLine, reset ? "Loading activity…" : "");
    more.disabled = true;
    try {
      const page = await api("GET", `/v1/bots/${enc(bot)}/auth-events?${query}`);
      if (seq !== list.seq || bot !== state.botId) return;
      if (reset) body.replaceChildren();
      body.append(...page.events.map(eventRow));
      list.cursor = page.next_cursor;
      show(more, Boolean(page.next_cursor));
      setText(stateLine, body.childElementCount ? "" :
        reason || status ? "No widget opens match these filters." : "No widget opens yet. Each one the widget makes is logged here.");
    } catch (err) {
      if (err.status === 401 || seq !== list.seq) return;
      stateLine.className = "state state-error";
      setText(stateLine, `The activity could not be loaded: ${err.message}`);
    } finally {
      more.disabled = false;
    }
  }

  function ms(value) {
    return value === null || value === undefined ? dash(null) : String(Math.round(value));
  }

  const ENDED_BY = {
    visitor: "by the visitor (logged out)", revoked: "by a revocation of the contact's sessions",
    backchannel_logout: "by a logout at your OpenID Provider (back-channel logout)",
  };

  function eventRow(e) {
    const ended = e.status === "ended" && e.ended_by
      ? h("span", { class: "muted small block", dataset: { testid: "event-ended" }, title: e.ended_at || undefined },
        `ended ${ENDED_BY[e.ended_by] || e.ended_by}`, e.ended_at ? ` at ${fmtTime(e.ended_at, true)}` : "")
      : null;
    const change = e.identity_change
      ? h("span", { class: "small block", dataset: { testid: "event-identity-change", kind: e.identity_change.kind } },
        ...identityChangeText(e.identity_change))
      : null;
    return h("tr", { dataset: { testid: "event-row", sessionId: e.session_id, sessionStatus: e.status, reason: e.reason || "" } },
      timeCell(e.created_at),
      h("td", {}, statusBadge(e.status), ...graceMarks(e), ended),
      h("td", {}, e.reason ? h("code", { class: "reason" }, e.reason) : dash(null)),
      h("td", { class: "detail" }, e.detail || !e.origin ? dash(e.detail) : null,
        e.origin ? h("span", { class: "muted small block" }, `from ${e.origin}`) : null, change,
        // Set only when the whitelist came from the business's API and that read had a problem (stale, missing).
        e.whitelist_note ? h("span", { class: "small block", dataset: { testid: "event-whitelist-note" } },
          `whitelist API: ${e.whitelist_note}`) : null),
      h("td", { class: "num" }, dash(e.auth_http_status)),
      h("td", { class: "num" }, ms(e.auth_latency_ms)),
      h("td", { class: "num" }, ms(e.latency_ms)));
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    $("signin-form").addEventListener("submit", onSignInSubmit);
    $("sign-out").addEventListener("click", () => signOut());
    $("bot-select").addEventListener("change", (event) => go(event.target.value, state.tab));
    $("new-bot-toggle").addEventListener("click", () => toggleNewBot($("new-bot-form").hidden));
    $("no-bots-create").addEventListener("click", () => toggleNewBot(true));
    $("new-bot-cancel").addEventListener("click", () => toggleNewBot(false));
    $("new-bot-form").addEventListener("submit", onNewBotSubmit);
    for (const name of TABS) {
      $(`tab-${name}`).addEventListener("click", () => go(state.botId, name));
      $(`tab-${name}`).addEventListener("keydown", onTabKey);
    }
    $("settings-form").addEventListener("submit", onSettingsSubmit);
    $("settings-form").addEventListener("input", onSettingsInput);
    $("settings-form").addEventListener("change", onSettingsInput);
    $("test-form").addEventListener("submit", onTestSubmit);
    $("oidc-discover").addEventListener("click", onDiscover);
    $("oidc-issuer").addEventListener("input", resetDiscover);  // a result is for the issuer it was read for
    $("oidc-method").addEventListener("change", renderDiscoverMethods);
    $("st-new-secret").addEventListener("click", onNewTokenSecret);
    $("st-revoke-secret").addEventListener("click", () => onRevokeTokenSecret("current"));
    $("st-revoke-previous").addEventListener("click", () => onRevokeTokenSecret("previous"));
    $("breaker-refresh").addEventListener("click", loadBreaker);
    $("contacts-search").addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(searchTimer);
      loadContacts(true);
    });
    $("contacts-q").addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => loadContacts(true), 300);
    });
    $("contacts-more").addEventListener("click", () => loadContacts(false));
    initLifecycle();
    $("contact-back").addEventListener("click", () => {
      closeContact();
      const row = document.querySelector(`#contacts-body tr[data-contact-id="${CSS.escape(state.lastContact || "")}"] .row-link`);
      if (row) row.focus();
    });
    $("events-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      loadEvents(true);
    });
    $("events-reason").addEventListener("change", () => loadEvents(true));
    $("events-status").addEventListener("change", () => loadEvents(true));
    $("events-more").addEventListener("click", () => loadEvents(false));
    initWebhook();
    window.addEventListener("hashchange", route);

    let saved = null;
    try {
      saved = sessionStorage.getItem(TOKEN_KEY);
    } catch (_) { /* storage may be off */ }
    if (!saved) {
      showSignIn();
      return;
    }
    signIn(saved).catch((err) => {
      if (err.status !== 401) {
        setText($("app-error"), err.message);
      }
    });
  }

  init();
})();
