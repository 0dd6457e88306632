// What became of a push, for backends: behind PUSH_SECRET like every /api/v1 route but pushing.
//   GET /api/v1/messages/:id   per uid its state and times, or the sockets a broadcast reached
import type Router from '@koa/router';
import { HttpError } from './errors.ts';
import type { MessageStatus } from '../message-status.ts';
import type { StatusAnswerBody } from './answers.ts';

export function statusRoutes(router: Router, status: MessageStatus): void {
  router.get('/messages/:id', async (ctx) => {
    const id = ctx.params.id ?? '';
    const answer = await status.get(id);
    if (!answer) {
      throw new HttpError(
        404,
        `no status for message ${JSON.stringify(id.slice(0, 128))}: unknown, past its keeping time (STATUS_SECONDS after its ttl), ` +
          'forgotten to stay within MAX_STATUS_BYTES, or made before this server last started',
        'not_found',
      );
    }
    ctx.body = answer satisfies StatusAnswerBody;
  });
}
