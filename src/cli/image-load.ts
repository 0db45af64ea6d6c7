/**
 * `drover image load FILE.tar`: airgap, on the device. Loads an image archive (`podman save` /
 * `nerdctl save` output) into the device's container runtime with no link at all, and adds its
 * sha256 to the agent's record of loaded archives (STATE_DIR/images/loaded.json, the same file and
 * atomic write as the agent's own), so the running agent reports it at its next look and the server
 * knows the device has it (a pod naming it runs without a transfer).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { defaultStateDir, RUNTIME_KINDS, type RuntimeKind } from '../../agent/config.js';
import { recordLoaded, recordPath } from '../../agent/images/record.js';
import { errorMessage } from '../util/errors.js';
import { CliError } from './client.js';
import type { CommandContext } from './context.js';

interface LoadOptions {
  stateDir: string;
  runtime: string;
  podmanRoot?: string;
  podmanRunroot?: string;
  nerdctlNamespace: string;
  containerdAddress?: string;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const d of createReadStream(path)) h.update(d as Buffer);
  return `sha256:${h.digest('hex')}`;
}

export function registerImageLoad(image: Command, ctx: CommandContext): void {
  image
    .command('load')
    .description("Load an image archive (podman/nerdctl save) into this device's container runtime, with no link: the agent reports it to the server")
    .argument('<file>', 'the archive (.tar: docker-archive or oci-archive)')
    .option('--state-dir <dir>', "the agent's state directory (where its record of loaded images is)", defaultStateDir())
    .option('--runtime <name>', 'container runtime: auto (podman, else nerdctl), podman or nerdctl (as the agent\'s --runtime)', 'auto')
    .option('--podman-root <dir>', "podman --root, as the agent's --podman-root")
    .option('--podman-runroot <dir>', "podman --runroot, as the agent's --podman-runroot")
    .option('--nerdctl-namespace <ns>', "containerd namespace, as the agent's --nerdctl-namespace", 'drover')
    .option('--containerd-address <path>', "containerd socket for nerdctl, as the agent's --containerd-address")
    .action(async (file: string, o: LoadOptions) => {
      if (!(RUNTIME_KINDS as readonly string[]).includes(o.runtime)) throw new CliError(`--runtime: "${o.runtime}" is not a runtime; use ${RUNTIME_KINDS.join(', ')}`);
      const path = resolve(file);
      let size: number;
      try {
        const st = await stat(path);
        if (!st.isFile()) throw new CliError(`${file} is not a file: give the archive made by podman save or nerdctl save`);
        size = st.size;
      } catch (err) {
        if (err instanceof CliError) throw err;
        throw new CliError(`cannot read ${file}: ${errorMessage(err)}`, { cause: err });
      }
      // The digest first: it names the archive in the record, and the server names it the same way.
      const digest = await sha256File(path);
      // What the runtime itself reads (CONTAINERS_CONF, XDG_RUNTIME_DIR…) comes from this environment.
      const env = Object.fromEntries(Object.entries(ctx.io.env).filter((e): e is [string, string] => e[1] !== undefined));
      // The runtimes (and execa under them) load only for this verb, not for every command that registers it.
      const { detectRuntime } = await import('../../agent/runtime/detect.js');
      const runtime = await detectRuntime({
        kind: o.runtime as RuntimeKind,
        podman: { root: o.podmanRoot, runroot: o.podmanRunroot, env },
        nerdctl: { namespace: o.nerdctlNamespace, address: o.containerdAddress, env },
      }).catch((err: unknown) => {
        throw new CliError(errorMessage(err), { cause: err });
      });
      if (!runtime.load) throw new CliError(`container runtime ${runtime.name} cannot load image archives`);
      let names: string[];
      try {
        names = await runtime.load(path);
      } catch (err) {
        throw new CliError(errorMessage(err), { cause: err });
      }
      try {
        await recordLoaded(o.stateDir, digest, names, 'airgap', new Date());
      } catch (err) {
        throw new CliError(`the image is loaded into ${runtime.name}, but the agent's record ${recordPath(o.stateDir)} could not be written (${errorMessage(err)}): the server will not know this device has it; run this again as the agent's user`, { cause: err });
      }
      ctx.io.stdout(`Loaded ${names.join(', ')} from ${file} (${digest}, ${(size / 1e6).toFixed(1)} MB) into ${runtime.name}; recorded in ${recordPath(o.stateDir)}\n`);
    });
}
