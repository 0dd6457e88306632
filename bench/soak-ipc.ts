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
  | {
      /**
       * From now on about `percent` % of the pages are offline at any moment, each for
       * `offlineMs` at a time (0: none go offline; the offline ones come back on time), so
       * the store holds messages that no page has taken yet whenever a kill comes.
       */
      type: 'churn';
      percent: number;
      offlineMs: number;
    }
  | {
      /** Right before a kill: the pages logged in now are the ones that must come back. */
      type: 'mark';
    }
  | { type: 'status' }
  | { type: 'report' }
  /** What happened to these pages (those a lost push was for), to place the loss. */
  | { type: 'history'; uids: number[] };

/** One thing that happened to a page, at `at` (ms since the epoch). */
export interface PageEvent {
  at: number;
  what: 'connect' | 'login' | 'login refused' | 'disconnect' | 'offline (churn)';
}

/** Worker -> runner. */
export type SoakReply =
  | { type: 'ready' }
  | {
      type: 'status';
      /** Pages not offline on purpose whose latest login was acked ok and that are still connected. */
      loggedIn: number;
      /** Pages not offline on purpose (churn): the ones that should be logged in. */
      awake: number;
      total: number;
      /** Pages logged in at the last mark. */
      marked: number;
      /** Of those, the ones back: logged in again since, or never disconnected but on purpose. */
      back: number;
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
    }
  | {
      type: 'history';
      /** The pages asked for that live in this worker, their latest events oldest first. */
      pages: { uid: number; events: PageEvent[] }[];
    };
