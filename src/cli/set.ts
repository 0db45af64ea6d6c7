import type { Command } from 'commander';
import type { ApiObject } from '../api/meta.js';
import type { Container } from '../api/pod.js';
import { CliError, dryRunSuffix } from './client.js';
import { addConnectionOptions, addDryRunOption, DEFAULT_NAMESPACE, eachObject, type CommandContext } from './context.js';
import { parseTargets, updateObject } from './mutate.js';
import { objectName } from './output.js';

/** Kinds whose pod template (or, for a Pod, whose spec) may change; a Job's template is fixed once created. */
const IMAGE_KINDS = ['Deployment', 'DaemonSet', 'ReplicaSet', 'Pod'];

/** `web=nginx:1.25 sidecar=busybox` → container name → image; `*` means every container. */
export function parseImageArgs(args: string[]): { resources: string[]; images: Map<string, string> } {
  const resources: string[] = [];
  const images = new Map<string, string>();
  for (const a of args) {
    const i = a.indexOf('=');
    if (i < 0) {
      if (images.size) throw new CliError(`all resources must be specified before image changes: ${a}`);
      resources.push(a);
      continue;
    }
    const name = a.slice(0, i);
    const image = a.slice(i + 1);
    if (!name || !image) throw new CliError(`invalid image change "${a}": expected CONTAINER=IMAGE`);
    images.set(name, image);
  }
  if (!resources.length) throw new CliError('one or more resources must be specified as <resource> <name> or <resource>/<name>');
  if (!images.size) throw new CliError('at least one image update is required');
  return { resources, images };
}

/** The containers of a workload's pod template, or of a pod. */
export function podContainers(obj: ApiObject): Container[] {
  const spec = obj.spec as { containers?: Container[]; template?: { spec?: { containers?: Container[] } } } | undefined;
  return (obj.kind === 'Pod' ? spec?.containers : spec?.template?.spec?.containers) ?? [];
}

/** Set the images; returns whether anything changed. Throws naming a container that does not exist. */
export function setImages(obj: ApiObject, images: Map<string, string>): boolean {
  const containers = podContainers(obj);
  let changed = false;
  for (const [name, image] of images) {
    const matched = name === '*' ? containers : containers.filter((c) => c.name === name);
    if (!matched.length) throw new CliError(`unable to find container named "${name}"`);
    for (const c of matched) {
      if (c.image !== image) {
        c.image = image;
        changed = true;
      }
    }
  }
  return changed;
}

export function registerSet(program: Command, ctx: CommandContext): void {
  const set = program.command('set').description('change a field of existing objects');
  const image = set
    .command('image')
    .description('update the image of containers: set image deployment/web web=nginx:1.25 [sidecar=...]')
    .argument('<args...>', 'resources (deployment/web, or ds agent) followed by CONTAINER=IMAGE pairs (* for every container)')
    .option('-n, --namespace <namespace>', 'namespace of the objects', DEFAULT_NAMESPACE);
  addConnectionOptions(addDryRunOption(image)).action(async (args: string[], opts: { namespace?: string }, command: Command) => {
    const { resources, images } = parseImageArgs(args);
    const targets = parseTargets(resources, 'set image', IMAGE_KINDS);
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    await eachObject(targets, async (t) => {
      await updateObject(client, t.kind, ns, t.name, (obj) => setImages(obj, images));
      ctx.io.stdout(`${objectName(t.kind, t.name)} image updated${dryRunSuffix(client.dryRun)}\n`);
    });
  });
}
