import { parseArgs } from 'node:util';
import { userPath } from './project.ts';

export interface LaunchOptions {
  port: number;
  build: boolean;
  images: string[];
}

/** `[--port N] [--no-build] [IMAGE...]`, shared by `npm start` and `npm run serve`. */
export function parseLaunchOptions(argv: string[]): LaunchOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      'no-build': { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port must be a whole number from 0 to 65535, not ${values.port}`);
  }
  return { port, build: !values['no-build'], images: positionals.map(userPath) };
}
