/**
 * A process that fetches one image (agent/images/fetch.ts) and prints its progress, for tests that
 * kill it with SIGKILL mid-transfer (an agent that dies without a chance to clean up). Configured by
 * the JSON in DROVER_TEST_FETCH: { baseUrl, tls, stateDir, digest, bytesPerSecond }.
 */
import { ImageFetcher, TokenBucket } from '../../agent/images/fetch.js';

const c = JSON.parse(process.env.DROVER_TEST_FETCH ?? '{}') as { baseUrl: string; tls: { ca: string; cert: string; key: string }; stateDir: string; digest: string; bytesPerSecond: number };
const f = new ImageFetcher({ baseUrl: c.baseUrl, tls: c.tls, stateDir: c.stateDir, bucket: new TokenBucket(c.bytesPerSecond) });
const r = await f.fetch({ digest: c.digest }, { onProgress: (p) => process.stdout.write(`progress ${p.bytes} ${p.total}\n`) });
process.stdout.write(`done ${r.path}\n`);
f.close();
