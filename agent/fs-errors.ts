/** Whether a file-system call failed with one of the given errno codes (ENOENT, EACCES...). */
export function hasErrno(err: unknown, ...codes: string[]): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && codes.includes(code);
}
