import { CONTRACT_VERSION, type payloads } from '../../src/contract/index.js';

/** A well-formed hello of a made-up arm64 device: the base that agent-report tests (and the fuzz) start from. */
export function agentHello(node: string, bootId: string, labels: Record<string, string> = {}): payloads.Hello {
  return {
    agentVersion: '0.0.0-test',
    contractVersion: CONTRACT_VERSION,
    node,
    bootId,
    arch: 'arm64',
    os: 'linux',
    osImage: 'Test',
    kernelVersion: '6.1',
    hostname: `${node}.lan`,
    cpu: { cores: 2, model: 'test' },
    memoryBytes: 2 ** 30,
    addresses: ['192.0.2.7'],
    runtime: { name: 'podman', version: '4.9.3' },
    labels,
    images: [],
  };
}

/** A pod of namespace `default` with one container `main`, as the agent reports it Running or Failed. */
export function podReport(uid: string, name: string, phase: 'Running' | 'Failed'): payloads.PodReport {
  return {
    uid,
    namespace: 'default',
    name,
    phase,
    containers: [{ name: 'main', image: 'busybox', ready: phase === 'Running', restartCount: 0, state: phase === 'Running' ? 'running' : 'terminated' }],
  };
}
