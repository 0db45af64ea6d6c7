/**
 * Where a benchmark's allocations come from, garbage included: V8's sampling heap profiler told to keep the
 * samples of objects the collector has already freed (includeObjectsCollectedByMinorGC/MajorGC). A plain heap
 * profile or --heap-prof shows what is alive at the end; the collector's share of the CPU is paid for what
 * died young, and this is what shows it (the allocation churn of a placement was 70 % filters and scorers).
 */
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

export interface AllocationSite {
  /** Function name and where it is (file:line:column, 1-based; of the code V8 ran, so under tsx of the transpiled module). */
  site: string;
  megabytes: number;
  percent: number;
}

export interface AllocationProfile {
  totalMegabytes: number;
  top: AllocationSite[];
}

/** Starts sampling (one sample per ~`intervalBytes` allocated); the returned function stops and sums it by function. */
export async function sampleAllocations(intervalBytes = 16 * 1024): Promise<(topN?: number) => Promise<AllocationProfile>> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', { samplingInterval: intervalBytes, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  return async (topN = 15) => {
    const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: ProfileNode } };
    session.disconnect();
    const bySite = new Map<string, number>();
    let total = 0;
    const walk = (n: ProfileNode): void => {
      if (n.selfSize > 0) {
        const f = n.callFrame;
        const where = f.url ? `${f.url.replace(/^.*\/(node_modules\/)/, '$1').replace(/^file:\/\/.*?\/(server|src|bench)\//, '$1/')}:${f.lineNumber + 1}:${f.columnNumber + 1}` : '(native)';
        const site = `${f.functionName || '(anonymous)'} ${where}`;
        bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize);
        total += n.selfSize;
      }
      for (const c of n.children) walk(c);
    };
    walk(profile.head);
    const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
    const top = [...bySite]
      .sort((a, b) => b[1] - a[1])
      .slice(0, topN)
      .map(([site, bytes]) => ({ site, megabytes: mb(bytes), percent: Math.round((1000 * bytes) / total) / 10 }));
    return { totalMegabytes: mb(total), top };
  };
}
