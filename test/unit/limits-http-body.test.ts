/**
 * Request bodies as an attacker sends them, against a real HTTP server that reads them the way every API
 * route does (readJson, errors through sendError): oversized (declared or streamed), duplicate keys,
 * the wrong Content-Type. Each is refused with the status and a message naming the cause.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { MAX_BODY_BYTES, readJson, sendError, sendJson } from '../../server/api/respond.js';

interface Reply {
  status: number;
  body: any;
}

describe('http bodies: size, duplicate keys, content type', () => {
  let server: Server;
  let port: number;
  let accepted = 0;

  before(async () => {
    server = createServer((req, res) => {
      readJson(req).then(
        (body) => {
          accepted++;
          sendJson(res, 200, { keys: body && typeof body === 'object' ? Object.keys(body) : [] });
        },
        (err) => sendError(res, err),
      );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  /** Sends `chunks` (chunked when `length` is not given) and reads the reply. */
  const send = (chunks: Array<string | Buffer>, headers: Record<string, string | number> = { 'content-type': 'application/json' }): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers }, (res) => {
        const got: Buffer[] = [];
        res.on('data', (c: Buffer) => got.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(got).toString('utf8')) }));
      });
      req.on('error', reject);
      const pump = (i: number): void => {
        if (i === chunks.length) return void req.end();
        if (req.write(chunks[i]!)) pump(i + 1);
        else req.once('drain', () => pump(i + 1));
      };
      pump(0);
    });

  test('a body over 3 MiB is a 413, whether its Content-Length says so or it is streamed', async () => {
    assert.equal(MAX_BODY_BYTES, 3 * 1024 * 1024);
    const big = Buffer.alloc(4 * 1024 * 1024, 0x20);
    const declared = await send([big], { 'content-type': 'application/json', 'content-length': big.length });
    assert.equal(declared.status, 413);
    assert.equal(declared.body.reason, 'RequestEntityTooLarge');
    assert.match(declared.body.message, /larger than 3145728 bytes/);
    // Chunked: no length up front, 64 KiB at a time.
    const streamed = await send(Array.from({ length: 64 }, () => Buffer.alloc(64 * 1024, 0x20)));
    assert.equal(streamed.status, 413);
    // Just under the limit is fine.
    const under = `{"data":"${'x'.repeat(MAX_BODY_BYTES - 20)}"}`;
    const ok = await send([under]);
    assert.equal(ok.status, 200, JSON.stringify(ok.body).slice(0, 200));
  });

  test('a key named twice in an object is a 400 naming it, at any depth; the same key in sibling objects is fine', async () => {
    const before = accepted;
    const top = await send(['{"kind":"ConfigMap","kind":"Secret"}']);
    assert.equal(top.status, 400);
    assert.match(top.body.message, /duplicate key "kind"/);
    const nested = await send(['{"metadata":{"name":"a","labels":{"app":"web","tier":"x","app":"db"}}}']);
    assert.equal(nested.status, 400);
    assert.match(nested.body.message, /duplicate key "metadata\.labels\.app"/);
    // Spelled differently, the same key: \u0061pp is "app".
    const escaped = await send(['{"metadata":{"labels":{"app":"web","\\u0061pp":"db"}}}']);
    assert.equal(escaped.status, 400);
    assert.match(escaped.body.message, /metadata\.labels\.app/);
    const inArray = await send(['{"spec":{"containers":[{"name":"a","image":"x","name":"b"}]}}']);
    assert.equal(inArray.status, 400);
    assert.match(inArray.body.message, /spec\.containers\[0\]\.name/);
    assert.equal(accepted, before, 'none of them reached a handler');
    const siblings = await send(['{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}],"s":"\\"a\\":1,\\"a\\":2"}']);
    assert.equal(siblings.status, 200);
  });

  test('a body that is not JSON by its Content-Type is a 415; JSON media types and none are read', async () => {
    for (const type of ['text/plain', 'application/yaml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const r = await send(['{"a":1}'], { 'content-type': type });
      assert.equal(r.status, 415, type);
      assert.equal(r.body.reason, 'UnsupportedMediaType');
      assert.match(r.body.message, /application\/json/);
    }
    for (const type of ['application/json', 'application/json; charset=utf-8', 'Application/JSON', 'application/merge-patch+json']) {
      assert.equal((await send(['{"a":1}'], { 'content-type': type })).status, 200, type);
    }
    assert.equal((await send(['{"a":1}'], {})).status, 200, 'no Content-Type');
  });

  test('truncated JSON, bad escapes and an empty body are 400s naming JSON', async () => {
    for (const body of ['{"a":', '{"a":"\\x"}', '', '{"a":"\\ud800"', "{'a':1}", 'NaN']) {
      const r = await send([body]);
      assert.equal(r.status, 400, body);
      assert.match(r.body.message, /not valid JSON/);
    }
  });
});
