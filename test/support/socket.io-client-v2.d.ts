// socket.io-client 2.x ships no types; the part the tests use.
declare module 'socket.io-client-v2' {
  export interface V2Socket {
    id: string;
    connected: boolean;
    io: { engine: { transport: { name: string }; write(data: string): void } };
    on(event: string, listener: (...args: unknown[]) => void): V2Socket;
    emit(event: string, ...args: unknown[]): V2Socket;
    close(): V2Socket;
  }
  export default function io(url: string, options?: Record<string, unknown>): V2Socket;
}
