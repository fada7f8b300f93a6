// /dashboard: the operator stream (/events) live, and today's analytics
// (sales by status, top products) refreshed every few seconds.
import {
  STATUSES,
  api,
  badge,
  clearProblem,
  el,
  followOperatorStream,
  formatMoney,
  productName,
  showLiveState,
  showProblem,
  sumMoney,
  timeElement,
} from './api.js';

const STREAM_LENGTH = 50;
const REFRESH_MS = 5_000;
const $ = (id) => document.getElementById(id);
const problem = $('problem');
const stream = $('stream');

let seen = 0;
// When each "placed" event arrived here (this clock), for the orders-per-minute rate.
const placedAt = [];
// Events wait here for the next frame: under load hundreds arrive a second,
// and only the newest STREAM_LENGTH are ever drawn.
let queue = [];
let frame = 0;

function setOutput(output, value, text = String(value)) {
  output.dataset.value = String(value);
  output.textContent = text;
}

function describe(event) {
  if (event.type === 'placed') return ['placed ', badge(event.status)];
  return [event.from_status ? badge(event.from_status) : null, event.from_status ? ' → ' : '', badge(event.status)];
}

function eventItem(event) {
  return el(
    'li',
    { dataset: { orderId: event.order_id, type: event.type, status: event.status || '' } },
    timeElement(event.at, { clock: true }),
    ' ',
    el('a', { href: `/orders/${encodeURIComponent(event.order_id)}`, class: 'mono' }, event.order_id),
    ' ',
    ...describe(event),
    event.total ? ` ${formatMoney(event.total)}` : '',
    event.user_id ? el('span', { class: 'muted' }, ` · ${event.user_id}`) : null,
    event.reason ? el('span', { class: 'reason' }, ` — ${event.reason}`) : null,
  );
}

function flush() {
  frame = 0;
  const batch = queue.slice(-STREAM_LENGTH);
  queue = [];
  stream.prepend(...batch.reverse().map(eventItem));
  while (stream.children.length > STREAM_LENGTH) stream.lastElementChild.remove();
  stream.hidden = stream.children.length === 0;
  $('stream-empty').hidden = !stream.hidden;
}

function onEvent(event) {
  if (event.type === 'placed') {
    seen += 1;
    placedAt.push(Date.now());
    setOutput($('seen'), seen);
    updateRate();
  }
  queue.push(event);
  if (!frame) frame = requestAnimationFrame(flush);
}

function updateRate() {
  const cutoff = Date.now() - 60_000;
  while (placedAt.length && placedAt[0] < cutoff) placedAt.shift();
  setOutput($('per-minute'), placedAt.length);
}

function startOfTodayUtc() {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

function renderFunnel(byStatus) {
  const counts = STATUSES.map((status) => [status, Number(byStatus[status] || 0)]);
  const max = Math.max(1, ...counts.map(([, n]) => n));
  $('funnel').tBodies[0].replaceChildren(
    ...counts.map(([status, n]) =>
      el(
        'tr',
        { dataset: { status } },
        el('th', { scope: 'row' }, badge(status)),
        el('td', { class: 'num' }, String(n)),
        el('td', { class: 'bar' }, el('meter', { min: 0, max, value: n, 'aria-label': `${status}: ${n} of ${max}` })),
      ),
    ),
  );
}

async function renderTop(products) {
  const names = await Promise.all(products.map((p) => productName(p.product_id)));
  $('top').tBodies[0].replaceChildren(
    ...(products.length
      ? products.map((p, i) => el('tr', { dataset: { productId: p.product_id } }, el('td', {}, names[i]), el('td', { class: 'num' }, String(p.units)), el('td', { class: 'num' }, formatMoney(p.revenue))))
      : [el('tr', {}, el('td', { colspan: 3, class: 'muted' }, 'No sales yet today.'))]),
  );
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const query = new URLSearchParams({ from: startOfTodayUtc().toISOString(), to: new Date().toISOString(), bucket: 'DAY' });
    const [sales, top] = await Promise.all([api(`/api/analytics/sales?${query}`), api('/api/analytics/top-products?limit=10')]);
    const buckets = sales.buckets || [];
    const orders = buckets.reduce((n, b) => n + Number(b.orders || 0), 0);
    const byStatus = {};
    for (const bucket of buckets) {
      for (const [status, n] of Object.entries(bucket.by_status || {})) byStatus[status] = (byStatus[status] || 0) + Number(n);
    }
    const revenue = sumMoney(buckets.map((b) => b.revenue));
    setOutput($('orders-today'), orders);
    setOutput($('revenue-today'), `${revenue.units}.${String(revenue.nanos).padStart(9, '0')}`, formatMoney(revenue));
    renderFunnel(byStatus);
    await renderTop(top.products || []);
    $('refreshed').replaceChildren(timeElement(new Date().toISOString(), { clock: true }));
    clearProblem(problem);
  } catch (error) {
    showProblem(problem, error);
  } finally {
    refreshing = false;
  }
}

followOperatorStream({ onEvent, onState: (state) => showLiveState($('live'), state) });
setInterval(updateRate, 1_000);
setInterval(refresh, REFRESH_MS);
refresh();
