import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kindByName, objectPath } from '../../src/api/kinds.js';
import { parseManifests } from '../../src/api/manifest.js';
import { parseObject } from '../../src/api/validate.js';
import { ValidationError } from '../../src/util/errors.js';

function causes(raw: unknown): string[] {
  try {
    parseObject(raw);
  } catch (err) {
    assert.ok(err instanceof ValidationError, `expected ValidationError, got ${String(err)}`);
    assert.equal(err.code, 422);
    return err.causes.map((c) => `${c.field}: ${c.message}`);
  }
  assert.fail('expected a validation error');
}

const svc = (spec: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec });

test('a Kubernetes Deployment + Service manifest parses as a whole, with TCP and targetPort defaults', () => {
  const docs = parseManifests(`
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: web, image: nginx, ports: [{ name: http, containerPort: 80 }] }] }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports:
  - port: 80
    targetPort: http
  sessionAffinity: None
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
`);
  const s = docs.map((d) => parseObject(d).object).find((o) => o.kind === 'Service') as { spec: { type: string; ports: Array<{ protocol: string; targetPort: unknown }> } };
  assert.equal(s.spec.type, 'ClusterIP');
  assert.equal(s.spec.ports[0]!.protocol, 'TCP');
  assert.equal(s.spec.ports[0]!.targetPort, 'http');
});

test('kinds table: svc and endpointslices resolve, with Kubernetes paths', () => {
  assert.equal(kindByName('svc')?.kind, 'Service');
  assert.equal(objectPath(kindByName('services')!, 'default', 'web'), '/api/v1/namespaces/default/services/web');
  assert.equal(objectPath(kindByName('endpointslices')!, 'default'), '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices');
});

test('LoadBalancer and ExternalName are refused naming spec.type and what to use instead', () => {
  const lb = causes(svc({ type: 'LoadBalancer', ports: [{ port: 80 }] }));
  assert.match(lb.join('\n'), /^spec\.type: drover does not implement LoadBalancer.*use type NodePort/m);
  assert.match(causes(svc({ type: 'ExternalName', externalName: 'x.example.com' })).join('\n'), /spec\.type: drover does not implement ExternalName/);
  assert.match(causes(svc({ type: 'Balanced', ports: [{ port: 80 }] })).join('\n'), /spec\.type: "Balanced" is not a Service type/);
});

test('bad ports name the field: range, named targetPort, duplicates, unnamed second port, nodePort on ClusterIP', () => {
  const c = causes(svc({
    ports: [
      { port: 70000 },
      { name: 'a', port: 80, targetPort: 'Not_A_Name' },
      { name: 'a', port: 80 },
      { port: 81, nodePort: 30080 },
    ],
  })).join('\n');
  assert.match(c, /spec\.ports\[0\]\.port: must be between 1 and 65535/);
  assert.match(c, /spec\.ports\[1\]\.targetPort: must be a port number or a container port name/);
  assert.match(c, /spec\.ports\[2\]\.name: duplicate port name "a"/);
  assert.match(c, /spec\.ports\[2\]: duplicate port 80\/TCP/);
  assert.match(c, /spec\.ports\[3\]\.name: required when a Service has more than one port/);
  assert.match(c, /spec\.ports\[3\]\.nodePort: may not be set when spec\.type is ClusterIP/);
  assert.match(causes(svc({ ports: [{ port: '80' }] })).join('\n'), /spec\.ports\[0\]\.port: expected a port number/);
  assert.match(causes(svc({ ports: [{ port: 53, protocol: 'SCTP' }] })).join('\n'), /spec\.ports\[0\]\.protocol: SCTP is not implemented by drover/);
});

test('clusterIP: an address, None (headless, ports optional) or empty; nothing else; None is not for NodePort', () => {
  assert.match(causes(svc({ clusterIP: '10.43.0.300', ports: [{ port: 80 }] })).join('\n'), /spec\.clusterIP: must be an IPv4 address, "None" \(headless\) or empty/);
  assert.match(causes(svc({ ports: [] })).join('\n'), /spec\.ports: required: at least one port/);
  assert.match(causes(svc({ type: 'NodePort', clusterIP: 'None', ports: [{ port: 80 }] })).join('\n'), /spec\.clusterIP: may not be "None" for a NodePort Service/);
  assert.equal((parseObject(svc({ clusterIP: 'None', selector: { app: 'db' } })).object.spec as { clusterIP: string }).clusterIP, 'None');
  assert.match(causes(svc({ ports: [{ port: 80 }], ipFamilies: ['IPv6'] })).join('\n'), /spec\.ipFamilies\[0\]: drover implements IPv4 Services only/);
});

test('EndpointSlice: IPv4 only, addresses checked', () => {
  const es = (o: Record<string, unknown>) => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1' }, addressType: 'IPv4', ...o });
  assert.equal(parseObject(es({ endpoints: [{ addresses: ['10.88.0.5'], conditions: { ready: true } }], ports: [{ port: 80 }] })).object.kind, 'EndpointSlice');
  assert.match(causes(es({ addressType: 'IPv6' })).join('\n'), /addressType: drover implements IPv4 endpoints only/);
  assert.match(causes(es({ endpoints: [{ addresses: ['fe80::1'] }] })).join('\n'), /endpoints\[0\]\.addresses\[0\]: must be an IPv4 address/);
});
