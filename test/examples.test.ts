// examples/ runs: each language's push program against a real server with PUSH_SECRET (a
// legacy push and a signed v1 push with a ttl, both seen by a real socket.io-client 2.x page),
// and its webhook receiver against the real webhooks the server sends (accepted), the same
// request with a tampered body and a stale timestamp (refused). Where php or go is missing the
// tests skip loudly (a failure under PUSH_TEST_STRICT=1).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { webhookSignature } from '../src/webhooks/events.ts';
import { cleanupAll } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { findOnPath, reportMissing } from './support/requirements.ts';
import { runProgram, startProgram, type Program } from './support/program.ts';
import { startServer } from './support/server.ts';
import { closedPortUrl, startWebhookReceiver, type ReceivedRequest } from './support/webhook-receiver.ts';

const EXAMPLES = new URL('../examples/', import.meta.url).pathname;
const PUSH_SECRET = 'the-push-secret-of-the-examples';
const WEBHOOK_SECRET = 'the-webhook-secret-of-the-examples';

interface Example {
  language: string;
  /** Where its files are; programs run there. */
  dir: string;
  /** The interpreter or toolchain, null when missing (already said loudly). */
  binary: string | null;
  push: string[];
  /** Prints a line with its http://127.0.0.1:PORT once it listens. */
  receiver: string[];
  /** More environment for both programs. */
  env(): Record<string, string>;
  /** Run before the first program, with the example's `env`. */
  setUp?(): void;
  tearDown?(): void;
}

/** php, and its curl extension (php-curl), or null after a loud notice. */
function findPhpWithCurl(): string | null {
  const php = findOnPath('php', 'php-cli');
  if (php === null) return null;
  const probe = spawnSync(php, ['-r', 'exit(extension_loaded("curl") ? 0 : 1);']);
  return probe.status === 0 ? php : reportMissing('php-curl', `php (${php}) has no curl extension`, 'php-curl');
}

/** go run offline: a cache and GOPATH of the test's own, no module proxy, no toolchain download. */
let goHome = '';
const goEnv = (): Record<string, string> => ({
  GOCACHE: join(goHome, 'cache'),
  GOPATH: join(goHome, 'path'),
  GOPROXY: 'off',
  GOSUMDB: 'off',
  GOTOOLCHAIN: 'local',
  GO111MODULE: 'auto',
  GOFLAGS: '',
});

const examples: Example[] = [
  {
    language: 'php',
    dir: join(EXAMPLES, 'php'),
    binary: findPhpWithCurl(),
    push: ['push.php'],
    // the built-in web server with the receiver as its router: it prints the port it got
    receiver: ['-S', '127.0.0.1:0', 'webhook.php'],
    env: () => ({}),
  },
  {
    language: 'python',
    dir: join(EXAMPLES, 'python'),
    binary: findOnPath('python3'),
    push: ['push.py'],
    receiver: ['webhook.py'],
    env: () => ({}),
  },
  {
    language: 'go',
    dir: join(EXAMPLES, 'go'),
    binary: findOnPath('go', 'golang-go'),
    push: ['run', './push'],
    receiver: ['run', './webhook'],
    env: goEnv,
    setUp() {
      goHome = mkdtempSync(join(tmpdir(), 'push-examples-go-'));
    },
    tearDown() {
      // the module cache is read-only as Go writes it; nothing is in it (standard library only)
      if (goHome !== '') rmSync(goHome, { recursive: true, force: true });
      goHome = '';
    },
  },
  {
    language: 'node',
    dir: join(EXAMPLES, 'node'),
    binary: process.execPath,
    push: ['push.mjs'],
    receiver: ['webhook.mjs'],
    env: () => ({}),
  },
];

/** What each push program sends (the legacy content as the page gets it: escaped). */
const LEGACY_CONTENT: Record<string, string> = {
  php: 'Hello from PHP &amp; curl &lt;3',
  python: 'Hello from Python &amp; urllib &lt;3',
  go: 'Hello from Go &amp; net/http &lt;3',
  node: 'Hello from Node &amp; fetch &lt;3',
};
const V1_DATA = { text: 'Your order has shipped', order: 17 };

/** POSTs a webhook request as the server sent it, with `changes` applied; resolves the status. */
async function replay(url: string, request: ReceivedRequest, changes: { body?: string; timestamp?: string; signature?: string }): Promise<number> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-webhook-id': String(request.headers['x-webhook-id']),
      'x-webhook-timestamp': changes.timestamp ?? String(request.headers['x-webhook-timestamp']),
      'x-signature': changes.signature ?? String(request.headers['x-signature']),
    },
    body: changes.body ?? request.body,
  });
  await res.arrayBuffer();
  return res.status;
}

describe('examples/ against a real server', function () {
  afterEach(cleanupAll);

  for (const example of examples) {
    describe(`examples/${example.language}`, function () {
      // go compiles each program on its first run (a few seconds on a busy machine)
      this.timeout(example.language === 'go' ? 120_000 : 30_000);

      before(function () {
        if (example.binary === null) return this.skip(); // said loudly when looked up
        example.setUp?.();
      });
      after(() => example.tearDown?.());

      const run = (env: Record<string, string>) =>
        runProgram(example.binary!, example.push, { cwd: example.dir, env: { ...example.env(), ...env } }, 90_000);

      it('pushes through the legacy API and a signed v1 push with a ttl; a socket.io 2.x page gets both', async () => {
        const server = await startServer({ pushSecret: PUSH_SECRET });
        const page = await connectClient('v2', server.ioUrl);
        await page.login('u-example');

        const { code, output } = await run({ PUSH_API_URL: server.apiUrl, PUSH_SECRET, PUSH_TO: 'u-example' });
        expect(code, output).to.equal(0);
        expect(output).to.match(/^legacy push: 200 ok$/m);
        expect(output).to.match(/^v1 push: 200 \{.*"stored":1.*\}$/m);

        const [content] = await page.waitFor('new_msg');
        expect(content).to.equal(LEGACY_CONTENT[example.language]);
        const [data, meta] = await page.waitFor('message');
        expect(data).to.deep.equal(V1_DATA);
        // stored: the ttl made it a kept message, to be acked
        expect(meta).to.include({ stored: true });
      });

      it('reports refused pushes with a wrong PUSH_SECRET (exit 1, both 401)', async () => {
        const server = await startServer({ pushSecret: PUSH_SECRET });
        const { code, output } = await run({ PUSH_API_URL: server.apiUrl, PUSH_SECRET: 'not-the-secret', PUSH_TO: 'u-example' });
        expect(code, output).to.equal(1);
        expect(output).to.match(/^legacy push: 401 fail$/m);
        expect(output).to.match(/^v1 push: 401 .*X-Push-Signature does not match/m);
      });

      it('reports a server it cannot reach (exit 1, status 0)', async () => {
        const { code, output } = await run({ PUSH_API_URL: new URL(await closedPortUrl()).origin, PUSH_SECRET, PUSH_TO: 'u-example' });
        expect(code, output).to.equal(1);
        expect(output).to.match(/^legacy push: 0 \S/m);
        expect(output).to.match(/^v1 push: 0 \S/m);
      });

      it('its webhook receiver accepts the real signed webhook, and refuses a tampered body and a stale timestamp', async () => {
        const receiver: Program = startProgram(example.binary!, example.receiver, {
          cwd: example.dir,
          env: { ...example.env(), WEBHOOK_SECRET, PORT: '0' },
        });
        const [receiverUrl] = await receiver.waitForOutput(/http:\/\/127\.0\.0\.1:\d+/, 90_000);
        // the same events also go to a recorder, for the exact headers and body to replay
        const recorder = await startWebhookReceiver();
        const server = await startServer({ webhookUrl: [receiverUrl, recorder.url], webhookSecret: WEBHOOK_SECRET });
        const page = await connectClient('v2', server.ioUrl);
        await page.login('u-hook');

        const [sent] = await recorder.waitFor(1);
        const event = JSON.parse(sent!.body) as { id: string; type: string };
        expect(event.type).to.equal('user.online');
        await receiver.waitForOutput(new RegExp(`webhook verified: user\\.online uid=u-hook id=${event.id}`));

        const tampered = sent!.body.replace('u-hook', 'u-admin');
        expect(await replay(receiverUrl, sent!, { body: tampered })).to.equal(401);
        await receiver.waitForOutput(/webhook rejected: X-Signature does not match/);

        // signed right, with the secret, but 10 minutes ago: a replay of an old capture
        const old = String(Math.floor(Date.now() / 1000) - 600);
        expect(await replay(receiverUrl, sent!, { timestamp: old, signature: webhookSignature(WEBHOOK_SECRET, Number(old), sent!.body) })).to.equal(401);
        await receiver.waitForOutput(/webhook rejected: X-Webhook-Timestamp is more than 5 minutes off/);

        // the untouched request is still good: the refusals above were for the changes alone
        expect(await replay(receiverUrl, sent!, {})).to.equal(204);
      });
    });
  }
});
