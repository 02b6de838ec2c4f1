// The browser SDK exactly as an npm user gets it, exposed to the test page.
// Bundled into one file with esbuild by tests/e2e/test_segment_sdks.py:
//   esbuild browser-entry.js --bundle --format=iife --platform=browser --outfile=<tmp>/analytics-next.js
import { AnalyticsBrowser } from '@segment/analytics-next'
import pkg from '@segment/analytics-next/package.json'

window.AnalyticsBrowser = AnalyticsBrowser
window.analyticsNextVersion = pkg.version
