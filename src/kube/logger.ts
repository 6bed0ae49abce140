// winston JSON loggers for the controller and the agent. One line of JSON per entry, with `ts`, `level`,
// `message`, the component, and whatever keys child loggers carry (`controller`, `probe` = namespace/name, `node`).
//
//   const log = createLogger({ component: 'controller' });
//   const plog = probeLogger(log, 'default/p1');   // every line carries "probe":"default/p1"
//
// Level from the option, else MIGPROBE_LOG_LEVEL, else `info`. `silent: true` (or MIGPROBE_LOG_LEVEL=silent)
// logs nothing: unit tests use it. Never log an ApiException's message: use errors.ts `safeMessage`.

import winston from 'winston';

export type Logger = winston.Logger;

export interface LoggerOptions {
  component: string;
  level?: string;
  silent?: boolean;
  /** Extra keys on every line. */
  fields?: Record<string, unknown>;
  /** Where to write; default stderr (stdout stays free for command output). */
  stream?: NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  const envLevel = process.env.MIGPROBE_LOG_LEVEL;
  const level = opts.level ?? (envLevel !== undefined && envLevel !== '' && envLevel !== 'silent' ? envLevel : 'info');
  const silent = opts.silent ?? envLevel === 'silent';
  const transport =
    opts.stream !== undefined
      ? new winston.transports.Stream({ stream: opts.stream })
      : new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] });
  return winston.createLogger({
    level,
    silent,
    defaultMeta: { component: opts.component, ...opts.fields },
    format: winston.format.combine(
      winston.format.timestamp({ alias: 'ts' }),
      winston.format((info) => {
        // `timestamp` with an alias writes both keys; keep only `ts`.
        const rec = info as Record<string, unknown>;
        delete rec.timestamp;
        return info;
      })(),
      winston.format.json(),
    ),
    transports: [transport],
  });
}

/** A logger that logs nothing (tests, and defaults for optional loggers). */
export function nullLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}

export function controllerLogger(parent: Logger, controller: string): Logger {
  return parent.child({ controller });
}

/** Child logger for one probe (or any object): key is `namespace/name`. */
export function probeLogger(parent: Logger, key: string): Logger {
  return parent.child({ probe: key });
}
