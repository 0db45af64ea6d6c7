import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { detectRuntime } from '../../agent/runtime/detect.js';
import { PodmanRuntime } from '../../agent/runtime/podman.js';
import type { RunSpec, RuntimeContainer } from '../../agent/runtime/types.js';
import { RuntimeError } from '../../src/util/errors.js';
import { buildNoEntrypointImage, buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

// busybox sh as PID 1 ignores SIGTERM unless it traps it; `sleep 1` bounds how late the trap runs.
const SLEEP_UNTIL_TERM = 'trap "exit 0" TERM; while true; do sleep 1; done';
const LABEL = 'drover.test/suite';

let sb: PodmanSandbox;
let rt: PodmanRuntime;
let image: string;
let noEntrypointImage: string;
let seq = 0;

function spec(over: Partial<RunSpec> = {}): RunSpec {
  seq += 1;
  return { name: `t${seq}`, image, env: {}, ports: [], labels: { [LABEL]: 'runtime-podman' }, ...over };
}

/** Ports get bound on the host; random ones keep parallel runs apart. */
function randomPort(): number {
  return 30_000 + Math.floor(Math.random() * 20_000);
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitExited(id: string): Promise<RuntimeContainer> {
  return waitFor(`${id} to exit`, async () => {
    const c = await rt.inspect(id);
    return c?.state === 'exited' ? c : undefined;
  });
}

async function rawInspect(id: string): Promise<any> {
  const { stdout } = await execa('podman', ['--root', sb.root, '--runroot', sb.runroot, 'container', 'inspect', id], {
    env: sb.env,
  });
  return JSON.parse(stdout)[0];
}

async function rejectsRuntimeError(p: Promise<unknown>, message: RegExp): Promise<RuntimeError> {
  const err = await p.then(
    () => assert.fail('expected a RuntimeError'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RuntimeError, `not a RuntimeError: ${String(err)}`);
  assert.match(err.message, message);
  return err;
}

describe('PodmanRuntime against real podman', { timeout: 600_000 }, () => {
  before(async () => {
    sb = await podmanSandbox();
    rt = sb.runtime;
    image = await buildTestImage(sb);
    noEntrypointImage = await buildNoEntrypointImage(sb);
  });
  after(async () => {
    await sb?.cleanup();
  });

  test('version', async () => {
    assert.match(await rt.version(), /^\d+\.\d+\.\d+/);
  });

  test('env values (Secrets), multi-line ones too, never appear on podman\'s command line and still arrive', async () => {
    // A wrapper records podman's argv as any local user could read it from /proc while podman runs.
    const dir = await mkdtemp(join(sb.root, '..', 'argv-'));
    const argvLog = join(dir, 'argv.log');
    const wrapper = join(dir, 'podman');
    await writeFile(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${argvLog}'\nexec podman "$@"\n`, { mode: 0o755 });
    const spied = new PodmanRuntime({ bin: wrapper, root: sb.root, runroot: sb.runroot, env: sb.env });
    const s = spec({ env: { DB_PASSWORD: 'hunter2-topsecret', CERT: '-----BEGIN KEY-----\nmultiline-topsecret\n-----END KEY-----' }, command: ['sh', '-c', `echo "pw=$DB_PASSWORD"; ${SLEEP_UNTIL_TERM}`] });
    const id = await spied.run(s);
    const env: string[] = (await rawInspect(id)).Config.Env;
    assert.ok(env.includes('DB_PASSWORD=hunter2-topsecret'), env.join(' '));
    assert.ok(env.includes('CERT=-----BEGIN KEY-----\nmultiline-topsecret\n-----END KEY-----'), env.join(' '));
    assert.doesNotMatch(await readFile(argvLog, 'utf8'), /topsecret/);
    const leftovers = (await execa('sh', ['-c', 'ls -d /dev/shm/drover-env-* /tmp/drover-env-* 2>/dev/null || true'])).stdout;
    assert.equal(leftovers, '', 'the env file is removed after create');
    await rt.remove(id);
  });

  test('run with labels, env, command and args; list by label; logs', async () => {
    const s = spec({
      labels: { [LABEL]: 'runtime-podman', 'drover.io/pod': 'default/web', 'drover.io/empty': '' },
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
    assert.equal(c.image, image);
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
    // inspect() adds the container's IP (list cannot know it); the rest must agree.
    const { ip, ...rest } = inspected!;
    assert.deepEqual(rest, c, 'inspect and list describe the container identically');
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

  test('command without args runs exactly the command (image CMD not appended)', async () => {
    const id = await rt.run(spec({ command: ['echo', 'only-command'] }));
    const c = await waitExited(id);
    assert.equal(c.exitCode, 0);
    assert.equal(await rt.logs(id, {}), 'only-command\n');
    const raw = await rawInspect(id);
    assert.deepEqual([raw.Path, ...raw.Args], ['echo', 'only-command']);
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

  test('workingDir, resources, ports and host network reach podman', async () => {
    const [tcpPort, udpPort] = [randomPort(), randomPort()];
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
    const raw = await rawInspect(id);
    assert.equal(raw.HostConfig.Memory, 64 * 1024 * 1024);
    assert.equal(raw.HostConfig.NanoCpus, 250_000_000);
    assert.deepEqual(Object.keys(raw.HostConfig.PortBindings).sort(), ['53/udp', '81/tcp']);
    assert.deepEqual(raw.HostConfig.PortBindings['81/tcp'], [{ HostIp: '127.0.0.1', HostPort: String(tcpPort) }]);
    await rt.remove(id);

    const hostId = await rt.run(
      spec({ hostNetwork: true, command: ['true'], ports: [{ containerPort: 80, hostPort: 80, protocol: 'TCP' }] }),
    );
    const hostRaw = await rawInspect(hostId);
    assert.equal(hostRaw.HostConfig.NetworkMode, 'host');
    assert.deepEqual(hostRaw.HostConfig.PortBindings ?? {}, {});
  });

  test('mounts: a host directory read-write and read-only; a single file', async () => {
    const dir = await mkdtemp(join(sb.dir, 'mount-'));
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
    const raw = await rawInspect(id);
    assert.ok(JSON.stringify(raw.HostConfig.Devices).includes('/dev/xnull'), JSON.stringify(raw.HostConfig.Devices));
  });

  test('exec: exit code, output, timeout; a stopped container is a failed result', async () => {
    const id = await rt.run(spec({ command: ['sh', '-c', SLEEP_UNTIL_TERM] }));
    assert.deepEqual(await rt.exec(id, ['sh', '-c', 'echo out; echo err >&2; exit 0'], 5_000), { exitCode: 0, output: 'out\nerr\n', timedOut: false });
    const failed = await rt.exec(id, ['test', '-f', '/nope'], 5_000);
    assert.equal(failed.exitCode, 1);
    assert.equal(failed.timedOut, false);
    const t0 = Date.now();
    const slow = await rt.exec(id, ['sleep', '30'], 1_000);
    assert.equal(slow.timedOut, true);
    assert.ok(Date.now() - t0 < 10_000);
    await rt.stop(id, 1);
    const onStopped = await rt.exec(id, ['true'], 5_000);
    assert.notEqual(onStopped.exitCode, 0);
    await rt.remove(id);
  });

  test('published port answers from the host', async () => {
    const hostPort = randomPort();
    const id = await rt.run(
      spec({
        command: ['sh', '-c', 'mkdir /www && echo port-ok > /www/index.html && exec httpd -f -p 8080 -h /www'],
        ports: [{ containerPort: 8080, hostPort, hostIP: '127.0.0.1', protocol: 'TCP' }],
      }),
    );
    const body = await waitFor('httpd through the published port', async () => {
      try {
        const res = await fetch(`http://127.0.0.1:${hostPort}/index.html`);
        return await res.text();
      } catch {
        return undefined;
      }
    });
    assert.equal(body, 'port-ok\n');
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
    const { stdout } = await execa(
      'podman',
      ['--root', sb.root, '--runroot', sb.runroot, 'create', '--label', `${LABEL}=states`, image],
      { env: sb.env },
    );
    const created = stdout.trim();
    const states = Object.fromEntries((await rt.list(labels)).map((c) => [c.id, c.state]));
    assert.deepEqual(states, { [running]: 'running', [exited]: 'exited', [created]: 'created' });
    const c = await rt.inspect(created);
    assert.equal(c?.startedAt, undefined, 'never started: no start time');
    await rt.remove(running);
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
    assert.ok(images.includes(image), images.join(', '));
    assert.ok(images.includes(noEntrypointImage));
    assert.ok(!images.includes('localhost/not-here:0'));
  });

  test('pull of an unreachable image names the cause', async () => {
    await rejectsRuntimeError(rt.pull('127.0.0.1:1/nope:1'), /^podman pull failed: .*127\.0\.0\.1:1/);
  });

  test('run with a missing image fails without pulling and leaves nothing behind', async () => {
    const s = spec({ image: 'localhost/does-not-exist:1' });
    const err = await rejectsRuntimeError(rt.run(s), /^podman create failed: localhost\/does-not-exist:1: image not known$/);
    assert.ok(err.cause, 'keeps the execa error as cause');
    assert.equal(await rt.inspect(s.name), undefined);
  });

  test('run of an image without CMD or ENTRYPOINT and no command fails', async () => {
    await rejectsRuntimeError(rt.run(spec({ image: noEntrypointImage })), /no command or entrypoint provided/);
  });

  test('a container that fails to start is removed again', async () => {
    const s = spec({ command: ['/no/such/binary'] });
    await rejectsRuntimeError(rt.run(s), /^podman start failed: .*\/no\/such\/binary/);
    assert.equal(await rt.inspect(s.name), undefined);
    const missingDir = spec({ command: ['true'], workingDir: '/does/not/exist' });
    await rejectsRuntimeError(rt.run(missingDir), /^podman start failed: .*workdir "\/does\/not\/exist" does not exist/);
    assert.equal(await rt.inspect(missingDir.name), undefined);
  });

  test('a name clash fails and leaves the existing container alone', async () => {
    const s = spec({ command: ['sh', '-c', SLEEP_UNTIL_TERM] });
    const id = await rt.run(s);
    await rejectsRuntimeError(rt.run({ ...s, command: ['true'] }), /^podman create failed: .*already in use/);
    assert.equal((await rt.inspect(s.name))?.id, id);
    assert.equal((await rt.inspect(id))?.state, 'running');
    await rt.remove(id);
  });

  test('operations on a missing container name podman subcommand and cause', async () => {
    await rejectsRuntimeError(rt.stop('nope', 1), /^podman stop failed: no container with name or ID "nope" found/);
    await rejectsRuntimeError(rt.start('nope'), /^podman start failed: no container with name or ID "nope" found/);
    await rejectsRuntimeError(rt.logs('nope', {}), /^podman logs failed: .*nope/);
    assert.equal(await rt.inspect('nope'), undefined);
  });

  test('a missing podman binary gives a clear error', async () => {
    const missing = new PodmanRuntime({ bin: '/nonexistent/podman' });
    await rejectsRuntimeError(missing.version(), /^podman not found \(is it installed\?\)/);
    await rejectsRuntimeError(missing.list({}), /^podman not found \(is it installed\?\)/);
  });

  test('detectRuntime', async () => {
    const found = await detectRuntime({ podman: { root: sb.root, runroot: sb.runroot, env: sb.env } });
    assert.equal(found.name, 'podman');
    assert.ok((await found.list({ [LABEL]: '' })).length > 0, 'uses the given store');
    await rejectsRuntimeError(
      detectRuntime({ podman: { bin: '/nonexistent/podman' } }),
      /tried podman .*podman not found \(is it installed\?\)/,
    );
  });

  test('watchExits: an exit of a matching container is reported within a second or two; others are not', async () => {
    let exits = 0;
    const stop = rt.watchExits({ [LABEL]: 'watched' }, () => exits++);
    try {
      // podman events needs a moment to start listening.
      await new Promise((r) => setTimeout(r, 1500));
      await rt.run(spec({ labels: { [LABEL]: 'other' }, command: ['sh', '-c', 'exit 0'] }));
      const id = await rt.run(spec({ labels: { [LABEL]: 'watched' }, command: ['sh', '-c', 'sleep 1; exit 3'] }));
      const started = Date.now();
      await waitFor('exit reported', async () => (exits > 0 ? true : undefined), 10_000);
      console.log(`[podman events] exit noticed ${Date.now() - started} ms after the start of a 1 s container`);
      assert.equal(exits, 1, 'only the watched container');
      // The event can come before podman's cleanup has recorded the exit for inspect.
      assert.equal(await waitFor('exit code recorded', async () => (await rt.inspect(id))?.exitCode, 10_000), 3);
    } finally {
      stop();
    }
  });
});
