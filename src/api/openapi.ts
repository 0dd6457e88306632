// The OpenAPI 3.1 document of /api/v1, served at GET /api/v1/openapi.json. Generated once at
// start from the zod schemas the routes validate with (request bodies and queries, with this
// server's limits: MAX_UIDS_PER_PUSH, MAX_BATCH_MESSAGES, …) and from the answer schemas
// (answers.ts), so it describes this server as configured. checkDocumented() makes a route
// the router has but the document lacks (or the other way round) stop the start.
import { z } from 'zod';
import type { ZodType } from 'zod';
import * as answers from './answers.ts';

type JsonSchema = Record<string, unknown>;

/** The path of the document itself. */
export const OPENAPI_PATH = '/api/v1/openapi.json';

export interface OpenApiOptions {
  version: string;
  /** The body of POST /api/v1/push (PushApi.schema). */
  push: ZodType;
  /** The body of POST /api/v1/push/batch, with the push schema as its item. */
  batch: ZodType;
  /** The body of POST /api/v1/users/online. */
  usersOnline: ZodType;
  scheduledQuery: z.ZodObject;
  usersQuery: z.ZodObject;
  keptQuery: z.ZodObject;
  /** PUSH_SECRET is set: every route but the document needs it (else 401). */
  secured: boolean;
  /** Without PUSH_SECRET, the routes open to anyone; the others answer 403 (app.ts). */
  openWithoutSecret: readonly (readonly [method: string, path: string])[];
}

/** One operation: its Koa path (`:name` parameters), what it takes and what it answers. */
interface Operation {
  method: 'get' | 'post' | 'delete';
  path: string;
  summary: string;
  body?: { schema: ZodType; examples: Record<string, { summary: string; value: unknown }> };
  query?: z.ZodObject;
  /** Path parameters: name -> description and an example. */
  params?: Record<string, { description: string; example: string }>;
  /** Success answers: status -> schema and when. */
  answers: Record<number, { schema: ZodType; description: string }>;
  /** Failures beyond the common ones (400, 401/403, 414, 429, 503). */
  failures?: Record<number, string>;
}

function operations(o: OpenApiOptions): Operation[] {
  const pushAnswer = o.secured
    ? z.union([answers.pushResultAnswer, answers.pushCountsAnswer])
    : answers.pushCountsAnswer;
  return [
    {
      method: 'post',
      path: '/api/v1/push',
      summary: 'Push one message now, or schedule it (delay / at)',
      body: {
        schema: o.push,
        examples: {
          kept: {
            summary: 'to two uids, kept 10 minutes for those offline',
            value: { to: ['42', '43'], event: 'order.updated', data: { order: 17, status: 'shipped' }, ttl: 600, id: 'order-17-shipped' },
          },
          scheduled: { summary: 'to a topic in an hour', value: { topic: 'news', data: 'extra!', delay: 3600, id: 'news-extra' } },
        },
      },
      answers: {
        200: {
          schema: pushAnswer,
          description: o.secured
            ? 'made now: who of `to` is online; a duplicate `id` answers counts with `duplicate: true`'
            : 'made now: counts (without PUSH_SECRET the uid lists are not shown)',
        },
        202: { schema: answers.scheduledAnswer, description: 'scheduled' },
      },
      failures: { 409: 'a push with this id is still being made: retry to learn its answer', 413: 'body or data too large', 415: 'not JSON' },
    },
    {
      method: 'post',
      path: '/api/v1/push/batch',
      summary: 'Push several messages, in order; one result each',
      body: {
        schema: o.batch,
        examples: {
          two: { summary: 'two pushes', value: { messages: [{ to: '42', data: 'hi' }, { topic: 'news', event: 'headline', data: { title: 'extra!' } }] } },
        },
      },
      answers: { 200: { schema: answers.batchAnswer, description: 'one result per message, with its own status' } },
      failures: { 413: 'body too large', 415: 'not JSON' },
    },
    {
      method: 'get',
      path: '/api/v1/scheduled',
      summary: 'Scheduled pushes, soonest first, page by page',
      query: o.scheduledQuery,
      answers: { 200: { schema: answers.scheduledPageAnswer, description: 'a page' } },
    },
    {
      method: 'delete',
      path: '/api/v1/scheduled/:id',
      summary: 'Cancel a scheduled push',
      params: { id: { description: 'the scheduled push id', example: 'news-extra' } },
      answers: { 200: { schema: answers.cancelledAnswer, description: 'cancelled' } },
      failures: { 404: 'no scheduled push with this id' },
    },
    {
      method: 'get',
      path: '/api/v1/users/:uid/messages',
      summary: "A uid's kept messages, not yet acked, oldest first, page by page",
      params: { uid: { description: 'the uid', example: '43' } },
      query: o.keptQuery,
      answers: { 200: { schema: answers.keptMessagesAnswer, description: 'a page of its kept messages' } },
    },
    {
      method: 'get',
      path: '/api/v1/messages/:id',
      summary: 'What became of a push',
      params: { id: { description: 'the push id', example: 'order-17-shipped' } },
      answers: { 200: { schema: answers.statusAnswer, description: 'per uid its state, or the sockets a broadcast reached' } },
      failures: { 404: 'unknown, or no longer kept (STATUS_SECONDS, MAX_STATUS_BYTES, a restart)' },
    },
    {
      method: 'get',
      path: '/api/v1/online',
      summary: 'How many uids and pages are online (cluster-wide)',
      answers: { 200: { schema: answers.onlineCountsAnswer, description: 'the counts' } },
    },
    {
      method: 'get',
      path: '/api/v1/users',
      summary: 'Online uids, page by page',
      query: o.usersQuery,
      answers: { 200: { schema: answers.usersPageAnswer, description: 'a page' } },
    },
    {
      method: 'get',
      path: '/api/v1/users/:uid',
      summary: 'Whether a uid is online, and its pages',
      params: { uid: { description: 'the uid', example: '42' } },
      answers: { 200: { schema: answers.userAnswer, description: 'its presence' } },
    },
    {
      method: 'post',
      path: '/api/v1/users/online',
      summary: 'Which of these uids are online',
      body: { schema: o.usersOnline, examples: { three: { summary: 'three uids', value: { uids: ['42', '43', 44] } } } },
      answers: { 200: { schema: answers.onlineSplitAnswer, description: 'the uids split' } },
      failures: { 413: 'body too large', 415: 'not JSON' },
    },
  ];
}

/**
 * zod's JSON Schema of `schema`, its `$defs` (the recursive JSON value of `data`) moved to
 * the document's components: a `#/$defs/…` inside a schema embedded in the document would
 * point into the document's root.
 */
function converter(components: Record<string, JsonSchema>) {
  const names = new Map<string, string>(); // canonical text of a def -> component name
  return (schema: ZodType, io: 'input' | 'output'): JsonSchema => {
    const json = z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any' }) as JsonSchema;
    delete json.$schema;
    const defs = (json.$defs ?? {}) as Record<string, JsonSchema>;
    delete json.$defs;
    const renamed = new Map<string, string>();
    for (const [name, def] of Object.entries(defs)) {
      const canonical = JSON.stringify(def).replaceAll(`"#/$defs/${name}"`, '"#self"');
      let component = names.get(canonical);
      if (component === undefined) {
        component = names.size === 0 ? 'JsonValue' : `Shared${names.size}`;
        names.set(canonical, component);
      }
      renamed.set(name, component);
    }
    const rewrite = (text: string) =>
      text.replace(/"#\/\$defs\/([^"]+)"/g, (whole, name: string) => {
        const component = renamed.get(name);
        return component === undefined ? whole : `"#/components/schemas/${component}"`;
      });
    for (const [name, def] of Object.entries(defs)) {
      const component = renamed.get(name)!;
      components[component] ??= JSON.parse(rewrite(JSON.stringify(def))) as JsonSchema;
    }
    return JSON.parse(rewrite(JSON.stringify(json))) as JsonSchema;
  };
}

/** Koa's `/users/:uid` as OpenAPI's `/users/{uid}`. */
export function openApiPath(koaPath: string): string {
  return koaPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

const COMMON_FAILURES: Record<number, string> = {
  400: 'a parameter or field is wrong (`field` names it), or the body is malformed',
  414: 'the query string is past its bound (4 KiB, 20 parameters)',
  429: 'over PUSH_RATE_PER_IP (Retry-After)',
  503: 'no room now, or a store is unavailable (Retry-After)',
};

export function openApiDocument(o: OpenApiOptions): JsonSchema {
  const components: Record<string, JsonSchema> = {};
  const toSchema = converter(components);
  components.Error = toSchema(answers.errorAnswer, 'output');
  const errorRef = { $ref: '#/components/schemas/Error' };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of operations(o)) {
    const open = o.openWithoutSecret.some(([method, path]) => method === op.method.toUpperCase() && path === op.path);
    const failures: Record<number, string> = { ...COMMON_FAILURES, ...op.failures };
    if (o.secured) failures[401] = 'the request does not prove PUSH_SECRET (WWW-Authenticate: Bearer)';
    else if (!open) failures[403] = 'off until PUSH_SECRET is set on the server';
    const responses: Record<string, unknown> = {};
    for (const [status, { schema, description }] of Object.entries(op.answers)) {
      responses[status] = { description, content: { 'application/json': { schema: toSchema(schema, 'output') } } };
    }
    for (const [status, description] of Object.entries(failures)) {
      responses[status] = { description, content: { 'application/json': { schema: errorRef } } };
    }
    const parameters: unknown[] = [];
    for (const [name, { description, example }] of Object.entries(op.params ?? {})) {
      parameters.push({ name, in: 'path', required: true, description, schema: { type: 'string' }, example });
    }
    if (op.query) {
      const query = toSchema(op.query, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
      for (const [name, schema] of Object.entries(query.properties ?? {})) {
        const { description, ...rest } = schema;
        parameters.push({ name, in: 'query', required: query.required?.includes(name) ?? false, description, schema: rest });
      }
    }
    (paths[openApiPath(op.path)] ??= {})[op.method] = {
      operationId: `${op.method}${op.path.replace('/api/v1', '').replace(/[/:]+([a-z])/g, (_, c: string) => c.toUpperCase())}`,
      summary: op.summary,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(op.body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: toSchema(op.body.schema, 'input'), examples: op.body.examples } },
            },
          }
        : {}),
      responses,
      ...(o.secured ? {} : { security: [] }),
    };
  }
  paths[OPENAPI_PATH] = {
    get: {
      operationId: 'getOpenApi',
      summary: 'This document (open: a contract, not user data)',
      security: [],
      responses: {
        200: { description: 'the OpenAPI document', content: { 'application/json': { schema: { type: 'object' } } } },
      },
    },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'push-server API v1',
      version: o.version,
      description:
        'The JSON API of the push port. Limits are this server\'s settings. Every error is `{"error": {code, message, field?}}`. ' +
        'The legacy endpoint (any other path, `?type=publish&to=&content=`) is described in docs/protocol.md.',
    },
    paths,
    components: {
      schemas: components,
      ...(o.secured
        ? {
            securitySchemes: {
              bearer: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer PUSH_SECRET' },
              signature: {
                type: 'apiKey',
                in: 'header',
                name: 'X-Push-Signature',
                description: 'hex HMAC-SHA256(PUSH_SECRET, timestamp \\n METHOD \\n path?query \\n body), with X-Push-Timestamp (unix seconds)',
              },
            },
          }
        : {}),
    },
    // The server also takes the secret in a `secret` field of the body or query (the legacy
    // way); not offered here: a client generated from this document would put PUSH_SECRET in
    // URLs, and so in proxies' and browsers' logs.
    ...(o.secured ? { security: [{ bearer: [] }, { signature: [] }] } : {}),
  };
}

/**
 * Throws when the routes a router has and the operations the document lists differ: a route
 * added without its contract, or a contract left for a route that went, stops the start.
 */
export function checkDocumented(document: JsonSchema, routes: readonly { path: string | RegExp; methods: readonly string[] }[]): void {
  const documented = new Set<string>();
  for (const [path, item] of Object.entries(document.paths as Record<string, Record<string, unknown>>)) {
    for (const method of Object.keys(item)) documented.add(`${method.toUpperCase()} ${path}`);
  }
  documented.delete(`GET ${OPENAPI_PATH}`);
  const routed = new Set<string>();
  for (const layer of routes) {
    for (const method of layer.methods) {
      if (method !== 'HEAD') routed.add(`${method} ${openApiPath(String(layer.path))}`);
    }
  }
  const missing = [...routed].filter((r) => !documented.has(r));
  const stale = [...documented].filter((r) => !routed.has(r));
  if (missing.length > 0 || stale.length > 0) {
    throw new Error(
      `the OpenAPI document and the /api/v1 routes differ: ${[...missing.map((r) => `undocumented ${r}`), ...stale.map((r) => `no route for ${r}`)].join(', ')}`,
    );
  }
}
