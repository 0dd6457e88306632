#!/usr/bin/env node
// Entry point: config -> server (or, with WORKERS > 1, a primary and its workers) -> signals.
// The only file that touches process.*.
import cluster from 'node:cluster';
import { resolve } from 'node:path';
import { ConfigError, helpText, loadConfig, packageVersion, wantsHelp, wantsVersion, type Config } from './src/config.ts';
import { createLogger, type Logger } from './src/log.ts';
import { createServer, StartupError } from './src/server.ts';
import { startPrimary, STICKY_IO_PORT_ENV, type WorkerReady } from './src/cluster/workers.ts';
import { SharedLimitsClient } from './src/cluster/shared-limits.ts';

const argv = process.argv.slice(2);
if (wantsHelp(argv)) {
  console.log(helpText());
  process.exit(0);
}
if (wantsVersion(argv)) {
  console.log(packageVersion());
  process.exit(0);
}

/** One line that says what runs; with the embedded store, where its data is (DATA_DIR made absolute). */
function announce(config: Config, log: Logger, ports: WorkerReady['ports'], engine: string): void {
  const shown = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
  const scheme = config.tlsCert === null ? 'http' : 'https';
  const url = (port: number) => `${scheme}://${shown}:${port}`;
  log.info(
    `push server: socket.io ${url(ports.io)} | push API ${url(ports.api)} | demo ${ports.web === null ? 'off' : url(ports.web)}` +
      ` | bound to ${config.host} | engine ${engine}${engine === 'embedded' ? ` in ${resolve(config.dataDir)}` : ''}` +
      ` | push auth ${config.pushSecret === null ? 'off' : 'on'} | login auth ${config.loginSecret === null ? 'off' : 'on'}`,
  );
  if (config.pushSecret === null) {
    log.warn('PUSH_SECRET is not set: anyone who reaches the push API can push to any user');
  }
  if (config.loginSecret === null) {
    log.warn('LOGIN_SECRET is not set: any page can log in as any uid, read its pushes and ack its stored messages away');
  }
}

/**
 * What close() may take beyond SHUTDOWN_TIMEOUT_MS (which bounds the open connections): queued
 * webhooks and leaving Redis. Past it, something hangs and the process exits anyway.
 */
const SHUTDOWN_MARGIN_MS = 3000;

/**
 * SIGTERM / SIGINT: close once, exit 0 when closed. A second signal exits 1 at once (the
 * operator means it), and so does a close() still running `deadlineMs` after the first.
 */
function onSignals(log: Logger, close: () => Promise<void>, deadlineMs: number, quiet = false): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn(`${signal} again: exiting without finishing the shutdown`);
      process.exit(1);
    }
    stopping = true;
    if (!quiet) log.info(`${signal}: shutting down`);
    // unref: a process with nothing left to do ends by itself, as before; this is for one that hangs
    setTimeout(() => {
      log.error(`shutdown did not finish within ${deadlineMs} ms: exiting`);
      process.exit(1);
    }, deadlineMs).unref();
    close().then(
      () => {
        if (!quiet) log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error('shutdown failed', err);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

try {
  const config = loadConfig(process.env, argv);
  const log = await createLogger(config.logFormat, config.logLevel);
  if (config.workers > 1 && cluster.isPrimary) {
    const primary = await startPrimary(config, log);
    // its workers have the same deadline: a little longer, so they end before it
    onSignals(log, () => primary.close(), config.shutdownTimeoutMs + SHUTDOWN_MARGIN_MS + 1000);
    announce(config, log, primary.ports, `redis | workers ${config.workers}`);
  } else if (cluster.isWorker) {
    // the primary prints and stops for all; a worker serves and says when it is ready
    const ioPort = Number(process.env[STICKY_IO_PORT_ENV]);
    // per-address connections and signed pushes are counted by the primary for all workers
    const shared = new SharedLimitsClient();
    const server = await createServer({ ...config, ioPort }, { log, sticky: true, shared: { connections: shared, signatures: shared } });
    onSignals(log, () => server.close(), config.shutdownTimeoutMs + SHUTDOWN_MARGIN_MS, true);
    process.send?.({ type: 'push:ready', ports: server.ports } satisfies WorkerReady);
  } else {
    const server = await createServer(config, { log });
    // before the start line: whoever reads it may stop the server at once, gracefully
    onSignals(log, () => server.close(), config.shutdownTimeoutMs + SHUTDOWN_MARGIN_MS);
    announce(config, log, server.ports, server.engine);
  }
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`push server: bad configuration: ${err.problems.join('; ')} (see --help)`);
  } else if (err instanceof StartupError) {
    console.error(`push server: cannot start: ${err.message}`);
  } else {
    throw err;
  }
  process.exit(1);
}
