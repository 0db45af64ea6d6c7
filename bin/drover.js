#!/usr/bin/env node
// Runs the compiled entry point (npm run build writes dist/).
import('../dist/src/main.js');
