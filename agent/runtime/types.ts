/**
 * The container runtime seen by the agent: the podman adapter implements it through its CLI; tests
 * may hand in a fake. Every method throws RuntimeError (src/util/errors.ts)
 * carrying the CLI's stderr when the runtime fails.
 */
export interface PortMapping {
  containerPort: number;
  hostPort?: number;
  hostIP?: string;
  protocol: 'TCP' | 'UDP';
}

/** A bind mount of a host path (file or directory) into the container. */
export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
  /** For a subPath mount: the volume's directory, which the source must still lie in once resolved on the host. */
  beneath?: string;
}

/** A host device node passed into the container (podman `--device host[:container[:perms]]`). */
export interface DeviceMapping {
  hostPath: string;
  /** Where it appears in the container; the host path when unset. */
  containerPath?: string;
  /** Any of r, w, m; the runtime's default (rwm) when unset. */
  permissions?: string;
}

/** What the agent asks the runtime to run: already resolved from a pod's container spec. */
export interface RunSpec {
  /** Runtime container name, unique on the node (see agent/engine/naming.ts). */
  name: string;
  image: string;
  /** Overrides the image ENTRYPOINT when set (Kubernetes `command`). */
  command?: string[];
  /** Overrides the image CMD when set (Kubernetes `args`). */
  args?: string[];
  env: Record<string, string>;
  workingDir?: string;
  ports: PortMapping[];
  labels: Record<string, string>;
  memoryBytes?: number;
  cpuMilli?: number;
  hostNetwork?: boolean;
  /** The container's hostname (pod spec.hostname; Indexed Job pods get NAME-INDEX); ignored with hostNetwork. */
  hostname?: string;
  /** Extra /etc/hosts entries (Service names → cluster IPs); ignored with hostNetwork. */
  hosts?: Array<{ name: string; ip: string }>;
  /** The container's address on the runtime's bridge network (`--ip`), picked by the agent; ignored with hostNetwork. */
  ip?: string;
  mounts?: Mount[];
  devices?: DeviceMapping[];
}

/** The outcome of a command run inside a container. */
export interface ExecResult {
  /** The command's exit code; -1 when it timed out. */
  exitCode: number;
  /** stdout and stderr, interleaved, possibly cut short. */
  output: string;
  timedOut: boolean;
}

export type ContainerState = 'created' | 'running' | 'exited' | 'paused' | 'stopping' | 'unknown';

export interface RuntimeContainer {
  id: string;
  name: string;
  image: string;
  /** The id of the image it was created from (64 hex), when the runtime's list tells it (podman). */
  imageId?: string;
  labels: Record<string, string>;
  state: ContainerState;
  exitCode?: number;
  /** ISO timestamps; absent when the runtime does not know them. */
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /**
   * startedAt and finishedAt with the runtime's full precision (the fields above are cut to the
   * second so list() and inspect() agree); inspect() fills them in (list() may). A running container
   * that ran before keeps its previous run's end in finishedAt (podman; nerdctl gives none while running).
   */
  exact?: { startedAt?: string; finishedAt?: string };
  /** The container's address on its network, when it has its own; only inspect() fills it in. */
  ip?: string;
}

/** The runtime's default bridge network: where the agent picks pod addresses (RunSpec.ip). */
export interface BridgeSubnet {
  /** CIDR, e.g. 10.88.0.0/16. */
  subnet: string;
  gateway?: string;
}

/**
 * Which part of a container's log `logs()` returns: times are RFC 3339 (nanoseconds kept), as the
 * runtime's `--since`/`--until` take them.
 */
export interface LogOptions {
  /** Only the last N lines (of what since/until leave). */
  tail?: number;
  since?: string;
  until?: string;
  /** Each line begins with its RFC 3339 time. */
  timestamps?: boolean;
}

/** One container's resource use, as cumulative counters: the caller turns two samples into rates. */
export interface ContainerStats {
  /** Full container id. */
  id: string;
  /** CPU time used since the container started, in nanoseconds. */
  cpuNanos: number;
  memoryBytes: number;
  /** When the runtime read the counters (nanoseconds, the runtime's clock). */
  sampledAtNanos: number;
}

export interface ContainerRuntime {
  /** 'podman', or 'fake' in tests. */
  readonly name: string;
  /**
   * True when a running container's exact.finishedAt is the end of its previous run, and its absence
   * means there was none (podman). Otherwise a running container's earlier runs lie before its start.
   */
  readonly keepsLastRunEnd?: boolean;
  version(): Promise<string>;
  /** All containers (any state) carrying every given label (value '' matches any value). */
  list(labels: Record<string, string>): Promise<RuntimeContainer[]>;
  inspect(idOrName: string): Promise<RuntimeContainer | undefined>;
  /** Create and start a container; returns its id. */
  run(spec: RunSpec): Promise<string>;
  /** Start an existing stopped container again. */
  start(id: string): Promise<void>;
  stop(id: string, timeoutSeconds: number): Promise<void>;
  /**
   * Remove a container in one runtime call: a running one gets its stop signal and `graceSeconds`
   * (default 0) to exit, then is killed. Removing a missing container is not an error.
   */
  remove(id: string, graceSeconds?: number): Promise<void>;
  /**
   * remove() of many containers, all with the same grace, in one runtime call (which stops them side
   * by side). A failure may leave some removed; the caller tries each again. Runtimes that cannot
   * leave it out.
   */
  removeMany?(ids: string[], graceSeconds: number): Promise<void>;
  logs(id: string, opts: LogOptions): Promise<string>;
  /**
   * Runs a command in a running container (probes). A non-zero exit is a result, not an error; the
   * command is abandoned after `timeoutMs`. Throws only when the runtime itself cannot be used.
   */
  exec(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult>;
  pull(image: string): Promise<void>;
  /**
   * Loads an image archive (`podman save` / `nerdctl save` output: docker-archive or oci-archive tar)
   * into the runtime's store; returns the names it carried (an untagged image: its id). A damaged or
   * truncated archive throws RuntimeError with the tool's complaint. Runtimes that cannot leave it
   * out: the server's images (issue 15) then cannot be used on that node.
   */
  load?(archivePath: string): Promise<string[]>;
  /**
   * Removes an image by name or id from the runtime's store (device garbage collection). A missing
   * image is not an error; one a container still uses is (RuntimeError), and stays.
   */
  removeImage?(ref: string): Promise<void>;
  /**
   * Gives the image `source` (a name or id) the extra name `target` (`podman tag`): an archive pushed
   * with a name it does not carry is loaded, then tagged with the name the pods use. Runtimes that
   * cannot leave it out.
   */
  tag?(source: string, target: string): Promise<void>;
  /**
   * The id of the image `ref` names; undefined when none. Kept for an image loaded from the server, so
   * it can be removed once unused even after its name moved to a newer image (the same tag pushed
   * again). Runtimes that cannot tell leave it out.
   */
  imageId?(ref: string): Promise<string | undefined>;
  /**
   * The directory the runtime keeps image layers in (podman's graphroot), whose filesystem the agent
   * watches for disk pressure. Runtimes that cannot tell leave it out.
   */
  imageStoreDir?(): Promise<string>;
  /** Image references present on the node (for the scheduler's "image already here" hint). */
  images(): Promise<string[]>;
  /**
   * Calls `onExit` soon after a container carrying every given label stops (exits, crashes, is
   * killed), with its full id when the runtime tells it (not after a gap in the watch). Returns a function that ends the watch. Runtimes that cannot tell leave it out; the agent
   * then only notices at its next resync.
   */
  watchExits?(labels: Record<string, string>, onExit: (id?: string) => void): () => void;
  /**
   * The default bridge network's IPv4 subnet, where the agent picks pod addresses; undefined when it
   * has none. Runtimes that cannot tell leave it out: pods then get the runtime's own addresses.
   */
  bridgeSubnet?(): Promise<BridgeSubnet | undefined>;
  /** Resource use of the running containers; runtimes that cannot tell leave it out (no `top` then). */
  stats?(): Promise<ContainerStats[]>;
}
