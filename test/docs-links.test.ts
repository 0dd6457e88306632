// The docs link to each other by relative paths and #anchors: README.md, docs/*.md,
// examples/README.md and bench/README.md. A section moved or renamed must not leave a link
// that leads nowhere, so every relative link is resolved against the files in the repository
// and every anchor against the target's headings, with GitHub's slug rules.
import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The Markdown files whose links are checked, relative to the repository. */
function checkedFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`);
  return ['README.md', ...docs, 'examples/README.md', 'bench/README.md'];
}

/** The text outside fenced code blocks, line by line (a fenced line becomes empty). */
function prose(markdown: string): string[] {
  let fence: string | null = null;
  return markdown.split('\n').map((line) => {
    const open = /^\s*(`{3,}|~{3,})/.exec(line);
    if (fence === null && open) {
      const marks = open[1] ?? '```';
      fence = marks.charAt(0).repeat(marks.length);
      return '';
    }
    if (fence !== null) {
      if (line.trim().startsWith(fence)) fence = null;
      return '';
    }
    return line;
  });
}

/** GitHub's anchor for a heading: lowercase, punctuation removed, each space a '-'. */
export function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1') // a link in a heading anchors by its text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** Every anchor a Markdown text offers: its headings' slugs, repeats numbered as GitHub does. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(markdown)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1] ?? '');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const m of markdown.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) if (m[1] !== undefined) out.add(m[1]);
  return out;
}

/** The link targets of a Markdown text (inline links, images, reference definitions), with their line. */
export function links(markdown: string): { target: string; line: number }[] {
  const out: { target: string; line: number }[] = [];
  prose(markdown).forEach((raw, i) => {
    const line = raw.replace(/(`+)[^`]*?\1/g, 'code'); // `[a](b)` in inline code is no link
    for (const m of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) if (m[1] !== undefined) out.push({ target: m[1], line: i + 1 });
    const def = /^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+"[^"]*")?\s*$/.exec(line);
    if (def?.[1] !== undefined) out.push({ target: def[1], line: i + 1 });
    for (const m of line.matchAll(/<(?:a|img)\s[^>]*?(?:href|src)="([^"]+)"/g)) if (m[1] !== undefined) out.push({ target: m[1], line: i + 1 });
  });
  return out;
}

/** The files a check sees, by path relative to the repository: the disk, or a sample in a test. */
interface Files {
  /** 'file', 'dir' or null when nothing is there */
  kind(path: string): 'file' | 'dir' | null;
  read(path: string): string;
}

/**
 * What is wrong with the relative links of `file`: a target that does not exist, or an anchor
 * that no heading of its target makes. External URLs are not checked.
 */
export function brokenLinks(files: Files, file: string): string[] {
  const problems: string[] = [];
  for (const { target, line } of links(files.read(file))) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
    const hash = target.indexOf('#');
    const path = decodeURIComponent(hash === -1 ? target : target.slice(0, hash));
    const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1));
    const resolved = path === '' ? file : posix.normalize(posix.join(posix.dirname(file), path)).replace(/\/$/, '');
    const where = `${file}:${line} (${target})`;
    const kind = resolved.startsWith('..') ? null : files.kind(resolved);
    if (kind === null) {
      problems.push(`${where}: ${resolved} does not exist`);
      continue;
    }
    if (anchor === null) continue;
    if (kind !== 'file' || !resolved.endsWith('.md')) {
      problems.push(`${where}: an anchor into ${resolved}, which is not Markdown`);
    } else if (!anchors(files.read(resolved)).has(anchor)) {
      problems.push(`${where}: ${resolved} has no heading #${anchor}`);
    }
  }
  return problems;
}

describe('docs links', () => {
  const repo: Files = {
    kind(path) {
      const full = join(ROOT, path);
      if (!existsSync(full)) return null;
      return statSync(full).isDirectory() ? 'dir' : 'file';
    },
    read: (path) => readFileSync(join(ROOT, path), 'utf8'),
  };

  it('makes anchors as GitHub does', () => {
    expect(slug('The JSON API, v1 (port 2121, under `/api/v1`)')).to.equal('the-json-api-v1-port-2121-under-apiv1');
    expect(slug('Authenticating logins (`LOGIN_SECRET`)')).to.equal('authenticating-logins-login_secret');
    expect(slug('6.7 Client messages in topics (opt-in)')).to.equal('67-client-messages-in-topics-opt-in');
    expect(slug('Soak: kills and restarts, every message counted')).to.equal('soak-kills-and-restarts-every-message-counted');
    expect([...anchors('# A\n```\n# not a heading\n```\n## A\n')]).to.deep.equal(['a', 'a-1']);
  });

  it('finds a missing file, a missing anchor and an anchor into a folder (the check itself works)', () => {
    const sample: Record<string, string> = {
      'README.md': [
        '# Top',
        '[ok](docs/a.md#real-one) [gone](docs/missing.md) [bad](docs/a.md#nowhere) [self](#top) [dir](examples/)',
        '[dir anchor](examples/#x) `[code](nowhere.md)` [web](https://example.com/x.md#y) ![img](docs/a.png)',
      ].join('\n'),
      'docs/a.md': '# Real one\n[up](../README.md#top) [out](../../etc/passwd)\n```\n[fenced](nowhere.md)\n```\n',
      'docs/a.png': '',
    };
    const files: Files = {
      kind: (path) => (path in sample ? 'file' : path === 'examples' ? 'dir' : null),
      read: (path) => sample[path] ?? '',
    };
    expect(brokenLinks(files, 'README.md')).to.deep.equal([
      'README.md:2 (docs/missing.md): docs/missing.md does not exist',
      'README.md:2 (docs/a.md#nowhere): docs/a.md has no heading #nowhere',
      'README.md:3 (examples/#x): an anchor into examples, which is not Markdown',
    ]);
    expect(brokenLinks(files, 'docs/a.md')).to.deep.equal(['docs/a.md:2 (../../etc/passwd): ../etc/passwd does not exist']);
  });

  for (const file of checkedFiles()) {
    it(`${file}: every relative link and anchor leads somewhere`, () => {
      expect(repo.kind(file), file).to.equal('file');
      expect(brokenLinks(repo, file)).to.deep.equal([]);
    });
  }

  it('README.md stays at most 15 KB: the rest belongs in docs/', () => {
    expect(statSync(join(ROOT, 'README.md')).size).to.be.at.most(15 * 1024);
  });
});
