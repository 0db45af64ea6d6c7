/**
 * What `podman load` and `nerdctl load` print, read the same way: podman 4+ and nerdctl print one
 * "Loaded image: NAME" line per image (an untagged one by its id, `sha256:…`); podman 1-3 printed
 * "Loaded image(s): A,B".
 */
export function loadedImageNames(stdout: string): string[] {
  const names: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^\s*Loaded image(?:\(s\)|s)?:\s*(.+?)\s*$/.exec(line);
    if (!m) continue;
    for (const n of m[1]!.split(',')) if (n.trim()) names.push(n.trim());
  }
  return [...new Set(names)];
}

/**
 * Why a load failed, from the tool's stderr: podman tries each archive format in turn and lists why
 * each refused; the docker-archive and oci-archive lines say what is wrong with a tar (truncated:
 * "unexpected EOF"), the others only that it is not a directory or a reference.
 */
export function loadFailure(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const error = lines.find((l) => l.startsWith('Error:') || /level=(error|fatal)/.test(l));
  const formats = lines.filter((l) => /^\* (docker-archive|oci-archive):/.test(l)).map((l) => l.slice(2));
  const head = error?.replace(/^Error:\s*/, '').replace(/^time="[^"]*" level=\w+ msg=/, '').replace(/^"|"$/g, '');
  if (formats.length) return `${head ?? 'not an image archive'} ${formats.join('; ')}`;
  return head ?? lines[0];
}
