// A small simulated browser for running mercurio.js under `node --test`: cookie jar, Web
// Storage, a manual clock for timers, and recorded fetch / sendBeacon calls.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { webcrypto } = require('node:crypto');
const { Blob } = require('node:buffer');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SNIPPET = fs.readFileSync(path.join(ROOT, 'chalicelib', 'web', 'mercurio.js'), 'utf8');
const EMBED = fs.readFileSync(path.join(ROOT, 'chalicelib', 'web', 'embed.html'), 'utf8');
const API = 'https://api.example.test';

class MemoryStorage {
  constructor(data) { this.data = data; }
  getItem(k) { return Object.prototype.hasOwnProperty.call(this.data, k) ? this.data[k] : null; }
  setItem(k, v) { this.data[k] = String(v); }
  removeItem(k) { delete this.data[k]; }
  get length() { return Object.keys(this.data).length; }
}

// Shared between "page loads" of one browser: cookies and localStorage persist, and
// sessionStorage persists within the tab.
function newBrowser() {
  return { cookies: {}, local: {}, session: {}, now: Date.parse('2030-01-02T03:04:05.000Z') };
}

function load(opts = {}) {
  const browser = opts.browser || newBrowser();
  const url = new URL(opts.url || 'https://shop.example.test/products/1?ref=home');
  const attrs = Object.assign({ 'data-write-key': 'wk_test_123' }, opts.attrs || {});
  const timers = [];
  const fetches = [];
  const beacons = [];
  const warnings = [];
  const listeners = { window: {}, document: {} };
  let timerSeq = 0;
  let fetchReply = opts.fetchReply || (() => ({ status: 200 }));

  const on = (target) => (type, fn) => { (listeners[target][type] = listeners[target][type] || []).push(fn); };
  const document = {
    title: 'Product 1',
    referrer: 'https://search.example.test/',
    visibilityState: 'visible',
    currentScript: { src: `${API}/v1/mercurio.js`, getAttribute: (n) => (n in attrs ? attrs[n] : null) },
    querySelector: () => null,
    addEventListener: on('document'),
    get cookie() { return Object.entries(browser.cookies).map(([k, v]) => `${k}=${v.value}`).join('; '); },
    set cookie(text) {
      const [pair, ...attributes] = text.split(';').map((s) => s.trim());
      const [name, value] = pair.split('=');
      const meta = {};
      attributes.forEach((a) => { const [k, v] = a.split('='); meta[k.toLowerCase()] = v === undefined ? true : v; });
      if (meta['max-age'] !== undefined && Number(meta['max-age']) <= 0) delete browser.cookies[name];
      else browser.cookies[name] = { value, meta };
    },
  };
  const window = {
    document,
    location: { href: url.href, pathname: url.pathname, search: url.search, protocol: url.protocol },
    navigator: {
      userAgent: 'TestBrowser/1.0',
      language: 'fr-FR',
      sendBeacon: (u, blob) => {
        const accept = opts.beaconAccepts === undefined ? true : opts.beaconAccepts;
        beacons.push({ url: u, blob, accepted: accept });
        return accept;
      },
    },
    screen: { width: 1440, height: 900 },
    localStorage: new MemoryStorage(browser.local),
    sessionStorage: new MemoryStorage(browser.session),
    crypto: webcrypto,
    console: { warn: (m) => warnings.push(m), log() {}, error() {} },
    URLSearchParams,
    Blob,
    Date: class extends Date {
      constructor(...a) { if (a.length) super(...a); else super(browser.now); }
      static now() { return browser.now; }
    },
    setTimeout: (fn, ms) => { timers.push({ id: ++timerSeq, at: browser.now + (ms || 0), fn }); return timerSeq; },
    clearTimeout: (id) => { const i = timers.findIndex((t) => t.id === id); if (i >= 0) timers.splice(i, 1); },
    fetch: (u, init) => {
      const call = { url: u, init, body: init && init.body ? JSON.parse(init.body) : null, at: browser.now };
      fetches.push(call);
      const reply = fetchReply(call, fetches.length);
      return reply.networkError ? Promise.reject(new TypeError('Failed to fetch'))
        : Promise.resolve({ status: reply.status, json: () => Promise.resolve(reply.json) });
    },
    addEventListener: on('window'),
  };
  window.window = window;
  window.self = window;
  const context = vm.createContext(window);
  if (opts.embed !== false) {
    // The one-line embed as a site pastes it, then whatever the page calls before the script arrives.
    const inline = EMBED.replace(/^\s*<script>|<\/script>\s*$/g, '')
      .replace('__MERCURIO_API__', API).replace('__MERCURIO_WRITE_KEY__', attrs['data-write-key']);
    const inserted = [];
    document.createElement = () => ({ setAttribute(k, v) { this[k] = v; } });
    document.head = { appendChild: (el) => inserted.push(el) };
    vm.runInContext(inline, context);
    window.__inserted = inserted;
  }
  if (opts.before) vm.runInContext(opts.before, context);
  if (opts.load !== false) vm.runInContext(SNIPPET, context);

  const env = {
    browser, window, context, fetches, beacons, warnings, timers,
    run: (code) => vm.runInContext(code, context),
    loadSnippet: () => vm.runInContext(SNIPPET, context),
    reply: (fn) => { fetchReply = fn; },
    // Advance the clock, firing due timers and letting promise callbacks run in between.
    async tick(ms) {
      const end = browser.now + ms;
      await flushMicrotasks();
      for (;;) {
        timers.sort((a, b) => a.at - b.at || a.id - b.id);
        const next = timers[0];
        if (!next || next.at > end) break;
        timers.shift();
        browser.now = Math.max(browser.now, next.at);
        next.fn();
        await flushMicrotasks();
      }
      browser.now = end;
      await flushMicrotasks();
    },
    events: () => fetches.filter((f) => f.body && f.body.batch).flatMap((f) => f.body.batch),
    fire(target, type, event = {}) { (listeners[target][type] || []).forEach((fn) => fn(event)); },
    async beaconEvents() {
      const all = [];
      for (const b of beacons) all.push(...JSON.parse(await b.blob.text()).batch);
      return all;
    },
  };
  return env;
}

function flushMicrotasks() { return new Promise((resolve) => setImmediate(resolve)); }

module.exports = { load, newBrowser, API, SNIPPET, EMBED };
