/**
 * Runs @doyensec/electronegativity (Electron's security linter) in this process, offline, and
 * hands back its findings as plain objects.
 *
 * Why not its command line: it fetches translations over the network on every start (and, with no
 * network, a retry can crash it after the timeout), it always exits 0, and its CSV writer starts
 * the header and the rows as two unawaited writes to the same file, so the header can land over the
 * first row (seen here). Its programmatic entry returns the same findings the CSV would hold.
 */
import { readFileSync } from 'node:fs';
import { createRequire, registerHooks } from 'node:module';
import { projectPath } from './project.ts';

export type Severity = 'INFORMATIONAL' | 'LOW' | 'MEDIUM' | 'HIGH';

export interface Finding {
  /** The check's id, as in its wiki and CSV (e.g. CONTEXT_ISOLATION_JS_CHECK). */
  check: string;
  severity: Severity;
  confidence: string;
  /** Relative to the scanned folder, "/"-separated; "N/A" for findings about the app as a whole. */
  file: string;
  line: number;
  column: number;
  sample: string;
  description: string;
}

// The one global check that needs the network (it compares the Electron version with a release
// list it downloads); the Electron version is npm's business, not this scan's.
const NETWORK_CHECKS = ['AvailableSecurityFixesGlobalCheck'];

const OFFLINE_HTTP_CLIENT = 'cowbell-offline:got';
let offlineInstalled = false;

/** electronegativity's HTTP client (got) becomes one that fails at once, so nothing leaves the machine. */
function installOfflineHttpClient(): void {
  if (offlineInstalled) return;
  offlineInstalled = true;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if (specifier === 'got' && context.parentURL?.includes('/@doyensec/electronegativity/')) {
        return { url: OFFLINE_HTTP_CLIENT, shortCircuit: true };
      }
      return nextResolve(specifier, context);
    },
    load(url, context, nextLoad) {
      if (url !== OFFLINE_HTTP_CLIENT) return nextLoad(url, context);
      const source = 'const offline = () => Promise.reject(new Error("the security scan runs offline"));\n' +
        'offline.head = offline; offline.get = offline;\nmodule.exports = offline; module.exports.default = offline;\n';
      return { format: 'commonjs', source, shortCircuit: true };
    },
  });
}

interface RawIssue {
  id: string;
  file: string;
  location?: { line?: number; column?: number };
  severity: { name: string };
  confidence: { name: string };
  sample?: unknown;
  description?: unknown;
}

interface RunResult {
  issues: RawIssue[];
  errors: { file: string; message: string; tolerable: boolean }[];
}

type Run = (options: Record<string, unknown>) => Promise<RunResult>;

/** The Electron version the app is built with (the installed `electron` package). */
export function installedElectronVersion(): string {
  const manifest = JSON.parse(readFileSync(projectPath('node_modules/electron/package.json'), 'utf8')) as { version?: unknown };
  if (typeof manifest.version !== 'string') throw new Error('node_modules/electron/package.json has no version');
  return manifest.version;
}

/** Scans `inputFolder` (absolute) for Electron `electronVersion`; parse errors in a file are thrown. */
export async function scanFolder(inputFolder: string, electronVersion: string): Promise<Finding[]> {
  installOfflineHttpClient();
  const run = createRequire(projectPath('package.json'))('@doyensec/electronegativity') as Run;
  // It says on stdout that the (blocked) translation download failed; that is expected here.
  const log = console.log;
  console.log = () => undefined;
  let result: RunResult;
  try {
    result = await run({
      input: inputFolder,
      isSarif: false,
      customScan: [],
      excludeFromScan: NETWORK_CHECKS.map((name) => name.toLowerCase()),
      isRelative: true,
      isVerbose: false,
      electronVersionOverride: electronVersion,
      parserPlugins: [],
    });
  } finally {
    console.log = log;
  }
  const unreadable = result.errors.filter((error) => !error.tolerable);
  if (unreadable.length > 0) {
    throw new Error(`the security scan could not parse ${unreadable.map((error) => `${error.file} (${error.message})`).join(', ')}`);
  }
  return result.issues.map(toFinding);
}

function toFinding(issue: RawIssue): Finding {
  const severity = issue.severity.name;
  if (severity !== 'INFORMATIONAL' && severity !== 'LOW' && severity !== 'MEDIUM' && severity !== 'HIGH') {
    throw new Error(`electronegativity reported an unknown severity ${JSON.stringify(severity)} for ${issue.id}`);
  }
  return {
    check: issue.id,
    severity,
    confidence: issue.confidence.name,
    file: issue.file.split('\\').join('/'),
    line: issue.location?.line ?? 0,
    column: issue.location?.column ?? 0,
    sample: typeof issue.sample === 'string' ? issue.sample : '',
    description: typeof issue.description === 'string' ? issue.description : '',
  };
}
