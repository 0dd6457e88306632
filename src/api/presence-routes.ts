// Who is online, for backends: /api/v1 routes behind the same auth as pushes.
//   GET  /api/v1/online                        {users, pages}
//   GET  /api/v1/users/:uid                    {uid, online, pages}
//   GET  /api/v1/users?online=true&cursor=&limit=   {uids, cursor}: page by page, null at the end
//   POST /api/v1/users/online {uids: [...]}    {online: [...], offline: [...]}
import type Router from '@koa/router';
import { z } from 'zod';
import { HttpError } from './errors.ts';
import { pageQuerySchema, queryOf } from './query.ts';
import { describeIssue, uidSchema } from '../names.ts';
import type { Presence } from '../presence.ts';
import type { OnlineCountsAnswer, OnlineSplitAnswer, UserAnswer, UsersPageAnswer } from './answers.ts';

/** Uids a page of GET /users holds at most (a hint to Redis, see Presence.list). */
const MAX_PAGE = 1000;

/** The query of GET /users. */
export const usersQuerySchema = pageQuerySchema(MAX_PAGE).extend({
  online: z.literal('true', { error: 'must be true: only online users are known' }).optional().describe('only online users are known: true or absent'),
});

/** The body of POST /users/online. */
export function usersOnlineSchema(maxUids: number) {
  return z.strictObject({
    uids: z.array(uidSchema).min(1, 'must not be an empty list').max(maxUids, `must list at most ${maxUids} uids`),
  });
}

export function presenceRoutes(router: Router, presence: Presence, maxUids: number): void {
  const batch = usersOnlineSchema(maxUids);

  router.get('/online', async (ctx) => {
    ctx.body = (await presence.counts()) satisfies OnlineCountsAnswer;
  });

  router.get('/users', async (ctx) => {
    const { cursor, limit: size } = queryOf(usersQuerySchema, ctx.query);
    ctx.body = (await presence.list(cursor === undefined || cursor === '' ? null : cursor, size)) satisfies UsersPageAnswer;
  });

  router.get('/users/:uid', async (ctx) => {
    const uid = ctx.params.uid ?? '';
    const pages = await presence.pagesOf(uid);
    ctx.body = { uid, online: pages > 0, pages } satisfies UserAnswer;
  });

  router.post('/users/online', async (ctx) => {
    if (!ctx.is('application/json')) throw new HttpError(415, 'send the body as JSON with content-type: application/json');
    const parsed = batch.safeParse(ctx.request.body);
    if (!parsed.success) {
      const { field, message } = describeIssue(parsed.error, 'body');
      throw new HttpError(400, `${field} ${message}`, 'invalid_request', field);
    }
    const uids = [...new Set(parsed.data.uids)];
    const online = await Promise.all(uids.map((uid) => presence.isOnline(uid)));
    ctx.body = { online: uids.filter((_, i) => online[i]), offline: uids.filter((_, i) => !online[i]) } satisfies OnlineSplitAnswer;
  });
}
