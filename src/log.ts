// The logger components are given. One line per notable event; never message contents.
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string, err?: unknown): void;
}

export const consoleLogger: Logger = {
  info: (message) => console.log(message),
  warn: (message) => console.warn(`warning: ${message}`),
  error: (message, err) =>
    console.error(`error: ${message}${err instanceof Error ? `: ${err.stack ?? err.message}` : ''}`),
};

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
