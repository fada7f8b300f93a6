// /products: the catalog, a cart kept in localStorage, and checkout (POST /api/orders).
import {
  ApiError,
  allPages,
  api,
  badge,
  clearProblem,
  el,
  formatMoney,
  newIdempotencyKey,
  showProblem,
  storeUser,
  storedUser,
  sumMoney,
  timesMoney,
} from './api.js';

const CART_KEY = 'ordermesh.cart';

const products = new Map();
const userInput = document.getElementById('user-id');
const productRows = document.querySelector('#products tbody');
const catalogProblem = document.getElementById('catalog-problem');
const cartTable = document.getElementById('cart');
const cartEmpty = document.getElementById('cart-empty');
const form = document.getElementById('checkout');
const checkoutProblem = document.getElementById('checkout-problem');
const placed = document.getElementById('placed');

// The purchase attempt in flight or last failed with an unknown outcome: its
// Idempotency-Key is sent again when the same order is submitted again, so a
// retry after a timeout cannot place (or charge) it twice. Kept in memory
// only: the body holds the card number, which is never written to storage.
let attempt = null;
// The line "Buy now" is buying while its submit event runs (set and cleared
// around requestSubmit, which dispatches the event at once when the form is
// valid). The buttons are not the form's own submit buttons: the first of those
// would be the one Enter in a checkout field presses.
let buying = null;

function loadCart() {
  try {
    const cart = JSON.parse(localStorage.getItem(CART_KEY) || '[]');
    return Array.isArray(cart) ? cart.filter((line) => typeof line.product_id === 'string' && line.quantity > 0) : [];
  } catch {
    return [];
  }
}

function saveCart(cart) {
  if (cart.length) localStorage.setItem(CART_KEY, JSON.stringify(cart));
  else localStorage.removeItem(CART_KEY);
  renderCart();
}

function addToCart(productId, quantity) {
  const cart = loadCart();
  const line = cart.find((l) => l.product_id === productId);
  if (line) line.quantity += quantity;
  else cart.push({ product_id: productId, quantity });
  saveCart(cart);
}

function renderCart() {
  const cart = loadCart();
  cartEmpty.hidden = cart.length > 0;
  cartTable.hidden = cart.length === 0;
  const amounts = [];
  const rows = cart.map((line) => {
    const product = products.get(line.product_id);
    const amount = product ? timesMoney(product.price, line.quantity) : null;
    if (amount) amounts.push(amount);
    return el(
      'tr',
      { dataset: { productId: line.product_id } },
      el('td', {}, product ? product.name : line.product_id),
      el('td', { class: 'num' }, String(line.quantity)),
      el('td', { class: 'num' }, formatMoney(amount)),
      el(
        'td',
        {},
        el('button', { type: 'button', class: 'link', 'aria-label': `Remove ${product ? product.name : line.product_id}`, onclick: () => saveCart(loadCart().filter((l) => l.product_id !== line.product_id)) }, 'Remove'),
      ),
    );
  });
  cartTable.tBodies[0].replaceChildren(...rows);
  document.getElementById('cart-total').textContent = formatMoney(sumMoney(amounts));
}

function quantityOf(productId) {
  const input = productRows.querySelector(`tr[data-product-id="${CSS.escape(productId)}"] input.qty`);
  // An empty or odd entry is sent as it is (0): the gateway's answer names the field.
  return Number(input?.value) || 0;
}

function renderProducts() {
  const rows = [...products.values()].map((product) => {
    const soldOut = Number(product.stock) <= 0;
    return el(
      'tr',
      { dataset: { productId: product.id } },
      el('th', { scope: 'row' }, el('span', { class: 'name' }, product.name), el('small', { class: 'muted block' }, product.description)),
      el('td', { class: 'num' }, formatMoney(product.price)),
      el('td', { class: 'num stock' }, soldOut ? 'Sold out' : String(product.stock)),
      el('td', {}, el('input', { type: 'number', class: 'qty', min: 1, max: 1000, value: 1, 'aria-label': `Quantity of ${product.name}`, disabled: soldOut })),
      el(
        'td',
        {},
        el(
          'div',
          { class: 'actions' },
          el('button', { type: 'button', disabled: soldOut, onclick: () => addToCartClicked(product) }, 'Add to cart'),
          el('button', { type: 'button', class: 'primary', disabled: soldOut, 'aria-label': `Buy ${product.name} now`, onclick: () => buyNowClicked(product) }, 'Buy now'),
        ),
      ),
    );
  });
  productRows.replaceChildren(...rows);
  productRows.removeAttribute('aria-busy');
}

function addToCartClicked(product) {
  const quantity = quantityOf(product.id);
  if (quantity < 1) {
    showProblem(catalogProblem, new ApiError({ title: 'Invalid quantity', detail: `Enter a quantity of at least 1 for ${product.name}.` }, -1));
    return;
  }
  clearProblem(catalogProblem);
  addToCart(product.id, quantity);
}

function buyNowClicked(product) {
  buying = { product_id: product.id, quantity: quantityOf(product.id) };
  try {
    form.requestSubmit();
  } finally {
    buying = null;
  }
}

async function loadProducts() {
  try {
    const list = await allPages('/api/products', 'products');
    products.clear();
    for (const product of list) products.set(product.id, product);
    clearProblem(catalogProblem);
    renderProducts();
    renderCart();
  } catch (error) {
    productRows.replaceChildren();
    showProblem(catalogProblem, error);
  }
}

function value(name) {
  return form.elements.namedItem(name).value.trim();
}

function orderRequest(items) {
  return {
    user_id: userInput.value.trim(),
    items,
    address: {
      street_address: value('address.street_address'),
      city: value('address.city'),
      state: value('address.state'),
      country: value('address.country'),
      zip_code: value('address.zip_code'),
    },
    email: value('email'),
    credit_card: {
      number: value('credit_card.number').replaceAll(' ', ''),
      cvv: Number(value('credit_card.cvv')),
      expiration_year: Number(value('credit_card.expiration_year')),
      expiration_month: Number(value('credit_card.expiration_month')),
    },
  };
}

function showPlaced(answer) {
  const link = el('a', { href: `/orders/${encodeURIComponent(answer.order_id)}`, class: 'order-link' }, answer.order_id);
  placed.replaceChildren(
    el('p', {}, 'Order ', link, ' placed: ', badge(answer.status)),
    el('p', {}, `Total ${formatMoney(answer.total)}, shipping included (${formatMoney(answer.shipping_cost)}).`),
    answer.failure_reason ? el('p', { class: 'failure' }, `Reason: ${answer.failure_reason}`) : null,
    el('p', {}, el('a', { href: '/orders' }, 'See all your orders')),
  );
  placed.hidden = false;
}

/** Marks the quantity inputs a problem names (items[i].quantity) as invalid. */
function markQuantities(error, items) {
  for (const violation of error instanceof ApiError ? error.violations : []) {
    const line = /^items\[(\d+)\]\.quantity$/.exec(violation.field);
    const productId = line && items[Number(line[1])]?.product_id;
    const input = productId && productRows.querySelector(`tr[data-product-id="${CSS.escape(productId)}"] input.qty`);
    if (input) input.setAttribute('aria-invalid', 'true');
  }
}

async function checkout(event) {
  event.preventDefault();
  clearProblem(checkoutProblem, form);
  for (const input of productRows.querySelectorAll('input.qty[aria-invalid]')) input.removeAttribute('aria-invalid');
  if (!userInput.reportValidity()) return;
  const buyNow = buying !== null;
  const items = buyNow ? [buying] : loadCart();
  if (!items.length) {
    showProblem(checkoutProblem, new ApiError({ title: 'Your cart is empty', detail: 'Add a product to the cart, or use "Buy now".' }, -1));
    return;
  }
  storeUser(userInput.value.trim());
  const body = orderRequest(items);
  const text = JSON.stringify(body);
  if (!attempt || attempt.body !== text) attempt = { key: newIdempotencyKey(), body: text };

  // One purchase at a time (a second one with the same order would reuse the key anyway).
  const buttons = [...form.querySelectorAll('button'), ...productRows.querySelectorAll('button.primary')].filter((b) => !b.disabled);
  buttons.forEach((b) => {
    b.disabled = true;
  });
  form.setAttribute('aria-busy', 'true');
  placed.hidden = true;
  try {
    const answer = await api('/api/orders', { method: 'POST', body, headers: { 'Idempotency-Key': attempt.key } });
    attempt = null;
    if (!buyNow) saveCart([]);
    showPlaced(answer);
    loadProducts();
  } catch (error) {
    // A definite refusal is final for this key; only an unknown outcome keeps it.
    if (!(error instanceof ApiError && error.uncertain)) attempt = null;
    showProblem(checkoutProblem, error, form);
    markQuantities(error, items);
  } finally {
    buttons.forEach((b) => {
      b.disabled = false;
    });
    form.removeAttribute('aria-busy');
  }
}

userInput.value = storedUser();
userInput.addEventListener('change', () => storeUser(userInput.value.trim()));
document.getElementById('shopper').addEventListener('submit', (event) => event.preventDefault());
const year = form.elements.namedItem('credit_card.expiration_year');
if (!year.value) year.value = String(new Date().getFullYear() + 3);
form.addEventListener('submit', checkout);
// Another tab's cart changes show here too.
window.addEventListener('storage', (event) => {
  if (event.key === CART_KEY) renderCart();
});
renderCart();
loadProducts();
