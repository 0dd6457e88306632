// The logger components are given: one line per notable event, with optional fields; never
// message contents or secrets. `text` for people (npm start), `json` (pino) for collectors;
// both stamp each line with its time in ISO 8601 (UTC, milliseconds).
import type { pino as Pino } from 'pino';

export type LogFields = Record<string, string | number | boolean | null>;

export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, err?: unknown, fields?: LogFields): void;
}

export type LogLevel = 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';

const RANK: Record<LogLevel, number> = { info: 20, warn: 30, error: 40 };

function describe(err: unknown): string {
  if (err instanceof Error) return err.stack ?? err.message;
  return err === undefined ? '' : String(err);
}

function textLogger(level: LogLevel): Logger {
  const on = (l: LogLevel) => RANK[l] >= RANK[level];
  const line = (message: string, fields?: LogFields) =>
    `${new Date().toISOString()} ${fields ? `${message} ${Object.entries(fields).map(([k, v]) => `${k}=${v}`).join(' ')}` : message}`;
  return {
    info(m, f) {
      if (on('info')) console.log(line(m, f));
    },
    warn(m, f) {
      if (on('warn')) console.warn(line(`warning: ${m}`, f));
    },
    error(m, err, f) {
      if (on('error')) console.error(`${line(`error: ${m}`, f)}${err === undefined ? '' : `: ${describe(err)}`}`);
    },
  };
}

function jsonLogger(pino: typeof Pino, level: LogLevel): Logger {
  const out = pino({ level, timestamp: pino.stdTimeFunctions.isoTime }); // pino adds pid and hostname
  return {
    info: (m, f) => out.info(f ?? {}, m),
    warn: (m, f) => out.warn(f ?? {}, m),
    error: (m, err, f) => out.error({ ...f, ...(err === undefined ? {} : { err: describe(err) }) }, m),
  };
}

/** pino is loaded only for the json format: text-only processes do not carry it. */
export async function createLogger(format: LogFormat, level: LogLevel): Promise<Logger> {
  if (format === 'text') return textLogger(level);
  const { pino } = await import('pino');
  return jsonLogger(pino, level);
}

export const consoleLogger: Logger = textLogger('info');

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
