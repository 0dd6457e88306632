// Metrics: the output is Prometheus text, counters move with the calls made, state is read
// from the sources at each scrape, and two instances in one process do not share values.
import { performance } from 'node:perf_hooks';
import { expect } from 'chai';
import { recordingLogger } from './support/logger.ts';
import type { StoreStats } from '../src/message-store.ts';
import { connectionsByTransport, Metrics, type MetricsOptions } from '../src/metrics.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import type { WebhookEvent } from '../src/webhooks/events.ts';

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\.)*"';
const HELP = new RegExp(`^# HELP (${NAME}) .+$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
// prom-client writes NaN as "Nan" (an event-loop histogram with no samples yet); Prometheus
// parses floats ignoring case, so both spellings are valid.
const SAMPLE = new RegExp(
  `^(${NAME})(\\{${LABEL}(?:,${LABEL})*\\})? (NaN|Nan|[+-]Inf|[-+]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][-+]?\\d+)?)(?: -?\\d+)?$`,
);

interface Parsed {
  types: Map<string, string>;
  samples: Map<string, number>;
}

/** Parses the text format strictly: every line must be HELP, TYPE, a sample or empty. */
function parseExposition(body: string): Parsed {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  expect(body.endsWith('\n')).to.equal(true);
  for (const line of body.split('\n')) {
    if (line === '' || HELP.test(line)) continue;
    const type = TYPE.exec(line);
    if (type) {
      types.set(type[1] ?? '', type[2] ?? '');
      continue;
    }
    const sample = SAMPLE.exec(line);
    if (!sample) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    const name = sample[1] ?? '';
    const family = [...types.keys()].find((t) => name === t || name.startsWith(`${t}_`));
    if (!family) throw new Error(`sample ${name} before its # TYPE`);
    samples.set(name + (sample[2] ?? ''), Number(sample[3]));
  }
  return { types, samples };
}

function start(options: MetricsOptions = {}): Metrics {
  const metrics = new Metrics(options);
  onCleanup(() => metrics.close());
  return metrics;
}

async function scrape(metrics: Metrics): Promise<Parsed> {
  const { contentType, body } = await metrics.render();
  expect(contentType).to.match(/^text\/plain; version=0\.0\.4/);
  return parseExposition(body);
}

const STATS: StoreStats = { messages: 3, bytes: 1500, fileBytes: 40_960, dropped: 2, expired: 5, scheduled: 1, scheduledBytes: 700 };

describe('Metrics', () => {
  afterEach(cleanupAll);

  it('renders Prometheus text with our metrics, typed, and the process metrics', async () => {
    const { types, samples } = await scrape(start());
    expect(Object.fromEntries([...types].filter(([name]) => name.startsWith('push_')))).to.deep.equal({
      push_build_info: 'gauge',
      push_connections: 'gauge',
      push_online_users: 'gauge',
      push_online_pages: 'gauge',
      push_stored_messages: 'gauge',
      push_stored_bytes: 'gauge',
      push_stored_file_bytes: 'gauge',
      push_scheduled_pushes: 'gauge',
      push_scheduled_bytes: 'gauge',
      push_scheduled_dropped_total: 'counter',
      push_stored_dropped_total: 'counter',
      push_stored_expired_total: 'counter',
      push_metrics_source_errors_total: 'counter',
      push_logins_total: 'counter',
      push_pushes_total: 'counter',
      push_emits_total: 'counter',
      push_acks_total: 'counter',
      push_slow_connections_cut_total: 'counter',
      push_emit_latency_seconds: 'histogram',
      push_webhook_sent_total: 'counter',
      push_webhook_failed_total: 'counter',
      push_webhook_dropped_total: 'counter',
    });
    expect(types.get('nodejs_eventloop_lag_seconds')).to.equal('gauge');
    expect(types.get('nodejs_eventloop_lag_p99_seconds')).to.equal('gauge');
    expect(types.get('process_cpu_seconds_total')).to.equal('counter');
    // Every label combination exists from the start, at 0: rate() works from the first push.
    expect(samples.get('push_pushes_total{api="v1",result="scheduled"}')).to.equal(0);
    // ...and only the outcomes a push can have: a series that can never move misleads a dashboard
    const results = [...samples.keys()].filter((k) => k.startsWith('push_pushes_total{api="legacy"'));
    expect(results.map((k) => /result="(\w+)"/.exec(k)![1]).sort()).to.deep.equal(['fail', 'offline', 'ok', 'scheduled', 'stored']);
    expect(samples.get('push_webhook_dropped_total{type="user.offline",reason="overflow"}')).to.equal(0);
  });

  it('moves counters and the latency histogram when the server reports events', async () => {
    const metrics = start();
    metrics.login('ok');
    metrics.login('ok');
    metrics.login('refused');
    metrics.pushed('legacy', 'offline');
    metrics.pushed('v1', 'stored');
    metrics.pushed('v1', 'stored');
    metrics.emitted();
    metrics.emitted(3);
    metrics.acked();
    metrics.scheduledDropped();
    metrics.observePushToEmit(performance.now() - 3); // 3 ms ago
    const event: WebhookEvent = { id: 'e1', type: 'user.online', time: new Date().toISOString(), uid: '42' };
    metrics.webhooks.sent(event);
    metrics.webhooks.failed(event, 'answered 500');
    metrics.webhooks.failed(event, 'ECONNREFUSED');
    metrics.webhooks.dropped(event, 'attempts');

    const { samples } = await scrape(metrics);
    expect(samples.get('push_logins_total{result="ok"}')).to.equal(2);
    expect(samples.get('push_logins_total{result="refused"}')).to.equal(1);
    expect(samples.get('push_pushes_total{api="legacy",result="offline"}')).to.equal(1);
    expect(samples.get('push_pushes_total{api="v1",result="stored"}')).to.equal(2);
    expect(samples.get('push_pushes_total{api="legacy",result="ok"}')).to.equal(0);
    expect(samples.get('push_emits_total')).to.equal(4);
    expect(samples.get('push_acks_total')).to.equal(1);
    expect(samples.get('push_scheduled_dropped_total')).to.equal(1);
    expect(samples.get('push_emit_latency_seconds_count')).to.equal(1);
    expect(samples.get('push_emit_latency_seconds_bucket{le="0.002"}')).to.equal(0);
    expect(samples.get('push_emit_latency_seconds_bucket{le="+Inf"}')).to.equal(1);
    expect(samples.get('push_webhook_sent_total{type="user.online"}')).to.equal(1);
    expect(samples.get('push_webhook_failed_total{type="user.online"}')).to.equal(2);
    expect(samples.get('push_webhook_dropped_total{type="user.online",reason="attempts"}')).to.equal(1);
  });

  it('reads connections, online counts and store stats from the sources at each scrape', async () => {
    let stats = STATS;
    const metrics = start({
      sources: {
        connections: () =>
          connectionsByTransport([
            { conn: { transport: { name: 'websocket' } } },
            { conn: { transport: { name: 'websocket' } } },
            { conn: { transport: { name: 'polling' } } },
          ]),
        online: async () => ({ users: 2, pages: 3 }),
        store: async () => stats,
      },
    });
    let { samples } = await scrape(metrics);
    expect(samples.get('push_connections{transport="websocket"}')).to.equal(2);
    expect(samples.get('push_connections{transport="polling"}')).to.equal(1);
    expect(samples.get('push_online_users')).to.equal(2);
    expect(samples.get('push_online_pages')).to.equal(3);
    expect(samples.get('push_stored_messages')).to.equal(3);
    expect(samples.get('push_stored_bytes')).to.equal(1500);
    expect(samples.get('push_stored_file_bytes')).to.equal(40_960);
    expect(samples.get('push_scheduled_pushes')).to.equal(1);
    expect(samples.get('push_scheduled_bytes')).to.equal(700);
    expect(samples.get('push_stored_dropped_total')).to.equal(2);
    expect(samples.get('push_stored_expired_total')).to.equal(5);

    stats = { ...STATS, messages: 0, expired: 9 };
    ({ samples } = await scrape(metrics));
    expect(samples.get('push_stored_messages')).to.equal(0);
    expect(samples.get('push_stored_expired_total')).to.equal(9);
  });

  it('keeps the last values of a failing source, counts and logs the failure', async () => {
    let fail = false;
    const log = recordingLogger();
    const metrics = start({
      log,
      sources: {
        online: async () => {
          if (fail) throw new Error('redis down');
          return { users: 4, pages: 5 };
        },
      },
    });
    await scrape(metrics);
    fail = true;
    const { samples } = await scrape(metrics);
    expect(samples.get('push_online_users')).to.equal(4);
    expect(samples.get('push_metrics_source_errors_total{source="online"}')).to.equal(1);
    expect(log.lines).to.deep.equal(['error: metrics: reading online failed; its metrics keep their last values']);
  });

  it('keeps two instances apart: each counts its own', async () => {
    const a = start();
    const b = start();
    a.pushed('v1', 'ok');
    a.pushed('v1', 'ok');
    b.pushed('v1', 'ok');
    expect((await scrape(a)).samples.get('push_pushes_total{api="v1",result="ok"}')).to.equal(2);
    expect((await scrape(b)).samples.get('push_pushes_total{api="v1",result="ok"}')).to.equal(1);
  });

  it('says which version runs on which Node.js in build_info, always 1', async () => {
    const { samples } = await scrape(start({ version: '9.8.7' }));
    expect(samples.get(`push_build_info{version="9.8.7",node_version="${process.version}"}`)).to.equal(1);
    expect([...samples.keys()].filter((k) => k.startsWith('push_build_info'))).to.have.length(1);
  });

  it('takes a prefix, and can leave the process metrics out', async () => {
    const { types } = await scrape(start({ prefix: 'other_', processMetrics: false }));
    expect(types.get('other_pushes_total')).to.equal('counter');
    expect(types.has('push_pushes_total')).to.equal(false);
    expect(types.has('nodejs_eventloop_lag_seconds')).to.equal(false);
  });
});
