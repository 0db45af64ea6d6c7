/**
 * A small document several servers may share (the token table, the node credentials, the default join
 * token): read whole, replaced whole only if nobody replaced it since it was read (compare-and-swap on
 * a version), and watched for replacements made elsewhere. On one server (LevelDB) it is a private
 * file in the data dir, written atomically, as it always was; with an etcd datastore it is one etcd
 * key, sealed with the key the server token derives (server/cluster/etcd-doc.ts).
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from '../../src/util/logger.js';
import { tightenFile, writePrivateFileAtomic } from '../../src/util/private-fs.js';

export interface DocVersion {
  /** The document's text; undefined while none was written. */
  text: string | undefined;
  /** Changes with every replacement (etcd: the key's mod revision; 0: absent). A file has none: always 0. */
  version: number;
}

export type ReplaceResult = { ok: true; version: number } | ({ ok: false } & DocVersion);

export interface SharedDoc {
  /** Where it lives, for messages: a file path, or `etcd key K at URLS`. */
  readonly where: string;
  read(): Promise<DocVersion>;
  /** Writes `text` if the document is still at `version`; otherwise changes nothing and returns what is there now. */
  replace(text: string, version: number): Promise<ReplaceResult>;
  /**
   * Calls `onChange` with each newer version written by someone else (never older than one seen by
   * read/replace). A file has no one else: never called.
   */
  watch(onChange: (doc: DocVersion) => void): void;
  close(): Promise<void>;
}

/** The single-server form: a private file (0600 in a 0700 dir), replaced atomically; no versions, no watch. */
export function fileDoc(path: string, logger?: Logger): SharedDoc {
  return {
    where: path,
    async read() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { text: undefined, version: 0 };
        throw err;
      }
      await tightenFile(path, logger);
      return { text, version: 0 };
    },
    async replace(text) {
      await writePrivateFileAtomic(path, text, logger);
      return { ok: true, version: 0 };
    },
    watch() {
      // One server, one writer: nothing changes the file behind its back.
    },
    async close() {},
  };
}

/**
 * `shared` as it is, or, while it has never been written, seeded with `local`'s text: a server moved
 * from its own files onto etcd (`drover datastore migrate`) keeps its tokens and node credentials.
 * Seeded only if no other server wrote the document meanwhile (then that one is returned).
 */
export async function readSeeded(shared: SharedDoc, local: SharedDoc, logger?: Logger): Promise<DocVersion> {
  const d = await shared.read();
  if (d.text !== undefined || d.version !== 0) return d;
  const mine = await local.read();
  if (mine.text === undefined) return d;
  const r = await shared.replace(mine.text, 0);
  if (!r.ok) return r;
  logger?.info({ from: local.where, to: shared.where }, 'seeded a shared document with this data dir\'s file');
  return { text: mine.text, version: r.version };
}
