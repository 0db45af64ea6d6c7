import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { canonicalJson } from '../util/canonical-json.js';
import { CliError, dryRunSuffix, FATAL_REASONS, type ApiClient } from './client.js';
import { addConnectionOptions, addDryRunOption, DEFAULT_NAMESPACE, notFound, parseResourceArgs, type CommandContext } from './context.js';
import { objectName, qualifiedPlural, toJson, toYaml } from './output.js';
import { CONFLICT, isStaleWrite, retryConflicts } from './mutate.js';

const HEADER = [
  'Please edit the object below. Lines beginning with a \'#\' will be ignored,',
  'and an empty file will abort the edit. If an error occurs while saving this file will be',
  'reopened with the relevant failures.',
];

/** The text handed to the editor: kubectl's header, the errors of the last attempt if any, then the object. */
export function editBuffer(obj: unknown, format: 'yaml' | 'json', errors: string[] = []): string {
  const comments = [...HEADER, '', ...errors.flatMap((e) => e.split('\n'))].map((l) => (l ? `# ${l}` : '#'));
  const body = format === 'json' ? toJson(obj) : toYaml(obj);
  return `${comments.join('\n')}\n#\n${body}`;
}

/** The object the user saved: comment lines dropped; undefined for an empty file (abort). */
export function readEdited(text: string, format: 'yaml' | 'json'): ApiObject | undefined {
  const body = text
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('#'))
    .join('\n');
  if (!body.trim()) return undefined;
  let parsed: unknown;
  try {
    parsed = format === 'json' ? JSON.parse(body) : parseYaml(body);
  } catch (err) {
    throw new CliError(`the edited file is not valid ${format.toUpperCase()}: ${(err as Error).message.split('\n')[0]}`, { reason: 'EditInvalid', cause: err });
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError('the edited file must hold one object', { reason: 'EditInvalid' });
  return parsed as ApiObject;
}

/** Runs the user's editor on `file` and waits for it: KUBE_EDITOR, then EDITOR, then vi (kubectl's order). */
export function runEditor(file: string, env: NodeJS.ProcessEnv): Promise<void> {
  const editor = env.KUBE_EDITOR || env.EDITOR || 'vi';
  return new Promise((resolve, reject) => {
    // Through sh, as kubectl does when the editor has arguments ("code --wait"); the file is $1, never spliced in.
    const child = spawn('sh', ['-c', `${editor} "$1"`, 'drover-edit', file], { stdio: 'inherit', env });
    child.on('error', (err) => reject(new CliError(`cannot run the editor "${editor}": ${err.message}`, { cause: err })));
    child.on('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new CliError(`the editor "${editor}" ${signal ? `was killed by ${signal}` : `exited with code ${code}`}; no changes were made`));
    });
  });
}

type Json = unknown;

function isPlainObject(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** RFC 7386 merge patch that turns `from` into `to` (lists are replaced whole; removed keys become null). */
export function mergePatchBetween(from: Json, to: Json): Json {
  if (!isPlainObject(from) || !isPlainObject(to)) return to;
  const patch: Record<string, Json> = {};
  for (const k of Object.keys(from)) if (!Object.hasOwn(to, k)) patch[k] = null;
  for (const [k, v] of Object.entries(to)) {
    if (!Object.hasOwn(from, k)) patch[k] = v;
    else if (canonicalJson(from[k]) !== canonicalJson(v)) patch[k] = mergePatchBetween(from[k], v);
  }
  return patch;
}

/** RFC 7386: `patch` applied to `target` (a new value). */
export function applyMergePatch(target: Json, patch: Json): Json {
  if (!isPlainObject(patch)) return patch;
  const out: Record<string, Json> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}

/**
 * Stores the user's changes: what changed between the object shown and the one saved is applied to
 * the object as it is now, so a status report or a controller that wrote meanwhile is not a conflict
 * (kubectl patches for the same reason). The user's own resourceVersion is dropped from the patch.
 */
async function storeEdit(client: ApiClient, path: string, original: ApiObject, edited: ApiObject): Promise<void> {
  const patch = mergePatchBetween(original, edited) as Record<string, Json>;
  const meta = patch.metadata as Record<string, Json> | undefined;
  if (meta) delete meta.resourceVersion;
  await retryConflicts<void>(
    async () => {
      const current = await client.getOptional<ApiObject>(path);
      if (!current) throw new CliError(`the object was deleted while being edited`, { code: 404, reason: 'NotFound' });
      try {
        await client.replace(path, applyMergePatch(current, patch));
      } catch (err) {
        if (isStaleWrite(err)) return CONFLICT;
        throw err;
      }
    },
    () => new CliError(`the object kept changing while being edited; try again`, { code: 409, reason: 'Conflict' }),
  );
}

/** Same object as far as an edit is concerned (the server's bookkeeping aside). */
function sameContent(a: ApiObject, b: ApiObject): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/**
 * One `edit`: GET, editor, PUT with the resourceVersion read (a concurrent change is a conflict, shown in
 * the reopened file), until the server accepts it, the user saves it unchanged, or empties it.
 * Returns what happened for the caller to print.
 */
export async function editObject(
  client: ApiClient,
  kind: KindInfo,
  namespace: string | undefined,
  name: string,
  opts: { format: 'yaml' | 'json'; env: NodeJS.ProcessEnv; editor?: (file: string) => Promise<void> },
): Promise<'edited' | 'cancelled'> {
  const path = objectPath(kind, namespace, name);
  const original = await client.getOptional<ApiObject>(path);
  if (!original) throw notFound(kind, name);
  // Private: the buffer may hold a Secret's data.
  const dir = await mkdtemp(join(tmpdir(), 'drover-edit-'));
  const file = join(dir, `${kind.plural}-${name}.${opts.format}`);
  const edit = opts.editor ?? ((f: string) => runEditor(f, opts.env));
  let shown: ApiObject = original;
  let errors: string[] = [];
  let keep = false;
  try {
    for (;;) {
      const before = editBuffer(shown, opts.format, errors);
      await writeFile(file, before, { mode: 0o600 });
      await edit(file);
      const text = await readFile(file, 'utf8');
      let edited: ApiObject | undefined;
      try {
        edited = readEdited(text, opts.format);
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        if (text === before) throw err;
        errors = [err.message];
        continue;
      }
      if (!edited || sameContent(edited, original)) return 'cancelled';
      // Saved again without a change after an error: kubectl gives up rather than loop forever.
      if (errors.length && sameContent(edited, shown)) {
        // The user's work is kept where only they can read it (0600 in a 0700 directory), as kubectl does.
        keep = true;
        throw new CliError(`edit cancelled, no valid changes were saved (a copy of your changes is in ${file}): ${errors.join(' ')}`);
      }
      try {
        await storeEdit(client, path, original, edited);
        return 'edited';
      } catch (err) {
        if (!(err instanceof CliError) || FATAL_REASONS.has(err.reason)) throw err;
        const causes = err.causes.map((c) => `* ${c.field ? `${c.field}: ` : ''}${c.message}`);
        errors = [err.code === 422 || err.code === 400 ? `${qualifiedPlural(kind)} "${name}" was not valid:` : 'error:', ...(causes.length ? causes : [`* ${err.message}`])];
        shown = edited;
      }
    }
  } finally {
    if (!keep) await rm(dir, { recursive: true, force: true });
  }
}

export function registerEdit(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('edit')
    .description('edit an object in $EDITOR (KUBE_EDITOR, EDITOR, else vi); saved, it replaces the stored one')
    .argument('<args...>', 'kind and name (pod web), or kind/name')
    .option('-o, --output <format>', 'yaml or json, the format to edit in', 'yaml')
    .option('-n, --namespace <namespace>', 'namespace of the object', DEFAULT_NAMESPACE);
  addConnectionOptions(addDryRunOption(cmd)).action(async (args: string[], opts: { output: string; namespace?: string }, command: Command) => {
    if (opts.output !== 'yaml' && opts.output !== 'json') throw new CliError(`--output must be yaml or json, got "${opts.output}"`);
    const targets = parseResourceArgs(args);
    if (targets.some((t) => !t.name)) throw new CliError(`you must name the ${targets[0]!.kind.singular} to edit`);
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    for (const t of targets) {
      const result = await editObject(client, t.kind, t.kind.namespaced ? ns : undefined, t.name!, { format: opts.output, env: ctx.io.env });
      if (result === 'cancelled') ctx.io.stderr('Edit cancelled, no changes made.\n');
      else ctx.io.stdout(`${objectName(t.kind, t.name!)} edited${dryRunSuffix(client.dryRun)}\n`);
    }
  });
}
