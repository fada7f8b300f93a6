// load: PlaceOrder at a constant arrival rate, whatever the latency (an open
// model: a slow mesh gets more VUs, not fewer orders, up to MAX_VUS; past that
// k6 counts dropped_iterations).
//
//   RATE (20 orders/s), DURATION (1m), PRE_VUS (RATE), MAX_VUS (max(50, 4 x RATE)),
//   PRODUCTS, RESTOCK (set each of PRODUCTS to this many units first; unset:
//   sell what is there), P95_MS / P99_MS (PlaceOrder's budget, 1000 / 2000)

import { env, Mesh, orderOneUnit, restock, SUMMARY_TREND_STATS, thresholds } from './lib/mesh.js';

const rate = env.number('RATE', 20);

export const options = {
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration: __ENV.DURATION || '1m',
      preAllocatedVUs: env.number('PRE_VUS', Math.ceil(rate)),
      maxVUs: env.number('MAX_VUS', Math.max(50, Math.ceil(4 * rate))),
    },
  },
  // Short stock is an expected answer here (PRODUCTS can sell out in a long run).
  thresholds: thresholds({ errorRate: 0.01, latency: { PlaceOrder: [1000, 2000] } }),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

const mesh = new Mesh();

export function setup() {
  restock(mesh);
}

export default function () {
  orderOneUnit(mesh, 'load');
}
