import { DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, isHeadless, type Service, type ServicePort } from '../../src/api/service.js';
import type { ApiObject } from '../../src/api/meta.js';
import { cidrContains, formatCidr, numberToIp, parseCidr, type Cidr } from '../../src/net/ipv4.js';
import { ValidationError, type FieldCause } from '../../src/util/errors.js';
import { isKind, type Store } from '../store/types.js';

/*
 * Cluster IPs and NodePorts. The allocation IS the stored Service: a Service holds its clusterIP and
 * nodePorts, and what is taken is read from the stored Services at each allocation. So a restart keeps
 * every address (the Services are in LevelDB), a delete releases them (the Service is gone), and no
 * separate bitmap can drift from the objects or leak an address when the server dies between the two
 * writes Kubernetes' allocator needs. Allocation and the write that records it run one at a time in
 * this process (the server is the only writer of its store), so two creates never get the same address.
 */

export interface ServiceAllocationOptions {
  /** Default DEFAULT_SERVICE_CIDR (k3s's 10.43.0.0/16). */
  serviceCidr?: string;
  /** Default 30000-32767. */
  nodePortRange?: { min: number; max: number };
  /** Where a free search starts, in [0, 1): injected so tests are repeatable. Default Math.random. */
  random?: () => number;
}

/** "30000-32767" → the range; throws naming what is wrong. For the server's --service-node-port-range. */
export function parsePortRange(s: string): { min: number; max: number } {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(s.trim());
  const min = Number(m?.[1]);
  const max = Number(m?.[2]);
  if (!m || min < 1 || max > 65535 || min > max) throw new Error(`"${s}" is not a port range such as 30000-32767`);
  return { min, max };
}

/** What other Services hold: cluster IPs, and nodePorts (a number is taken whatever its protocol). */
interface Taken {
  ips: Map<string, string>;
  nodePorts: Map<number, string>;
}

function takenBy(services: Service[], except: { namespace: string; name: string }): Taken {
  const t: Taken = { ips: new Map(), nodePorts: new Map() };
  for (const s of services) {
    const ns = s.metadata.namespace ?? 'default';
    if (ns === except.namespace && s.metadata.name === except.name) continue;
    const who = `${ns}/${s.metadata.name}`;
    if (s.spec.clusterIP && !isHeadless(s)) t.ips.set(s.spec.clusterIP, who);
    for (const p of s.spec.ports ?? []) if (p.nodePort !== undefined) t.nodePorts.set(p.nodePort, who);
  }
  return t;
}

/** The first free value from a random start, wrapping around; undefined when all are taken. */
function firstFree(count: number, random: () => number, free: (i: number) => boolean): number | undefined {
  const start = Math.floor(random() * count);
  for (let k = 0; k < count; k++) {
    const i = (start + k) % count;
    if (free(i)) return i;
  }
  return undefined;
}

/** The same port of the old spec: by name when named, else by port and protocol (as Kubernetes matches them). */
function oldPortOf(p: ServicePort, old: ServicePort[]): ServicePort | undefined {
  return old.find((o) => (p.name ? o.name === p.name : !o.name && o.port === p.port && o.protocol === p.protocol));
}

/**
 * Fills in and checks a Service's clusterIP and nodePorts against what other Services hold (pure apart
 * from `random`). `old` is the stored Service on an update: its clusterIP is kept (it may not change, as
 * in Kubernetes) and its nodePorts stay with the same ports when the new spec leaves them out, so
 * re-applying a manifest without them changes nothing. Throws a 422 naming the field.
 */
export function assignServiceAddresses(svc: Service, old: Service | undefined, others: Service[], opts: Required<Pick<ServiceAllocationOptions, 'random'>> & { cidr: Cidr; nodePortRange: { min: number; max: number } }): Service {
  const ns = svc.metadata.namespace ?? 'default';
  const taken = takenBy(others, { namespace: ns, name: svc.metadata.name });
  const causes: FieldCause[] = [];
  const spec = { ...svc.spec, ports: svc.spec.ports?.map((p) => ({ ...p })) };
  const cidrText = formatCidr(opts.cidr);

  const wanted = spec.clusterIP || undefined;
  if (old) {
    const had = old.spec.clusterIP || undefined;
    if (wanted !== undefined && wanted !== had) {
      causes.push({ field: 'spec.clusterIP', message: `field is immutable (is ${had ?? 'unset'}; delete and re-create the Service to change it)` });
    }
    spec.clusterIP = had;
  }
  if (!old && wanted !== undefined && wanted !== 'None') {
    const holder = taken.ips.get(wanted);
    if (!cidrContains(opts.cidr, wanted)) causes.push({ field: 'spec.clusterIP', message: `${wanted} is not in the service CIDR ${cidrText}` });
    else if (holder) causes.push({ field: 'spec.clusterIP', message: `${wanted} is already allocated (to Service ${holder})` });
  }
  if (!old && wanted === undefined) {
    // The network and broadcast addresses of the block are never handed out.
    const i = firstFree(opts.cidr.size - 2, opts.random, (k) => !taken.ips.has(numberToIp(opts.cidr.network + 1 + k)));
    if (i === undefined) causes.push({ field: 'spec.clusterIP', message: `no free address left in the service CIDR ${cidrText}` });
    else spec.clusterIP = numberToIp(opts.cidr.network + 1 + i);
  }
  if (spec.clusterIP) spec.clusterIPs = [spec.clusterIP];

  const { min, max } = opts.nodePortRange;
  if (spec.type === 'NodePort') {
    const mine = new Set<number>();
    spec.ports?.forEach((p, i) => {
      if (p.nodePort === undefined) {
        const before = old?.spec.type === 'NodePort' ? oldPortOf(p, old.spec.ports ?? []) : undefined;
        if (before?.nodePort !== undefined && !taken.nodePorts.has(before.nodePort)) p.nodePort = before.nodePort;
      }
      if (p.nodePort !== undefined) {
        const holder = taken.nodePorts.get(p.nodePort);
        if (p.nodePort < min || p.nodePort > max) causes.push({ field: `spec.ports[${i}].nodePort`, message: `${p.nodePort} is outside the NodePort range ${min}-${max}` });
        else if (holder) causes.push({ field: `spec.ports[${i}].nodePort`, message: `${p.nodePort} is already allocated (to Service ${holder})` });
        mine.add(p.nodePort);
      }
    });
    spec.ports?.forEach((p, i) => {
      if (p.nodePort !== undefined) return;
      const k = firstFree(max - min + 1, opts.random, (j) => !taken.nodePorts.has(min + j) && !mine.has(min + j));
      if (k === undefined) causes.push({ field: `spec.ports[${i}].nodePort`, message: `no free port left in the NodePort range ${min}-${max}` });
      else {
        p.nodePort = min + k;
        mine.add(p.nodePort);
      }
    });
  } else {
    // A Service turned from NodePort to ClusterIP gives its node ports back.
    for (const p of spec.ports ?? []) delete p.nodePort;
  }
  if (causes.length) throw new ValidationError(causes, `Service "${svc.metadata.name}" is invalid`);
  return { ...svc, spec } as Service;
}

/**
 * The store with Service addresses allocated on every write of a Service (create, update, patch), for
 * every writer (API, MQTT commands, controllers). Wrap the store the API is given with it.
 */
export function withServiceAllocation(store: Store, options: ServiceAllocationOptions = {}): Store {
  const cidr = parseCidr(options.serviceCidr ?? DEFAULT_SERVICE_CIDR);
  const opts = { cidr, nodePortRange: options.nodePortRange ?? DEFAULT_NODE_PORT_RANGE, random: options.random ?? Math.random };
  let queue: Promise<unknown> = Promise.resolve();
  /** One Service write at a time: the check of what is taken and the write that takes it are one step. */
  function serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  }
  const services = async () => (await store.list('Service')).items;

  return {
    ...store,
    get: (k, ns, n) => store.get(k, ns, n),
    list: (k, ns) => store.list(k, ns),
    watch: (from, cb, o) => store.watch(from, cb, o),
    revision: () => store.revision(),
    close: () => store.close(),
    delete: (k, ns, n, o) => store.delete(k, ns, n, o),
    create: (obj) => {
      if (!isKind(obj, 'Service')) return store.create(obj);
      return serially(async () => store.create(assignServiceAddresses(obj, undefined, await services(), opts) as unknown as typeof obj));
    },
    update: (obj) => {
      if (!isKind(obj, 'Service')) return store.update(obj);
      return serially(async () => {
        const old = await store.get('Service', obj.metadata.namespace ?? 'default', obj.metadata.name);
        // A missing one is the store's NotFoundError to give; nothing to keep from it.
        return store.update(assignServiceAddresses(obj, old, await services(), opts) as unknown as typeof obj);
      });
    },
    patch: (kind, ns, name, mutate) => {
      if (kind !== 'Service') return store.patch(kind, ns, name, mutate);
      return serially(async () => {
        const all = await services();
        return store.patch(kind, ns, name, (cur) => {
          const next = mutate(cur);
          if (!next || !isKind(next, 'Service')) return next;
          return assignServiceAddresses(next, cur as unknown as Service, all, opts) as ApiObject;
        });
      });
    },
  };
}
