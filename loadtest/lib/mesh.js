// What every scenario shares: where the mesh answers, the gRPC clients (the
// protos loaded from protos/, no reflection, so a script needs nothing but this
// repository), the request builders, the status checks, the custom metrics and
// the thresholds.
//
// Addresses come only from the environment (CHECKOUT, CATALOG, ORDER), so the
// same scripts drive the local mesh, a private test mesh or a cluster through
// `kubectl port-forward` (see loadtest/README.md).

import { check, sleep } from 'k6';
import crypto from 'k6/crypto';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';
import grpc from 'k6/net/grpc';

export const TARGETS = {
  checkout: __ENV.CHECKOUT || 'localhost:50052',
  catalog: __ENV.CATALOG || 'localhost:50051',
  order: __ENV.ORDER || 'localhost:50053',
};

// The README's test card and address: the card is captured (only a number
// ending in 0002 is declined).
export const CARD = { number: '4432801561520454', cvv: 672, expiration_year: 2039, expiration_month: 1 };
export const ADDRESS = {
  street_address: '1600 Amphitheatre Pkwy',
  city: 'Mountain View',
  state: 'CA',
  country: 'US',
  zip_code: '94043',
};

// Cheap products with plenty of stock that no e2e test needs an exact count
// of: sku-1011 (exactly 30 in a test), sku-1012 (above the review threshold),
// sku-1003 (12 units) and sku-1010 (the hot-product scenario's) are left out.
export const PRODUCTS = (__ENV.PRODUCTS || 'sku-1004,sku-1005,sku-1006,sku-1007,sku-1008,sku-1009')
  .split(',')
  .map((p) => p.trim())
  .filter((p) => p);

const SERVICES = {
  checkout: ['ordermesh.checkout.v1.CheckoutService', 'ordermesh/checkout/v1/checkout.proto'],
  catalog: ['ordermesh.catalog.v1.CatalogService', 'ordermesh/catalog/v1/catalog.proto'],
  order: ['ordermesh.order.v1.OrderService', 'ordermesh/order/v1/order.proto'],
};

// Resolved from this file, not from the running script: client.load resolves
// relative paths against the main script's folder, which differs per caller.
const PROTOS = decodeURIComponent(import.meta.resolve('../../protos').replace(/^file:\/\//, ''));

// PlaceOrder waits for catalog, shipping and payment (payment alone may take
// PAYMENT_DEADLINE_SECONDS, 3 s); reads answer from a cache or one query.
const TIMEOUTS = { PlaceOrder: '15s', SetStock: '10s' };
const READ_TIMEOUT = '5s';
// Codes after which the same request may be sent again: PlaceOrder is
// idempotent by request_id (a retry is the same order), the reads have no
// side effect. Anything else is an answer. Compared with ===: k6's status codes are
// Go values wrapped as objects, equal to each other by === but not by a Set's
// SameValueZero (a Set of them never matched an answer's status, so nothing was retried).
const RETRYABLE = [grpc.StatusUnavailable, grpc.StatusDeadlineExceeded];
const ATTEMPTS = Number(__ENV.ATTEMPTS || 3);

// Custom metrics, in the summary and the HTML report.
export const errors = new Rate('errors'); // calls whose final answer was not one the scenario expects
export const retries = new Counter('retries'); // attempts repeated after UNAVAILABLE or DEADLINE_EXCEEDED
export const ordersPlaced = new Counter('orders_placed'); // PlaceOrder answered OK
export const soldOut = new Counter('orders_sold_out'); // PlaceOrder answered FAILED_PRECONDITION (short stock)
// A logical PlaceOrder, retries included: what a client waits for.
export const placeOrderDuration = new Trend('place_order_duration', true);

const STATUS_NAMES = Object.fromEntries(
  Object.entries(grpc)
    .filter(([name, value]) => name.startsWith('Status') && typeof value === 'number')
    .map(([name, value]) => [value, name.slice('Status'.length)]),
);

export function statusName(code) {
  return STATUS_NAMES[code] || String(code);
}

function hex(bytes) {
  return Array.from(new Uint8Array(crypto.randomBytes(bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
}

// A W3C trace context of its own for every call, sampled: each call is a root
// the services continue (their sampler is parent-based), so a load run's traces
// are all kept and can be told apart by the trace id k6 records with each
// sample (exec.vu.metrics.metadata: in `--out json`, not in the summary).
function traceparent() {
  let traceId = hex(16);
  while (/^0+$/.test(traceId)) traceId = hex(16); // all zeros is invalid
  exec.vu.metrics.metadata.trace_id = traceId;
  return `00-${traceId}-${hex(8)}-01`;
}

export function newRequestId() {
  return `k6-${hex(16)}`;
}

// One id per test run, made in setup() (init code runs once per VU, so an id
// made there would differ between VUs).
export function newRunId() {
  return `${Date.now().toString(36)}-${hex(3)}`;
}

// Requests may use the protos' field names; answers come back in proto JSON's
// lowerCamelCase (response.message.orderId, nextPageToken, productId).
export function placeOrderRequest({ userId, items }) {
  return {
    request_id: newRequestId(),
    user_id: userId,
    email: `${userId}@example.com`,
    items,
    address: ADDRESS,
    credit_card: CARD,
  };
}

// One gRPC client per service and VU: the definitions are loaded in the init
// context (k6 allows it nowhere else), the connection on first use.
export class Mesh {
  constructor() {
    this.clients = {};
    this.connected = {};
    for (const [name, [, file]] of Object.entries(SERVICES)) {
      const client = new grpc.Client();
      client.load([PROTOS], file);
      this.clients[name] = client;
    }
  }

  client(name) {
    if (!this.connected[name]) {
      this.clients[name].connect(TARGETS[name], { plaintext: true, timeout: '10s' });
      this.connected[name] = true;
    }
    return this.clients[name];
  }

  disconnect(name) {
    if (this.connected[name]) {
      try {
        this.clients[name].close();
      } catch (_) {
        // already closed
      }
    }
    this.connected[name] = false;
  }

  // Invoke `service.method` until it has an answer that is not retryable or the
  // attempts are spent; every attempt carries a fresh traceparent. Returns the
  // last response (a connection that cannot be made counts as UNAVAILABLE).
  call(service, method, request) {
    const params = { timeout: TIMEOUTS[method] || READ_TIMEOUT, tags: { rpc: method } };
    let response;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      if (attempt > 1) {
        retries.add(1, { rpc: method });
        sleep(0.1 * 2 ** (attempt - 2));
      }
      params.metadata = { traceparent: traceparent() };
      try {
        response = this.client(service).invoke(`${SERVICES[service][0]}/${method}`, request, params);
      } catch (error) {
        // Not connected, or the connection is gone: connect again on the next attempt.
        this.disconnect(service);
        response = { status: grpc.StatusUnavailable, message: null, error: { message: String(error) } };
      }
      if (!RETRYABLE.some((code) => code === response.status)) break;
    }
    return response;
  }

  // A read: OK is the only expected answer (NOT_FOUND too for `allowNotFound`).
  read(service, method, request, { allowNotFound = false } = {}) {
    const response = this.call(service, method, request);
    const expected = response.status === grpc.StatusOK || (allowNotFound && response.status === grpc.StatusNotFound);
    check(response, { [`${method} OK`]: () => expected }, { rpc: method });
    record(expected, method, response);
    return response;
  }

  // PlaceOrder: OK, or FAILED_PRECONDITION (short stock) where `stockMayRunOut`.
  placeOrder(request, { stockMayRunOut = false } = {}) {
    const started = Date.now();
    const response = this.call('checkout', 'PlaceOrder', request);
    placeOrderDuration.add(Date.now() - started);
    const ok = response.status === grpc.StatusOK;
    const short = response.status === grpc.StatusFailedPrecondition;
    const expected = ok || (stockMayRunOut && short);
    const name = stockMayRunOut ? 'PlaceOrder OK or sold out' : 'PlaceOrder OK';
    check(response, { [name]: () => expected }, { rpc: 'PlaceOrder' });
    record(expected, 'PlaceOrder', response);
    if (ok) {
      ordersPlaced.add(1);
      if (__ENV.LOG_ORDER_IDS) console.log(`answered ${response.message.orderId}`); // for the auditor
    } else if (short) {
      soldOut.add(1);
    }
    return response;
  }

  listProducts(pageSize = 5, pageToken = '') {
    return this.read('catalog', 'ListProducts', { page_size: pageSize, page_token: pageToken });
  }

  getProduct(id) {
    return this.read('catalog', 'GetProduct', { id });
  }

  getOrder(orderId, options) {
    return this.read('order', 'GetOrder', { order_id: orderId }, options);
  }

  setStock(productId, stock) {
    return this.read('catalog', 'SetStock', { product_id: productId, stock });
  }
}

// Unexpected answers are logged, the first few per VU only: an overloaded mesh
// answers thousands of them, and the `errors` rate already counts them all.
const WARNINGS_PER_VU = 5;
let warned = 0;

function record(expected, method, response) {
  errors.add(!expected, { rpc: method });
  if (!expected && warned < WARNINGS_PER_VU) {
    warned++;
    const detail = response.error ? response.error.message : '';
    console.warn(`${method}: ${statusName(response.status)} ${detail}`);
  }
}

// Every product id of the catalogue, page by page (setup code).
export function allProductIds(mesh) {
  const ids = [];
  let token = '';
  do {
    const page = mesh.listProducts(100, token);
    if (page.status !== grpc.StatusOK) throw new Error(`ListProducts: ${statusName(page.status)}`);
    ids.push(...page.message.products.map((p) => p.id));
    token = page.message.nextPageToken || '';
  } while (token);
  return ids;
}

// Poll `predicate` until true or `seconds` pass (setup and teardown code).
export function waitFor(predicate, seconds, what) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if (predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds}s waiting for ${what}`);
    sleep(0.25);
  }
}

export function pick(items) {
  return items[Math.floor(Math.random() * items.length)];
}

function number(name, fallback) {
  const value = __ENV[name];
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) throw new Error(`${name}: not a number: ${value}`);
  return parsed;
}

export const env = { number };

// Thresholds every scenario has: the share of unexpected answers (`errors`)
// and of failed checks at most `errorRate`, and p95/p99 budgets per RPC in
// milliseconds, `latency` = { PlaceOrder: [p95, p99], GetProduct: [...], ... }.
// P95_MS and P99_MS override PlaceOrder's (a slower cluster, a faster machine).
export function thresholds({ errorRate, latency, extra = {} }) {
  const result = {
    errors: [`rate<=${errorRate}`],
    checks: [`rate>=${1 - errorRate}`],
  };
  for (const [rpc, [p95, p99]] of Object.entries(latency)) {
    const budget = rpc === 'PlaceOrder' ? [number('P95_MS', p95), number('P99_MS', p99)] : [p95, p99];
    result[`grpc_req_duration{rpc:${rpc}}`] = [`p(95)<${budget[0]}`, `p(99)<${budget[1]}`];
  }
  return { ...result, ...extra };
}

// The summary shows p99 too (k6's default stops at p95).
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'];

// RESTOCK=N: every product of PRODUCTS gets N units before a run (SetStock, an
// operator RPC: the mesh must let this client call it), so a long run sells
// all the way instead of measuring short-stock answers. Unset: nothing changes.
export function restock(mesh) {
  const units = number('RESTOCK', -1);
  if (units < 0) return;
  for (const product of PRODUCTS) {
    const answer = mesh.setStock(product, units);
    if (answer.status !== grpc.StatusOK) throw new Error(`SetStock ${product}: ${statusName(answer.status)}`);
  }
}

// One order of one unit of a random product by one of 50 users, for the rate
// scenarios. Short stock is an expected answer: a long run can sell out.
export function orderOneUnit(mesh, scenario) {
  mesh.placeOrder(
    placeOrderRequest({
      userId: `k6-${scenario}-${exec.scenario.iterationInTest % 50}`,
      items: [{ product_id: pick(PRODUCTS), quantity: 1 }],
    }),
    { stockMayRunOut: true },
  );
}
