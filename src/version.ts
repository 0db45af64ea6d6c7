/**
 * drover's version, in one place for server, agent and CLI (without loading the CLI): package.json's
 * version, and the kubectl-shaped version info served at GET /version.
 */
import { readFileSync } from 'node:fs';
import { arch, platform } from 'node:process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTRACT_VERSION } from './contract/topics.js';
import { errorMessage } from './util/errors.js';

// Set by the single-binary build (scripts/binary/build.ts): a binary has no package.json to read.
declare const __DROVER_VERSION__: string | undefined;
declare const __DROVER_COMMIT__: string | undefined;
declare const __DROVER_BUILD_DATE__: string | undefined;

let cached: string | undefined;

/**
 * drover's version: package.json's, the one place it is written. Found by walking up from this file,
 * so it is the same from the sources (tsx) and from dist/ (compiled).
 */
export function droverVersion(): string {
  if (cached) return cached;
  if (typeof __DROVER_VERSION__ === 'string') return (cached = __DROVER_VERSION__);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'drover' && typeof pkg.version === 'string') return (cached = pkg.version);
    } catch (err) {
      // No package.json at this level (or not ours): keep walking up.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read drover's package.json in ${dir}: ${errorMessage(err)}`, { cause: err });
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find drover\'s package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/** Go's GOARCH names, which kubectl's `platform` uses. */
const GOARCH: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm' };

/** The shape of kubectl's version info (`kubectl version -o json`), with drover's own versions added. */
export interface VersionInfo {
  major: string;
  minor: string;
  gitVersion: string;
  gitCommit: string;
  gitTreeState: string;
  buildDate: string;
  goVersion: string;
  compiler: string;
  platform: string;
  drover: { version: string; contract: number; node: string };
}

/**
 * The Kubernetes API level drover's API answers as (what kubectl v1.32 was tested against): kubectl
 * compares it with its own minor version and warns past a skew of one, so drover's own 0.x would make
 * every `kubectl version` warn. drover's version rides in the build metadata, as k3s's does (v1.32.3+k3s1).
 */
export const KUBE_API_LEVEL = { major: '1', minor: '32' } as const;

export function versionInfo(version = droverVersion()): VersionInfo {
  return {
    major: KUBE_API_LEVEL.major,
    minor: KUBE_API_LEVEL.minor,
    gitVersion: `v${KUBE_API_LEVEL.major}.${KUBE_API_LEVEL.minor}.0+drover-${version}`,
    gitCommit: typeof __DROVER_COMMIT__ === 'string' ? __DROVER_COMMIT__ : '',
    gitTreeState: '',
    buildDate: typeof __DROVER_BUILD_DATE__ === 'string' ? __DROVER_BUILD_DATE__ : '',
    goVersion: '',
    compiler: 'node',
    platform: `${platform}/${GOARCH[arch] ?? arch}`,
    drover: { version, contract: CONTRACT_VERSION, node: process.version },
  };
}
