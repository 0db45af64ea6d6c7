/**
 * What a device needs to install drover from its server, without a token (install.sh checks the
 * server by the CA hash in its join token, then the binary by SHA256SUMS):
 * - GET /install.sh                    the installer
 * - GET /download/drover-linux-ARCH    a binary (amd64, arm64, arm)
 * - GET /download/SHA256SUMS           the sha256 of each binary present
 */
import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { DroverError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { ExtraRoute } from '../api/server.js';
import { BINARY_ARCHES, binaryName, isBinaryName, type DownloadCatalog } from './catalog.js';

export const DOWNLOAD_PREFIX = '/download/';
const PREFIX_SEGMENTS = 1;

export interface DownloadRouteDeps {
  catalog: DownloadCatalog;
  /** The installer's text (install-script.ts: built in, or read from the repository). */
  installScript: () => Promise<string>;
  logger: Logger;
}

/** 404 with what to do about it. */
class DownloadNotFoundError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 404, reason: 'NotFound', cause });
  }
}

const OFFERED = [...BINARY_ARCHES.map(binaryName), 'SHA256SUMS'].join(', ');

function sendBody(res: ServerResponse, body: string, contentType: string): void {
  res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' });
  res.end(body);
}

export function downloadRoutes(deps: DownloadRouteDeps): ExtraRoute[] {
  const { catalog, logger } = deps;
  return [
    {
      method: 'GET',
      path: '/install.sh',
      access: 'public',
      async handle(_req, res) {
        let script: string;
        try {
          script = await deps.installScript();
        } catch (err) {
          throw new DownloadNotFoundError(`install.sh is not part of this build (${errorMessage(err)})`, err);
        }
        sendBody(res, script, 'text/x-shellscript; charset=utf-8');
      },
    },
    {
      method: 'GET',
      path: DOWNLOAD_PREFIX,
      access: 'public',
      async handle(_req, res, ctx) {
        const rest = ctx.segments.slice(PREFIX_SEGMENTS);
        const name = rest[0] ?? '';
        if (rest.length !== 1 || (name !== 'SHA256SUMS' && !isBinaryName(name))) {
          throw new DownloadNotFoundError(`no download ${JSON.stringify(rest.join('/').slice(0, 64))}: this server offers ${OFFERED}`);
        }
        if (name === 'SHA256SUMS') return sendBody(res, await catalog.sha256sums(), 'text/plain; charset=utf-8');
        const file = await catalog.open(name);
        if (!file) {
          throw new DownloadNotFoundError(`this server has no ${name}: put it in its downloads dir (drover server --downloads-dir; npm run build:binary makes dist/bin/${name})`);
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': file.size, 'content-disposition': `attachment; filename="${name}"`, 'cache-control': 'no-cache' });
        if (file.size === 0) {
          await file.handle.close();
          return void res.end();
        }
        try {
          // Exactly the size announced, from the file opened above (a replacement meanwhile does not mix in).
          await pipeline(file.handle.createReadStream({ start: 0, end: file.size - 1 }), res);
        } catch (err) {
          // A device that hangs up mid-download (a flaky link) is not the server's failure.
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ERR_STREAM_PREMATURE_CLOSE' && code !== 'ECONNRESET' && code !== 'EPIPE') throw err;
          logger.debug({ file: name, err: errorMessage(err) }, 'download cut short by the client');
        }
      },
    },
  ];
}
