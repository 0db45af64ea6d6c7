/**
 * DeleteOptions as kubectl sends them with DELETE: JSON from its dynamic client (`kubectl delete`), protobuf
 * from its typed clients (`kubectl drain` deleting pods). Only what changes the outcome is read: dryRun (a
 * dry run must not delete) and preconditions; drover deletes at once and its controllers collect dependents,
 * so gracePeriodSeconds and propagationPolicy need nothing.
 */
import { BadRequestError, errorMessage } from '../../src/util/errors.js';
import { parsePatchJson } from './patch.js';

export interface DeleteOptions {
  dryRun: boolean;
  preconditions?: { uid?: string; resourceVersion?: string };
}

/** Kubernetes' protobuf envelope: these four bytes, then a runtime.Unknown message. */
const PROTOBUF_MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

type Field = { num: number; wire: number; value: bigint | Buffer };

/** The top-level fields of one protobuf message (varint and length-delimited; fixed-width skipped). */
function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= buf.length || shift > 63n) throw new BadRequestError('the protobuf body is truncated or malformed');
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const num = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ num, wire, value: varint() });
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > buf.length) throw new BadRequestError('the protobuf body is truncated or malformed');
      out.push({ num, wire, value: buf.subarray(i, i + len) });
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new BadRequestError(`the protobuf body uses wire type ${wire}, which DeleteOptions never does`);
  }
  return out;
}

const strings = (fs: Field[], num: number): string[] => fs.filter((f) => f.num === num && Buffer.isBuffer(f.value)).map((f) => (f.value as Buffer).toString('utf8'));

/** meta.k8s.io/v1 DeleteOptions in protobuf (generated.proto: preconditions = 2 {uid = 1, resourceVersion = 2}, dryRun = 5). */
export function protobufDeleteOptions(body: Buffer): DeleteOptions {
  if (!body.subarray(0, 4).equals(PROTOBUF_MAGIC)) throw new BadRequestError('the protobuf body lacks the k8s envelope');
  // runtime.Unknown: typeMeta = 1, raw = 2.
  const unknown = fields(body.subarray(4));
  const raw = unknown.find((f) => f.num === 2 && Buffer.isBuffer(f.value))?.value as Buffer | undefined;
  const opts = raw ? fields(raw) : [];
  const dryRun = strings(opts, 5);
  if (dryRun.some((v) => v !== 'All')) throw new BadRequestError(`dryRun: only ["All"] is supported, got ${JSON.stringify(dryRun).slice(0, 64)}`);
  const pre = opts.find((f) => f.num === 2 && Buffer.isBuffer(f.value))?.value as Buffer | undefined;
  const pf = pre ? fields(pre) : [];
  const [uid] = strings(pf, 1);
  const [resourceVersion] = strings(pf, 2);
  return { dryRun: dryRun.length > 0, ...(uid !== undefined || resourceVersion !== undefined ? { preconditions: { uid, resourceVersion } } : {}) };
}

/** DeleteOptions from a DELETE body (empty: none) by its Content-Type. */
export function deleteOptionsOf(body: Buffer, contentType: string | undefined): DeleteOptions {
  if (body.length === 0 || body.toString('utf8').trim() === '') return { dryRun: false };
  if (/^application\/vnd\.kubernetes\.protobuf/i.test(contentType ?? '')) return protobufDeleteOptions(body);
  let parsed: unknown;
  try {
    parsed = parsePatchJson(body);
  } catch (err) {
    throw new BadRequestError(`the body of a DELETE must be DeleteOptions as JSON: ${errorMessage(err)}`, err);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new BadRequestError('the body of a DELETE must be a DeleteOptions object');
  const b = parsed as { dryRun?: unknown; preconditions?: { uid?: unknown; resourceVersion?: unknown } };
  if (b.dryRun !== undefined && (!Array.isArray(b.dryRun) || b.dryRun.some((v) => v !== 'All'))) throw new BadRequestError(`dryRun: only ["All"] is supported, got ${JSON.stringify(b.dryRun).slice(0, 64)}`);
  const str = (v: unknown, f: string): string | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new BadRequestError(`preconditions.${f}: must be a string`);
    return v;
  };
  const p = b.preconditions && typeof b.preconditions === 'object' ? { uid: str(b.preconditions.uid, 'uid'), resourceVersion: str(b.preconditions.resourceVersion, 'resourceVersion') } : undefined;
  return { dryRun: Array.isArray(b.dryRun) && b.dryRun.length > 0, ...(p && (p.uid !== undefined || p.resourceVersion !== undefined) ? { preconditions: p } : {}) };
}
