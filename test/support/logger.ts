// The one recording Logger of the tests: keeps every call, for tests that check what was
// logged (once per outage, say), with which fields, and that no secret was.
import type { LogFields, Logger, LogLevel } from '../../src/log.ts';

export interface LogEntry {
  level: LogLevel;
  message: string;
  fields?: LogFields;
  /** The error given to `error()`, when one was. */
  err?: unknown;
}

export interface RecordingLogger extends Logger {
  /** Every call, in order, with its fields and error. */
  readonly entries: LogEntry[];
  /** Every call as `level: message`, in order. */
  readonly lines: string[];
  /** Every call with its fields and its error's message and stack, one a line: to search for secrets. */
  text(): string;
}

export function recordingLogger(): RecordingLogger {
  const entries: LogEntry[] = [];
  const lines: string[] = [];
  const record = (entry: LogEntry) => {
    entries.push(entry);
    lines.push(`${entry.level}: ${entry.message}`);
  };
  return {
    entries,
    lines,
    info: (message, fields) => record({ level: 'info', message, ...(fields && { fields }) }),
    warn: (message, fields) => record({ level: 'warn', message, ...(fields && { fields }) }),
    error: (message, err, fields) =>
      record({ level: 'error', message, ...(fields && { fields }), ...(err !== undefined && { err }) }),
    text: () =>
      entries
        .map(({ level, message, fields, err }) => {
          const error = err instanceof Error ? ` ${err.message} ${err.stack}` : err === undefined ? '' : ` ${String(err)}`;
          return `${level}: ${message} ${JSON.stringify(fields ?? {})}${error}`;
        })
        .join('\n'),
  };
}
