// The messages between the soak runner (bench/soak.ts) and a soak client worker
// (bench/soak-worker.ts), over the child_process IPC channel.

/** Runner -> worker. */
export type SoakCommand =
  | {
      type: 'start';
      /** Socket.IO URLs; uid u connects to urls[u % urls.length] (two nodes: half each). */
      urls: string[];
      uids: number[];
      /** Most first connections in flight at once in this worker. */
      window: number;
    }
  | { type: 'status' }
  | { type: 'report' };

/** Worker -> runner. */
export type SoakReply =
  | { type: 'ready' }
  | {
      type: 'status';
      /** Clients whose latest login the server acked with ok and that are still connected. */
      loggedIn: number;
      total: number;
    }
  | {
      type: 'report';
      /** Push seqs handed to the page's handler (after the SDK's de-duplication), each once. */
      received: number[];
      /** Arrivals on the socket, before de-duplication, minus distinct ids. */
      duplicates: number;
      /** Seqs the handler saw twice: the SDK's de-duplication failed (must be 0). */
      handlerRepeats: number;
      /** Logins answered with ok: false (retried by the worker, as a page would). */
      loginFailures: number;
      /** Logins answered ok, first ones included. */
      logins: number;
      /** Arrivals whose data carried no seq (foreign traffic: must be 0). */
      unreadable: number;
    };
