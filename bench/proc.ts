// What Linux says about a process and the machine, from /proc: the server's CPU time and
// memory are read from outside, so measuring them costs the server nothing.
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';

/** USER_HZ: the unit of utime/stime in /proc/PID/stat; 100 on every Linux architecture Node supports. */
const CLOCK_TICKS_PER_SECOND = 100;

/** A /proc file's text, or null when the process has gone meanwhile. */
function readProc(pid: number, file: string): string | null {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return null;
  }
}

/** Fields 3 onwards of /proc/PID/stat (state, ppid, ...), after the command name. */
function statFields(pid: number): string[] | null {
  const stat = readProc(pid, 'stat');
  // The command name (field 2) may hold spaces and parentheses; its closing ')' is the last.
  return stat === null ? null : stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * The process and all its descendants. A server with WORKERS forks; its workers' CPU and
 * memory belong to the figures too, and a child's CPU shows in the parent only once reaped.
 */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const ppid = Number(statFields(pid)?.[1]);
    if (!Number.isInteger(ppid)) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const tree: number[] = [];
  const visit = (pid: number) => {
    tree.push(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return tree;
}

/** User + system CPU time of the tree (all threads) so far, in ms (10 ms resolution). */
export function cpuMs(root: number): number {
  let ticks = 0;
  for (const pid of processTree(root)) {
    const fields = statFields(pid);
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    if (fields) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

function statusKb(root: number, field: 'VmRSS' | 'VmHWM'): number {
  let kb = 0;
  for (const pid of processTree(root)) {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readProc(pid, 'status') ?? '');
    if (match) kb += Number(match[1]);
  }
  return kb;
}

/** Resident memory of the tree now, in KiB. */
export function rssKb(root: number): number {
  return statusKb(root, 'VmRSS');
}

/** Peak resident memory since start, in KiB: summed per process when the tree has several. */
export function peakRssKb(root: number): number {
  return statusKb(root, 'VmHWM');
}

/** The soft and hard limits on open files of a process. */
export function openFilesLimit(pid: number | 'self'): { soft: number; hard: number } {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const value = (text: string | undefined) => (text === 'unlimited' ? Infinity : Number(text));
  return { soft: value(match?.[1]), hard: value(match?.[2]) };
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  kernel: string;
}

export function describeMachine(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const memKb = Number(/^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1] ?? NaN);
  return {
    cpus: availableParallelism(),
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    memoryGiB: Math.round((memKb / 1024 / 1024) * 10) / 10,
    node: process.version,
    kernel: release(),
  };
}
