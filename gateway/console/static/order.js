// /orders/{id}: one order in full, kept live by its event stream; a Cancel
// button while the status allows it.
import {
  ApiError,
  CANCELLABLE,
  api,
  badge,
  clearProblem,
  el,
  followOrder,
  formatMoney,
  productName,
  showLiveState,
  showProblem,
  sumMoney,
  timeElement,
  timesMoney,
} from './api.js';

const orderId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
const $ = (id) => document.getElementById(id);
const problem = $('problem');
const cancelForm = $('cancel');

let order = null;
// The history by 1-based position, from the order and from its stream: the
// stream can be ahead of the last full read.
const history = new Map();
let refetch = null;
let stopFollowing = () => {};

function latest() {
  const last = Math.max(0, ...history.keys());
  return last ? history.get(last) : null;
}

function renderHistory() {
  const entries = [...history.entries()].sort(([a], [b]) => a - b);
  $('timeline').replaceChildren(
    ...entries.map(([position, entry]) =>
      el(
        'li',
        { dataset: { position: String(position), status: entry.status } },
        badge(entry.status),
        ' ',
        timeElement(entry.at),
        entry.reason ? el('span', { class: 'reason' }, ` — ${entry.reason}`) : null,
      ),
    ),
  );
}

function renderStatus() {
  const entry = latest();
  const status = entry?.status || order?.status;
  $('status').replaceChildren(badge(status));
  cancelForm.hidden = !CANCELLABLE.has(status);
  const failure = order?.failure_reason || (status === 'CANCELLED' || status === 'SHIP_FAILED' ? entry?.reason : '');
  $('failure').hidden = !failure;
  $('failure').textContent = failure ? `Failure reason: ${failure}` : '';
  const tracking = order?.tracking_id || entry?.tracking_id;
  $('tracking').replaceChildren(tracking ? el('span', { class: 'mono' }, tracking) : el('span', { class: 'muted' }, 'not shipped yet'));
  // The stream's latest change can be newer than the last full read.
  $('updated').replaceChildren(timeElement(entry?.at || order?.updated_at));
}

async function renderItems(items) {
  const names = await Promise.all(items.map((item) => productName(item.product_id)));
  $('items').tBodies[0].replaceChildren(
    ...items.map((item, i) =>
      el(
        'tr',
        {},
        el('td', {}, names[i], ' ', el('small', { class: 'muted mono' }, item.product_id)),
        el('td', { class: 'num' }, String(item.quantity)),
        el('td', { class: 'num' }, formatMoney(item.unit_price)),
        el('td', { class: 'num' }, item.unit_price ? formatMoney(timesMoney(item.unit_price, item.quantity)) : '—'),
      ),
    ),
  );
  $('subtotal').textContent = formatMoney(sumMoney(items.filter((i) => i.unit_price).map((i) => timesMoney(i.unit_price, i.quantity))));
}

function render(next) {
  order = next;
  (order.history || []).forEach((entry, i) => history.set(i + 1, entry));
  $('waiting').hidden = true;
  $('order').hidden = false;
  $('created').replaceChildren(timeElement(order.created_at));
  $('customer').replaceChildren(el('span', { class: 'mono' }, order.user_id), order.email ? ` · ${order.email}` : '');
  const a = order.address || {};
  $('address').textContent = [a.street_address, a.city, a.state, a.zip_code, a.country].filter(Boolean).join(', ') || '—';
  $('trace').replaceChildren(
    order.trace_url
      ? el('a', { href: order.trace_url, target: '_blank', rel: 'noopener' }, 'View trace')
      : order.trace_id
        ? el('span', { class: 'mono muted' }, order.trace_id)
        : el('span', { class: 'muted' }, '—'),
  );
  $('shipping').textContent = formatMoney(order.shipping_cost);
  $('total').textContent = formatMoney(order.total);
  renderItems(order.items || []);
  renderHistory();
  renderStatus();
}

async function load() {
  try {
    render(await api(`/api/orders/${encodeURIComponent(orderId)}`));
    clearProblem(problem);
  } catch (error) {
    if (error instanceof ApiError && error.httpStatus === 404 && !order) {
      // Not stored yet (placement and storage are asynchronous): the stream waits for it.
      $('waiting').hidden = false;
    } else {
      showProblem(problem, error);
      // A malformed id never becomes an order: no point in following it.
      if (error instanceof ApiError && error.httpStatus === 400) stopFollowing();
    }
  }
}

/** A full read after stream events, coalesced: a burst of events costs one call. */
function scheduleLoad() {
  clearTimeout(refetch);
  refetch = setTimeout(load, 250);
}

cancelForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = cancelForm.querySelector('button');
  button.disabled = true;
  clearProblem(problem);
  try {
    const reason = $('cancel-reason').value.trim() || 'cancelled from the console';
    render(await api(`/api/orders/${encodeURIComponent(orderId)}/cancel`, { method: 'POST', body: { reason } }));
  } catch (error) {
    showProblem(problem, error);
  } finally {
    button.disabled = false;
  }
});

$('order-id').textContent = orderId;
document.title = `Order ${orderId} · ordermesh`;
if (!orderId) {
  showProblem(problem, new ApiError({ title: 'No order', detail: 'The address names no order.' }, -1));
} else {
  load();
  stopFollowing = followOrder(orderId, {
    onStatus: (data, position) => {
      history.set(position, { status: data.status, at: data.at, reason: data.reason, tracking_id: data.tracking_id });
      if (order) {
        renderHistory();
        renderStatus();
      }
      scheduleLoad();
    },
    onState: (state) => showLiveState($('live'), state),
  });
}
