#!/usr/bin/env node
// Drives @segment/analytics-node, unchanged, against a Mercurio API.
//
//   node node-driver.js <apiUrl> <writeKey> <anonymousId> <userId> <email> <marker>
//
// As an anonymous visitor: page + track; then identify with a userId and an email trait.
// Every HTTP request the SDK makes and every answer is printed as one JSON line on stdout.
// Exits 1 if any request is answered with a non-2xx status or any event fails delivery.
'use strict'

const { Analytics } = require('@segment/analytics-node')
const sdkVersion = require('@segment/analytics-node/package.json').version

const [apiUrl, writeKey, anonymousId, userId, email, marker] = process.argv.slice(2)
if (!marker) {
  console.error('usage: node node-driver.js <apiUrl> <writeKey> <anonymousId> <userId> <email> <marker>')
  process.exit(2)
}

const log = (record) => process.stdout.write(JSON.stringify(record) + '\n')
let failed = false

const analytics = new Analytics({
  writeKey,
  host: apiUrl,
  path: '/v1/batch',
  flushAt: 10,
  flushInterval: 500,
  maxRetries: 0,
  httpRequestTimeout: 5000,
})

analytics.on('http_request', (req) => log({ kind: 'request', ...req }))
analytics.on('http_response', (res) => {
  log({ kind: 'response', status: res.status, url: res.url, body: res.body, headers: res.headers })
  if (res.status < 200 || res.status > 299) failed = true
})
analytics.on('error', (err) => {
  failed = true
  log({ kind: 'error', code: err.code, reason: String(err.reason || err) })
})

const done = (what) => (err) => {
  if (err) {
    failed = true
    log({ kind: 'delivery_failure', call: what, reason: String(err) })
  }
}

const properties = { marker, sdk: 'analytics-node' }
analytics.page(
  { anonymousId, category: 'Docs', name: 'Pricing', properties: { ...properties, path: '/pricing' } },
  done('page')
)
analytics.track(
  { anonymousId, event: 'Node SDK Tried', properties: { ...properties, plan: 'pro' } },
  done('track')
)
analytics.identify(
  { anonymousId, userId, traits: { email, name: 'Node Visitor', marker } },
  done('identify')
)

analytics
  .closeAndFlush({ timeout: 10000 })
  .then(() => {
    log({ kind: 'done', sdkVersion, failed })
    process.exit(failed ? 1 : 0)
  })
  .catch((err) => {
    log({ kind: 'error', reason: String(err) })
    process.exit(1)
  })
