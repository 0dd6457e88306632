// Who is online, for backends: /api/v1 routes behind the same auth as pushes.
//   GET  /api/v1/online                        {users, pages}
//   GET  /api/v1/users/:uid                    {uid, online, pages}
//   GET  /api/v1/users?online=true&cursor=&limit=   {uids, cursor}: page by page, null at the end
//   POST /api/v1/users/online {uids: [...]}    {online: [...], offline: [...]}
import type Router from '@koa/router';
import { z } from 'zod';
import { HttpError } from './errors.ts';
import { describeIssue, uidSchema } from '../names.ts';
import type { Presence } from '../presence.ts';

/** Uids a page of GET /users holds at most (a hint to Redis, see Presence.list). */
const MAX_PAGE = 1000;

export function presenceRoutes(router: Router, presence: Presence, maxUids: number): void {
  const batch = z.strictObject({
    uids: z.array(uidSchema).min(1, 'must not be an empty list').max(maxUids, `must list at most ${maxUids} uids`),
  });

  router.get('/online', async (ctx) => {
    ctx.body = await presence.counts();
  });

  router.get('/users', async (ctx) => {
    const { online, cursor, limit } = ctx.query;
    if (online !== undefined && online !== 'true') {
      throw new HttpError(400, 'online must be true: only online users are known', 'invalid_request', 'online');
    }
    if (cursor !== undefined && typeof cursor !== 'string') throw new HttpError(400, 'cursor must be one value', 'invalid_request', 'cursor');
    const size = limit === undefined ? 100 : Number(limit);
    if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE) {
      throw new HttpError(400, `limit must be an integer 1-${MAX_PAGE}`, 'invalid_request', 'limit');
    }
    ctx.body = await presence.list(cursor === undefined || cursor === '' ? null : cursor, size);
  });

  router.get('/users/:uid', async (ctx) => {
    const uid = ctx.params.uid ?? '';
    const pages = await presence.pagesOf(uid);
    ctx.body = { uid, online: pages > 0, pages };
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
    ctx.body = { online: uids.filter((_, i) => online[i]), offline: uids.filter((_, i) => !online[i]) };
  });
}
