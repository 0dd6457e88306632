// The one place where a push becomes emits to sockets.
import { userRoom, type PushIo } from './events.ts';
import type { Presence } from './presence.ts';

export type LegacyResult = 'ok' | 'offline';

export class Delivery {
  constructor(
    private readonly io: PushIo,
    private readonly presence: Presence,
  ) {}

  /**
   * Emits `new_msg` with `content` (already escaped) to the uid's sockets, or to every
   * socket when `to` is empty. `offline` when the uid has no logged-in socket; the emit is
   * still attempted, as the original does.
   */
  async publishLegacy(to: string, content: string): Promise<LegacyResult> {
    if (to === '') {
      this.io.emit('new_msg', content);
      return 'ok';
    }
    this.io.to(userRoom(to)).emit('new_msg', content);
    return (await this.presence.isOnline(to)) ? 'ok' : 'offline';
  }
}
