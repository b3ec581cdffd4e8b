// Presto-Deck's page: list decks, create one, watch it stream in, cancel it, present it, and
// once it has ended edit it, switch its theme and download it.
//
// The deck shown is kept in memory with the version of the last event applied. Events are
// applied strictly in version order: an old or repeated version is ignored, a gap re-reads the
// deck over HTTP. After a drop the socket reconnects with `last_version`, so nothing is missed
// and nothing is applied twice. Only stored (sanitized) slide HTML is inserted as markup; every
// other string goes in with textContent.
//
// An edit is sent with a fresh request id (over the socket, or over HTTP when the socket is not
// open) and its card says "working…" until the answer for that id arrives. The change itself is
// shown like everything else: by its event, which every open tab of the deck receives.

const TOKEN_KEY = "presto-deck.token";
const ACTIVE_STATUSES = new Set(["PENDING", "PLANNING", "GENERATING"]);
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10000;
// How long "Really delete?" waits for the second click.
const DELETE_CONFIRM_MS = 4000;
// The edit target of the deck's own "Add slide" (cards are targeted by their slide id).
const FIRST = "first";
// Close codes after which reconnecting cannot help (SPEC §6).
const FINAL_CLOSE_CODES = new Map([
  [4400, "bad request"],
  [4401, "token rejected"],
  [4403, "origin not allowed"],
  [4404, "deck not found"],
]);

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  deck: null, // { id, title, status, version, plan, slides: [{id, order, html_content, presenter_notes}] }
  socket: null,
  retries: 0,
  retryTimer: null,
  resyncing: false,
  presenting: false,
  presenterIndex: 0,
  pending: new Map(), // request id → { target, deckId, frame, overSocket }: edits not answered yet
  editErrors: new Map(), // edit target → why its last edit failed, until its next edit
  themeChange: null, // { deckId, requestId, theme }: a theme switch whose event has not arrived
  downloading: new Set(), // the export formats being fetched
};

// -- token ---------------------------------------------------------------------------------

function readFragment() {
  return new URLSearchParams(location.hash.replace(/^#/, ""));
}

function writeFragment(params) {
  const text = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (text ? `#${text}` : ""));
}

function onFragmentChange() {
  // A sign-in link or a deck's link pasted into an open tab: act on it as on a fresh load.
  const before = state.token;
  takeTokenFromFragment();
  const token = localStorage.getItem(TOKEN_KEY);
  if (token !== before) {
    setToken(token);
    loadThemes();
    refreshDeckList();
  }
  const deckId = readFragment().get("deck");
  if (deckId && deckId !== state.deck?.id) openDeck(deckId);
}

function takeTokenFromFragment() {
  const params = readFragment();
  const token = params.get("token");
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    writeFragment(params); // the token must not stay in the address bar or the history
  }
}

function setToken(token) {
  state.token = token || null;
  if (state.token) localStorage.setItem(TOKEN_KEY, state.token);
  else localStorage.removeItem(TOKEN_KEY);
  askForToken(state.token ? null : "You are not signed in.");
}

function askForToken(why) {
  // The sign-in panel, saying why it is open; null closes it.
  $("token-panel").hidden = why === null;
  if (why !== null) $("token-why").textContent = why;
}

const SIGNED_OUT = "You are not signed in: open the sign-in link or paste a token (see above).";

// -- HTTP ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(method, path, body, extraHeaders = {}) {
  // The answer when it is a success; an ApiError that says why when it is not.
  if (!state.token) {
    askForToken("You are not signed in.");
    throw new ApiError(401, SIGNED_OUT);
  }
  const headers = { ...extraHeaders, Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    const detail = data && (data.detail || data.message);
    if (response.status === 401) {
      askForToken(`The server refused your token (${detail || "no reason given"}).`);
      throw new ApiError(401, "Your token was refused: sign in again (see above).");
    }
    throw new ApiError(response.status, detail || `Request failed (${response.status})`);
  }
  return response;
}

async function api(method, path, body, extraHeaders = {}) {
  const response = await request(method, path, body, extraHeaders);
  return response.json().catch(() => null);
}

function showNotice(message) {
  const notice = $("notice");
  notice.textContent = message;
  notice.hidden = !message;
}

// -- deck list -----------------------------------------------------------------------------

async function refreshDeckList() {
  if (!state.token) return;
  try {
    const page = await api("GET", "/api/v1/decks?limit=50");
    renderDeckList(page.items);
  } catch (error) {
    showNotice(error.message);
  }
}

function renderDeckList(items) {
  const list = $("deck-list");
  list.replaceChildren(
    ...items.map((item) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "deck-list__item";
      button.dataset.deckId = item.id;
      button.setAttribute("aria-current", String(state.deck?.id === item.id));
      const title = document.createElement("span");
      title.className = "deck-list__title";
      title.textContent = item.title;
      const status = statusBadge(item.status);
      button.append(title, status);
      button.addEventListener("click", () => openDeck(item.id));
      const row = document.createElement("li");
      row.append(button);
      return row;
    }),
  );
  $("deck-list-empty").hidden = items.length > 0;
}

function statusBadge(status) {
  const badge = document.createElement("span");
  badge.className = "status";
  badge.dataset.status = status;
  badge.textContent = status.toLowerCase();
  return badge;
}

// -- opening a deck ------------------------------------------------------------------------

async function openDeck(deckId) {
  closeSocket();
  state.themeChange = null;
  const params = readFragment();
  params.set("deck", deckId);
  writeFragment(params);
  await loadDeck(deckId);
}

async function loadDeck(deckId) {
  try {
    const deck = await api("GET", `/api/v1/decks/${encodeURIComponent(deckId)}`);
    state.deck = {
      id: deck.id,
      title: deck.title,
      status: deck.status,
      version: deck.version,
      plan: deck.deck_plan,
      slides: deck.slides,
      error: deck.failure?.error,
    };
    // The deck as stored shows any theme switch already made: nothing is left to wait for.
    if (state.themeChange?.deckId === deckId) state.themeChange = null;
    showNotice("");
    renderDeck();
    connect();
  } catch (error) {
    if (!(error instanceof ApiError) && state.deck?.id === deckId) {
      scheduleReconnect(() => loadDeck(deckId)); // the server is unreachable: keep trying
      return;
    }
    setConnection("closed", "not connected");
    showNotice(error.status === 404 ? "That deck does not exist." : error.message);
  }
}

// -- WebSocket -----------------------------------------------------------------------------

function connect() {
  const deck = state.deck;
  if (!deck || !state.token) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams({ token: state.token, last_version: String(deck.version) });
  const socket = new WebSocket(`${scheme}://${location.host}/ws/decks/${deck.id}?${query}`);
  state.socket = socket;
  setConnection(state.retries ? "reconnecting" : "connecting");
  socket.addEventListener("open", () => {
    if (state.socket !== socket) return;
    state.retries = 0;
    setConnection("live");
    resendPending();
  });
  socket.addEventListener("message", (message) => {
    if (state.socket === socket) onFrame(JSON.parse(message.data));
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return; // a socket we closed on purpose
    state.socket = null;
    const reason = FINAL_CLOSE_CODES.get(event.code);
    if (reason) {
      setConnection("closed", `closed: ${reason}`);
      if (event.code === 4401) askForToken(`The server refused your token (${event.reason}).`);
      return;
    }
    scheduleReconnect();
  });
}

function scheduleReconnect(attempt = connect) {
  const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** state.retries);
  state.retries += 1;
  setConnection("reconnecting");
  // Jitter keeps many pages from reconnecting in step after a restart.
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(attempt, delay * (0.75 + Math.random() * 0.5));
}

function closeSocket() {
  clearTimeout(state.retryTimer);
  state.retries = 0;
  const socket = state.socket;
  state.socket = null;
  if (socket) socket.close(1000);
}

function setConnection(connection, label) {
  const badge = $("connection");
  badge.dataset.state = connection;
  badge.textContent = label || connection;
}

async function resync() {
  // A version gap: the deck as stored is the truth; read it and resume after its version.
  if (state.resyncing) return;
  state.resyncing = true;
  try {
    const deckId = state.deck.id;
    closeSocket();
    await loadDeck(deckId);
  } finally {
    state.resyncing = false;
  }
}

// -- events --------------------------------------------------------------------------------

function onFrame(frame) {
  const deck = state.deck;
  if (!deck) return;
  if (frame.type === "ack") {
    finishRequest(frame.request_id);
    return;
  }
  if (frame.type === "error") {
    onErrorFrame(frame);
    return;
  }
  if (frame.deck_id && frame.deck_id !== deck.id) return;
  if (frame.event_type === "Heartbeat") {
    // A heartbeat carries the version delivered so far: ahead of us means we lost something.
    if (frame.version > deck.version) resync();
    return;
  }
  if (frame.version <= deck.version) return; // already applied
  if (frame.version !== deck.version + 1) {
    resync();
    return;
  }
  applyEvent(deck, frame);
  deck.version = frame.version;
  settleByEvent(frame);
  renderDeck();
  if (!ACTIVE_STATUSES.has(deck.status)) refreshDeckList();
}

function applyEvent(deck, event) {
  const payload = event.payload || {};
  switch (event.event_type) {
    case "DeckStarted":
      deck.status = payload.status || "PLANNING";
      break;
    case "PlanUpdated":
      deck.plan = payload.plan;
      deck.status = "GENERATING";
      break;
    case "SlideAdded":
    case "SlideUpdated":
      upsertSlide(deck, {
        id: payload.slide_id,
        order: payload.order,
        html_content: payload.html_content,
        presenter_notes: payload.presenter_notes,
      });
      if (payload.slide_ids) arrange(deck, payload.slide_ids); // an edit shifted the others
      break;
    case "SlideDeleted":
      deck.slides = deck.slides.filter((slide) => slide.id !== payload.slide_id);
      if (payload.slide_ids) arrange(deck, payload.slide_ids);
      break;
    case "SlidesReordered":
      arrange(deck, payload.slide_ids);
      break;
    case "EditFailed":
      break; // the deck is as it was; settleByEvent says why
    case "DeckThemeChanged": {
      const drawn = new Map(payload.slides.map((slide) => [slide.slide_id, slide.html_content]));
      deck.slides = deck.slides.map((slide) =>
        drawn.has(slide.id) ? { ...slide, html_content: drawn.get(slide.id) } : slide,
      );
      deck.theme = payload.theme;
      break;
    }
    case "DeckCompleted":
      deck.status = "COMPLETED";
      break;
    case "DeckFailed":
      deck.status = "FAILED";
      deck.error = payload.error;
      break;
    case "DeckCancelled":
      deck.status = "CANCELLED";
      break;
    default:
      break; // an event type this page does not know yet changes nothing it shows
  }
}

function arrange(deck, slideIds) {
  const position = new Map(slideIds.map((id, index) => [id, index]));
  deck.slides.sort((a, b) => (position.get(a.id) ?? 1e9) - (position.get(b.id) ?? 1e9));
  deck.slides.forEach((slide, index) => (slide.order = index + 1));
}

function upsertSlide(deck, slide) {
  const index = deck.slides.findIndex((existing) => existing.id === slide.id);
  if (index >= 0) deck.slides[index] = slide;
  else deck.slides.push(slide);
  deck.slides.sort((a, b) => a.order - b.order);
}

// -- rendering -----------------------------------------------------------------------------

function renderDeck() {
  const deck = state.deck;
  $("empty-state").hidden = Boolean(deck);
  $("deck-view").hidden = !deck;
  if (!deck) return;
  $("deck-title").textContent = deck.plan?.title || deck.title;
  const status = $("deck-status");
  status.dataset.status = deck.status;
  status.textContent = deck.status.toLowerCase();
  const planned = deck.plan?.slides?.length;
  const progress = planned ? `${deck.slides.length} of ${planned} slides` : `${deck.slides.length} slides`;
  $("deck-progress").textContent = deck.error ? `${progress} · ${deck.error}` : progress;
  $("cancel-button").hidden = !ACTIVE_STATUSES.has(deck.status);
  $("add-first").hidden = !editable(deck);
  $("present-button").disabled = deck.slides.length === 0;
  renderPlan(deck.plan);
  renderSlides(deck.slides);
  renderDeckTools(deck);
  for (const item of document.querySelectorAll(".deck-list__item")) {
    const current = item.dataset.deckId === deck.id;
    item.setAttribute("aria-current", String(current));
    if (current) item.querySelector(".status").replaceWith(statusBadge(deck.status));
  }
  if (state.presenting) renderPresenter();
}

function renderPlan(plan) {
  $("plan").hidden = !plan;
  if (!plan) return;
  $("plan-summary").textContent = plan.summary || "";
  $("plan-outline").replaceChildren(
    ...(plan.slides || []).map((outline) => {
      const item = document.createElement("li");
      item.textContent = outline.title;
      return item;
    }),
  );
}

function renderSlides(slides) {
  const list = $("slides");
  const existing = new Map([...list.children].map((item) => [item.dataset.slideId, item]));
  const items = slides.map((slide, index) => {
    let item = existing.get(slide.id);
    // Re-insert the markup only when it changed, so a streaming deck does not flicker.
    if (!item || item.dataset.html !== slide.html_content) {
      item = slideCard(slide);
    }
    item.querySelector(".slide-card__number").textContent = String(index + 1);
    item.querySelector(".slide-card__title").textContent = slideTitle(slide, item);
    // Notes are not part of the slide's HTML: an edit may change them alone.
    item.querySelector(".slide-card__notes").textContent = slide.presenter_notes || "";
    item.querySelector(".slide-card__notes-box").hidden = !slide.presenter_notes;
    return item;
  });
  // Move only what moved: re-attaching a card would replay its arrival animation.
  items.forEach((item, index) => {
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
  });
  while (list.children.length > items.length) list.lastElementChild.remove();
  renderEditState();
}

function slideCard(slide) {
  const item = document.createElement("li");
  item.className = "slide-card";
  item.dataset.slideId = slide.id;
  item.dataset.html = slide.html_content;
  const frame = document.createElement("div");
  frame.className = "slide-frame";
  frame.innerHTML = slide.html_content; // stored, sanitized slide HTML; the CSP blocks script
  const caption = document.createElement("div");
  caption.className = "slide-card__caption";
  const number = document.createElement("span");
  number.className = "slide-card__number";
  const title = document.createElement("span");
  title.className = "slide-card__title";
  caption.append(number, title);
  // The notes are the presenter's: folded away under the caption, not in its place.
  const notesBox = document.createElement("details");
  notesBox.className = "slide-card__notes-box";
  const summary = document.createElement("summary");
  summary.textContent = "Notes";
  const notes = document.createElement("p");
  notes.className = "slide-card__notes";
  notesBox.append(summary, notes);
  item.append(frame, caption, notesBox, ...editControls(slide.id, SLIDE_ACTIONS));
  frame.addEventListener("dblclick", () => {
    startPresenting(state.deck.slides.findIndex((shown) => shown.id === slide.id));
  });
  return item;
}

function slideTitle(slide, card) {
  // The title the slide was written with; a slide changed by an event has only its HTML.
  const written = slide.content?.title;
  if (written) return written;
  return card.querySelector(".slide-frame .slide__title")?.textContent.trim() || "";
}

// -- theme and downloads -------------------------------------------------------------------

async function loadThemes() {
  // The pickers offer the server's themes: the built-in ones and any of the team's own. Until
  // they arrive (or if they cannot), the built-in ones written in the page are offered.
  let themes;
  try {
    themes = (await api("GET", "/api/v1/themes")).items;
  } catch {
    return;
  }
  for (const select of [$("theme"), $("deck-theme")]) {
    const chosen = select.value;
    select.replaceChildren(
      ...themes.map((theme) => {
        const option = document.createElement("option");
        option.value = theme.name;
        option.textContent = theme.label;
        option.title = theme.description;
        return option;
      }),
    );
    if (themes.some((theme) => theme.name === chosen)) select.value = chosen;
  }
  if (state.deck) renderDeckTools(state.deck);
}

function shownTheme(deck) {
  // The deck's answer does not name its theme; its slides are drawn in it.
  if (deck.theme) return deck.theme;
  const first = $("slides").querySelector(".slide-frame [data-theme]");
  return first?.dataset.theme || "";
}

function renderDeckTools(deck) {
  $("deck-tools").hidden = !editable(deck);
  const select = $("deck-theme");
  const change = state.themeChange?.deckId === deck.id ? state.themeChange : null;
  // While a switch is on its way the choice stays as made; otherwise it shows the deck's theme.
  select.value = change ? change.theme : shownTheme(deck);
  select.disabled = Boolean(change);
  for (const button of document.querySelectorAll("#deck-tools [data-format]")) {
    button.disabled = state.downloading.has(button.dataset.format);
  }
}

async function changeTheme(theme) {
  const deck = state.deck;
  if (!editable(deck) || !theme || theme === shownTheme(deck)) {
    if (deck) renderDeckTools(deck);
    return;
  }
  const requestId = newRequestId();
  state.themeChange = { deckId: deck.id, requestId, theme };
  showNotice("");
  renderDeckTools(deck);
  try {
    const answer = await api(
      "PUT",
      `/api/v1/decks/${encodeURIComponent(deck.id)}/theme`,
      { theme },
      { "Idempotency-Key": requestId },
    );
    if (answer?.status === "FAILED") {
      themeChangeFailed(requestId, answer.error || answer.code);
    } else if (!socketOpen() && state.deck?.id === deck.id) {
      resync(); // without a live socket its event would show only after a reconnect
    }
    // Otherwise the DeckThemeChanged event with this request id ends the wait.
  } catch (error) {
    const message = error instanceof ApiError ? error.message : "the server could not be reached.";
    themeChangeFailed(requestId, message);
  }
}

function themeChangeFailed(requestId, message) {
  if (state.themeChange?.requestId !== requestId) return;
  state.themeChange = null;
  showNotice(`The theme could not be changed: ${message}`);
  if (state.deck) renderDeckTools(state.deck);
}

function attachmentName(disposition) {
  // RFC 6266: filename* (percent-encoded UTF-8) when present, else the plain filename.
  if (!disposition) return "";
  const extended = /filename\*\s*=\s*[^']*'[^']*'([^;\s]+)/i.exec(disposition);
  if (extended) {
    try {
      return decodeURIComponent(extended[1]);
    } catch {
      // a malformed encoding: fall back to the plain name
    }
  }
  const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(disposition);
  if (!plain) return "";
  return plain[1] !== undefined ? plain[1].replace(/\\(.)/g, "$1") : plain[2];
}

async function downloadDeck(format) {
  const deck = state.deck;
  if (!editable(deck) || state.downloading.has(format)) return;
  state.downloading.add(format);
  renderDeckTools(deck);
  try {
    const path = `/api/v1/decks/${encodeURIComponent(deck.id)}/export?format=${format}`;
    const response = await request("GET", path);
    const blob = await response.blob();
    const name = attachmentName(response.headers.get("Content-Disposition"));
    // The export needs the token in a header, so it is fetched here and saved from memory.
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = name.replace(/[\\/]/g, "_") || `deck.${format}`;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) {
    let message = error instanceof ApiError ? error.message : "the server could not be reached.";
    if (error.status === 409) message = "the deck is still being written; try again once it has ended.";
    showNotice(`The deck could not be downloaded: ${message}`);
  } finally {
    state.downloading.delete(format);
    if (state.deck) renderDeckTools(state.deck);
  }
}

// -- presenting ----------------------------------------------------------------------------

function startPresenting(index = 0) {
  const deck = state.deck;
  if (!deck || deck.slides.length === 0) return;
  state.presenting = true;
  state.presenterIndex = Math.max(0, index);
  const presenter = $("presenter");
  presenter.hidden = false;
  presenter.focus();
  renderPresenter();
  // Without the Fullscreen API (or when it is refused) the overlay still fills the window.
  presenter.requestFullscreen?.().catch(() => {});
}

function stopPresenting() {
  if (!state.presenting) return;
  state.presenting = false;
  $("presenter").hidden = true;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
}

function moveSlide(step) {
  const last = state.deck.slides.length - 1;
  state.presenterIndex = Math.min(last, Math.max(0, state.presenterIndex + step));
  renderPresenter();
}

function renderPresenter() {
  const slides = state.deck.slides;
  state.presenterIndex = Math.min(state.presenterIndex, slides.length - 1);
  const slide = slides[state.presenterIndex];
  const stage = $("presenter-slide");
  if (stage.dataset.slideId !== slide.id || stage.dataset.html !== slide.html_content) {
    stage.innerHTML = slide.html_content; // stored, sanitized slide HTML
    stage.dataset.slideId = slide.id;
    stage.dataset.html = slide.html_content;
  }
  $("presenter-counter").textContent = `${state.presenterIndex + 1} / ${slides.length}`;
  $("presenter-notes").textContent = slide.presenter_notes || "No presenter notes.";
}

function toggleNotes() {
  $("presenter-notes").hidden = !$("presenter-notes").hidden;
}

function onPresenterTap(event) {
  // On a touch screen without keys: a tap on the slide's right half goes on, on its left back.
  const box = $("presenter-slide").getBoundingClientRect();
  moveSlide(event.clientX >= box.left + box.width / 2 ? 1 : -1);
}

function onPresenterKey(event) {
  if (!state.presenting) return;
  const steps = { ArrowRight: 1, ArrowDown: 1, PageDown: 1, " ": 1, ArrowLeft: -1, ArrowUp: -1, PageUp: -1 };
  if (event.key in steps) moveSlide(steps[event.key]);
  else if (event.key === "Home") moveSlide(-Infinity);
  else if (event.key === "End") moveSlide(Infinity);
  else if (event.key === "n" || event.key === "N") toggleNotes();
  else if (event.key === "Escape") stopPresenting();
  else return;
  event.preventDefault();
}

// -- editing -------------------------------------------------------------------------------

// The buttons of a card: [action, label, accessible name].
const SLIDE_ACTIONS = [
  ["rewrite", "Rewrite", "Rewrite with a prompt"],
  ["text", "Edit text", "Edit text"],
  ["add", "Add after", "Add a slide after this one"],
  ["up", "↑", "Move up"],
  ["down", "↓", "Move down"],
  ["delete", "Delete", "Delete"],
];
const FIRST_ACTIONS = [["add", "Add slide", "Add a slide at the start"]];

function editable(deck) {
  return Boolean(deck) && !ACTIVE_STATUSES.has(deck.status);
}

function editControls(target, actions) {
  // A row of buttons with a status line, and a form that opens below it.
  const tools = document.createElement("div");
  tools.className = "edit-tools";
  for (const [action, label, name] of actions) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `button button--small${action === "delete" ? " button--danger" : ""}`;
    button.dataset.action = action;
    button.textContent = label;
    if (name !== label) button.setAttribute("aria-label", name); // "Delete" says what it shows
    button.addEventListener("click", () => onEditAction(target, action, button));
    tools.append(button);
  }
  const status = document.createElement("span");
  status.className = "edit-state";
  status.setAttribute("role", "status");
  tools.append(status);
  const form = document.createElement("form");
  form.className = "edit-form";
  form.hidden = true;
  return [tools, form];
}

function editElement(target) {
  if (target === FIRST) return $("add-first");
  return [...$("slides").children].find((item) => item.dataset.slideId === target) || null;
}

function onEditAction(target, action, button) {
  switch (action) {
    case "rewrite":
      openPromptForm(target, "Rewrite", "How should this slide change?", (prompt) =>
        sendEdit(target, "UpdateSlide", { slide_id: target, prompt }),
      );
      break;
    case "add":
      openPromptForm(target, "Add", "What is the new slide about?", (prompt) =>
        sendEdit(target, "AddSlide", { after_slide_id: target === FIRST ? null : target, prompt }),
      );
      break;
    case "text":
      openTextForm(target);
      break;
    case "up":
    case "down":
      moveInDeck(target, action === "up" ? -1 : 1);
      break;
    case "delete":
      confirmDelete(target, button);
      break;
  }
}

function confirmDelete(slideId, button) {
  // A first click arms the button; only a second one within a few seconds deletes.
  if (button.dataset.confirm) {
    disarm(button);
    sendEdit(slideId, "DeleteSlide", { slide_id: slideId });
    return;
  }
  button.dataset.confirm = "armed";
  button.textContent = "Really delete?";
  setTimeout(() => disarm(button), DELETE_CONFIRM_MS);
}

function disarm(button) {
  delete button.dataset.confirm;
  button.textContent = "Delete";
}

function moveInDeck(slideId, step) {
  const ids = state.deck.slides.map((slide) => slide.id);
  const from = ids.indexOf(slideId);
  const to = from + step;
  if (from < 0 || to < 0 || to >= ids.length) return;
  [ids[from], ids[to]] = [ids[to], ids[from]];
  sendEdit(slideId, "ReorderSlides", { slide_ids: ids });
}

// -- editing: forms ------------------------------------------------------------------------

function openForm(target, fields, submitLabel, onSubmit) {
  const form = editElement(target)?.querySelector(".edit-form");
  if (!form) return;
  const fieldset = document.createElement("fieldset");
  const buttons = document.createElement("div");
  buttons.className = "edit-form__buttons";
  const submit = document.createElement("button");
  submit.type = "submit";
  submit.className = "button button--small button--primary";
  submit.textContent = submitLabel;
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "button button--small";
  cancel.textContent = "Cancel";
  cancel.addEventListener("click", () => closeForm(target));
  buttons.append(submit, cancel);
  fieldset.append(...fields, buttons);
  // A new form, so no listener of an earlier one is left on it.
  const fresh = form.cloneNode(false);
  fresh.append(fieldset);
  fresh.hidden = false;
  fresh.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit(fresh.elements);
  });
  form.replaceWith(fresh);
  fresh.querySelector("input, textarea")?.focus();
}

function closeForm(target) {
  const form = editElement(target)?.querySelector(".edit-form");
  if (!form) return;
  form.hidden = true;
  form.replaceChildren();
}

function field(labelText, control) {
  const label = document.createElement("label");
  label.append(labelText, control);
  return label;
}

function textInput(name, value, maxLength) {
  const input = document.createElement("input");
  input.name = name;
  input.value = value;
  input.maxLength = maxLength;
  input.required = true;
  input.autocomplete = "off";
  return input;
}

function textArea(name, value, maxLength, rows) {
  const area = document.createElement("textarea");
  area.name = name;
  area.value = value;
  area.maxLength = maxLength;
  area.rows = rows;
  return area;
}

function openPromptForm(target, submitLabel, placeholder, send) {
  const prompt = textInput("prompt", "", 4000);
  prompt.placeholder = placeholder;
  openForm(target, [field("Prompt", prompt)], submitLabel, (elements) => {
    send(elements.prompt.value.trim());
  });
}

function shownTexts(slideId) {
  // The page has the slide's HTML, not its fields: read them back from what is shown.
  const frame = editElement(slideId).querySelector(".slide-frame");
  const slide = state.deck.slides.find((shown) => shown.id === slideId);
  return {
    title: frame.querySelector(".slide__title")?.textContent.trim() || "",
    bullets: [...frame.querySelectorAll(".slide__bullets li")].map((li) => li.textContent.trim()),
    notes: slide?.presenter_notes || "",
  };
}

function openTextForm(slideId) {
  const shown = shownTexts(slideId);
  const fields = [
    field("Title", textInput("title", shown.title, 500)),
    field("Bullets, one per line", textArea("bullets", shown.bullets.join("\n"), 20000, 4)),
    field("Notes", textArea("notes", shown.notes, 10000, 3)),
  ];
  openForm(slideId, fields, "Save", (elements) => {
    // Only what was changed is sent: a field read back from HTML has lost its markup.
    const data = { slide_id: slideId };
    const title = elements.title.value.trim();
    const bullets = elements.bullets.value.split("\n").map((line) => line.trim()).filter(Boolean);
    if (title !== shown.title) data.title = title;
    if (bullets.join("\n") !== shown.bullets.join("\n")) data.bullets = bullets;
    if (elements.notes.value !== shown.notes) data.notes = elements.notes.value;
    if (Object.keys(data).length === 1) closeForm(slideId);
    else sendEdit(slideId, "UpdateSlide", data);
  });
}

// -- editing: requests ---------------------------------------------------------------------

function newRequestId() {
  // getRandomValues also works where randomUUID does not (a page served over plain http).
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `page-${Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

function socketOpen() {
  return state.socket?.readyState === WebSocket.OPEN;
}

function sendEdit(target, type, data) {
  const deck = state.deck;
  if (!editable(deck)) return;
  const frame = { type, request_id: newRequestId(), data };
  const request = { target, deckId: deck.id, frame, overSocket: socketOpen() };
  state.pending.set(frame.request_id, request);
  state.editErrors.delete(target);
  showNotice("");
  if (request.overSocket) state.socket.send(JSON.stringify(frame));
  else editOverHttp(request);
  renderEditState();
}

function resendPending() {
  // A frame sent just before a drop may never have arrived. The same request id changes the
  // deck at most once and is answered again, so sending it again is safe.
  for (const request of state.pending.values()) {
    if (request.overSocket && request.deckId === state.deck?.id && socketOpen()) {
      state.socket.send(JSON.stringify(request.frame));
    }
  }
}

function httpRoute(deckId, frame) {
  const slides = `/api/v1/decks/${encodeURIComponent(deckId)}/slides`;
  const { slide_id: slideId, ...rest } = frame.data;
  switch (frame.type) {
    case "UpdateSlide":
      return ["PATCH", `${slides}/${slideId}`, rest];
    case "AddSlide":
      return ["POST", slides, frame.data];
    case "DeleteSlide":
      return ["DELETE", `${slides}/${slideId}`, undefined];
    default:
      return ["PUT", `${slides}/order`, frame.data];
  }
}

async function editOverHttp(request) {
  const requestId = request.frame.request_id;
  const [method, path, body] = httpRoute(request.deckId, request.frame);
  try {
    const answer = await api(method, path, body, { "Idempotency-Key": requestId });
    if (answer.status === "FAILED") {
      failRequest(requestId, answer.error || answer.code);
    } else if (answer.status === "APPLIED") {
      finishRequest(requestId);
      // Without a live socket its event would show only after a reconnect: read the deck now.
      if (!socketOpen() && state.deck?.id === request.deckId) resync();
    }
    // QUEUED: the model is writing it; its event, with this request id, ends the wait.
  } catch (error) {
    const message = error instanceof ApiError ? error.message : "The server could not be reached.";
    failRequest(requestId, message);
  }
}

function onErrorFrame(frame) {
  if (state.pending.has(frame.request_id)) {
    failRequest(frame.request_id, frame.message || frame.code);
    return;
  }
  showNotice(frame.message || frame.code);
  // Frames over the rate are dropped unanswered: send ours again once the rate has fallen.
  if (frame.code === "rate_limited") setTimeout(resendPending, 1000);
}

function settleByEvent(event) {
  const payload = event.payload || {};
  if (state.themeChange && payload.request_id === state.themeChange.requestId) {
    state.themeChange = null; // renderDeck, right after, shows the theme the event says
  }
  if (event.event_type === "EditFailed") {
    // Every tab is told; the tab that asked also gets an error for its request id.
    showNotice(`An edit could not be made: ${payload.error}`);
  }
  const request = state.pending.get(payload.request_id);
  if (!request || request.overSocket) return; // a socket's request waits for its ack
  if (event.event_type === "EditFailed") failRequest(payload.request_id, payload.error);
  else finishRequest(payload.request_id);
}

function finishRequest(requestId) {
  const request = state.pending.get(requestId);
  if (!request) return;
  state.pending.delete(requestId);
  closeForm(request.target);
  renderEditState();
}

function failRequest(requestId, message) {
  const request = state.pending.get(requestId);
  if (!request) return;
  state.pending.delete(requestId);
  const text = `The edit could not be made: ${message}`;
  state.editErrors.set(request.target, text);
  showNotice(text); // the form stays open, to fix and send again
  renderEditState();
}

function renderEditState() {
  const deck = state.deck;
  const on = editable(deck);
  const working = new Set();
  for (const request of state.pending.values()) {
    if (request.deckId === deck?.id) working.add(request.target);
  }
  const cards = [...$("slides").children];
  cards.forEach((card, index) => {
    renderEditControls(card, card.dataset.slideId, on, working);
    card.querySelector('[data-action="up"]').disabled ||= index === 0;
    card.querySelector('[data-action="down"]').disabled ||= index === cards.length - 1;
  });
  renderEditControls($("add-first"), FIRST, on, working);
}

function renderEditControls(element, target, on, working) {
  const busy = working.has(target);
  element.classList.toggle("is-working", busy);
  const tools = element.querySelector(".edit-tools");
  tools.hidden = !on;
  for (const button of tools.querySelectorAll("button")) button.disabled = busy;
  const form = element.querySelector(".edit-form");
  if (!on && !form.hidden) closeForm(target);
  const fieldset = form.querySelector("fieldset");
  if (fieldset) fieldset.disabled = busy;
  const status = tools.querySelector(".edit-state");
  const error = state.editErrors.get(target);
  status.dataset.kind = busy ? "working" : error ? "error" : "";
  status.textContent = busy ? "working…" : error || "";
}

// -- actions -------------------------------------------------------------------------------

async function createDeck(event) {
  event.preventDefault();
  const form = event.target;
  const button = $("create-button");
  button.disabled = true;
  try {
    const created = await api("POST", "/api/v1/decks", {
      prompt: form.prompt.value,
      slide_count: Number(form.slide_count.value),
      theme: form.theme.value,
    });
    form.prompt.value = "";
    await openDeck(created.deck_id);
    await refreshDeckList();
  } catch (error) {
    showNotice(error.message);
  } finally {
    button.disabled = false;
  }
}

async function cancelDeck() {
  const deck = state.deck;
  if (!deck) return;
  try {
    await api("POST", `/api/v1/decks/${deck.id}/cancel`);
  } catch (error) {
    showNotice(error.status === 409 ? "The deck has already finished." : error.message);
  }
}

// -- start ---------------------------------------------------------------------------------

function start() {
  takeTokenFromFragment();
  setToken(localStorage.getItem(TOKEN_KEY));
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("token-input").value.trim());
    $("token-input").value = "";
    loadThemes();
    refreshDeckList();
    const deckId = state.deck?.id || readFragment().get("deck");
    if (deckId) openDeck(deckId);
  });
  $("token-forget").addEventListener("click", () => {
    closeSocket();
    setToken(null);
  });
  $("token-toggle").addEventListener("click", () => {
    $("token-panel").hidden = !$("token-panel").hidden;
  });
  $("create-form").addEventListener("submit", createDeck);
  $("refresh-decks").addEventListener("click", refreshDeckList);
  $("cancel-button").addEventListener("click", cancelDeck);
  $("present-button").addEventListener("click", () => startPresenting(0));
  $("deck-theme").addEventListener("change", (event) => changeTheme(event.target.value));
  for (const button of document.querySelectorAll("#deck-tools [data-format]")) {
    button.addEventListener("click", () => downloadDeck(button.dataset.format));
  }
  $("add-first").append(...editControls(FIRST, FIRST_ACTIONS));
  document.addEventListener("keydown", onPresenterKey);
  $("presenter-previous").addEventListener("click", () => moveSlide(-1));
  $("presenter-next").addEventListener("click", () => moveSlide(1));
  $("presenter-notes-toggle").addEventListener("click", toggleNotes);
  $("presenter-exit").addEventListener("click", stopPresenting);
  $("presenter-slide").addEventListener("click", onPresenterTap);
  window.addEventListener("hashchange", onFragmentChange);
  document.addEventListener("fullscreenchange", () => {
    if (!document.fullscreenElement) stopPresenting(); // Esc in the browser's own full screen
  });
  window.addEventListener("online", () => {
    if (!state.deck || state.socket) return;
    clearTimeout(state.retryTimer);
    connect();
  });
  if (!state.token) return;
  loadThemes();
  refreshDeckList();
  const deckId = readFragment().get("deck");
  if (deckId) loadDeck(deckId);
}

start();
