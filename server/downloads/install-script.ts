/**
 * The installer a server serves at GET /install.sh: install.sh at the top of the repository. A
 * single-binary build has no repository beside it, so the build puts the script's text in
 * __DROVER_INSTALL_SH__ (esbuild `define`, as __DROVER_VERSION__).
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

declare const __DROVER_INSTALL_SH__: string | undefined;

let cached: Promise<string> | undefined;

/** The text of install.sh: built in, or read once from the repository this module is part of. */
export function installScript(): Promise<string> {
  if (typeof __DROVER_INSTALL_SH__ === 'string') return Promise.resolve(__DROVER_INSTALL_SH__);
  cached ??= readFile(join(repoRoot(), 'install.sh'), 'utf8').catch((err: unknown) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

/** server/downloads/ → the repository (from the sources and from dist/server/downloads/ alike). */
function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const up = join(here, '..', '..');
  return basename(up) === 'dist' ? dirname(up) : up;
}
