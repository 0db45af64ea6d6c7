/**
 * Kept for callers written against the first version of this module; the implementation is
 * src/util/private-fs.ts (0700 dirs, 0600 files written atomically). Import from there.
 */
export { ensurePrivateDir, writePrivateFileAtomic as writePrivateFile } from '../../src/util/private-fs.js';
