// spike: PlaceOrder at a base rate, a sudden climb to SPIKE times that rate,
// a hold, and back: does the mesh shed the excess (UNAVAILABLE, breakers) and
// recover, and how far does latency go?
//
//   RATE (10 orders/s, the base), SPIKE (5: the peak is SPIKE x RATE), STAGE
//   (10s: each hold; ramps take half of it), PRE_VUS (peak / 2), MAX_VUS (max(100, 4 x peak)),
//   PRODUCTS, RESTOCK, P95_MS / P99_MS (PlaceOrder's budget, 3000 / 6000)

import { env, Mesh, orderOneUnit, restock, SUMMARY_TREND_STATS, thresholds } from './lib/mesh.js';

const base = env.number('RATE', 10);
const peak = Math.ceil(base * env.number('SPIKE', 5));
const hold = env.number('STAGE', 10);
const ramp = `${Math.max(1, Math.round(hold / 2))}s`;

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: base,
      timeUnit: '1s',
      preAllocatedVUs: env.number('PRE_VUS', Math.ceil(peak / 2)), // VUs made mid-spike arrive late
      maxVUs: env.number('MAX_VUS', Math.max(100, 4 * peak)),
      stages: [
        { target: base, duration: `${hold}s` }, // warm
        { target: peak, duration: ramp }, // the spike
        { target: peak, duration: `${hold}s` },
        { target: base, duration: ramp }, // back
        { target: base, duration: `${hold}s` }, // recovered?
      ],
    },
  },
  // Over capacity the mesh answers UNAVAILABLE rather than queue without bound,
  // and retries absorb only some of it: a few percent of errors are the price.
  thresholds: thresholds({ errorRate: 0.05, latency: { PlaceOrder: [3000, 6000] } }),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

const mesh = new Mesh();

export function setup() {
  restock(mesh);
}

export default function () {
  orderOneUnit(mesh, 'spike');
}
