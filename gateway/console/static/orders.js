// /orders: one user's orders, newest first, each status kept live by that
// order's own event stream (/orders/{id}/events) while it is not final.
import {
  FINAL,
  api,
  badge,
  clearProblem,
  el,
  followOrder,
  formatMoney,
  showProblem,
  statusLabel,
  storeUser,
  storedUser,
  timeElement,
} from './api.js';

// A browser opens at most six HTTP/1.1 connections to one host, shared by
// every tab: at most four order streams at once leave room for the page's own
// calls. Orders beyond them are refreshed by polling the list until a stream
// is free.
const MAX_STREAMS = 4;
const PAGE_SIZE = 20;
const POLL_MS = 5_000;

const form = document.getElementById('who');
const userInput = document.getElementById('user-id');
const problem = document.getElementById('problem');
const summary = document.getElementById('summary');
const table = document.getElementById('orders');
const body = table.tBodies[0];
const more = document.getElementById('more');
const announcer = document.getElementById('announcer');

// order id -> { statusCell, status, position (history entries seen), stop (its stream) }
const rows = new Map();
let user = '';
let nextToken = '';
let poll = null;

function updateStatus(orderId, status, position) {
  const entry = rows.get(orderId);
  // A stream replays the history first: never step back behind what is shown.
  if (!entry || position < entry.position) return;
  entry.position = position;
  if (entry.status !== status) {
    entry.status = status;
    entry.statusCell.replaceChildren(badge(status));
    announcer.textContent = `Order ${orderId} is now ${statusLabel(status)}.`;
  }
  if (FINAL.has(status) && entry.stop) {
    entry.stop();
    entry.stop = null;
    follow();
  }
}

/** Streams for the non-final orders shown (up to MAX_STREAMS), polling for the rest. */
function follow() {
  let streams = [...rows.values()].filter((e) => e.stop).length;
  for (const [orderId, entry] of rows) {
    if (streams >= MAX_STREAMS) break;
    if (entry.stop || FINAL.has(entry.status)) continue;
    entry.stop = followOrder(orderId, { onStatus: (data, position) => updateStatus(orderId, data.status, position) });
    streams += 1;
  }
  const unfollowed = [...rows.values()].some((e) => !e.stop && !FINAL.has(e.status));
  if (unfollowed && !poll) poll = setInterval(refresh, POLL_MS);
  if (!unfollowed && poll) {
    clearInterval(poll);
    poll = null;
  }
}

function renderRow(order) {
  const statusCell = el('td', { class: 'status' }, badge(order.status));
  const units = (order.items || []).reduce((n, item) => n + Number(item.quantity || 0), 0);
  rows.set(order.order_id, { statusCell, status: order.status, position: (order.history || []).length, stop: null });
  return el(
    'tr',
    { dataset: { orderId: order.order_id } },
    el('th', { scope: 'row' }, el('a', { href: `/orders/${encodeURIComponent(order.order_id)}` }, order.order_id)),
    el('td', {}, timeElement(order.created_at)),
    el('td', { class: 'num' }, String(units)),
    el('td', { class: 'num' }, formatMoney(order.total)),
    statusCell,
  );
}

function stopAll() {
  for (const entry of rows.values()) entry.stop?.();
  rows.clear();
  clearInterval(poll);
  poll = null;
}

async function fetchPage(token) {
  const query = new URLSearchParams({ user_id: user, page_size: String(PAGE_SIZE) });
  if (token) query.set('page_token', token);
  return api(`/api/orders?${query}`);
}

function showSummary() {
  summary.textContent = rows.size ? `${rows.size} order${rows.size === 1 ? '' : 's'} of ${user}, newest first.` : `No orders for ${user} yet.`;
  table.hidden = rows.size === 0;
  more.hidden = !nextToken;
}

async function load() {
  stopAll();
  body.replaceChildren();
  clearProblem(problem);
  user = userInput.value.trim();
  if (!user) {
    summary.textContent = 'Enter a user id to see their orders.';
    table.hidden = true;
    more.hidden = true;
    return;
  }
  summary.textContent = `Loading the orders of ${user}…`;
  try {
    const page = await fetchPage('');
    nextToken = page.next_page_token || '';
    body.append(...page.orders.map(renderRow));
    showSummary();
    follow();
  } catch (error) {
    summary.textContent = '';
    showProblem(problem, error);
  }
}

async function loadMore() {
  more.disabled = true;
  try {
    const page = await fetchPage(nextToken);
    nextToken = page.next_page_token || '';
    body.append(...page.orders.filter((o) => !rows.has(o.order_id)).map(renderRow));
    showSummary();
    follow();
  } catch (error) {
    showProblem(problem, error);
  } finally {
    more.disabled = false;
  }
}

/** The first page again, for the orders no stream follows (and any new one). */
async function refresh() {
  try {
    const page = await fetchPage('');
    const fresh = [];
    for (const order of page.orders) {
      if (rows.has(order.order_id)) updateStatus(order.order_id, order.status, (order.history || []).length);
      else fresh.push(renderRow(order));
    }
    body.prepend(...fresh);
    clearProblem(problem);
    showSummary();
    follow();
  } catch (error) {
    showProblem(problem, error);
  }
}

const requested = new URLSearchParams(location.search).get('user');
if (requested) storeUser(requested.trim());
userInput.value = storedUser();
form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!userInput.reportValidity()) return;
  storeUser(userInput.value.trim());
  history.replaceState(null, '', `/orders?user=${encodeURIComponent(userInput.value.trim())}`);
  load();
});
more.addEventListener('click', loadMore);
load();
