// hot-product: many VUs buy one product whose stock is far below the demand.
// Exactly the stock must sell, no unit more (oversell) and none fewer (a unit
// reserved for an order the client was never told about):
//   - during the run, every answer is OK or FAILED_PRECONDITION (short stock);
//   - the count of OK answers equals the stock (a threshold: count==STOCK);
//   - teardown: the product's stock is 0, and the order context stored exactly
//     STOCK orders of this run's buyer (else teardown throws: k6 exits 107);
//   - teardown then sets the stock back to what it was (RESTORE=0 keeps 0).
//
// The product's stock is set first with SetStock, an operator RPC: run it
// against a test mesh, never one whose stock matters. Nothing else here buys
// sku-1010 (no e2e test either), so nobody competes for it.
//
//   HOT_PRODUCT (sku-1010), STOCK (100), VUS (50), DEMAND (10 x STOCK orders
//   of one unit), MAX_DURATION (2m), P95_MS / P99_MS (PlaceOrder's budget, 3000 / 6000)

import exec from 'k6/execution';
import grpc from 'k6/net/grpc';
import {
  env,
  Mesh,
  newRunId,
  placeOrderRequest,
  statusName,
  SUMMARY_TREND_STATS,
  thresholds,
  waitFor,
} from './lib/mesh.js';

const PRODUCT = __ENV.HOT_PRODUCT || 'sku-1010';
const STOCK = env.number('STOCK', 100);
const DEMAND = env.number('DEMAND', 10 * STOCK);

export const options = {
  scenarios: {
    'hot-product': {
      executor: 'shared-iterations',
      vus: env.number('VUS', 50),
      iterations: DEMAND,
      maxDuration: __ENV.MAX_DURATION || '2m',
    },
  },
  thresholds: thresholds({
    errorRate: 0,
    latency: { PlaceOrder: [3000, 6000] },
    // The central check: exactly the stock was answered OK.
    extra: { orders_placed: [`count==${STOCK}`], orders_sold_out: [`count==${DEMAND - STOCK}`] },
  }),
  summaryTrendStats: SUMMARY_TREND_STATS,
  // Teardown waits for the order context to store the orders.
  teardownTimeout: '90s',
};

const mesh = new Mesh();

function stockOf(product) {
  const answer = mesh.getProduct(product);
  if (answer.status !== grpc.StatusOK) throw new Error(`GetProduct ${product}: ${statusName(answer.status)}`);
  return Number(answer.message.stock); // int64: a string in JSON
}

export function setup() {
  if (DEMAND <= STOCK) throw new Error(`DEMAND (${DEMAND}) must exceed STOCK (${STOCK})`);
  const before = stockOf(PRODUCT);
  const set = mesh.setStock(PRODUCT, STOCK);
  if (set.status !== grpc.StatusOK) throw new Error(`SetStock ${PRODUCT}: ${statusName(set.status)}`);
  // What GetProduct shows follows SetStock within a refill view (about a second).
  waitFor(() => stockOf(PRODUCT) === STOCK, 10, `${PRODUCT} to show ${STOCK} units`);
  console.log(`hot-product: ${PRODUCT} set to ${STOCK} units (was ${before}); ${DEMAND} orders of one unit`);
  // One buyer per run: teardown counts its orders with ListOrders.
  return { before, buyer: `k6-hot-${newRunId()}` };
}

export default function (data) {
  mesh.placeOrder(placeOrderRequest({ userId: data.buyer, items: [{ product_id: PRODUCT, quantity: 1 }] }), {
    stockMayRunOut: true,
  });
}

function storedOrders(buyer) {
  const ids = new Set();
  let token = '';
  do {
    const page = mesh.read('order', 'ListOrders', { user_id: buyer, page_size: 100, page_token: token });
    if (page.status !== grpc.StatusOK) throw new Error(`ListOrders: ${statusName(page.status)}`);
    for (const order of page.message.orders) {
      if (order.items.some((item) => item.productId === PRODUCT)) ids.add(order.orderId);
    }
    token = page.message.nextPageToken || '';
  } while (token);
  return ids.size;
}

export function teardown(data) {
  const problems = [];
  let stock = stockOf(PRODUCT);
  try {
    waitFor(() => (stock = stockOf(PRODUCT)) === 0, 10, 'the stock to show 0');
  } catch (_) {
    problems.push(`${PRODUCT} shows ${stock} units after the sale, not 0`);
  }
  // Orders reach the order context as events, a moment after their answer.
  let stored = 0;
  try {
    waitFor(() => (stored = storedOrders(data.buyer)) >= STOCK, 60, `${STOCK} stored orders`);
  } catch (_) {
    // reported below
  }
  if (stored !== STOCK) problems.push(`the order context stored ${stored} orders of ${data.buyer}, not ${STOCK}`);
  console.log(
    `hot-product: ${PRODUCT} stock ${stock} after the sale; ${stored} orders stored for ${data.buyer} ` +
      `(expected 0 and ${STOCK}; the OK answers are the orders_placed threshold)`,
  );
  if (__ENV.RESTORE !== '0') {
    const restored = mesh.setStock(PRODUCT, data.before);
    console.log(`hot-product: ${PRODUCT} set back to ${data.before} units: ${statusName(restored.status)}`);
  }
  if (problems.length) {
    exec.test.fail(`hot-product: ${problems.join('; ')}`);
  }
}
