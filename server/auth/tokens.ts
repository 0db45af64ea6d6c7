import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { objectMeta } from '../../src/api/meta.js';
import { DroverError, TokenRefusedError, ValidationError, type FieldCause, type TokenRefusal } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { ensurePrivateDir, tightenFile } from '../../src/util/private-fs.js';
import type { Role, TokenInfo } from '../../src/api/tokens.js';
import { fileDoc, readSeeded, type DocVersion, type SharedDoc } from '../cluster/doc.js';

export type { Role, TokenInfo };
export const ROLES: readonly Role[] = ['admin', 'view'];

export interface ApiIdentity {
  kind: 'api';
  tokenId: string;
  role: Role;
  description?: string;
}

/** The id the bootstrap admin token (DATA_DIR/admin-token) carries in identities and the audit log. */
export const BOOTSTRAP_ADMIN_ID = 'bootstrap-admin';

/** Longest lifetime a token may be given (10 years): beyond that "no --ttl" says what is meant. */
export const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;
export const MAX_USES = 1_000_000;
export const MAX_DESCRIPTION = 256;
/**
 * A token that can no longer be used (revoked, expired, used up) stays listed this long, so `token list`
 * explains a refused join, then goes: a fleet that makes one join token per device must not carry them
 * all in every write of the file forever.
 */
export const KEEP_DEAD_TOKENS_MS = 7 * 24 * 3600 * 1000;

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const ID_LENGTH = 6;
/** `<id>.<secret>`: the id is a lookup key (shown in `token list` and the audit log), the secret is 192 random bits. */
const TOKEN_FORMAT = /^([a-z0-9]{6})\.([A-Za-z0-9_-]{32})$/;

// No word boundaries: a token glued to other text (a field named "bogus<id>.<secret>") is cut too. The id
// is the six characters before the dot, the secret the 32 after it (longer runs are cut at 32 as well).
const TOKEN_ANYWHERE = /([a-z0-9]{6})\.[A-Za-z0-9_-]{32}/g;

/** `text` with every "<id>.<secret>" token in it cut to "<id>.<redacted>": for logs and audit records built from request text. */
export function maskTokens(text: string): string {
  return text.replace(TOKEN_ANYWHERE, '$1.<redacted>');
}

const storedToken = z.strictObject({
  id: z.string().regex(/^[a-z0-9]{6}$/),
  type: z.enum(['join', 'api']),
  role: z.enum(['admin', 'view']).optional(),
  /** sha256 hex of the secret part: the secret itself is never written anywhere by the server. */
  secretSha256: z.string().regex(/^[0-9a-f]{64}$/),
  description: z.string().optional(),
  createdAt: z.string(),
  expiresAt: z.string().optional(),
  usesLeft: z.number().int().nonnegative().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  revoked: z.boolean(),
  revokedAt: z.string().optional(),
  /** When the last use of a join token was taken. */
  usedUpAt: z.string().optional(),
});
type StoredToken = z.infer<typeof storedToken>;
const tokenFile = z.strictObject({ version: z.literal(1), tokens: z.array(storedToken) });

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function randomId(): string {
  // Rejection sampling keeps the 36 letters equally likely.
  let id = '';
  while (id.length < ID_LENGTH) {
    for (const b of randomBytes(16)) {
      if (b < 252 && id.length < ID_LENGTH) id += ID_ALPHABET[b % 36];
    }
  }
  return id;
}

function newSecret(): string {
  return randomBytes(24).toString('base64url');
}

/** Validates the options every token kind shares, naming each bad field. */
function checkCommon(o: { ttlSeconds?: number; description?: string }, causes: FieldCause[]): void {
  if (o.ttlSeconds !== undefined && (!Number.isInteger(o.ttlSeconds) || o.ttlSeconds < 1 || o.ttlSeconds > MAX_TTL_SECONDS)) {
    causes.push({ field: 'ttl', message: `must be a whole number of seconds from 1 to ${MAX_TTL_SECONDS} (10 years), got ${String(o.ttlSeconds)}` });
  }
  if (o.description !== undefined) {
    // A description is printed in tables and written to logs: one printable line.
    if (typeof o.description !== 'string' || o.description.length > MAX_DESCRIPTION || /[\p{Cc}]/u.test(o.description)) {
      causes.push({ field: 'description', message: `must be one line of at most ${MAX_DESCRIPTION} printable characters` });
    }
  }
}

/** Where the bootstrap admin token lives in a data dir. */
export const ADMIN_TOKEN_FILE = 'admin-token';

/** A change that lost to another server's this many times in a row is given up (a table that hot is a bug). */
const MAX_REPLACE_ATTEMPTS = 20;

/** Reads the bootstrap admin token, creating it (0600) at first start; kept across restarts. */
export async function loadOrCreateAdminToken(path: string, logger: Logger): Promise<string> {
  try {
    const t = (await readFile(path, 'utf8')).trim();
    if (t) {
      await tightenFile(path, logger);
      return t;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await writeFile(path, `${newSecret()}\n`, { mode: 0o600, flag: 'wx' }).catch((err) => {
    // Lost a race with another start: use the winner's token.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  });
  return (await readFile(path, 'utf8')).trim();
}

export type ApiCheck = { identity: ApiIdentity } | { refused: TokenRefusal; tokenId?: string };

/**
 * Join tokens (an agent's first contact: limited uses and lifetime, labels for the node) and API
 * tokens (a role for the HTTP API, later MQTT commands). Only sha256 hashes of the secrets are kept,
 * in DATA_DIR/auth/tokens.json (0600 in a 0700 dir), so a copy of the data dir does not hand out
 * tokens; with several servers on one etcd, in one shared document there (server/cluster/doc.ts), so
 * a token made on one server works on every one. Writes are serialised and atomic; the in-memory table
 * changes only after the document did, so a failed write refuses the operation instead of diverging
 * from what is stored. A change another server made first is read and the change decided again on it.
 */
export class TokenStore {
  private tokens: StoredToken[] = [];
  /** The document's version the table was read at (compare-and-swap of the next write). */
  private version = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly adminHash: Buffer;

  private constructor(
    private readonly doc: SharedDoc,
    readonly adminToken: string,
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {
    this.adminHash = sha256(adminToken);
  }

  /**
   * Persists under DATA_DIR/auth/ (0700 dir, 0600 files), secrets stored only as sha256 hashes; `doc`:
   * the table kept elsewhere instead (one etcd key every server shares), followed as it changes.
   */
  static async open(opts: { dataDir: string; logger: Logger; now?: () => number; doc?: SharedDoc }): Promise<TokenStore> {
    await ensurePrivateDir(opts.dataDir, opts.logger);
    const dir = join(opts.dataDir, 'auth');
    await ensurePrivateDir(dir, opts.logger);
    const adminToken = await loadOrCreateAdminToken(join(opts.dataDir, ADMIN_TOKEN_FILE), opts.logger);
    const file = fileDoc(join(dir, 'tokens.json'), opts.logger);
    const store = new TokenStore(opts.doc ?? file, adminToken, opts.logger, opts.now ?? Date.now);
    store.install(opts.doc ? await readSeeded(opts.doc, file, opts.logger) : await file.read());
    store.doc.watch((d) => store.followed(d));
    return store;
  }

  /** Makes `d` the table (throws, naming the document, when it cannot be read). */
  private install(d: DocVersion): void {
    this.tokens = d.text === undefined ? [] : this.parse(d.text);
    this.version = d.version;
  }

  /** Reads the table again (a shared one may have changed on another server since the watch last said). */
  async refresh(): Promise<void> {
    this.followed(await this.doc.read());
  }

  /** A version another server wrote: taken if newer; a damaged one is logged and the table kept. */
  private followed(d: DocVersion): void {
    if (d.version <= this.version) return;
    try {
      this.install(d);
      this.logger.debug({ version: d.version, tokens: this.tokens.length }, 'token table changed on another server');
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'ignored a change of the token table');
    }
  }

  private parse(text: string): StoredToken[] {
    const where = this.doc.where;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new DroverError(`${where} is not valid JSON; fix or remove it (removing it revokes every join and API token)`, { cause: err });
    }
    const r = tokenFile.safeParse(parsed);
    if (!r.success) {
      throw new DroverError(`${where} is not a token file this version understands: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`, { cause: r.error });
    }
    return r.data.tokens;
  }

  /**
   * Runs `change` on a copy of the table, writes it, then makes it current; one change at a time. When
   * another server changed the table meanwhile, its version is taken and `change` runs again on it.
   */
  private mutate<T>(change: (tokens: StoredToken[]) => T): Promise<T> {
    const run = async () => {
      for (let attempt = 1; ; attempt++) {
        const now = this.now();
        const next = this.tokens.filter((t) => !this.gone(t, now)).map((t) => ({ ...t }));
        const result = change(next);
        const r = await this.doc.replace(JSON.stringify({ version: 1, tokens: next }, null, 1) + '\n', this.version);
        if (r.ok) {
          // A newer version may have come through the watch while this write was on its way.
          if (r.version >= this.version) {
            this.tokens = next;
            this.version = r.version;
          }
          return result;
        }
        this.install(r);
        if (attempt >= MAX_REPLACE_ATTEMPTS) throw new DroverError(`${this.doc.where}: changed by other servers ${attempt} times in a row while this change was being written; try again`);
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private iso(ms: number): string {
    return new Date(ms).toISOString();
  }

  /** Dead (revoked, expired, used up) for longer than KEEP_DEAD_TOKENS_MS. */
  private gone(t: StoredToken, now: number): boolean {
    const deadSince = [t.revokedAt, t.expiresAt, t.usedUpAt].map((x) => (x ? Date.parse(x) : Infinity)).filter((x) => x <= now);
    return deadSince.length > 0 && now - Math.min(...deadSince) >= KEEP_DEAD_TOKENS_MS;
  }

  private expired(t: StoredToken): boolean {
    return t.expiresAt !== undefined && this.now() >= Date.parse(t.expiresAt);
  }

  private uniqueId(tokens: StoredToken[]): string {
    for (;;) {
      const id = randomId();
      if (id !== BOOTSTRAP_ADMIN_ID && !tokens.some((t) => t.id === id)) return id;
    }
  }

  async createJoin(o: { ttlSeconds?: number; uses?: number; labels?: Record<string, string>; description?: string }): Promise<{ id: string; token: string }> {
    const causes: FieldCause[] = [];
    checkCommon(o, causes);
    if (o.uses !== undefined && (!Number.isInteger(o.uses) || o.uses < 1 || o.uses > MAX_USES)) {
      causes.push({ field: 'uses', message: `must be a whole number from 1 to ${MAX_USES}, got ${String(o.uses)}` });
    }
    if (o.labels !== undefined) {
      const r = objectMeta.shape.labels.safeParse(o.labels);
      if (!r.success) for (const i of r.error.issues) causes.push({ field: ['labels', ...i.path.map(String)].join('.'), message: i.message });
    }
    if (causes.length) throw new ValidationError(causes, 'invalid join token');
    const created = await this.add('join', o, {
      ...(o.uses !== undefined ? { usesLeft: o.uses } : {}),
      ...(o.labels && Object.keys(o.labels).length ? { labels: { ...o.labels } } : {}),
    });
    this.logger.info({ tokenId: created.id, type: 'join', ttlSeconds: o.ttlSeconds, uses: o.uses }, 'join token created');
    return created;
  }

  /** Stores a new token's hash; the secret exists only in the returned token. */
  private async add(type: 'join' | 'api', o: { ttlSeconds?: number; description?: string }, extra: Partial<StoredToken>): Promise<{ id: string; token: string }> {
    const secret = newSecret();
    const id = await this.mutate((tokens) => {
      const id = this.uniqueId(tokens);
      const now = this.now();
      tokens.push({
        id,
        type,
        secretSha256: sha256(secret).toString('hex'),
        ...(o.description !== undefined ? { description: o.description } : {}),
        createdAt: this.iso(now),
        ...(o.ttlSeconds !== undefined ? { expiresAt: this.iso(now + o.ttlSeconds * 1000) } : {}),
        ...extra,
        revoked: false,
      });
      return id;
    });
    return { id, token: `${id}.${secret}` };
  }

  /** The stored token `token` names, if its secret matches, else why not (constant time in the secret). */
  private find(token: string, type: 'join' | 'api', opts: { allowUsedUp?: boolean } = {}): { token: StoredToken } | { refused: TokenRefusal; tokenId?: string } {
    const m = TOKEN_FORMAT.exec(token);
    if (!m) return { refused: 'malformed' };
    const [, id, secret] = m as unknown as [string, string, string];
    const t = this.tokens.find((x) => x.id === id);
    const hash = sha256(secret);
    // Compared even for an unknown id, so the answer's timing does not tell ids apart.
    const ok = timingSafeEqual(hash, t ? Buffer.from(t.secretSha256, 'hex') : this.adminHash);
    if (!t || !ok) return { refused: 'unknown' };
    if (t.type !== type) return { refused: 'wrong type', tokenId: id };
    if (t.revoked) return { refused: 'revoked', tokenId: id };
    if (this.expired(t)) return { refused: 'expired', tokenId: id };
    if (!opts.allowUsedUp && t.usesLeft !== undefined && t.usesLeft <= 0) return { refused: 'used up', tokenId: id };
    return { token: t };
  }

  /**
   * Checks a join token without spending a use: for a caller that must prove it holds one before
   * anything costly is done (parsing its CSR), and spends it with redeemJoin only if the join goes
   * ahead. `allowUsedUp`: a used-up token still counts (a device repeating a join whose answer was
   * lost, proven by its key); expired and revoked ones never do. Throws TokenRefusedError naming why.
   */
  checkJoin(token: string, opts: { allowUsedUp?: boolean } = {}): { id: string; labels: Record<string, string>; usedUp: boolean } {
    const f = this.find(token, 'join', opts);
    if ('refused' in f) throw new TokenRefusedError(f.tokenId ? `join token ${f.tokenId}` : 'join token', f.refused);
    return { id: f.token.id, labels: { ...(f.token.labels ?? {}) }, usedUp: f.token.usesLeft !== undefined && f.token.usesLeft <= 0 };
  }

  /** Checks and consumes one use. Throws TokenRefusedError (an UnauthorizedError) whose message names why. */
  async redeemJoin(token: string): Promise<{ id: string; labels: Record<string, string> }> {
    // Checked again inside the serialised change: two agents racing for the last use cannot both win.
    return this.mutate((tokens) => {
      const f = this.find(token, 'join');
      if ('refused' in f) throw new TokenRefusedError(f.tokenId ? `join token ${f.tokenId}` : 'join token', f.refused);
      const t = tokens.find((x) => x.id === f.token.id)!;
      if (t.usesLeft !== undefined) {
        t.usesLeft -= 1;
        if (t.usesLeft === 0) t.usedUpAt = this.iso(this.now());
      }
      return { id: t.id, labels: { ...(t.labels ?? {}) } };
    }).then((r) => {
      this.logger.info({ tokenId: r.id }, 'join token redeemed');
      return r;
    });
  }

  async createApi(o: { role: Role; ttlSeconds?: number; description?: string }): Promise<{ id: string; token: string }> {
    const causes: FieldCause[] = [];
    checkCommon(o, causes);
    if (!ROLES.includes(o.role)) causes.push({ field: 'role', message: `must be one of ${ROLES.join(', ')}, got ${JSON.stringify(o.role)}` });
    if (causes.length) throw new ValidationError(causes, 'invalid API token');
    const created = await this.add('api', o, { role: o.role });
    this.logger.info({ tokenId: created.id, type: 'api', role: o.role, ttlSeconds: o.ttlSeconds }, 'API token created');
    return created;
  }

  /** The identity an API bearer token stands for, or why it is refused (for the audit log). */
  checkApi(token: string): ApiCheck {
    const given = sha256(token);
    if (timingSafeEqual(given, this.adminHash)) {
      return { identity: { kind: 'api', tokenId: BOOTSTRAP_ADMIN_ID, role: 'admin', description: 'bootstrap admin token (DATA_DIR/admin-token)' } };
    }
    const f = this.find(token, 'api');
    if ('refused' in f) return f;
    const t = f.token;
    return { identity: { kind: 'api', tokenId: t.id, role: t.role ?? 'view', ...(t.description !== undefined ? { description: t.description } : {}) } };
  }

  /** Constant-time; undefined for unknown/expired/revoked. Accepts adminToken. */
  authenticateApi(token: string): ApiIdentity | undefined {
    const r = this.checkApi(token);
    return 'identity' in r ? r.identity : undefined;
  }

  list(): TokenInfo[] {
    return this.tokens.map((t) => ({
      id: t.id,
      type: t.type,
      ...(t.role ? { role: t.role } : {}),
      ...(t.description !== undefined ? { description: t.description } : {}),
      createdAt: t.createdAt,
      ...(t.expiresAt ? { expiresAt: t.expiresAt } : {}),
      ...(t.usesLeft !== undefined ? { usesLeft: t.usesLeft } : {}),
      ...(t.labels ? { labels: { ...t.labels } } : {}),
      revoked: t.revoked,
    }));
  }

  /** Revokes a join or API token at once; false if no token has this id. Revoked tokens stay listed. */
  async revoke(id: string): Promise<boolean> {
    if (!this.tokens.some((t) => t.id === id)) return false;
    const found = await this.mutate((tokens) => {
      const t = tokens.find((x) => x.id === id);
      if (!t) return false;
      if (!t.revoked) {
        t.revoked = true;
        t.revokedAt = this.iso(this.now());
      }
      return true;
    });
    if (found) this.logger.info({ tokenId: id }, 'token revoked');
    return found;
  }
}
