// Cuts a connection that does not read what is sent to it. Engine.io queues packets per
// connection (its writeBuffer) while the transport is busy, and the WebSocket library queues
// bytes the kernel did not take (ws bufferedAmount); neither has a bound of its own, so a
// client that stops reading would make the server hold every push to it in memory.
//
// The check runs at each packet queued for a connection ('packetCreate'), where the queue grows:
// one addition and one comparison, plus reading ws's bufferedAmount (two property reads).

/** The parts of an engine.io socket (socket.conn) this module uses. */
interface EngineConnection {
  readonly transport: { readonly name: string; readonly socket?: unknown };
  readonly remoteAddress: string;
  on(event: 'packetCreate', listener: (packet: { data?: unknown }) => void): unknown;
  on(event: 'flush', listener: () => void): unknown;
  close(discard?: boolean): unknown;
}

/** What the WebSocket transport holds (a `ws` WebSocket). */
interface WsSocket {
  readonly bufferedAmount: number;
  terminate(): void;
}

function wsOf(conn: EngineConnection): WsSocket | null {
  const ws = conn.transport.name === 'websocket' ? conn.transport.socket : undefined;
  return typeof ws === 'object' && ws !== null && 'bufferedAmount' in ws ? (ws as WsSocket) : null;
}

/** Bytes a packet's data holds: string length (what the queue holds, ~1 byte a char), or its byteLength. */
function sizeOf(data: unknown): number {
  if (typeof data === 'string') return data.length;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

/**
 * Watches one new engine.io connection: when the bytes queued for it (engine.io's queue plus
 * the WebSocket's) pass `maxBytes`, it is closed at once, its queues dropped, and `onCut` told
 * how many bytes were waiting.
 */
export function boundOutgoing(conn: EngineConnection, maxBytes: number, onCut: (bytes: number) => void): void {
  /** Bytes of the packets in engine.io's writeBuffer: emptied into the transport at each flush. */
  let queued = 0;
  let cut = false;
  conn.on('flush', () => {
    queued = 0;
  });
  conn.on('packetCreate', (packet) => {
    queued += sizeOf(packet.data);
    if (cut) return;
    const ws = wsOf(conn);
    const waiting = queued + (ws ? ws.bufferedAmount : 0);
    if (waiting <= maxBytes) return;
    cut = true;
    // discard: close without waiting for the queue to drain (it never would); terminate: the
    // WebSocket drops its bytes now instead of after its closing handshake times out
    conn.close(true);
    ws?.terminate();
    onCut(waiting);
  });
}
