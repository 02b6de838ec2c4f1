/*! mercurio.js 1.0.0 | Mercurio website tracking | Segment-compatible: page, track, identify, alias */
(function (w, d) {
  'use strict';
  var stub = w.mercurio;
  if (stub && stub.loaded) return;
  var VERSION = '1.0.0', ANON = 'mercurio_anon', USER = 'mercurio_user', QUEUE = 'mercurio_queue',
    MCID = 'mercurio_mcid', CAMPAIGN = 'mercurio_campaign', BATCH_SIZE = 20, FLUSH_MS = 1000,
    MAX_TRIES = 10, MAX_BACKOFF_MS = 30000, YEAR_S = 31536000;

  var el = d.currentScript || d.querySelector('script[data-write-key][src*="/v1/mercurio.js"]');
  var attr = function (n) { return el && el.getAttribute(n); };
  var src = (el && el.src) || '', at = src.indexOf('/v1/mercurio.js');
  var api = (attr('data-api') || (at > 0 ? src.slice(0, at) : '')).replace(/\/$/, '');
  var writeKey = attr('data-write-key');
  var autoPage = attr('data-auto-page') !== 'false';
  var consented = !/^(pending|denied|false)$/.test(attr('data-consent') || '');
  var warn = function (m) { if (w.console) console.warn('[mercurio] ' + m); };

  var queue = [], inflight = null, timer = null, sending = false, pageSent = false;
  var anonId = null, userId = null, campaign = null, clickId = null;

  // ---- storage: every write goes through here and happens only with consent ----
  function store(kind) { try { return w[kind]; } catch (e) { return null; } }
  function get(kind, k) { var s = store(kind); try { return s && s.getItem(k); } catch (e) { return null; } }
  function put(kind, k, v) {
    var s = store(kind);
    if (!consented || !s) return;
    try { v == null ? s.removeItem(k) : s.setItem(k, v); } catch (e) { /* full or blocked */ }
  }
  function drop(kind, k) { var s = store(kind); try { if (s) s.removeItem(k); } catch (e) { /* blocked */ } }
  function readCookie(k) {
    var m = d.cookie.match(new RegExp('(?:^|; )' + k + '=([^;]*)'));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function writeCookie(k, v, maxAge) {
    d.cookie = k + '=' + encodeURIComponent(v) + '; Max-Age=' + maxAge + '; Path=/; SameSite=Lax' +
      (location.protocol === 'https:' ? '; Secure' : '');
  }

  function uuid() { // v4, from the browser's cryptographic random generator
    return '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, function (c) {
      return (c ^ (w.crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16);
    });
  }

  function anonymousId() {
    if (!consented) return null;
    if (!anonId) {
      var c = readCookie(ANON);
      anonId = c && /^[\w-]{1,64}$/.test(c) ? c : uuid();
      writeCookie(ANON, anonId, YEAR_S); // set or refreshed once per page: a sliding one-year expiry
    }
    return anonId;
  }

  // Campaign (utm_*) and email click id (mcid) of the landing URL, kept for the session.
  function readLanding() {
    var q = new URLSearchParams(location.search), c = {}, any = false;
    ['name:campaign', 'source', 'medium', 'term', 'content'].forEach(function (f) {
      var p = f.split(':'), v = q.get('utm_' + (p[1] || p[0]));
      if (v) { c[p[0]] = v; any = true; }
    });
    if (any) campaign = c;
    if (q.get('mcid')) clickId = q.get('mcid');
  }
  function keepSession() {
    if (campaign) put('sessionStorage', CAMPAIGN, JSON.stringify(campaign));
    if (clickId) put('sessionStorage', MCID, clickId);
  }
  function loadState() {
    userId = get('localStorage', USER);
    try { campaign = JSON.parse(get('sessionStorage', CAMPAIGN)) || null; } catch (e) { campaign = null; }
    clickId = get('sessionStorage', MCID);
    readLanding();
    keepSession();
    anonymousId();
    var saved = get('localStorage', QUEUE);
    drop('localStorage', QUEUE);
    if (saved) {
      try {
        var seen = {};
        queue.concat(inflight ? inflight.events : []).forEach(function (e) { seen[e.messageId] = 1; });
        JSON.parse(saved).forEach(function (e) {
          if (e && e.messageId && !seen[e.messageId]) { seen[e.messageId] = 1; queue.push(e); }
        });
      } catch (e) { /* corrupt: ignore */ }
    }
  }

  function pageInfo() {
    var url = location.href.split('#')[0];
    return { path: location.pathname, url: url, referrer: d.referrer, title: d.title, search: location.search };
  }
  function copy(o) {
    if (o == null || typeof o !== 'object') return {};
    try { return JSON.parse(JSON.stringify(o)); } catch (e) { warn('properties are not serialisable'); return {}; }
  }

  function enqueue(type, fields) {
    if (!consented) return; // no consent: the call is dropped, nothing is stored or sent
    if (!writeKey || !api) return; // already warned at load
    var ctx = {
      library: { name: 'mercurio.js', version: VERSION },
      page: pageInfo(),
      userAgent: navigator.userAgent,
      locale: navigator.language,
      screen: { width: w.screen ? screen.width : 0, height: w.screen ? screen.height : 0 }
    };
    try { ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* old browser */ }
    if (campaign) ctx.campaign = campaign;
    if (clickId) ctx.clickId = clickId;
    var e = { type: type, messageId: uuid(), timestamp: new Date().toISOString(), anonymousId: anonymousId() };
    if (userId) e.userId = userId;
    for (var k in fields) e[k] = fields[k];
    e.context = ctx;
    queue.push(e);
    if (queue.length >= BATCH_SIZE && !inflight) flush(); else later();
  }
  function later() { if (!timer && !sending && (queue.length || inflight)) timer = setTimeout(flush, FLUSH_MS); }

  // ---- delivery: one request at a time; back-off and retry on network errors, 429 and 5xx ----
  function body(events) {
    return JSON.stringify({ writeKey: writeKey, sentAt: new Date().toISOString(), batch: events });
  }
  function flush() {
    clearTimeout(timer); timer = null;
    if (sending || !consented) return;
    if (!inflight) {
      if (!queue.length) return;
      inflight = { events: queue.splice(0, BATCH_SIZE), tries: 0 };
    }
    var batch = inflight, b = body(batch.events);
    sending = true;
    fetch(api + '/v1/batch', { // text/plain: a CORS simple request, no preflight
      method: 'POST', body: b, keepalive: new Blob([b]).size < 60000, credentials: 'omit',
      headers: { 'Content-Type': 'text/plain' }
    }).then(function (r) { return r.status; }, function () { return 0; }).then(function (status) {
      sending = false;
      if (inflight !== batch) return; // dropped meanwhile (consent withdrawn, sent by beacon)
      if (status && status < 400) return done();
      if (status >= 400 && status < 500 && status !== 429) {
        warn('the server refused ' + batch.events.length + ' event(s) (HTTP ' + status + ')');
        return done();
      }
      if (++batch.tries >= MAX_TRIES) {
        warn('giving up on ' + batch.events.length + ' event(s) after ' + MAX_TRIES + ' attempts');
        return done();
      }
      var wait = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, batch.tries - 1));
      timer = setTimeout(flush, wait * (0.75 + Math.random() / 2)); // +/- 25% jitter
    });
  }
  function done() {
    inflight = null;
    if (queue.length) flush();
  }

  // Leaving the page: what waits goes by sendBeacon; what is in flight, waits for a retry or
  // is refused by the beacon is also kept for the next page (the server de-duplicates).
  function onHide() {
    if (!consented) return;
    clearTimeout(timer); timer = null;
    var keep = inflight ? inflight.events.slice() : [];
    var rest = (inflight && !sending ? inflight.events : []).concat(queue);
    if (!sending) inflight = null;
    queue = [];
    while (rest.length) {
      var chunk = rest.splice(0, BATCH_SIZE), ok = false;
      try { ok = navigator.sendBeacon(api + '/v1/batch', new Blob([body(chunk)], { type: 'text/plain' })); } catch (e) { /* ok=false */ }
      if (!ok) { keep = keep.concat(chunk); queue = queue.concat(chunk); }
    }
    if (keep.length) {
      var prev = [];
      try { prev = JSON.parse(get('localStorage', QUEUE)) || []; } catch (e) { /* corrupt */ }
      put('localStorage', QUEUE, JSON.stringify(prev.concat(keep).slice(-200)));
    }
  }
  function onShow() { // back from the bfcache or from another tab: take back what was parked
    if (consented) { loadState(); later(); }
  }

  // One channel's consent on the profile (a `Consent Updated` track); a denial leaves at once.
  function recordConsent(channel, granted, opts) {
    var p = { channel: channel, status: granted ? 'granted' : 'denied' };
    if (opts && opts.source) p.source = String(opts.source);
    enqueue('track', { event: 'Consent Updated', properties: p });
    if (!granted) onHide();
  }

  // On-site content (GET /v1/content) into an element.
  function content(slot, target) {
    var el = typeof target == 'string' ? d.querySelector(target) : target, a = anonymousId(), e = encodeURIComponent;
    if (!writeKey || !api || !slot || !(a || userId)) return Promise.resolve(null);
    return fetch(api + '/v1/content?slot=' + e(slot) + '&writeKey=' + e(writeKey) + (a ? '&anonymousId=' + e(a) : '') +
      (userId ? '&userId=' + e(userId) : '') + '&locale=' + e(navigator.language || ''), { credentials: 'omit' })
      .then(function (r) { return r.status == 200 && r.json(); })
      .then(function (c) {
        if (c && el) { el.innerHTML = c.html; el.setAttribute('data-mercurio-variant', c.variant); }
        return c || null;
      }, function () {});
  }

  function maybeAutoPage() {
    if (autoPage && consented && !pageSent) { pageSent = true; api_.page(); }
  }

  var api_ = {
    loaded: true,
    page: function (name, properties) {
      if (name && typeof name === 'object') { properties = name; name = null; }
      var props = pageInfo(), extra = copy(properties);
      for (var k in extra) props[k] = extra[k];
      if (name) props.name = String(name);
      var f = { properties: props };
      if (name) f.name = String(name);
      enqueue('page', f);
    },
    track: function (event, properties) {
      if (typeof event !== 'string' || !event.trim()) return warn('track needs an event name');
      enqueue('track', { event: event, properties: copy(properties) });
    },
    identify: function (id, traits) {
      if (id && typeof id === 'object') { traits = id; id = null; }
      if (id != null && id !== '' && consented) {
        userId = String(id);
        put('localStorage', USER, userId);
      }
      enqueue('identify', { traits: copy(traits) });
    },
    alias: function (id, previousId) {
      if (id == null || id === '') return warn('alias needs a userId');
      enqueue('alias', { userId: String(id), previousId: String(previousId || userId || anonymousId()) });
    },
    reset: function () {
      anonId = userId = clickId = campaign = null;
      drop('localStorage', USER);
      drop('sessionStorage', MCID);
      drop('sessionStorage', CAMPAIGN);
      writeCookie(ANON, '', 0);
      if (consented) anonymousId();
    },
    consent: function (granted, a, b) {
      if (typeof granted === 'string') return recordConsent(granted, a, b);
      if (granted && !consented) {
        consented = true;
        loadState();
        maybeAutoPage();
      } else if (!granted) {
        consented = false;
        clearTimeout(timer); timer = null;
        queue = []; inflight = null;
        api_.reset();
        drop('localStorage', QUEUE);
      }
    },
    anonymousId: anonymousId,
    content: content,
    ready: function (cb) { try { cb(api_); } catch (e) { warn('ready callback failed: ' + e); } }
  };

  if (!writeKey || !api) warn('no data-write-key or API address on the script tag: nothing will be sent');
  readLanding();
  if (consented) loadState();
  var calls = Array.isArray(stub) ? stub.slice() : [];
  if (stub) for (var m in api_) stub[m] = api_[m]; // references kept to the stub keep working
  w.mercurio = api_;
  // Replay the calls made before the script arrived. Unless the page manages consent in the
  // queue, the automatic page view comes first (like analytics.js).
  if (!calls.some(function (c) { return c[0] === 'consent'; })) maybeAutoPage();
  calls.forEach(function (c) {
    if (api_[c[0]]) api_[c[0]].apply(api_, c.slice(1));
  });
  maybeAutoPage();
  later();

  w.addEventListener('pagehide', onHide);
  w.addEventListener('pageshow', function (e) { if (e.persisted) onShow(); });
  d.addEventListener('visibilitychange', function () { d.visibilityState === 'hidden' ? onHide() : onShow(); });
})(window, document);
