import { startTestServer } from './helpers/cluster.js';
import { writeFileSync } from 'node:fs';
const t = await startTestServer();
writeFileSync('/tmp/drover-dbg-env', `export DROVER_SERVER=${t.apiUrl} DROVER_TOKEN=${t.token} DROVER_CONFIG=/tmp/nonexist\n`);
await new Promise(r => setTimeout(r, 120000));
await t.stop();
