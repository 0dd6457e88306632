// Entry point: config -> server -> signals. The only file that touches process.*.
import { ConfigError, helpText, loadConfig, wantsHelp } from './src/config.ts';
import { createLogger } from './src/log.ts';
import { createServer, StartupError } from './src/server.ts';

const argv = process.argv.slice(2);
if (wantsHelp(argv)) {
  console.log(helpText());
  process.exit(0);
}

try {
  const config = loadConfig(process.env, argv);
  const log = createLogger(config.logFormat, config.logLevel);
  const server = await createServer(config, { log });
  const shown = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
  const scheme = config.tlsCert === null ? 'http' : 'https';
  const url = (port: number) => `${scheme}://${shown}:${port}`;
  const { io, api, web } = server.ports;
  log.info(
    `push server: socket.io ${url(io)} | push API ${url(api)} | demo ${web === null ? 'off' : url(web)}` +
      ` | bound to ${config.host} | engine ${server.engine}` +
      ` | push auth ${config.pushSecret === null ? 'off' : 'on'} | login auth ${config.loginSecret === null ? 'off' : 'on'}`,
  );
  if (config.pushSecret === null) {
    log.warn('PUSH_SECRET is not set: anyone who reaches the push API can push to any user');
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: shutting down`);
    server.close().then(
      () => {
        log.info('stopped');
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
