// The OpenAPI 3.1 document at /api/v1/openapi.json: valid for a maintained OpenAPI validator
// (@readme/openapi-parser), and true: every operation it lists, called on a real server with
// its own examples, answers a status it lists with a body its schema takes (ajv, draft
// 2020-12, the dialect of OpenAPI 3.1). With PUSH_SECRET and without, as the two differ.
import { expect } from 'chai';
import { validate } from '@readme/openapi-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { cleanupAll } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { startServer, type TestServer } from './support/server.ts';

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
const SECRET = 'openapi-test-secret';

interface Operation {
  parameters?: { name: string; in: string; example?: string }[];
  requestBody?: { content: { 'application/json': { examples: Record<string, { value: unknown }> } } };
  responses: Record<string, unknown>;
}
type Document = { paths: Record<string, Record<string, Operation>> } & Record<string, unknown>;

async function fetchDocument(server: TestServer): Promise<Document> {
  const res = await fetch(`${server.apiUrl}/api/v1/openapi.json`);
  expect(res.status).to.equal(200);
  expect(res.headers.get('content-type')).to.match(/^application\/json/);
  return (await res.json()) as Document;
}

/** A JSON pointer token (RFC 6901). */
const token = (s: string) => s.replaceAll('~', '~0').replaceAll('/', '~1');

/** Checks answers against the document's own response schemas, $refs into its components included. */
function responseChecker(document: Document) {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(document, 'openapi.json');
  return (path: string, method: string, status: number, body: unknown) => {
    const responses = document.paths[path]![method]!.responses;
    expect(Object.keys(responses), `${method.toUpperCase()} ${path} answered ${status}: ${JSON.stringify(body)}`).to.include(String(status));
    const pointer = `#/paths/${token(path)}/${method}/responses/${status}/content/${token('application/json')}/schema`;
    const check = ajv.compile({ $ref: `openapi.json${pointer}` });
    expect(check(body), `${method.toUpperCase()} ${path} ${status} ${JSON.stringify(body)}: ${ajv.errorsText(check.errors)}`).to.equal(true);
  };
}

interface Call {
  path: string;
  method: string;
  status: number;
  body: unknown;
}

/** Every operation called with each of its examples (or once, without a body), in the document's order. */
async function callEveryOperation(server: TestServer, document: Document, headers: Record<string, string>): Promise<Call[]> {
  const calls: Call[] = [];
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, op] of Object.entries(item)) {
      let url = path;
      for (const p of op.parameters ?? []) {
        if (p.in === 'path') url = url.replace(`{${p.name}}`, encodeURIComponent(p.example ?? 'x'));
      }
      const examples = op.requestBody ? Object.values(op.requestBody.content['application/json'].examples).map((e) => e.value) : [undefined];
      expect(examples, `${method} ${path} has examples`).to.not.be.empty;
      for (const example of examples) {
        const res = await fetch(server.apiUrl + url, {
          method: method.toUpperCase(),
          headers: { ...headers, ...(example === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(example === undefined ? {} : { body: JSON.stringify(example) }),
        });
        calls.push({ path, method, status: res.status, body: await res.json() });
      }
    }
  }
  return calls;
}

describe('OpenAPI document (/api/v1/openapi.json)', () => {
  afterEach(cleanupAll);

  for (const secured of [true, false]) {
    describe(secured ? 'with PUSH_SECRET' : 'without PUSH_SECRET', () => {
      const auth: Record<string, string> = secured ? { authorization: `Bearer ${SECRET}` } : {};
      const start = () => startServer(secured ? { pushSecret: SECRET, maxBatchMessages: 7 } : { maxBatchMessages: 7 });

      it('is a valid OpenAPI 3.1 document, served without the secret, with this server\'s limits', async () => {
        const server = await start();
        const document = await fetchDocument(server);
        const result = await validate(structuredClone(document) as never);
        expect(result.valid, JSON.stringify(result)).to.equal(true);
        expect(document.openapi).to.equal('3.1.0');
        const batch = JSON.stringify(document.paths['/api/v1/push/batch']!.post!.requestBody);
        expect(batch).to.include('"maxItems":7');
        // no scheme puts the secret in a URL, where proxies and browsers log it
        expect(JSON.stringify(document)).not.to.match(/"in":"query","name":"secret"/);
        expect(Object.keys(document.paths).sort()).to.deep.equal([
          '/api/v1/messages/{id}',
          '/api/v1/online',
          '/api/v1/openapi.json',
          '/api/v1/push',
          '/api/v1/push/batch',
          '/api/v1/scheduled',
          '/api/v1/scheduled/{id}',
          '/api/v1/users',
          '/api/v1/users/online',
          '/api/v1/users/{uid}',
          '/api/v1/users/{uid}/messages',
        ]);
      });

      it('every operation answers its examples with a listed status and a body its schema takes', async () => {
        const server = await start();
        const online = await connectClient('v4', server.ioUrl);
        await online.login('42'); // so the presence answers list someone
        const document = await fetchDocument(server);
        const check = responseChecker(document);
        const calls = await callEveryOperation(server, document, auth);
        for (const call of calls) check(call.path, call.method, call.status, call.body);
        const succeeded = new Set(calls.filter((c) => c.status < 300).map((c) => `${c.method} ${c.path}`));
        if (secured) {
          // the examples reach each route's success, not only its errors
          expect(calls.filter((c) => c.status >= 300), 'failed calls').to.deep.equal([]);
        } else {
          expect([...succeeded].sort()).to.deep.equal(['get /api/v1/online', 'get /api/v1/openapi.json', 'post /api/v1/push', 'post /api/v1/push/batch']);
          expect(calls.filter((c) => c.status >= 300).every((c) => c.status === 403)).to.equal(true);
        }
      });

      it('its error answers are listed too: bad bodies and queries, and a missing secret', async () => {
        const server = await start();
        const document = await fetchDocument(server);
        const check = responseChecker(document);
        const json = { 'content-type': 'application/json' };
        for (const [method, path, body] of [
          ['post', '/api/v1/push', { data: 1, bogus: true }],
          ['post', '/api/v1/push/batch', { messages: [] }],
          ['post', '/api/v1/users/online', { uids: [] }],
        ] as const) {
          const res = await fetch(server.apiUrl + path, { method: 'POST', headers: { ...auth, ...json }, body: JSON.stringify(body) });
          if (secured || path !== '/api/v1/users/online') expect(res.status).to.equal(400);
          check(path, method, res.status, await res.json());
          const text = await fetch(server.apiUrl + path, { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: 'x' });
          check(path, method, text.status, await text.json());
        }
        for (const path of ['/api/v1/scheduled', '/api/v1/users']) {
          const res = await fetch(`${server.apiUrl}${path}?limit=0`, { headers: auth });
          check(path, 'get', res.status, await res.json());
        }
        if (secured) {
          // without the secret every route but the document answers 401, as listed
          const calls = await callEveryOperation(server, document, {});
          for (const call of calls) check(call.path, call.method, call.status, call.body);
          expect(calls.filter((c) => c.status !== 401).map((c) => c.path)).to.deep.equal(['/api/v1/openapi.json']);
        }
      });
    });
  }
});
