/**
 * The behaviour every ContainerRuntime adapter owes the agent, as node:test cases: run by the podman
 * suite against real podman and by the nerdctl suite against the stand-in nerdctl (and a real one
 * where installed). A case that differs between tools differs only in the error text it expects.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { freePort } from './http.js';
import type { ContainerRuntime, RunSpec, RuntimeContainer } from '../../agent/runtime/types.js';
import { RuntimeError } from '../../src/util/errors.js';
import { addressRange, addressTakenIn, pickAddress } from '../../agent/network/pod-ip-plan.js';
import { runsBoundary } from '../../agent/requests.js';

/** What the tool itself says a container was made with, in one shape for every tool. */
export interface ContainerFacts {
  env: string[];
  /** The process the container runs: entrypoint and command, as one argv. */
  argv: string[];
  memoryBytes: number;
  cpuMilli: number;
  /** "80/tcp" → bindings, as docker's inspect has them. */
  portBindings: Record<string, { HostIp: string; HostPort: string }[]>;
  networkMode: string;
  /** The device mappings, as the tool prints them. */
  devices: string;
}

export interface ContractHarness {
  runtime: ContainerRuntime;
  /** The tool's name, as the adapter's error messages start ("podman", "nerdctl"). */
  tool: string;
  /** The tool's executable. */
  bin: string;
  /** The adapter over another executable (a wrapper, a missing one), same store. */
  withBin(bin: string): ContainerRuntime;
  /** Runs the tool (with the adapter's global args); returns stdout. */
  cli(args: string[]): Promise<string>;
  facts(id: string): Promise<ContainerFacts>;
  /** busybox in /bin; its CMD prints "default-cmd" and sleeps. */
  image: string;
  /** An image with neither ENTRYPOINT nor CMD. */
  noEntrypointImage: string;
  /** A directory for host files to mount. */
  scratch: string;
  /** Error texts that differ between tools. */
  errors: { missingImage: RegExp; nameClash: RegExp; missingContainer: RegExp };
  cleanup(): Promise<void>;
}

// busybox sh as PID 1 ignores SIGTERM unless it traps it; `sleep 1` bounds how late the trap runs.
export const SLEEP_UNTIL_TERM = 'trap "exit 0" TERM; while true; do sleep 1; done';
const LABEL = 'drover.test/suite';

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function rejectsRuntimeError(p: Promise<unknown>, message: RegExp): Promise<RuntimeError> {
  const err = await p.then(
    () => assert.fail('expected a RuntimeError'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RuntimeError, `not a RuntimeError: ${String(err)}`);
  assert.match(err.message, message);
  return err;
}

/**
 * A host port free right now for `protocol` (the kernel's pick for port 0): a random one could be any other
 * test's (or an outgoing connection's) port when files run in parallel, and once was.
 */
export async function freeHostPort(protocol: 'tcp' | 'udp' = 'tcp'): Promise<number> {
  if (protocol === 'tcp') return freePort();
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '0.0.0.0', () => resolve());
  });
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * Registers the contract cases in a describe() named `title`. `setup` runs once before them;
 * `extra` registers tool-only cases in the same describe, sharing the harness.
 */
export function runtimeContract(title: string, setup: () => Promise<ContractHarness>, extra?: (h: () => ContractHarness) => void): void {
  describe(title, { timeout: 600_000 }, () => {
    let h: ContractHarness;
    let rt: ContainerRuntime;
    let seq = 0;
    const spec = (over: Partial<RunSpec> = {}): RunSpec => {
      seq += 1;
      return { name: `t${seq}-${process.pid}`, image: h.image, env: {}, ports: [], labels: { [LABEL]: 'contract' }, ...over };
    };
    const waitExited = (id: string): Promise<RuntimeContainer> =>
      waitFor(`${id} to exit`, async () => {
        const c = await rt.inspect(id);
        return c?.state === 'exited' ? c : undefined;
      });
    const tool = () => h.tool;

    before(async () => {
      h = await setup();
      rt = h.runtime;
    });
    after(async () => {
      await h?.cleanup();
    });

    test('version', async () => {
      assert.match(await rt.version(), /^\d+\.\d+\.\d+/);
    });

    test('env values (Secrets), multi-line or space-ended ones too, never appear on the tool\'s command line and still arrive intact', async () => {
      // A wrapper records the tool's argv as any local user could read it from /proc while it runs.
      const dir = await mkdtemp(join(h.scratch, 'argv-'));
      const argvLog = join(dir, 'argv.log');
      const wrapper = join(dir, tool());
      await writeFile(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${argvLog}'\nexec '${h.bin}' "$@"\n`, { mode: 0o755 });
      const spied = h.withBin(wrapper);
      const env = {
        DB_PASSWORD: 'hunter2-topsecret',
        CERT: '-----BEGIN KEY-----\nmultiline-topsecret\n-----END KEY-----',
        PADDED: 'trailing-topsecret  ',
        EMPTY: '',
      };
      const id = await spied.run(spec({ env, command: ['sh', '-c', SLEEP_UNTIL_TERM] }));
      const got = (await h.facts(id)).env;
      for (const [k, v] of Object.entries(env)) assert.ok(got.includes(`${k}=${v}`), `${k} arrives as ${JSON.stringify(v)}: ${JSON.stringify(got)}`);
      assert.doesNotMatch(await readFile(argvLog, 'utf8'), /topsecret/);
      const leftovers = (await execa('sh', ['-c', 'ls -d /dev/shm/drover-env-* /tmp/drover-env-* 2>/dev/null || true'])).stdout;
      assert.equal(leftovers, '', 'the env file is removed after create');
      await rt.remove(id);
    });

    test('run with labels, env, command and args; list by label; logs', async () => {
      const s = spec({
        labels: { [LABEL]: 'contract', 'drover.io/pod': 'default/web', 'drover.io/empty': '' },
        env: { GREETING: 'hello world', TRICKY: 'a b=c "d" $e' },
        command: ['sh', '-c'],
        args: [`echo "greeting=$GREETING"; echo "tricky=$TRICKY"; echo oops >&2; ${SLEEP_UNTIL_TERM}`],
      });
      const id = await rt.run(s);
      assert.match(id, /^[0-9a-f]{64}$/);

      const listed = await rt.list({ 'drover.io/pod': 'default/web' });
      assert.equal(listed.length, 1);
      const c = listed[0]!;
      assert.equal(c.id, id);
      assert.equal(c.name, s.name);
      assert.equal(c.image, h.image);
      assert.equal(c.state, 'running');
      assert.equal(c.exitCode, undefined);
      assert.equal(c.labels['drover.io/pod'], 'default/web');
      assert.equal(c.labels['drover.io/empty'], '');
      assert.ok(c.createdAt && c.startedAt && !c.finishedAt, JSON.stringify(c));
      assert.equal(new Date(c.startedAt).toISOString(), c.startedAt);

      // '' matches any value; every label must match.
      assert.deepEqual((await rt.list({ 'drover.io/pod': '', 'drover.io/empty': '' })).map((x) => x.id), [id]);
      assert.deepEqual(await rt.list({ 'drover.io/pod': 'default/web', 'drover.io/empty': 'other' }), []);
      assert.deepEqual(await rt.list({ 'drover.io/pod': 'default/other' }), []);

      const inspected = await rt.inspect(s.name);
      // inspect() may add the container's IP and exact times (list need not know them); the rest must agree.
      const { ip, exact: _exact, ...rest } = inspected!;
      const { ip: _listedIp, exact: _listedExact, ...listedRest } = c;
      assert.deepEqual(rest, listedRest, 'inspect and list describe the container identically');
      assert.match(ip ?? '', /^\d+\.\d+\.\d+\.\d+$|:/, 'a container on the default network has an IP');

      const logs = await waitFor('greeting in logs', async () => {
        const out = await rt.logs(id, {});
        return out.includes('tricky=') ? out : undefined;
      });
      assert.match(logs, /^greeting=hello world$/m);
      assert.match(logs, /^tricky=a b=c "d" \$e$/m);
      assert.match(logs, /^oops$/m, 'stderr is part of the logs');
      const tail = await rt.logs(id, { tail: 1 });
      assert.equal(tail.trim().split('\n').length, 1);
    });

    test('a label value with a comma or a quote is matched exactly, not split', async () => {
      const odd = 'a,b="c"';
      const id = await rt.run(spec({ labels: { [LABEL]: 'odd', 'drover.test/odd': odd }, command: ['true'] }));
      assert.deepEqual((await rt.list({ 'drover.test/odd': odd })).map((c) => c.id), [id]);
      assert.deepEqual(await rt.list({ 'drover.test/odd': 'a' }), []);
      assert.equal((await rt.inspect(id))?.labels['drover.test/odd'], odd);
    });

    test('command without args runs exactly the command (image CMD not appended)', async () => {
      const id = await rt.run(spec({ command: ['echo', 'only-command'] }));
      const c = await waitExited(id);
      assert.equal(c.exitCode, 0);
      assert.equal(await rt.logs(id, {}), 'only-command\n');
      assert.deepEqual((await h.facts(id)).argv, ['echo', 'only-command']);
    });

    test('a command element starting with "-" stays one argument', async () => {
      const id = await rt.run(spec({ command: ['sh', '-c', 'echo "$0|$1"', '--name', '-x y'] }));
      await waitExited(id);
      assert.equal(await rt.logs(id, {}), '--name|-x y\n');
    });

    test('args without command replace the image CMD', async () => {
      const id = await rt.run(spec({ args: ['echo', 'only-args'] }));
      await waitExited(id);
      assert.equal(await rt.logs(id, {}), 'only-args\n');
    });

    test('neither command nor args runs the image CMD', async () => {
      const id = await rt.run(spec());
      await waitFor('default CMD output', async () => ((await rt.logs(id, {})) === 'default-cmd\n' ? true : undefined));
      await rt.remove(id);
    });

    test('workingDir, resources, ports and host network reach the tool', async () => {
      const tcpPort = await freeHostPort('tcp');
      const udpPort = await freeHostPort('udp');
      const id = await rt.run(
        spec({
          command: ['sh', '-c', `pwd; ${SLEEP_UNTIL_TERM}`],
          workingDir: '/bin',
          memoryBytes: 64 * 1024 * 1024,
          cpuMilli: 250,
          ports: [
            { containerPort: 80, hostPort: 0, protocol: 'TCP' },
            { containerPort: 81, hostPort: tcpPort, hostIP: '127.0.0.1', protocol: 'TCP' },
            { containerPort: 53, hostPort: udpPort, protocol: 'UDP' },
            { containerPort: 82, protocol: 'TCP' },
          ],
        }),
      );
      await waitFor('pwd output', async () => ((await rt.logs(id, {})).startsWith('/bin\n') ? true : undefined));
      const facts = await h.facts(id);
      assert.equal(facts.memoryBytes, 64 * 1024 * 1024);
      assert.equal(facts.cpuMilli, 250);
      assert.deepEqual(Object.keys(facts.portBindings).sort(), ['53/udp', '81/tcp']);
      assert.deepEqual(facts.portBindings['81/tcp'], [{ HostIp: '127.0.0.1', HostPort: String(tcpPort) }]);
      await rt.remove(id);

      const hostId = await rt.run(spec({ hostNetwork: true, command: ['sh', '-c', SLEEP_UNTIL_TERM], ports: [{ containerPort: 80, hostPort: 80, protocol: 'TCP' }] }));
      const hostFacts = await h.facts(hostId);
      assert.equal(hostFacts.networkMode, 'host');
      assert.deepEqual(hostFacts.portBindings, {});
      await rt.remove(hostId);
    });

    test('mounts: a host directory read-write and read-only; a single file', async () => {
      const dir = await mkdtemp(join(h.scratch, 'mount-'));
      await writeFile(join(dir, 'in.txt'), 'from-host\n');
      const id = await rt.run(
        spec({
          command: ['sh', '-c', 'cat /rw/in.txt; echo from-container > /rw/out.txt; cat /single; if (echo x > /ro/x) 2>/dev/null; then echo ro-writable; else echo ro-refused; fi'],
          mounts: [
            { source: dir, target: '/rw', readOnly: false },
            { source: dir, target: '/ro', readOnly: true },
            { source: join(dir, 'in.txt'), target: '/single', readOnly: true },
          ],
        }),
      );
      const c = await waitExited(id);
      assert.equal(c.exitCode, 0, await rt.logs(id, {}));
      assert.equal(await rt.logs(id, {}), 'from-host\nfrom-host\nro-refused\n');
      assert.equal(await readFile(join(dir, 'out.txt'), 'utf8'), 'from-container\n');
    });

    test('a host path holding ":" is mounted through --mount', async () => {
      const dir = await mkdtemp(join(h.scratch, 'with:colon-'));
      await writeFile(join(dir, 'f'), 'colon-ok\n');
      const id = await rt.run(spec({ command: ['cat', '/c/f'], mounts: [{ source: dir, target: '/c', readOnly: true }] }));
      await waitExited(id);
      assert.equal(await rt.logs(id, {}), 'colon-ok\n');
    });

    test('devices: /dev/null mapped to /dev/xnull', async () => {
      const id = await rt.run(
        spec({
          command: ['sh', '-c', 'test -c /dev/xnull && echo char-device; echo data > /dev/xnull && echo writable'],
          devices: [{ hostPath: '/dev/null', containerPath: '/dev/xnull', permissions: 'rw' }],
        }),
      );
      const c = await waitExited(id);
      assert.equal(await rt.logs(id, {}), 'char-device\nwritable\n');
      assert.equal(c.exitCode, 0);
      assert.ok((await h.facts(id)).devices.includes('/dev/xnull'));
    });

    test('exec: exit code, output, timeout; a stopped container is a failed result', async () => {
      const id = await rt.run(spec({ command: ['sh', '-c', SLEEP_UNTIL_TERM] }));
      assert.deepEqual(await rt.exec(id, ['sh', '-c', 'echo out; echo err >&2; exit 0'], 5_000), { exitCode: 0, output: 'out\nerr\n', timedOut: false });
      const failed = await rt.exec(id, ['test', '-f', '/nope'], 5_000);
      assert.deepEqual(failed, { exitCode: 1, output: '', timedOut: false });
      assert.deepEqual(await rt.exec(id, ['sh', '-c', 'echo seven; exit 7'], 5_000), { exitCode: 7, output: 'seven\n', timedOut: false }, "the command's own exit code, and only its output");
      const t0 = Date.now();
      const slow = await rt.exec(id, ['sleep', '30'], 1_000);
      assert.equal(slow.timedOut, true);
      assert.equal(slow.exitCode, -1);
      assert.ok(Date.now() - t0 < 10_000);
      await rt.stop(id, 1);
      const onStopped = await rt.exec(id, ['true'], 5_000);
      assert.notEqual(onStopped.exitCode, 0);
      assert.equal(onStopped.timedOut, false);
      await rt.remove(id);
    });

    test('exit code 3 shows as exited with exitCode 3, also in list', async () => {
      const s = spec({ command: ['sh', '-c', 'exit 3'], labels: { [LABEL]: 'exit-3' } });
      const id = await rt.run(s);
      const c = await waitExited(id);
      assert.equal(c.exitCode, 3);
      assert.ok(c.finishedAt);
      const [listed] = await rt.list({ [LABEL]: 'exit-3' });
      assert.equal(listed?.state, 'exited');
      assert.equal(listed?.exitCode, 3);
      assert.equal(listed?.finishedAt, c.finishedAt);
    });

    test('list returns created, running and exited containers', async () => {
      const labels = { [LABEL]: 'states' };
      const running = await rt.run(spec({ labels, command: ['sh', '-c', SLEEP_UNTIL_TERM] }));
      const exited = await rt.run(spec({ labels, command: ['true'] }));
      await waitExited(exited);
      const created = (await h.cli(['create', '--label', `${LABEL}=states`, h.image])).trim().split('\n').pop()!;
      const states = Object.fromEntries((await rt.list(labels)).map((c) => [c.id, c.state]));
      assert.deepEqual(states, { [running]: 'running', [exited]: 'exited', [created]: 'created' });
      const c = await rt.inspect(created);
      assert.equal(c?.startedAt, undefined, 'never started: no start time');
      await rt.remove(running);
      await rt.remove(created);
    });

    test('stop then start', async () => {
      const id = await rt.run(spec({ command: ['sh', '-c', SLEEP_UNTIL_TERM] }));
      const t0 = Date.now();
      await rt.stop(id, 10);
      assert.ok(Date.now() - t0 < 5_000, 'the TERM trap ends it well before the timeout');
      const stopped = await rt.inspect(id);
      assert.equal(stopped?.state, 'exited');
      assert.equal(stopped?.exitCode, 0);
      await rt.stop(id, 1); // stopping a stopped container is fine
      await rt.start(id);
      assert.equal((await rt.inspect(id))?.state, 'running');
      await rt.stop(id, 1);
    });

    test('stop with a timeout kills a process that ignores SIGTERM', async () => {
      const id = await rt.run(spec({ command: ['sh', '-c', 'while true; do sleep 1; done'] }));
      await rt.stop(id, 1);
      const c = await rt.inspect(id);
      assert.equal(c?.state, 'exited');
      assert.equal(c?.exitCode, 137);
    });

    test('remove a running container; removing it again is fine', async () => {
      const s = spec({ command: ['sh', '-c', 'while true; do sleep 1; done'] });
      const id = await rt.run(s);
      const t0 = Date.now();
      await rt.remove(id);
      assert.ok(Date.now() - t0 < 5_000, 'remove kills without waiting for a stop timeout');
      assert.equal(await rt.inspect(id), undefined);
      assert.equal(await rt.inspect(s.name), undefined);
      await rt.remove(id);
      await rt.remove('never-existed');
    });

    test('images lists the images present, by their full names', async () => {
      const images = await rt.images();
      assert.ok(images.includes(h.image), images.join(', '));
      assert.ok(images.includes(h.noEntrypointImage));
      assert.ok(!images.includes('localhost/not-here:0'));
    });

    test('load of a saved image archive gives its names and lists it; removeImage removes it (twice is fine); a truncated archive names the tool\'s complaint', async (t) => {
      if (!rt.load || !rt.removeImage) return t.skip(`${tool()} adapter has no load/removeImage`);
      const archive = join(h.scratch, `saved-${process.pid}.tar`);
      const tag = `localhost/drover-contract-load:${process.pid}`;
      // The tool makes the archive (`save`): a tool that cannot (the stand-in nerdctl) skips the case.
      const saved = await h.cli(['tag', h.image, tag]).then(() => h.cli(['save', '--output', archive, tag])).then(
        () => true,
        () => false,
      );
      if (!saved) return t.skip(`${tool()} cannot tag and save images here`);
      await rt.removeImage(tag);
      assert.ok(!(await rt.images()).includes(tag), 'removed before the load');
      assert.deepEqual(await rt.load(archive), [tag]);
      assert.ok((await rt.images()).includes(tag), 'listed after the load');
      await rt.removeImage(tag);
      assert.ok(!(await rt.images()).includes(tag));
      await rt.removeImage(tag);
      const whole = await readFile(archive);
      await writeFile(archive, whole.subarray(0, Math.floor(whole.length / 3)));
      await rejectsRuntimeError(rt.load(archive), new RegExp(`^${tool()} load of .* failed: .*(EOF|truncat|unexpected end)`, 'i'));
    });

    test('pull of an unreachable image names the cause', async () => {
      await rejectsRuntimeError(rt.pull('127.0.0.1:1/nope:1'), new RegExp(`^${tool()} pull failed: .*127\\.0\\.0\\.1:1`));
    });

    test('run with a missing image fails without pulling and leaves nothing behind', async () => {
      const s = spec({ image: 'localhost/does-not-exist:1' });
      const err = await rejectsRuntimeError(rt.run(s), h.errors.missingImage);
      assert.ok(err.cause, 'keeps the execa error as cause');
      assert.equal(await rt.inspect(s.name), undefined);
    });

    test('run of an image without CMD or ENTRYPOINT and no command fails', async () => {
      await rejectsRuntimeError(rt.run(spec({ image: h.noEntrypointImage })), /no command or entrypoint provided/);
    });

    test('a container that fails to start (left created by run -d) is removed again', async () => {
      const s = spec({ command: ['/no/such/binary'] });
      await rejectsRuntimeError(rt.run(s), new RegExp(`^${tool()} run failed: .*/no/such/binary`));
      assert.equal(await rt.inspect(s.name), undefined);
    });

    test('a run clashing with a never-started container of that name (another owner) leaves that one alone', async () => {
      // The clean-up after a failed run looks the name up: it must not take a created container it did not make.
      const s = spec({ command: ['true'] });
      const other = (await h.cli(['create', '--name', s.name, '--label', `${LABEL}=someone-else`, h.image])).trim().split('\n').pop()!;
      await rejectsRuntimeError(rt.run(s), h.errors.nameClash);
      const left = await rt.inspect(s.name);
      assert.equal(left?.id, other);
      assert.equal(left?.state, 'created');
      await rt.remove(other);
    });

    test('a name clash fails and leaves the existing container alone', async () => {
      const s = spec({ command: ['sh', '-c', SLEEP_UNTIL_TERM] });
      const id = await rt.run(s);
      await rejectsRuntimeError(rt.run({ ...s, command: ['true'] }), h.errors.nameClash);
      assert.equal((await rt.inspect(s.name))?.id, id);
      assert.equal((await rt.inspect(id))?.state, 'running');
      await rt.remove(id);
    });

    test('operations on a missing container name the subcommand and cause', async () => {
      await rejectsRuntimeError(rt.stop('nope', 1), new RegExp(`^${tool()} stop failed: ${h.errors.missingContainer.source}`));
      await rejectsRuntimeError(rt.start('nope'), new RegExp(`^${tool()} start failed: ${h.errors.missingContainer.source}`));
      await rejectsRuntimeError(rt.logs('nope', {}), new RegExp(`^${tool()} logs failed: .*nope`));
      assert.equal(await rt.inspect('nope'), undefined);
    });

    test('a missing binary gives a clear error', async () => {
      const missing = h.withBin(`/nonexistent/${tool()}`);
      await rejectsRuntimeError(missing.version(), new RegExp(`^${tool()} not found \\(is it installed\\?\\)`));
      await rejectsRuntimeError(missing.list({}), new RegExp(`^${tool()} not found \\(is it installed\\?\\)`));
    });

    test('logs of a container run twice: --timestamps prefixes RFC 3339 times; since and until cut between the runs (the agent\'s boundary for logs -p)', async () => {
      const id = await rt.run(spec({ command: ['sh', '-c', 'if [ -e /ran ]; then echo second; else touch /ran; echo first; fi'] }));
      const first = await waitExited(id);
      const end = first.exact?.finishedAt;
      assert.ok(end && Date.parse(end) > 0, `inspect gives the run's exact end: ${JSON.stringify(first.exact)}`);
      await rt.start(id);
      await waitFor('the second run logged and ended', async () => ((await rt.logs(id, {})).includes('second') && (await rt.inspect(id))?.state === 'exited' ? true : undefined));
      const stamped = (await rt.logs(id, { timestamps: true })).trimEnd().split('\n');
      assert.equal(stamped.length, 2, stamped.join('\n'));
      for (const [i, text] of ['first', 'second'].entries()) {
        const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) (.*)$/.exec(stamped[i]!);
        assert.ok(m && !Number.isNaN(Date.parse(m[1]!)), `an RFC 3339 time before the line: ${stamped[i]}`);
        assert.equal(m[2], text);
      }
      // Not at the exact recorded end: the run's last line may carry a later time than its finishedAt by a
      // fraction of a millisecond (CI saw `--until END` miss it); the agent cuts into the gap (runsBoundary).
      const secondStart = (await rt.inspect(id))?.exact?.startedAt;
      assert.ok(secondStart && Date.parse(secondStart) > Date.parse(end), `the second run's start: ${secondStart}`);
      const cut = runsBoundary(Date.parse(end), Date.parse(secondStart));
      assert.equal(await rt.logs(id, { until: cut }), 'first\n');
      assert.equal(await rt.logs(id, { since: cut }), 'second\n');
      assert.equal(await rt.logs(id, { since: cut, timestamps: true }), `${stamped[1]}\n`);
      await rt.remove(id);
    });

    test('bridgeSubnet and --ip: the container gets the address asked for; a second one asking it while the first runs is refused, naming it, and leaves nothing behind', async () => {
      assert.ok(rt.bridgeSubnet, `${tool()} tells its bridge subnet`);
      const subnet = await rt.bridgeSubnet();
      assert.ok(subnet, 'the default network has an IPv4 subnet');
      const ip = pickAddress(addressRange(subnet), `contract-${process.pid}-${Date.now()}`, new Set())!;
      const id = await rt.run(spec({ ip, command: ['sh', '-c', SLEEP_UNTIL_TERM] }));
      assert.equal((await rt.inspect(id))?.ip, ip);
      const second = spec({ ip, command: ['sh', '-c', SLEEP_UNTIL_TERM] });
      const err = await rejectsRuntimeError(rt.run(second), new RegExp(`^${tool()} run failed: `));
      assert.equal(addressTakenIn(err.message), ip, `the refusal names the address: ${err.message}`);
      assert.equal(await rt.inspect(second.name), undefined);
      await rt.remove(id);
    });

    test('watchExits: an exit of a matching container is reported within a second or two; others and execs are not', async () => {
      assert.ok(rt.watchExits, `${tool()} watches exits`);
      let exits = 0;
      const stop = rt.watchExits({ [LABEL]: 'watched', 'drover.test/also': 'yes' }, () => exits++);
      try {
        // The events stream needs a moment to start listening.
        await new Promise((r) => setTimeout(r, 1500));
        await rt.run(spec({ labels: { [LABEL]: 'other', 'drover.test/also': 'yes' }, command: ['sh', '-c', 'exit 0'] }));
        await rt.run(spec({ labels: { [LABEL]: 'watched', 'drover.test/also': 'no' }, command: ['sh', '-c', 'exit 0'] }));
        // Long enough that the exec lands while it runs on a loaded machine (ci18, one core kept busy: at 3 s the
        // container was already gone when the exec came, exit code -1).
        const id = await rt.run(spec({ labels: { [LABEL]: 'watched', 'drover.test/also': 'yes' }, command: ['sh', '-c', 'sleep 8; exit 3'] }));
        assert.equal((await rt.exec(id, ['true'], 5_000)).exitCode, 0);
        const started = Date.now();
        await waitFor('exit reported', async () => (exits > 0 ? true : undefined), 20_000);
        console.log(`[${tool()} events] exit noticed ${Date.now() - started} ms after an exec in an 8 s container`);
        assert.equal(exits, 1, 'only the watched container, not its exec');
        // The event can come before the tool has recorded the exit for inspect.
        assert.equal(await waitFor('exit code recorded', async () => (await rt.inspect(id))?.exitCode, 10_000), 3);
      } finally {
        stop();
      }
    });

    extra?.(() => h);
  });
}
