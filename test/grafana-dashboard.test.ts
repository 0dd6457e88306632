// docs/grafana-dashboard.json: every metric its PromQL queries is on /metrics of a real server
// (one in a cluster, so push_redis_up is there too), so a rename cannot leave it blank.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { REDIS_SERVER, startRedis } from './support/redis-server.ts';
import { startServer } from './support/server.ts';

interface Panel {
  id: number;
  title: string;
  type: string;
  datasource: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets: { refId: string; expr: string }[];
}

const dashboard = JSON.parse(readFileSync(new URL('../docs/grafana-dashboard.json', import.meta.url), 'utf8')) as {
  title: string;
  uid: string;
  templating: { list: { name: string; type: string; query: string }[] };
  panels: Panel[];
};

/** PromQL words that are not metric names: aggregation modifiers, set operators, offset. */
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset']);

/**
 * The metric names a PromQL expression selects: what is left once strings, label matchers,
 * ranges and `by (...)` / `without (...)` label lists are taken out, less function names (a
 * word before `(`), keywords and numbers.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0];
    const after = bare.slice(m.index + word.length).trimStart();
    if (after.startsWith('(') || KEYWORDS.has(word)) continue;
    names.add(word);
  }
  return [...names];
}

/** Every sample name on /metrics (a histogram's _bucket, _sum, _count included). */
async function sampleNames(apiUrl: string): Promise<Set<string>> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    names.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
  }
  return names;
}

describe('docs/grafana-dashboard.json', function () {
  this.timeout(30_000);
  afterEach(cleanupAll);

  it('finds the metric names in PromQL', () => {
    expect(metricNames('sum by (api, result) (rate(push_pushes_total{api="v1",x=~"a|b"}[$__rate_interval]))')).to.deep.equal(['push_pushes_total']);
    expect(metricNames('histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) / on (instance) group_left b')).to.deep.equal(['a_bucket', 'b']);
    expect(metricNames('max(x) or vector(0)')).to.deep.equal(['x']);
  });

  it('has a panel for each figure the issue asks for, each on the Prometheus datasource variable', () => {
    expect(dashboard.templating.list).to.deep.include({ ...dashboard.templating.list[0], name: 'datasource', type: 'datasource', query: 'prometheus' });
    const titles = dashboard.panels.map((p) => p.title);
    for (const title of ['Online users', 'Pages and connections', 'Pushes per second', 'Push latency', 'Stored backlog', 'Webhook failures', 'Redis state']) {
      expect(titles).to.include(title);
    }
    expect(new Set(dashboard.panels.map((p) => p.id)).size).to.equal(dashboard.panels.length);
    for (const panel of dashboard.panels) {
      expect(panel.datasource, panel.title).to.deep.equal({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets.length, panel.title).to.be.above(0);
      for (const target of panel.targets) expect(metricNames(target.expr), `${panel.title}: ${target.expr}`).to.not.be.empty;
    }
  });

  it('queries only metrics a real server exports on /metrics', async function () {
    if (!REDIS_SERVER) return this.skip(); // push_redis_up is there only with REDIS_URL
    const redis = await startRedis();
    onCleanup(() => redis.stop());
    const server = await startServer({ redisUrl: redis.url });
    const exported = await sampleNames(server.apiUrl);
    const queried = new Set(dashboard.panels.flatMap((p) => p.targets.flatMap((t) => metricNames(t.expr))));
    expect(queried.size).to.be.above(15);
    const missing = [...queried].filter((name) => !exported.has(name));
    expect(missing, `queried by the dashboard, not on /metrics: ${missing.join(', ')}`).to.deep.equal([]);
  });
});
