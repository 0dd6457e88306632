// Request bodies for the push API: JSON and urlencoded through @koa/bodyparser, and
// multipart/form-data (what PHP's curl sends for an array) through busboy. The result is
// `ctx.request.body`: an object of fields, `{}` when there is no body.
import type { bodyParser as BodyParser } from '@koa/bodyparser';
import type Busboy from 'busboy';
import type { IncomingMessage } from 'node:http';
import type { Context, Middleware } from 'koa';
import { HttpError } from './errors.ts';

/** Fields per multipart body; more is a 413. */
const MAX_MULTIPART_FIELDS = 100;

/**
 * The parsers are loaded at the first request that has a body: a server that only takes GET
 * pushes never carries them (@koa/bodyparser brings charset tables worth about 20 MB of RSS).
 */
let parsers: Promise<{ bodyParser: typeof BodyParser; busboy: typeof Busboy }> | null = null;
function loadParsers() {
  parsers ??= Promise.all([import('@koa/bodyparser'), import('busboy')]).then(([b, m]) => ({
    bodyParser: b.bodyParser,
    busboy: m.default,
  }));
  return parsers;
}

function hasBody(headers: IncomingMessage['headers']): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
}

/**
 * Levels of arrays and objects a body may nest, the body itself being the first; deeper is a
 * 400. Validation and JSON.stringify recurse, so deeper bodies overflowed the stack (a 500).
 */
export const MAX_BODY_DEPTH = 64;

/**
 * Whether the JSON text `json` (already parsed, so well-formed) nests arrays and objects
 * deeper than `max` levels. One pass over the characters: no recursion, no allocation.
 */
export function jsonNestsDeeperThan(json: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // skip the string, escapes included
      for (i++; i < json.length; i++) {
        const d = json.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return false;
}

/**
 * Throws 400 for a JSON body that nests deeper than MAX_BODY_DEPTH. A form body nests at most
 * a few levels (its parser stops at 5), and a bracket in a form value is just text.
 */
function checkDepth(ctx: Context): void {
  const raw = (ctx.request as { rawBody?: unknown }).rawBody;
  if (typeof raw !== 'string' || ctx.is('application/x-www-form-urlencoded')) return;
  if (jsonNestsDeeperThan(raw, MAX_BODY_DEPTH)) {
    throw new HttpError(400, `malformed body: arrays and objects nest deeper than ${MAX_BODY_DEPTH} levels`);
  }
}

export function parseBody(maxBytes: number): Middleware {
  let parser: Middleware | null = null;
  return async (ctx, next) => {
    if (!hasBody(ctx.req.headers)) {
      ctx.request.body = {}; // as the parser leaves it for a request without a body
      return next();
    }
    const { bodyParser, busboy } = await loadParsers();
    parser ??= bodyParser({ enableTypes: ['json', 'form'], jsonLimit: maxBytes, formLimit: maxBytes });
    const declared = Number(ctx.get('content-length') || 0);
    if (declared > maxBytes) throw new HttpError(413, `request body is larger than ${maxBytes} bytes`);
    if (ctx.method === 'POST' || ctx.method === 'PUT' || ctx.method === 'PATCH') {
      if (ctx.is('multipart/form-data')) {
        const { fields, raw } = await readMultipart(busboy, ctx.req, maxBytes);
        ctx.request.body = fields;
        // as @koa/bodyparser does for JSON and forms: a signed request covers the body text
        (ctx.request as { rawBody?: string }).rawBody = raw;
        return next();
      }
    }
    return parser(ctx, () => {
      checkDepth(ctx);
      return next();
    });
  };
}

function readMultipart(busboy: typeof Busboy, req: IncomingMessage, maxBytes: number): Promise<{ fields: Record<string, string>; raw: string }> {
  return new Promise((resolve, reject) => {
    let parser: Busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        limits: { fieldSize: maxBytes, fields: MAX_MULTIPART_FIELDS, fieldNameSize: 200 },
      });
    } catch (err) {
      reject(new HttpError(400, `malformed multipart body: ${(err as Error).message}`));
      return;
    }
    // no prototype: a field named __proto__ is a field (on a plain object it was dropped)
    const fields = Object.create(null) as Record<string, string>;
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const fail = (err: HttpError) => {
      if (done) return;
      done = true;
      req.unpipe(parser);
      req.resume(); // drain what is left so the connection can answer
      reject(err);
    };
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      chunks.push(chunk);
      if (received > maxBytes) fail(new HttpError(413, `request body is larger than ${maxBytes} bytes`));
    });
    req.on('aborted', () => fail(new HttpError(400, 'request aborted')));
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated || info.nameTruncated) {
        fail(new HttpError(413, `multipart field ${JSON.stringify(name.slice(0, 50))} is too large`));
        return;
      }
      fields[name] = value; // a repeated field: the last wins, as in PHP
    });
    parser.on('file', (_name, stream) => {
      // files are not push fields; a cut-off body errors the file stream too (the parser's own
      // error answers 400), so it needs a listener or it would take the process down
      stream.on('error', () => {});
      stream.resume();
    });
    parser.on('fieldsLimit', () => fail(new HttpError(413, `more than ${MAX_MULTIPART_FIELDS} multipart fields`)));
    parser.on('error', (err: Error) => fail(new HttpError(400, `malformed multipart body: ${err.message}`)));
    parser.on('close', () => {
      if (done) return;
      done = true;
      resolve({ fields, raw: Buffer.concat(chunks).toString('utf8') });
    });
    req.pipe(parser);
  });
}
