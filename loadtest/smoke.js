// smoke: a few VUs for a few seconds, every call must succeed. The cheapest
// proof that the mesh answers end to end (it runs in `make test`).
//
//   VUS (3), DURATION (10s), PRODUCTS, P95_MS / P99_MS (PlaceOrder's budget)

import { sleep } from 'k6';
import { env, Mesh, PRODUCTS, pick, placeOrderRequest, SUMMARY_TREND_STATS, thresholds } from './lib/mesh.js';

export const options = {
  scenarios: {
    smoke: {
      executor: 'constant-vus',
      vus: env.number('VUS', 3),
      duration: __ENV.DURATION || '10s',
    },
  },
  // Nothing runs out here (a few dozen units of plentiful products), so every
  // answer but OK is an error, and none is allowed.
  thresholds: thresholds({
    errorRate: 0,
    latency: { PlaceOrder: [1000, 2000], ListProducts: [300, 1000], GetProduct: [300, 1000] },
    extra: { orders_placed: ['count>0'] },
  }),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

const mesh = new Mesh();

export default function () {
  const product = pick(PRODUCTS);
  mesh.listProducts(5);
  mesh.getProduct(product);
  mesh.placeOrder(placeOrderRequest({ userId: `k6-smoke-${__VU}`, items: [{ product_id: product, quantity: 1 }] }));
  sleep(0.5);
}
