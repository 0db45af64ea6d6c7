import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Reads a secret from the data dir, creating it (mode 0600) on first start. */
export async function loadOrCreateToken(dataDir: string, file: string): Promise<string> {
  const path = join(dataDir, file);
  try {
    const t = (await readFile(path, 'utf8')).trim();
    if (t) return t;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const token = randomBytes(24).toString('base64url');
  await writeFile(path, `${token}\n`, { mode: 0o600, flag: 'wx' }).catch(async (err) => {
    // Lost a race with another start: use the winner's token.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  });
  return (await readFile(path, 'utf8')).trim();
}
