// Demo shop behaviour: a cart kept in the shop's own localStorage, a consent banner, and the
// Mercurio calls a real shop would make. The embed in <head> defines window.mercurio before this
// file runs; calls made before mercurio.js has loaded are queued and replayed.
(function () {
  'use strict';
  var CART = 'demo_cart', CONSENT = 'demo_consent';

  function $(sel) { return document.querySelector(sel); }
  function randomId(prefix) { return prefix + '_' + Math.random().toString(36).slice(2, 10); }
  function money(n) { return '€' + Number(n).toFixed(2); }

  function cart() {
    try { var c = JSON.parse(localStorage.getItem(CART)); if (c && c.id) return c; } catch (e) { /* reset below */ }
    return { id: randomId('cart'), items: [] };
  }
  function saveCart(c) { localStorage.setItem(CART, JSON.stringify(c)); showCartCount(); }
  function showCartCount() {
    var n = cart().items.reduce(function (s, i) { return s + i.quantity; }, 0);
    var el = $('#cart-count');
    if (el) el.textContent = n;
  }

  // ---- consent: the shop remembers the visitor's choice and tells Mercurio on every page ----
  function showAnonymousId() {
    var el = $('#anon-id');
    if (!el) return;
    window.mercurio.ready(function (m) {
      el.textContent = m.anonymousId() || 'none yet: tracking waits for your consent';
    });
  }
  function setConsent(granted) {
    localStorage.setItem(CONSENT, granted ? 'granted' : 'denied');
    // The decision is also recorded on the visitor's profile (consent.tracking). A refusal
    // is recorded only if tracking was on: with no consent the snippet sends nothing.
    if (granted) window.mercurio.consent(true);
    window.mercurio.consent('tracking', granted, { source: 'consent banner' });
    if (!granted) window.mercurio.consent(false);
    $('#consent-banner').hidden = true;
    showAnonymousId();
  }
  var choice = localStorage.getItem(CONSENT);
  if (choice === 'granted') window.mercurio.consent(true);

  document.addEventListener('DOMContentLoaded', function () {
    showCartCount();
    showAnonymousId();
    var banner = $('#consent-banner');
    if (banner) {
      banner.hidden = choice === 'granted' || choice === 'denied';
      $('#accept-consent').addEventListener('click', function () { setConsent(true); });
      $('#decline-consent').addEventListener('click', function () { setConsent(false); });
      $('#privacy-settings').addEventListener('click', function (e) { e.preventDefault(); banner.hidden = false; });
    }

    // Home page: the hero slot shows this visitor's variant (the coffee banner for the
    // coffee-lovers segment); until Mercurio answers, or without consent, the page's own markup.
    var hero = $('#hero');
    if (hero) window.mercurio.ready(function (m) { if (m.content) m.content('hero', hero); });

    // Product page: Segment's ecommerce spec, `Product Viewed` then `Product Added`. The
    // category is what the example segments read (coffee-lovers: category "coffee").
    document.querySelectorAll('.add-to-cart').forEach(function (button) {
      function product() {
        return {
          product_id: button.dataset.id,
          sku: button.dataset.id,
          name: button.dataset.name,
          price: Number(button.dataset.price),
          category: button.dataset.category,
          currency: 'EUR',
          url: location.href.split('#')[0]
        };
      }
      window.mercurio.track('Product Viewed', product());
      button.addEventListener('click', function () {
        var c = cart(), p = product();
        delete p.url;
        var line = c.items.filter(function (i) { return i.product_id === p.product_id; })[0];
        if (line) line.quantity += 1; else c.items.push(Object.assign({ quantity: 1 }, p));
        saveCart(c);
        window.mercurio.track('Product Added', Object.assign({ cart_id: c.id, quantity: 1 }, p));
        button.textContent = 'Added ✓';
      });
    });

    // Cart page: list and "Buy".
    var list = $('#cart-items');
    if (list) {
      var c = cart(), total = c.items.reduce(function (s, i) { return s + i.price * i.quantity; }, 0);
      list.innerHTML = c.items.length ? '' : '<li>Your cart is empty.</li>';
      c.items.forEach(function (i) {
        var li = document.createElement('li');
        li.textContent = i.quantity + ' × ' + i.name + ' — ' + money(i.price * i.quantity);
        list.appendChild(li);
      });
      $('#cart-total').textContent = money(total);
      $('#buy').disabled = !c.items.length;
      $('#buy').addEventListener('click', function () {
        var order = randomId('order');
        window.mercurio.track('Order Completed', {
          order_id: order,
          cart_id: c.id,
          total: Math.round(total * 100) / 100,
          revenue: Math.round(total * 100) / 100,
          currency: 'EUR',
          products: c.items.map(function (i) {
            return { product_id: i.product_id, sku: i.sku || i.product_id, name: i.name, price: i.price,
                     quantity: i.quantity, category: i.category };
          })
        });
        localStorage.removeItem(CART);
        showCartCount();
        list.innerHTML = '';
        $('#buy').disabled = true;
        $('#order-confirmation').textContent = 'Thank you! Your order ' + order + ' is confirmed.';
      });
    }

    // Signup page: a newsletter signup identifies the visitor by email (no account, so no userId).
    var form = $('#signup-form');
    if (form) {
      form.addEventListener('submit', function (e) {
        e.preventDefault();
        var email = form.email.value.trim(), firstName = form.first_name.value.trim();
        window.mercurio.identify(null, { email: email, first_name: firstName });
        // Subscribing is the visitor's consent to marketing email (consent.email on the profile).
        window.mercurio.consent('email', true, { source: 'newsletter signup' });
        form.hidden = true;
        $('#signup-thanks').textContent = 'Welcome, ' + (firstName || email) + '! Check your inbox.';
      });
    }
  });
})();
