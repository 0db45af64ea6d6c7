/**
 * A shared document (server/cluster/doc.ts) as one etcd key, sealed (AES-256-GCM, src/util/aead.ts)
 * with the key the server token derives, the key's name as additional data (a value copied under
 * another key does not open). version = the key's mod revision; a replacement is a transaction that
 * compares it (create revision 0 for a first write), so two servers changing the document at once do
 * not lose either change: the second one is told and decides again. Every server watches the key and
 * reads it again whenever its watch (re)connects, so a change made on one server is seen by the others
 * as soon as etcd delivers it, and none is missed across a broken stream.
 */
import type { IKeyValue } from 'etcd3';
import { seal, unseal, type AeadKey } from '../../src/util/aead.js';
import { backoffDelay } from '../../src/util/backoff.js';
import { DroverError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { EtcdStore } from '../store/etcd.js';
import type { DocVersion, ReplaceResult, SharedDoc } from './doc.js';

/** Waits between new watches of a document whose watch etcd ended. */
const WATCH_BACKOFF = { baseMs: 200, maxMs: 5_000 };

type Watcher = Awaited<ReturnType<ReturnType<EtcdStore['etcd']['watch']>['create']>>;

export class EtcdDoc implements SharedDoc {
  readonly where: string;
  private watcher: Watcher | undefined;
  private closed = false;

  constructor(
    private readonly store: EtcdStore,
    private readonly key: string,
    private readonly sealKey: AeadKey,
    private readonly logger: Logger,
  ) {
    this.where = `etcd key ${key} at ${store.endpoints.join(',')}`;
  }

  private decode(kv: IKeyValue | undefined): DocVersion {
    if (!kv) return { text: undefined, version: 0 };
    let text: string;
    try {
      text = unseal((id) => (id === this.sealKey.id ? this.sealKey.key : undefined), kv.value.toString('utf8'), this.key).toString('utf8');
    } catch (err) {
      throw new DroverError(`${this.where} does not open with the server token: ${errorMessage(err)}`, { cause: err });
    }
    return { text, version: Number(kv.mod_revision) };
  }

  read(): Promise<DocVersion> {
    return this.store.call(`reading ${this.key}`, async (o) => this.decode((await this.store.etcd.kv.range({ key: Buffer.from(this.key) }, o)).kvs[0]));
  }

  replace(text: string, version: number): Promise<ReplaceResult> {
    const key = Buffer.from(this.key);
    const compare = version === 0 ? { key, target: 'Create' as const, result: 'Equal' as const, create_revision: 0 } : { key, target: 'Mod' as const, result: 'Equal' as const, mod_revision: version };
    const value = Buffer.from(seal(this.sealKey, Buffer.from(text, 'utf8'), this.key), 'utf8');
    return this.store.call(`writing ${this.key}`, async (o) => {
      const r = await this.store.etcd.kv.txn({ compare: [compare], success: [{ request_put: { key, value } }], failure: [{ request_range: { key } }] }, o);
      if (r.succeeded) return { ok: true as const, version: Number(r.header.revision) };
      return { ok: false as const, ...this.decode(r.responses[0]?.response_range?.kvs[0]) };
    });
  }

  watch(onChange: (doc: DocVersion) => void): void {
    const deliver = (d: DocVersion) => {
      if (!this.closed) onChange(d);
    };
    const reread = () => {
      // A change made while the stream was down came with no event: the key is read whole instead.
      this.read().then(deliver, (err: unknown) => this.logger.warn({ key: this.key, err: errorMessage(err) }, 'cannot read a shared document after its watch connected'));
    };
    const start = (attempt: number): void => {
      if (this.closed) return;
      const again = (why: unknown) => {
        const ms = backoffDelay(attempt, WATCH_BACKOFF);
        this.logger.warn({ key: this.key, err: errorMessage(why), retryMs: ms }, 'watch of a shared document ended; watching again');
        setTimeout(() => start(attempt + 1), ms).unref();
      };
      this.store.etcd
        .watch()
        .key(this.key)
        .create()
        .then((w) => {
          if (this.closed) {
            void w.cancel();
            return;
          }
          this.watcher = w;
          w.on('connected', () => {
            attempt = 0;
            reread();
          });
          w.on('put', (kv) => {
            try {
              deliver(this.decode(kv));
            } catch (err) {
              this.logger.error({ key: this.key, err: errorMessage(err) }, 'ignored a change of a shared document');
            }
          });
          w.on('delete', (kv) => deliver({ text: undefined, version: Number(kv.mod_revision) }));
          // etcd cancelled the watch (its resume revision was compacted away while the stream was down): the
          // client does not resume a cancelled watch by itself, so a new one starts (and reads the key first).
          w.on('error', (err) => {
            if (this.watcher === w) this.watcher = undefined;
            again(err);
          });
          // Anything written between the first read and the watch's start.
          reread();
        }, again);
    };
    start(0);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.watcher?.cancel();
  }
}
