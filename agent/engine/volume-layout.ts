/**
 * Pod volumes, the pure half: where each volume lives on the host, what a container mounts, and which
 * files a configMap or secret volume holds. agent/volume-manager.ts does the disk work.
 *
 * Layout: `<stateDir>/pods/<uid>/volumes/<name>` for emptyDir, configMap and secret volumes; hostPath
 * volumes are the host path itself. A volume with no source is an emptyDir, as in Kubernetes.
 */
import { isAbsolute, join, normalize } from 'node:path';
import type { Container, Volume } from '../../src/api/pod.js';
import type { DesiredPod } from '../../src/contract/payloads.js';
import type { DeviceMapping, Mount } from '../runtime/types.js';
import { ConfigError, type RunContext } from './env.js';

/** Default file mode of configMap volume files (Kubernetes' 0644). */
export const CONFIGMAP_DEFAULT_MODE = 0o644;
/** Default file mode of secret volume files: readable by the container's owner only (Kubernetes says 0644). */
export const SECRET_DEFAULT_MODE = 0o400;

export function podDir(stateDir: string, uid: string): string {
  return join(stateDir, 'pods', uid);
}

export function volumeDir(stateDir: string, uid: string, volume: string): string {
  return join(podDir(stateDir, uid), 'volumes', volume);
}

export type VolumeKind = 'hostPath' | 'emptyDir' | 'configMap' | 'secret';

export function volumeKind(v: Volume): VolumeKind {
  if (v.hostPath) return 'hostPath';
  if (v.configMap) return 'configMap';
  if (v.secret) return 'secret';
  return 'emptyDir';
}

/** A relative path that stays inside its directory; throws ConfigError otherwise. */
export function safeRelative(path: string, what: string): string {
  const n = normalize(path);
  if (!path || isAbsolute(path) || n === '..' || n.startsWith('../') || n === '.') throw new ConfigError(`${what} "${path}" must be a relative path inside the volume`);
  return n;
}

/** The bind mounts for one container, in the order its volumeMounts list them; throws ConfigError. */
export function mountsFor(pod: DesiredPod, c: Container, ctx: RunContext = {}): Mount[] {
  const mounts: Mount[] = [];
  for (const m of c.volumeMounts ?? []) {
    const v = (pod.spec.volumes ?? []).find((x) => x.name === m.name);
    if (!v) throw new ConfigError(`volume "${m.name}" is not defined in spec.volumes`);
    const problem = ctx.volumeError?.(pod.uid, v.name);
    if (problem) throw new ConfigError(`volume "${v.name}": ${problem}`);
    const kind = volumeKind(v);
    let source: string;
    if (kind === 'hostPath') {
      source = v.hostPath!.path;
    } else {
      if (!ctx.stateDir) throw new ConfigError(`volume "${v.name}": no agent state directory to hold ${kind} volumes`);
      source = volumeDir(ctx.stateDir, pod.uid, v.name);
    }
    const readOnly = Boolean(m.readOnly) || kind === 'configMap' || kind === 'secret';
    // Checked on the host right before the container is created (engine/subpath.ts): a container can
    // make any path inside a writable volume a symlink.
    if (m.subPath) mounts.push({ source: join(source, safeRelative(m.subPath, 'subPath')), target: m.mountPath, readOnly, beneath: source });
    else mounts.push({ source, target: m.mountPath, readOnly });
  }
  return mounts;
}

/** The host devices passed into the container (drover's `devices` extension). */
export function devicesFor(c: Container): DeviceMapping[] {
  return (c.devices ?? []).map((d) => ({ hostPath: d.hostPath, containerPath: d.containerPath, permissions: d.permissions }));
}

export interface VolumeFile {
  /** Relative to the volume directory. */
  path: string;
  data: Buffer;
  mode: number;
}

/**
 * The files of a configMap or secret volume (pure): every key, or the listed items (key → path, own
 * mode). `undefined` when the object is missing and the volume is optional (an empty volume);
 * throws ConfigError when it is missing and required, or a listed key is missing.
 */
export function volumeFiles(pod: DesiredPod, v: Volume, ctx: RunContext): VolumeFile[] | undefined {
  let data: Map<string, Buffer> | undefined;
  let items: Array<{ key: string; path: string; mode?: number }> | undefined;
  let mode: number;
  let optional: boolean;
  let what: string;
  if (v.configMap) {
    const cm = ctx.config?.configMap(pod.namespace, v.configMap.name);
    what = `ConfigMap ${pod.namespace}/${v.configMap.name}`;
    if (cm) data = new Map([...Object.entries(cm.data).map(([k, s]): [string, Buffer] => [k, Buffer.from(s, 'utf8')]), ...Object.entries(cm.binaryData)]);
    else if (!v.configMap.optional) throw new ConfigError(`configmap "${v.configMap.name}" not found`);
    ({ items } = v.configMap);
    optional = Boolean(v.configMap.optional);
    mode = v.configMap.defaultMode ?? CONFIGMAP_DEFAULT_MODE;
  } else if (v.secret) {
    const s = ctx.config?.secret(pod.namespace, v.secret.secretName);
    what = `Secret ${pod.namespace}/${v.secret.secretName}`;
    if (s) data = new Map(Object.entries(s.data));
    else if (!v.secret.optional) throw new ConfigError(`secret "${v.secret.secretName}" not found`);
    ({ items } = v.secret);
    optional = Boolean(v.secret.optional);
    mode = v.secret.defaultMode ?? SECRET_DEFAULT_MODE;
  } else {
    return [];
  }
  if (!data) return undefined;
  const wanted = items ?? [...data.keys()].map((key) => ({ key, path: key, mode: undefined as number | undefined }));
  const files: VolumeFile[] = [];
  for (const it of wanted) {
    const content = data.get(it.key);
    if (content === undefined) {
      if (optional) continue;
      throw new ConfigError(`couldn't find key ${it.key} in ${what}`);
    }
    files.push({ path: safeRelative(it.path, 'item path'), data: content, mode: (it.mode ?? mode) & 0o777 });
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
