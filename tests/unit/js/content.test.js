// mercurio.content(slot, element): the visitor's variant of an on-site slot.
// Run: node --test tests/unit/js/
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { load, API } = require('./browser_env');

const HERO = { slot: 'hero', variant: 'hero-coffee', html: '<section>Your next roast</section>' };

function element() {
  return { innerHTML: '<p>the page default</p>', attrs: {}, setAttribute(k, v) { this.attrs[k] = v; } };
}

test('content asks for the slot with the write key and the visitor, and fills the element', async () => {
  const env = load({ fetchReply: (call) => (call.url.includes('/v1/content') ? { status: 200, json: HERO } : { status: 200 }) });
  env.run("mercurio.identify('u 1')");
  const el = element();
  const result = await env.window.mercurio.content('hero', el);
  const call = env.fetches.find((f) => f.url.includes('/v1/content'));
  const url = new URL(call.url);
  assert.equal(url.origin + url.pathname, `${API}/v1/content`);
  assert.equal(url.searchParams.get('slot'), 'hero');
  assert.equal(url.searchParams.get('writeKey'), 'wk_test_123');
  assert.equal(url.searchParams.get('anonymousId'), env.browser.cookies.mercurio_anon.value);
  assert.equal(url.searchParams.get('userId'), 'u 1');
  assert.equal(url.searchParams.get('locale'), 'fr-FR');
  assert.equal(call.init.method, undefined, 'a GET');
  assert.equal(call.init.credentials, 'omit');
  assert.equal(call.init.headers, undefined, 'no custom header: a CORS simple request');
  assert.deepEqual(result, HERO);
  assert.equal(el.innerHTML, HERO.html);
  assert.equal(el.attrs['data-mercurio-variant'], 'hero-coffee');
  assert.deepEqual(env.warnings, []);
});

test('an element can be named by a selector', async () => {
  const env = load({ fetchReply: () => ({ status: 200, json: HERO }) });
  const el = element();
  env.window.document.querySelector = (sel) => (sel === '#hero' ? el : null);
  await env.window.mercurio.content('hero', '#hero');
  assert.equal(el.innerHTML, HERO.html);
});

test('without consent nothing is asked and the page keeps its own markup', async () => {
  const env = load({ attrs: { 'data-consent': 'pending' }, fetchReply: () => ({ status: 200, json: HERO }) });
  const el = element();
  assert.equal(await env.window.mercurio.content('hero', el), null);
  assert.equal(env.fetches.length, 0);
  assert.equal(el.innerHTML, '<p>the page default</p>');
});

test('a refusal or a network error leaves the element as it was', async () => {
  const env = load({ fetchReply: (call) => (call.url.includes('/v1/content') ? { status: 404, json: { error: 'no slot' } } : { status: 200 }) });
  const el = element();
  assert.equal(await env.window.mercurio.content('sidebar', el), null);
  assert.equal(el.innerHTML, '<p>the page default</p>');
  assert.deepEqual(env.warnings, []);
  env.reply(() => ({ networkError: true }));
  assert.ok((await env.window.mercurio.content('hero', el)) == null);
  assert.equal(el.innerHTML, '<p>the page default</p>');
});
