/**
 * The fleet's HTTP routes (ApiServer extraRoutes, 'view' role): GET /drover/v1/fleet/status, the
 * server's own GET /drover/v1/status, and kubectl's GET /version.
 */
import { versionInfo } from '../../src/version.js';
import { CONTRACT_VERSION } from '../../src/contract/topics.js';
import { BadRequestError } from '../../src/util/errors.js';
import type { ExtraRoute } from '../api/server.js';
import { sendJson } from '../api/respond.js';
import type { Store } from '../store/types.js';
import { fleetStatus, type FleetFilters, type FleetStatus } from './summary.js';

export interface FleetRouteDeps {
  store: Store;
  /** drover's version (package.json). */
  version: string;
  /** When this server process started (ms since the epoch). */
  startedAt: number;
  /** MQTT clients connected to the embedded broker (absent: an external broker, not known). */
  brokerClients?: () => number;
  /** Last heard longer ago than this: stale (default DEFAULT_STALE_AFTER_MS; Infinity: only HeartbeatLate says so). */
  staleAfterMs?: number;
  now?: () => number;
}

/** The server status `drover status` shows. */
export interface ServerStatus {
  version: string;
  contract: number;
  startedAt: string;
  uptimeSeconds: number;
  storeRevision: number;
  nodes: FleetStatus['nodes']['byState'] & { total: number };
  pods: number;
  deployments: number;
  daemonSets: number;
  namespaces: number;
  brokerClients?: number;
}

/** The fleet status now, from what the store holds. */
export async function currentFleetStatus(deps: Pick<FleetRouteDeps, 'store' | 'version' | 'now' | 'staleAfterMs'>, filters: FleetFilters = {}, nodeList: 'attention' | 'all' = 'attention'): Promise<FleetStatus> {
  const { store } = deps;
  const [nodes, pods, deployments, daemonSets] = await Promise.all([store.list('Node'), store.list('Pod'), store.list('Deployment'), store.list('DaemonSet')]);
  return fleetStatus({ nodes: nodes.items, pods: pods.items, deployments: deployments.items, daemonSets: daemonSets.items, nowMs: (deps.now ?? Date.now)(), serverVersion: deps.version, filters, nodeList, staleAfterMs: deps.staleAfterMs });
}

function query(url: URL, name: string): string | undefined {
  const v = url.searchParams.get(name);
  return v === null || v === '' ? undefined : v;
}

export function fleetRoutes(deps: FleetRouteDeps): ExtraRoute[] {
  const now = deps.now ?? Date.now;
  return [
    {
      method: 'GET',
      path: '/drover/v1/fleet/status',
      access: 'view',
      async handle(_req, res, ctx) {
        const nodes = query(ctx.url, 'nodes') ?? 'attention';
        if (nodes !== 'attention' && nodes !== 'all') throw new BadRequestError(`nodes: "${nodes}" is not a node list; use attention or all`);
        const filters: FleetFilters = { labelSelector: query(ctx.url, 'labelSelector'), site: query(ctx.url, 'site'), state: query(ctx.url, 'state') };
        sendJson(res, 200, await currentFleetStatus(deps, filters, nodes));
      },
    },
    {
      method: 'GET',
      path: '/drover/v1/status',
      access: 'view',
      async handle(_req, res) {
        const { store } = deps;
        const [nodes, pods, deployments, daemonSets, namespaces] = await Promise.all([store.list('Node'), store.list('Pod'), store.list('Deployment'), store.list('DaemonSet'), store.list('Namespace')]);
        const nowMs = now();
        const fleet = fleetStatus({ nodes: nodes.items, pods: pods.items, deployments: deployments.items, daemonSets: daemonSets.items, nowMs, serverVersion: deps.version, staleAfterMs: deps.staleAfterMs });
        const status: ServerStatus = {
          version: deps.version,
          contract: CONTRACT_VERSION,
          startedAt: new Date(deps.startedAt).toISOString(),
          uptimeSeconds: Math.max(0, Math.floor((nowMs - deps.startedAt) / 1000)),
          storeRevision: store.revision(),
          nodes: { total: fleet.nodes.total, ...fleet.nodes.byState },
          pods: pods.items.length,
          deployments: deployments.items.length,
          daemonSets: daemonSets.items.length,
          namespaces: namespaces.items.length,
          ...(deps.brokerClients ? { brokerClients: deps.brokerClients() } : {}),
        };
        sendJson(res, 200, status);
      },
    },
    {
      method: 'GET',
      path: '/version',
      access: 'view',
      async handle(_req, res) {
        sendJson(res, 200, versionInfo(deps.version));
      },
    },
  ];
}
