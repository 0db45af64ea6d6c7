import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Every file below `dir` (any depth, any name: LevelDB .log/.ldb, caches, temp files) whose bytes
 * contain one of `needles`, as `path: needle`. Files on another filesystem than `dir` (a tmpfs
 * mounted for secret volumes: memory, not disk) are skipped and listed in `skipped`.
 */
export async function grepDir(dir: string, needles: (string | Buffer)[]): Promise<{ hits: string[]; files: number; skipped: string[] }> {
  const rootDev = (await stat(dir)).dev;
  const hits: string[] = [];
  const skipped: string[] = [];
  let files = 0;
  const bufs = needles.map((n) => (typeof n === 'string' ? Buffer.from(n, 'utf8') : n));
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if ((await stat(p)).dev !== rootDev) {
          skipped.push(p);
          continue;
        }
        await walk(p);
      } else if (e.isFile()) {
        files += 1;
        const body = await readFile(p);
        for (const b of bufs) if (body.includes(b)) hits.push(`${p}: ${b.toString('utf8')}`);
      }
    }
  };
  await walk(dir);
  return { hits, files, skipped };
}
