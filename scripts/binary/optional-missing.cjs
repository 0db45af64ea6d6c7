'use strict';
// Optional modules the bundle's libraries try to load (ws: bufferutil, utf-8-validate; debug:
// supports-color; systeminformation: macOS sensors): the binary ships none, and each library falls
// back on MODULE_NOT_FOUND. Bundled as this stub so the SEA's built-ins-only require() is never asked.
const err = new Error('optional native module not bundled in the drover binary');
err.code = 'MODULE_NOT_FOUND';
throw err;
