/**
 * Objects as Kubernetes' own Go types decode them, for clients built on client-go (kubectl, helm, k9s).
 * drover stores a container's state as a word ('running') with its details beside it; Kubernetes'
 * ContainerStatus.state is an object ({running: {startedAt}}), and client-go refuses the word outright
 * (`kubectl logs`, `describe pod`, `delete pod` fail with "cannot unmarshal string into ... ContainerState").
 * drover's own CLI, agents and controllers keep reading the stored shape.
 */
import type { ApiObject } from '../../src/api/meta.js';

/** client-go's default User-Agent: `kubectl/v1.32.4 (linux/amd64) kubernetes/6b77a2a`. */
const CLIENT_GO_AGENT = /\([^)/\s]+\/[^)\s]+\) kubernetes\/[0-9a-f]+/;

export function isClientGo(userAgent: string | undefined): boolean {
  return userAgent !== undefined && CLIENT_GO_AGENT.test(userAgent);
}

type Status = Record<string, unknown>;

/** One container status with `state` (and a `started` flag) in Kubernetes' shape; unknown keys are ignored by Go. */
export function kubernetesContainerStatus(cs: Status): Status {
  if (typeof cs.state !== 'string') return cs;
  const when = (k: string) => (typeof cs[k] === 'string' ? { [k]: cs[k] } : {});
  const detail = (k: string) => (cs[k] !== undefined ? { [k]: cs[k] } : {});
  let state: Status;
  switch (cs.state) {
    case 'running':
      state = { running: { ...when('startedAt') } };
      break;
    case 'terminated':
      state = { terminated: { exitCode: typeof cs.exitCode === 'number' ? cs.exitCode : 0, ...detail('reason'), ...detail('message'), ...when('startedAt'), ...when('finishedAt') } };
      break;
    default:
      state = { waiting: { ...detail('reason'), ...detail('message') } };
  }
  return { ...cs, state, started: cs.state === 'running', imageID: cs.imageID ?? '' };
}

/** `obj` as client-go decodes it (a new object when anything changes; other kinds as they are). */
export function kubernetesView<T extends ApiObject>(obj: T): T {
  if (obj.kind !== 'Pod') return obj;
  const status = obj.status as { containerStatuses?: Status[]; initContainerStatuses?: Status[] } | undefined;
  if (!status?.containerStatuses && !status?.initContainerStatuses) return obj;
  return {
    ...obj,
    status: {
      ...status,
      ...(status.containerStatuses ? { containerStatuses: status.containerStatuses.map(kubernetesContainerStatus) } : {}),
      ...(status.initContainerStatuses ? { initContainerStatuses: status.initContainerStatuses.map(kubernetesContainerStatus) } : {}),
    },
  };
}
