// The admin page's test push: one uid, by the legacy rules (escaped, on new_msg) or as a v1
// push with an optional ttl, through the same code as the push API, counted like any push.
import { z } from 'zod';
import type { PushApi } from '../api/push-routes.ts';
import { runLegacyPush } from '../api/legacy-routes.ts';
import { HttpError } from '../api/errors.ts';
import type { Delivery } from '../delivery.ts';
import type { PushObserver } from '../messages.ts';
import { describeIssue, uidSchema } from '../names.ts';

const form = z.strictObject({
  api: z.enum(['legacy', 'v1'], { error: 'must be legacy or v1' }),
  to: uidSchema,
  content: z.string({ error: 'must be a string' }),
  ttl: z.number({ error: 'must be a number of seconds' }).min(0, 'must not be negative').optional(),
});

export interface TestPushParts {
  delivery: Delivery;
  pushApi: PushApi;
  maxDataBytes: number;
  observer: PushObserver;
}

/** What the page shows: the word or the JSON the push API would have answered. */
export type TestPushAnswer = { api: 'legacy'; answer: 'ok' | 'offline' | 'fail' } | { api: 'v1'; status: number; answer: unknown };

/** Makes the push of a parsed JSON body; throws HttpError (4xx) for a bad one. */
export async function testPush(parts: TestPushParts, body: unknown): Promise<TestPushAnswer> {
  const parsed = form.safeParse(body);
  if (!parsed.success) {
    const { field, message } = describeIssue(parsed.error, 'body');
    throw new HttpError(400, `${field} ${message}`, 'invalid_request', field);
  }
  const { api, to, content, ttl } = parsed.data;
  if (api === 'legacy') {
    if (ttl !== undefined) throw new HttpError(400, 'ttl needs api v1: legacy pushes are not stored', 'invalid_request', 'ttl');
    const answer = await runLegacyPush({ type: 'publish', to, content }, parts.delivery, parts.maxDataBytes, parts.observer, performance.now());
    return { api, answer };
  }
  const answer = await parts.pushApi.accept({ to, data: content, ...(ttl === undefined ? {} : { ttl }) });
  return { api, status: answer.status, answer: answer.body };
}
