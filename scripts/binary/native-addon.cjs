'use strict';
/**
 * Stands in for node-gyp-build inside the single binary (esbuild aliases it here). classic-level
 * asks node-gyp-build for its compiled addon; a SEA has no node_modules to search, so the addon for
 * this binary's arch is embedded in the bundle (the virtual module below) and written once to a
 * private directory, checked by hash, then loaded with process.dlopen: a .node file can only be
 * loaded from disk.
 */
const { createHash } = require('node:crypto');
const { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } = require('node:fs');
const { homedir, tmpdir } = require('node:os');
const { join } = require('node:path');
const embedded = require('drover:native-addon');

function candidates() {
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  const dirs = [];
  if (process.env.DROVER_NATIVE_DIR) dirs.push(process.env.DROVER_NATIVE_DIR);
  if (uid === 0) dirs.push('/var/lib/drover/native');
  else dirs.push(join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'drover', 'native'));
  dirs.push(join(tmpdir(), `drover-native-${uid}`));
  return dirs;
}

/** A directory only this user can write: another user could otherwise swap the addon before it is loaded. */
function privateDir(dir) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (st.uid !== uid) throw new Error(`${dir} belongs to uid ${st.uid}, not ${uid}`);
  if (st.mode & 0o022) chmodSync(dir, 0o700);
}

function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex');
}

function unpack() {
  const bytes = Buffer.from(embedded.base64, 'base64');
  const digest = sha256(bytes);
  const errors = [];
  for (const dir of candidates()) {
    try {
      privateDir(dir);
      const file = join(dir, `${embedded.name}-${digest.slice(0, 16)}.node`);
      if (!existsSync(file) || sha256(readFileSync(file)) !== digest) {
        const tmp = `${file}.${process.pid}.tmp`;
        writeFileSync(tmp, bytes, { mode: 0o600 });
        renameSync(tmp, file);
      }
      const mod = { exports: {} };
      process.dlopen(mod, file);
      return mod.exports;
    } catch (err) {
      errors.push(`${dir}: ${err && err.message ? err.message : String(err)}`);
      try {
        rmSync(join(dir, `${embedded.name}-${digest.slice(0, 16)}.node.${process.pid}.tmp`), { force: true });
      } catch {
        // Best effort: the next candidate is tried either way.
      }
    }
  }
  throw new Error(`cannot unpack drover's LevelDB addon (set DROVER_NATIVE_DIR to a writable directory on an exec-mounted file system): ${errors.join('; ')}`);
}

let loaded;
module.exports = function nodeGypBuild() {
  return (loaded ??= unpack());
};
