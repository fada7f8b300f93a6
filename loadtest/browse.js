// browse: the read side at a constant arrival rate. Half GetProduct, a third
// ListProducts (a page, sometimes the next one), the rest GetOrder of orders
// this script placed in setup (waited for until the order context stored them,
// so NOT_FOUND is an error here). Nothing runs out: every answer must be OK.
//
//   RATE (50 calls/s), DURATION (30s), ORDERS (10 placed in setup), MAX_VUS
//   (max(50, 2 x RATE)), PRODUCTS (what setup buys), RESTOCK; read budgets 200 / 500 ms

import grpc from 'k6/net/grpc';
import {
  allProductIds,
  env,
  Mesh,
  newRunId,
  PRODUCTS,
  pick,
  placeOrderRequest,
  restock,
  statusName,
  SUMMARY_TREND_STATS,
  thresholds,
  waitFor,
} from './lib/mesh.js';

const rate = env.number('RATE', 50);

export const options = {
  scenarios: {
    browse: {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: env.number('PRE_VUS', Math.ceil(rate / 5)),
      maxVUs: env.number('MAX_VUS', Math.max(50, Math.ceil(2 * rate))),
    },
  },
  thresholds: thresholds({
    errorRate: 0.01,
    latency: { GetProduct: [200, 500], ListProducts: [200, 500], GetOrder: [200, 500] },
  }),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

const mesh = new Mesh();

export function setup() {
  restock(mesh);
  const buyer = `k6-browse-${newRunId()}`;
  const orderIds = [];
  for (let i = 0; i < env.number('ORDERS', 10); i++) {
    const request = placeOrderRequest({ userId: buyer, items: [{ product_id: pick(PRODUCTS), quantity: 1 }] });
    const answer = mesh.placeOrder(request);
    if (answer.status !== grpc.StatusOK) throw new Error(`setup PlaceOrder: ${statusName(answer.status)}`);
    orderIds.push(answer.message.orderId);
  }
  // Stored a moment after the answer (an event to the order context).
  for (const id of orderIds) {
    waitFor(() => mesh.getOrder(id, { allowNotFound: true }).status === grpc.StatusOK, 30, `order ${id}`);
  }
  return { orderIds, productIds: allProductIds(mesh) };
}

export default function (data) {
  const roll = Math.random();
  if (roll < 0.5) {
    mesh.getProduct(pick(data.productIds));
  } else if (roll < 0.8) {
    const first = mesh.listProducts(5);
    if (first.status === grpc.StatusOK && first.message.nextPageToken && Math.random() < 0.5) {
      mesh.listProducts(5, first.message.nextPageToken);
    }
  } else {
    mesh.getOrder(pick(data.orderIds));
  }
}
