// Shared by every console page: the gateway's JSON API (with its RFC 9457
// problem documents), live order streams, money and time formatting, and a
// few DOM helpers. Plain ES module, no build step (docs/console.md).

export const FINAL = new Set(['SHIPPED', 'CANCELLED']);
// The statuses CancelOrder accepts (API.md); SHIPPING is past the point of no return.
export const CANCELLABLE = new Set(['PENDING', 'AWAITING_REVIEW', 'PAID', 'SHIP_FAILED']);
export const STATUSES = ['PENDING', 'AWAITING_REVIEW', 'PAID', 'SHIPPING', 'SHIPPED', 'SHIP_FAILED', 'CANCELLED'];

const USER_KEY = 'ordermesh.user';

/** A failed call: the gateway's problem document, or one made up for a network failure. */
export class ApiError extends Error {
  constructor(problem, httpStatus) {
    super(problem.detail || problem.title || `HTTP ${httpStatus}`);
    this.name = 'ApiError';
    this.httpStatus = httpStatus;
    this.title = problem.title || 'Request failed';
    this.detail = problem.detail || '';
    this.violations = Array.isArray(problem.violations) ? problem.violations : [];
    this.grpcStatus = problem.grpc_status || null;
  }

  /** Whether the outcome is unknown (the request may have been applied): a
   * network failure, a timeout, an overloaded or unavailable mesh. */
  get uncertain() {
    return this.httpStatus === 0 || this.httpStatus === 429 || this.httpStatus >= 500;
  }
}

/** Calls the gateway: the parsed JSON body, or throws an ApiError. */
export async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const init = { method, headers: { Accept: 'application/json, application/problem+json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError({ title: 'Network error', detail: `The gateway could not be reached (${error.message}).` }, 0);
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    throw new ApiError(parsed && typeof parsed === 'object' ? parsed : { title: response.statusText, detail: text.slice(0, 200) }, response.status);
  }
  return parsed;
}

/** Every page of a paged list endpoint (bounded, so a bad token cannot loop forever). */
export async function allPages(path, field, pageSize = 100, maxPages = 20) {
  const items = [];
  let token = '';
  const [base, search = ''] = path.split('?');
  for (let page = 0; page < maxPages; page += 1) {
    const query = new URLSearchParams(search);
    query.set('page_size', String(pageSize));
    if (token) query.set('page_token', token);
    const answer = await api(`${base}?${query}`);
    items.push(...(answer[field] || []));
    token = answer.next_page_token || '';
    if (!token) break;
  }
  return items;
}

// Money is exact: units and nanos are combined as a BigInt of nanos, and
// formatted from a decimal string (Intl formats strings without going
// through a binary float, so 12,500,000.10 stays exact).

export function toNanos(money) {
  if (!money) return 0n;
  return BigInt(money.units || 0) * 1_000_000_000n + BigInt(money.nanos || 0);
}

export function fromNanos(nanos, currencyCode = 'USD') {
  return { currency_code: currencyCode, units: Number(nanos / 1_000_000_000n), nanos: Number(nanos % 1_000_000_000n) };
}

export function formatMoney(money) {
  if (!money) return '—';
  const nanos = toNanos(money);
  const negative = nanos < 0n;
  const absolute = negative ? -nanos : nanos;
  const decimal = `${negative ? '-' : ''}${absolute / 1_000_000_000n}.${String(absolute % 1_000_000_000n).padStart(9, '0')}`;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: money.currency_code || 'USD' }).format(decimal);
  } catch {
    return `${decimal} ${money.currency_code}`;
  }
}

export function sumMoney(amounts) {
  const list = amounts.filter(Boolean);
  const total = list.reduce((sum, money) => sum + toNanos(money), 0n);
  return fromNanos(total, list[0]?.currency_code || 'USD');
}

export function timesMoney(money, quantity) {
  return fromNanos(toNanos(money) * BigInt(quantity), money.currency_code);
}

const TIME_FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const CLOCK_FORMAT = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

/** A <time> element: the local date and time, the UTC instant in its datetime attribute. */
export function timeElement(timestamp, { clock = false } = {}) {
  if (!timestamp) return document.createTextNode('—');
  const date = new Date(timestamp);
  if (Number.isNaN(date.getTime())) return document.createTextNode(timestamp);
  return el('time', { datetime: timestamp, title: date.toISOString() }, (clock ? CLOCK_FORMAT : TIME_FORMAT).format(date));
}

/** Builds an element; children are nodes or text (never parsed as HTML). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function statusLabel(status) {
  return String(status || 'UNKNOWN').replaceAll('_', ' ');
}

/** A status badge; its text is the status name (AWAITING_REVIEW shows as "AWAITING REVIEW"). */
export function badge(status) {
  return el('span', { class: `badge badge-${String(status || 'unknown').toLowerCase()}`, dataset: { status: status || '' } }, statusLabel(status));
}

/** Renders a problem (an ApiError or any Error) into ``target``, a role="alert"
 * container; marks the form controls named by its violations as invalid. */
export function showProblem(target, error, form = null) {
  clearProblem(target, form);
  const problem = error instanceof ApiError ? error : new ApiError({ title: 'Error', detail: String(error.message || error) }, -1);
  const heading = problem.httpStatus > 0 ? `${problem.title} (${problem.httpStatus})` : problem.title;
  target.append(el('p', { class: 'problem-title' }, heading));
  if (problem.detail) target.append(el('p', { class: 'problem-detail' }, problem.detail));
  if (problem.violations.length) {
    target.append(
      el('ul', { class: 'violations' }, problem.violations.map((v) => el('li', {}, el('code', { class: 'field' }, v.field), v.description ? ` ${v.description}` : ''))),
    );
  }
  if (problem.uncertain) {
    target.append(el('p', { class: 'hint' }, 'The outcome is unknown; trying again is safe.'));
  }
  if (form) {
    for (const violation of problem.violations) {
      const control = form.elements.namedItem(violation.field);
      if (control instanceof Element) control.setAttribute('aria-invalid', 'true');
    }
  }
  target.hidden = false;
  target.scrollIntoView({ block: 'nearest' });
}

export function clearProblem(target, form = null) {
  target.replaceChildren();
  target.hidden = true;
  if (form) {
    for (const control of form.querySelectorAll('[aria-invalid]')) control.removeAttribute('aria-invalid');
  }
}

export function storedUser() {
  return localStorage.getItem(USER_KEY) || '';
}

export function storeUser(userId) {
  if (userId) localStorage.setItem(USER_KEY, userId);
}

/** An Idempotency-Key (32 hex characters). getRandomValues, unlike
 * randomUUID, works on plain-HTTP origins too. */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Follows one order's status stream (/orders/{id}/events) until it reaches a
 * final status. ``onStatus`` gets each event's data and its 1-based position in
 * the history; ``onState`` gets 'live', 'reconnecting', 'waiting' (the gateway
 * gave up waiting for the order) or 'done'. The browser resumes a dropped
 * stream itself (sending Last-Event-ID); a stream the gateway refused (an
 * error status) is opened again after a pause. Returns a function that stops it. */
export function followOrder(orderId, { onStatus, onState = () => {} }) {
  let source = null;
  let retry = null;
  let stopped = false;
  let last = 0;

  const stop = () => {
    stopped = true;
    clearTimeout(retry);
    source?.close();
  };

  const open = () => {
    if (stopped) return;
    source = new EventSource(`/orders/${encodeURIComponent(orderId)}/events`);
    source.addEventListener('open', () => onState('live'));
    source.addEventListener('status', (event) => {
      const position = Number(event.lastEventId) || last + 1;
      if (position <= last) return;
      last = position;
      const data = JSON.parse(event.data);
      onStatus(data, position);
      if (FINAL.has(data.status)) {
        stop();
        onState('done');
      }
    });
    source.addEventListener('error', (event) => {
      if (stopped) return;
      if (event instanceof MessageEvent) {
        // The gateway's own `event: error`: the order never appeared. Asked again later.
        source.close();
        onState('waiting');
        retry = setTimeout(open, 10_000);
      } else if (source.readyState === EventSource.CLOSED) {
        onState('reconnecting');
        retry = setTimeout(open, 5_000);
      } else {
        onState('reconnecting');
      }
    });
  };
  open();
  return stop;
}

/** The operator stream (/events): ``onEvent`` gets each order event's data;
 * ``onState`` gets 'live', 'reconnecting' or 'reset' (events were missed). */
export function followOperatorStream({ onEvent, onState = () => {} }) {
  let source = null;
  let retry = null;
  let stopped = false;

  const open = () => {
    if (stopped) return;
    source = new EventSource('/events');
    source.addEventListener('open', () => onState('live'));
    source.addEventListener('order', (event) => onEvent(JSON.parse(event.data)));
    source.addEventListener('reset', () => onState('reset'));
    source.addEventListener('error', () => {
      if (stopped) return;
      onState('reconnecting');
      if (source.readyState === EventSource.CLOSED) retry = setTimeout(open, 5_000);
    });
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(retry);
    source?.close();
  };
}

/** Shows a stream's state in a small indicator element. */
export function showLiveState(indicator, state) {
  const labels = { live: 'Live', reconnecting: 'Reconnecting…', waiting: 'Waiting for the order…', reset: 'Live (some events were missed)', done: 'Final' };
  indicator.textContent = labels[state] || state;
  indicator.dataset.state = state;
}

/** Product names by id, fetched once per page and shared. */
const productCache = new Map();
export async function productName(productId) {
  if (!productCache.has(productId)) {
    productCache.set(
      productId,
      api(`/api/products/${encodeURIComponent(productId)}`).then(
        (product) => product.name,
        () => productId,
      ),
    );
  }
  return productCache.get(productId);
}
