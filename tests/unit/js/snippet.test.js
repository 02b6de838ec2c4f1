// Unit tests of the website snippet (chalicelib/web/mercurio.js) in a simulated browser.
// Run: node --test tests/unit/js/
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { load, newBrowser, API } = require('./browser_env');

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

test('the embed queues calls and the snippet replays them after its automatic page view', async () => {
  const env = load({ load: false, before: "mercurio.track('Early', {a: 1}); mercurio.identify('u1', {plan: 'pro'})" });
  const [script] = env.window.__inserted;
  assert.equal(script.src, `${API}/v1/mercurio.js`);
  assert.equal(script.async, 1);
  assert.equal(script['data-write-key'], 'wk_test_123');
  const stub = env.window.mercurio;
  env.loadSnippet();
  stub.track('Through The Old Reference'); // a reference kept to the stub still works
  await env.tick(1000);
  assert.equal(env.fetches.length, 1, 'one batch after the 1 s flush interval');
  assert.deepEqual(env.events().map((e) => e.type + ':' + (e.event || '')),
    ['page:', 'track:Early', 'identify:', 'track:Through The Old Reference']);
  assert.equal(env.events()[3].userId, 'u1');
  assert.deepEqual(env.warnings, []);
});

test('a batch request is a CORS simple request with the documented body', async () => {
  const env = load({ url: 'https://shop.example.test/p?utm_campaign=spring&utm_source=nl&utm_medium=email&mcid=c-42#top' });
  env.run("mercurio.track('Product Added', {product_id: 'p1', price: 9.5})");
  await env.tick(1000);
  const [call] = env.fetches;
  assert.equal(call.url, `${API}/v1/batch`);
  assert.equal(call.init.method, 'POST');
  assert.equal(JSON.stringify(call.init.headers), '{"Content-Type":"text/plain"}');
  assert.equal(call.init.credentials, 'omit');
  assert.equal(call.body.writeKey, 'wk_test_123');
  assert.match(call.body.sentAt, ISO_MS);
  const [page, track] = call.body.batch;
  const anon = env.browser.cookies.mercurio_anon.value;
  assert.match(anon, UUID4);
  for (const e of [page, track]) {
    assert.match(e.messageId, UUID4);
    assert.match(e.timestamp, ISO_MS);
    assert.equal(e.anonymousId, anon);
    assert.equal(e.userId, undefined);
    assert.deepEqual(e.context.library, { name: 'mercurio.js', version: '1.0.0' });
    assert.deepEqual(e.context.page, {
      path: '/p', url: 'https://shop.example.test/p?utm_campaign=spring&utm_source=nl&utm_medium=email&mcid=c-42',
      referrer: 'https://search.example.test/', title: 'Product 1',
      search: '?utm_campaign=spring&utm_source=nl&utm_medium=email&mcid=c-42',
    });
    assert.equal(e.context.userAgent, 'TestBrowser/1.0');
    assert.equal(e.context.locale, 'fr-FR');
    assert.equal(typeof e.context.timezone, 'string');
    assert.deepEqual(e.context.screen, { width: 1440, height: 900 });
    assert.deepEqual(e.context.campaign, { name: 'spring', source: 'nl', medium: 'email' });
    assert.equal(e.context.clickId, 'c-42');
  }
  assert.equal(page.type, 'page');
  assert.deepEqual(page.properties, page.context.page);
  assert.equal(track.type, 'track');
  assert.equal(track.event, 'Product Added');
  assert.deepEqual(track.properties, { product_id: 'p1', price: 9.5 });
  assert.notEqual(page.messageId, track.messageId);
});

test('the anonymous id is a one-year first-party cookie reused by the next page', async () => {
  const browser = newBrowser();
  const first = load({ browser });
  const cookie = browser.cookies.mercurio_anon;
  assert.deepEqual(cookie.meta, { 'max-age': '31536000', path: '/', samesite: 'Lax', secure: true });
  const second = load({ browser, url: 'https://shop.example.test/cart' });
  assert.equal(second.run('mercurio.anonymousId()'), first.run('mercurio.anonymousId()'));
});

test('campaign and email click id are kept for the session', async () => {
  const browser = newBrowser();
  load({ browser, url: 'https://shop.example.test/?utm_campaign=spring&mcid=c-42' });
  assert.equal(browser.session.mercurio_mcid, 'c-42');
  const next = load({ browser, url: 'https://shop.example.test/cart' });
  await next.tick(1000);
  assert.equal(next.events()[0].context.clickId, 'c-42');
  assert.deepEqual(next.events()[0].context.campaign, { name: 'spring' });
});

test('identify keeps the userId, alias defaults previousId, reset forgets both', async () => {
  const browser = newBrowser();
  const env = load({ browser, attrs: { 'data-auto-page': 'false' } });
  const anon = env.run('mercurio.anonymousId()');
  env.run("mercurio.identify({email: 'a@b.co'})"); // traits only
  env.run("mercurio.identify('user-7', {email: 'a@b.co', first_name: 'Ada'})");
  env.run("mercurio.alias('user-8')");
  await env.tick(1000);
  const [anonymous, known, alias] = env.events();
  assert.equal(anonymous.userId, undefined);
  assert.deepEqual(anonymous.traits, { email: 'a@b.co' });
  assert.equal(known.userId, 'user-7');
  assert.deepEqual(known.traits, { email: 'a@b.co', first_name: 'Ada' });
  assert.equal(alias.type, 'alias');
  assert.equal(alias.userId, 'user-8');
  assert.equal(alias.previousId, 'user-7');
  assert.equal(browser.local.mercurio_user, 'user-7');
  assert.equal(load({ browser, attrs: { 'data-auto-page': 'false' } }).run("mercurio.track('x'); 1"), 1);

  env.run('mercurio.reset()');
  assert.equal(browser.local.mercurio_user, undefined);
  assert.notEqual(env.run('mercurio.anonymousId()'), anon);
  env.run("mercurio.track('After Reset')");
  await env.tick(1000);
  const last = env.events().at(-1);
  assert.equal(last.userId, undefined);
  assert.equal(last.anonymousId, browser.cookies.mercurio_anon.value);
});

test('with consent pending nothing is stored or sent, and calls are dropped', async () => {
  const env = load({ attrs: { 'data-consent': 'pending' }, url: 'https://shop.example.test/?mcid=c-1',
    before: "mercurio.track('Queued Before Load')" });
  env.run("mercurio.track('Before Consent'); mercurio.identify('u1', {email: 'a@b.co'})");
  await env.tick(5000);
  assert.deepEqual(env.browser.cookies, {});
  assert.deepEqual(env.browser.local, {});
  assert.deepEqual(env.browser.session, {});
  assert.equal(env.fetches.length, 0);
  assert.equal(env.run('mercurio.anonymousId()'), null);
  env.fire('window', 'pagehide');
  assert.equal(env.beacons.length, 0);

  env.run('mercurio.consent(true)');
  env.run('mercurio.consent(true)'); // idempotent: one automatic page view
  assert.match(env.browser.cookies.mercurio_anon.value, UUID4);
  assert.equal(env.browser.session.mercurio_mcid, 'c-1');
  await env.tick(1000);
  assert.deepEqual(env.events().map((e) => e.type), ['page']);
  assert.equal(env.events()[0].userId, undefined);
  assert.equal(env.events()[0].context.clickId, 'c-1');
});

test('consent(false) stops sending and deletes the cookie and storage', async () => {
  const browser = newBrowser();
  const env = load({ browser, url: 'https://shop.example.test/?mcid=c-1&utm_campaign=s' });
  env.run("mercurio.identify('u1')");
  browser.local.mercurio_queue = '[]';
  env.run("mercurio.track('Unsent')");
  env.run('mercurio.consent(false)');
  assert.deepEqual(browser.cookies, {});
  assert.deepEqual(browser.local, {});
  assert.deepEqual(browser.session, {});
  env.run("mercurio.track('After Withdrawal')");
  await env.tick(5000);
  env.fire('document', 'visibilitychange');
  assert.equal(env.fetches.length, 0, 'queued events are dropped, nothing is sent');
  assert.equal(env.beacons.length, 0);
  assert.deepEqual(browser.cookies, {});
});

test('data-consent="pending" set before load and consent(true) queued in the stub', async () => {
  const env = load({ attrs: { 'data-consent': 'pending' }, before: "mercurio.consent(true); mercurio.track('After')" });
  await env.tick(1000);
  assert.deepEqual(env.events().map((e) => e.type), ['page', 'track']);
});

test('consent(channel, granted) records a Consent Updated event for the profile', async () => {
  const env = load({ attrs: { 'data-auto-page': 'false' } });
  env.run("mercurio.consent('email', true, {source: 'newsletter signup'})");
  env.run("mercurio.consent('sms', false)");
  // The denial went out at once, by beacon, with what was queued before it.
  assert.deepEqual((await env.beaconEvents()).map((e) => e.properties), [
    { channel: 'email', status: 'granted', source: 'newsletter signup' },
    { channel: 'sms', status: 'denied' },
  ]);
  assert.ok((await env.beaconEvents()).every((e) => e.type === 'track' && e.event === 'Consent Updated'));
  env.run("mercurio.consent('email', true)");
  await env.tick(1000);
  assert.deepEqual(env.events().map((e) => [e.event, e.properties]), [
    ['Consent Updated', { channel: 'email', status: 'granted' }]]);
  assert.equal(env.run('mercurio.anonymousId()'), env.browser.cookies.mercurio_anon.value);
});

test('a tracking refusal recorded just before consent(false) still leaves; nothing without consent', async () => {
  const env = load({ attrs: { 'data-auto-page': 'false' } });
  env.run("mercurio.consent('tracking', false, {source: 'banner'}); mercurio.consent(false)");
  const [refusal] = await env.beaconEvents();
  assert.deepEqual(refusal.properties, { channel: 'tracking', status: 'denied', source: 'banner' });
  assert.deepEqual(env.browser.cookies, {});

  const pending = load({ attrs: { 'data-consent': 'pending' } });
  pending.run("mercurio.consent('email', true); mercurio.consent('tracking', false)");
  await pending.tick(5000);
  assert.equal(pending.fetches.length + pending.beacons.length, 0, 'no consent: no consent event either');
  assert.deepEqual(pending.browser.local, {});
});

test('data-auto-page="false" sends no automatic page view', async () => {
  const env = load({ attrs: { 'data-auto-page': 'false' } });
  await env.tick(3000);
  assert.equal(env.fetches.length, 0);
});

test('events are sent in batches of at most 20, one request at a time', async () => {
  const env = load({ attrs: { 'data-auto-page': 'false' } });
  env.run("for (let i = 0; i < 19; i++) mercurio.track('E' + i)");
  assert.equal(env.fetches.length, 0, 'below 20 events the snippet waits for the interval');
  env.run("for (let i = 19; i < 45; i++) mercurio.track('E' + i)");
  assert.equal(env.fetches.length, 1, 'reaching 20 events sends at once');
  await env.tick(0);
  assert.deepEqual(env.fetches.map((f) => f.body.batch.length), [20, 20, 5]);
  assert.deepEqual(env.events().map((e) => e.event), Array.from({ length: 45 }, (_, i) => 'E' + i));
});

test('network errors, 429 and 5xx are retried with growing, jittered delays', async () => {
  const env = load({ attrs: { 'data-auto-page': 'false' } });
  const failures = [{ networkError: true }, { status: 429 }, { status: 503 }, { status: 500 }];
  env.reply((call, n) => failures[n - 1] || { status: 200 });
  env.run("mercurio.track('Retried')");
  await env.tick(60000);
  assert.equal(env.fetches.length, 5);
  const ids = new Set(env.fetches.map((f) => f.body.batch[0].messageId));
  assert.equal(ids.size, 1, 'every attempt resends the same messageId');
  const gaps = env.fetches.slice(1).map((f, i) => f.at - env.fetches[i].at);
  [1000, 2000, 4000, 8000].forEach((base, i) => {
    assert.ok(gaps[i] >= base * 0.75 && gaps[i] <= base * 1.25, `attempt ${i + 2} after ${gaps[i]} ms, expected ~${base}`);
  });
  assert.ok(new Set(env.fetches.map((f) => f.body.sentAt)).size > 1, 'sentAt is the time of each attempt');
});

test('a full queue does not cut short the back-off of a failed batch', async () => {
  const env = load({ attrs: { 'data-auto-page': 'false' } });
  env.reply((call, n) => (n === 1 ? { status: 503 } : { status: 200 }));
  env.run("mercurio.track('First')");
  await env.tick(1000);
  assert.equal(env.fetches.length, 1);
  env.run("for (let i = 0; i < 25; i++) mercurio.track('E' + i)");
  await env.tick(0);
  assert.equal(env.fetches.length, 1, 'nothing is sent while the failed batch waits for its retry');
  await env.tick(1250);
  assert.deepEqual(env.fetches.map((f) => f.body.batch.length), [1, 1, 20, 5]);
});

test('a failing batch is given up after 10 attempts, and the queue moves on', async () => {
  const env = load({ attrs: { 'data-auto-page': 'false' } });
  env.reply((call) => (call.body.batch[0].event === 'Doomed' ? { status: 502 } : { status: 200 }));
  env.run("mercurio.track('Doomed')");
  await env.tick(1000);
  env.run("mercurio.track('Next')");
  await env.tick(10 * 60 * 1000);
  assert.equal(env.fetches.filter((f) => f.body.batch[0].event === 'Doomed').length, 10);
  assert.equal(env.fetches.at(-1).body.batch[0].event, 'Next');
  assert.equal(env.warnings.length, 1);
  assert.match(env.warnings[0], /after 10 attempts/);
  for (let i = 2; i < 10; i++) assert.ok(env.fetches[i].at - env.fetches[i - 1].at <= 30000 * 1.25, 'back-off is capped');
});

test('a 4xx other than 429 is never retried', async () => {
  for (const status of [400, 401, 413]) {
    const env = load({ attrs: { 'data-auto-page': 'false' } });
    env.reply(() => ({ status }));
    env.run("mercurio.track('Refused')");
    await env.tick(60000);
    assert.equal(env.fetches.length, 1, `HTTP ${status} must not be retried`);
    assert.match(env.warnings[0], new RegExp(`HTTP ${status}`));
  }
});

test('leaving the page hands the queue to sendBeacon as text/plain', async () => {
  const env = load({});
  env.run("mercurio.track('Last Click')");
  env.fire('window', 'pagehide', { persisted: false });
  assert.equal(env.fetches.length, 0);
  assert.equal(env.beacons.length, 1);
  assert.equal(env.beacons[0].url, `${API}/v1/batch`);
  assert.equal(env.beacons[0].blob.type, 'text/plain');
  const body = JSON.parse(await env.beacons[0].blob.text());
  assert.equal(body.writeKey, 'wk_test_123');
  assert.deepEqual(body.batch.map((e) => e.event || e.type), ['page', 'Last Click']);
  await env.tick(60000);
  assert.equal(env.fetches.length, 0, 'nothing is sent twice');
  assert.equal(env.browser.local.mercurio_queue, undefined);
});

test('events the beacon refuses are parked in localStorage and sent by the next page', async () => {
  const browser = newBrowser();
  const env = load({ browser, beaconAccepts: false });
  env.run("mercurio.track('Parked')");
  env.run("document.visibilityState = 'hidden'");
  env.fire('document', 'visibilitychange');
  const parked = JSON.parse(browser.local.mercurio_queue);
  assert.deepEqual(parked.map((e) => e.event || e.type), ['page', 'Parked']);

  const next = load({ browser, url: 'https://shop.example.test/cart' });
  assert.equal(browser.local.mercurio_queue, undefined, 'the next page takes the parked events');
  await next.tick(1000);
  const sent = next.events();
  assert.deepEqual(sent.map((e) => e.event || e.type), ['page', 'Parked', 'page']);
  assert.equal(sent[0].messageId, parked[0].messageId);
  assert.equal(sent[0].context.page.path, '/products/1', 'a parked event keeps its own page');
});

test('a request still in flight on page hide is parked too (the server de-duplicates)', async () => {
  const browser = newBrowser();
  const env = load({ browser, attrs: { 'data-auto-page': 'false' } });
  env.reply(() => ({ networkError: true }));
  env.run("for (let i = 0; i < 20; i++) mercurio.track('E' + i)"); // sent at once, fails
  await env.tick(0);
  env.run("mercurio.track('Queued')");
  env.fire('window', 'pagehide');
  assert.equal(env.beacons.length, 2, 'the failed batch and the queue are handed to the beacon');
  assert.equal(JSON.parse(browser.local.mercurio_queue).length, 20, 'the failed batch is also kept');
});

test('a script tag without the embed stub and without a write key warns and sends nothing', async () => {
  const env = load({ embed: false, attrs: { 'data-write-key': null } });
  env.run("mercurio.track('No Key')");
  env.run('mercurio.track()');
  await env.tick(2000);
  assert.equal(env.fetches.length, 0);
  assert.ok(env.warnings.some((w) => /data-write-key/.test(w)));
  assert.ok(env.warnings.some((w) => /track needs an event name/.test(w)));
  let readyWith = null;
  env.window.mercurio.ready((m) => { readyWith = m; });
  assert.equal(readyWith, env.window.mercurio);
});

test('loading the script twice keeps the first instance', async () => {
  const env = load({});
  const first = env.window.mercurio;
  env.loadSnippet();
  assert.equal(env.window.mercurio, first);
  await env.tick(1000);
  assert.equal(env.events().length, 1, 'one automatic page view');
});

test('the snippet stays small', () => {
  const { SNIPPET } = require('./browser_env');
  const gzipped = require('node:zlib').gzipSync(SNIPPET).length;
  // About 5.7 KB once minified; unminified and gzipped is the measure available without tools.
  assert.ok(gzipped <= 4608, `mercurio.js is ${gzipped} bytes gzipped; the budget is 4.5 KB`);
});
