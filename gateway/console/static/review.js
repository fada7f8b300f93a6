// /review: the AWAITING_REVIEW queue (analytics, across every shard), new
// ones and every later status from the operator stream, Approve / Reject.
import {
  allPages,
  api,
  badge,
  clearProblem,
  el,
  followOperatorStream,
  formatMoney,
  showLiveState,
  showProblem,
  statusLabel,
  timeElement,
} from './api.js';

const REVIEWER_KEY = 'ordermesh.reviewer';
const REFRESH_MS = 15_000;
const $ = (id) => document.getElementById(id);
const problem = $('problem');
const reviewer = $('reviewer');
const table = $('queue');
const body = table.tBodies[0];

// order id -> { statusCell, decisionCell, status, at (of the status shown) }
const rows = new Map();

function showEmpty() {
  table.hidden = rows.size === 0;
  $('empty').hidden = rows.size > 0;
}

/** Applies a status unless an older one: the stream and a review's answer race. */
function updateStatus(orderId, status, at) {
  const entry = rows.get(orderId);
  if (!entry || (at && entry.at && new Date(at) < new Date(entry.at))) return;
  entry.at = at || entry.at;
  if (entry.status === status) return;
  entry.status = status;
  entry.statusCell.replaceChildren(badge(status));
  if (status !== 'AWAITING_REVIEW' && entry.decisionCell.querySelector('button')) {
    entry.decisionCell.replaceChildren(el('span', { class: 'muted' }, 'decided elsewhere'));
  }
  $('announcer').textContent = `Order ${orderId} is now ${statusLabel(status)}.`;
}

async function decide(orderId, approve, note) {
  if (!reviewer.reportValidity()) return;
  const entry = rows.get(orderId);
  const buttons = entry.decisionCell.querySelectorAll('button');
  buttons.forEach((b) => {
    b.disabled = true;
  });
  clearProblem(problem);
  try {
    const who = reviewer.value.trim();
    const order = await api(`/api/orders/${encodeURIComponent(orderId)}/review`, {
      method: 'POST',
      body: { approve, reviewer: who, note: note.value.trim() },
    });
    entry.decisionCell.replaceChildren(el('span', { class: approve ? 'approved' : 'rejected' }, `${approve ? 'Approved' : 'Rejected'} by ${who}`));
    updateStatus(orderId, order.status, order.updated_at);
  } catch (error) {
    showProblem(problem, error);
    buttons.forEach((b) => {
      b.disabled = false;
    });
  }
}

function addRow(order) {
  if (rows.has(order.order_id)) return;
  const statusCell = el('td', { class: 'status' }, badge(order.status));
  const note = el('input', { name: 'note', maxlength: 200, placeholder: 'note (optional)', 'aria-label': `Note for order ${order.order_id}` });
  const decisionCell = el(
    'td',
    {},
    el(
      'div',
      { class: 'actions' },
      note,
      el('button', { type: 'button', class: 'primary', onclick: () => decide(order.order_id, true, note) }, 'Approve'),
      el('button', { type: 'button', class: 'danger', onclick: () => decide(order.order_id, false, note) }, 'Reject'),
    ),
  );
  rows.set(order.order_id, { statusCell, decisionCell, status: order.status, at: order.created_at });
  body.prepend(
    el(
      'tr',
      { dataset: { orderId: order.order_id } },
      el('th', { scope: 'row' }, el('a', { href: `/orders/${encodeURIComponent(order.order_id)}`, class: 'mono' }, order.order_id)),
      el('td', {}, el('span', { class: 'mono' }, order.user_id || '—'), order.email ? el('small', { class: 'muted block' }, order.email) : null),
      el('td', {}, timeElement(order.created_at)),
      el('td', { class: 'num' }, formatMoney(order.total)),
      statusCell,
      decisionCell,
    ),
  );
  showEmpty();
}

let loading = false;
/** Adds the waiting orders not shown yet; rows shown keep their live status. */
async function loadQueue() {
  if (loading) return;
  loading = true;
  try {
    const orders = await allPages('/api/analytics/orders?status=AWAITING_REVIEW', 'orders');
    // Oldest first, each prepended: the newest ends on top.
    orders.sort((a, b) => String(a.created_at).localeCompare(String(b.created_at))).forEach(addRow);
    clearProblem(problem);
  } catch (error) {
    showProblem(problem, error);
  } finally {
    loading = false;
    showEmpty();
  }
}

function onEvent(event) {
  if (rows.has(event.order_id)) updateStatus(event.order_id, event.status, event.at);
  else if (event.status === 'AWAITING_REVIEW') addRow({ order_id: event.order_id, user_id: event.user_id, status: event.status, total: event.total, created_at: event.at });
}

reviewer.value = localStorage.getItem(REVIEWER_KEY) || 'operator';
reviewer.addEventListener('change', () => {
  if (reviewer.value.trim()) localStorage.setItem(REVIEWER_KEY, reviewer.value.trim());
});
$('reviewer-form').addEventListener('submit', (event) => event.preventDefault());
$('refresh').addEventListener('click', loadQueue);
followOperatorStream({
  onEvent,
  onState: (state) => {
    showLiveState($('live'), state);
    // Events were missed: the queue is read again.
    if (state === 'reset') loadQueue();
  },
});
setInterval(loadQueue, REFRESH_MS);
loadQueue();
