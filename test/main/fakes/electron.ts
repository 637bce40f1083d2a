/**
 * A stand-in for the `electron` module: records what main asks of it, and lets tests play the
 * part of the page (navigation, permission requests, IPC from some frame).
 */
type Handler = (...args: never[]) => unknown;

export interface FakeFrame {
  url: string;
  processId: number;
  frameToken: string;
  parent: FakeFrame | null;
}

export class FakeWebContents {
  readonly listeners = new Map<string, Handler[]>();
  windowOpenHandler: ((details: { url: string }) => { action: string }) | null = null;
  readonly mainFrame: FakeFrame;
  readonly sent: unknown[][] = [];
  loadedUrl: string | null = null;
  destroyed = false;

  constructor(url = 'app://cowbell/index.html') {
    this.mainFrame = { url, processId: 4, frameToken: 'main-frame', parent: null };
  }

  on(event: string, listener: Handler): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
    return this;
  }

  setWindowOpenHandler(handler: (details: { url: string }) => { action: string }): void {
    this.windowOpenHandler = handler;
  }

  isDestroyed(): boolean {
    return this.destroyed;
  }

  send(...args: unknown[]): void {
    this.sent.push(args);
  }

  /** Emits like the page would and reports whether a listener called preventDefault. */
  emitPreventable(event: string, ...args: unknown[]): boolean {
    let prevented = false;
    const domEvent = { preventDefault: () => (prevented = true) };
    for (const listener of this.listeners.get(event) ?? []) (listener as (...a: unknown[]) => void)(domEvent, ...args);
    return prevented;
  }
}

export class FakeBrowserWindow {
  static created: FakeBrowserWindow[] = [];
  readonly options: Record<string, unknown>;
  readonly webContents = new FakeWebContents();

  constructor(options: Record<string, unknown>) {
    this.options = options;
    FakeBrowserWindow.created.push(this);
  }

  focused = 0;

  once(): this {
    return this;
  }

  on(): this {
    return this;
  }

  isMinimized(): boolean {
    return false;
  }

  restore(): void {}

  focus(): void {
    this.focused += 1;
  }

  loadURL(url: string): Promise<void> {
    this.webContents.loadedUrl = url;
    return Promise.resolve();
  }
}

export const ipcHandlers = new Map<string, (...args: unknown[]) => unknown>();
export const protocolHandlers = new Map<string, (request: Request) => Promise<Response> | Response>();
export const exposed = new Map<string, unknown>();
export const rendererListeners = new Map<string, ((...args: unknown[]) => void)[]>();
export const invoked: unknown[][] = [];
export const invokeReplies: unknown[] = [];

export function fakeSession() {
  const handlers: Record<string, Handler> = {};
  return {
    handlers,
    setPermissionRequestHandler: (handler: Handler) => (handlers.permissionRequest = handler),
    setPermissionCheckHandler: (handler: Handler) => (handlers.permissionCheck = handler),
    setDevicePermissionHandler: (handler: Handler) => (handlers.devicePermission = handler),
    webRequest: {
      onBeforeRequest: (handler: Handler) => (handlers.beforeRequest = handler),
      onHeadersReceived: (handler: Handler) => (handlers.headersReceived = handler),
    },
    protocol: {
      handle: (scheme: string, handler: (request: Request) => Promise<Response>) => protocolHandlers.set(scheme, handler),
    },
  };
}

/** The `app` object: tests set the lock answer, then fire the app's events themselves. */
export const fakeApp = {
  lockGranted: true,
  quitCalls: 0,
  listeners: new Map<string, ((...args: unknown[]) => void)[]>(),
  readyResolve: (() => undefined) as () => void,
  ready: null as Promise<void> | null,
  isPackaged: false,
  requestSingleInstanceLock(): boolean {
    return this.lockGranted;
  },
  quit(): void {
    this.quitCalls += 1;
  },
  getVersion: () => '7.7.7',
  on(event: string, listener: (...args: unknown[]) => void) {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
    return this;
  },
  emit(event: string, ...args: unknown[]): void {
    for (const listener of this.listeners.get(event) ?? []) listener(...args);
  },
  whenReady(): Promise<void> {
    this.ready ??= new Promise<void>((resolve) => (this.readyResolve = resolve));
    return this.ready;
  },
};

export const privilegedSchemes: unknown[] = [];
/** Every menu main installed, newest last, as the template it was built from. */
export const applicationMenus: { template: unknown[] }[] = [];
export const droppedFilePaths = new Map<unknown, string>();
/** Paths main asked the file manager to show. */
export const revealedPaths: string[] = [];
export const defaultSession = fakeSession();

export const electronModule = {
  app: fakeApp,
  session: { defaultSession },
  BrowserWindow: FakeBrowserWindow,
  ipcMain: {
    handle: (channel: string, handler: (...args: unknown[]) => unknown) => ipcHandlers.set(channel, handler),
    removeHandler: (channel: string) => ipcHandlers.delete(channel),
  },
  protocol: {
    registerSchemesAsPrivileged: (schemes: unknown[]) => privilegedSchemes.push(...schemes),
    handle: (scheme: string, handler: (request: Request) => Promise<Response>) => protocolHandlers.set(scheme, handler),
  },
  contextBridge: {
    exposeInMainWorld: (key: string, api: unknown) => exposed.set(key, api),
  },
  ipcRenderer: {
    invoke: async (...args: unknown[]) => {
      invoked.push(args);
      return invokeReplies.shift();
    },
    on: (channel: string, listener: (...args: unknown[]) => void) =>
      rendererListeners.set(channel, [...(rendererListeners.get(channel) ?? []), listener]),
  },
  dialog: { showOpenDialog: async () => ({ canceled: true, filePaths: [] }) },
  Menu: {
    buildFromTemplate: (template: unknown[]) => ({ template }),
    setApplicationMenu: (menu: { template: unknown[] }) => applicationMenus.push(menu),
  },
  shell: { showItemInFolder: (path: string) => revealedPaths.push(path) },
  webUtils: { getPathForFile: (file: unknown) => droppedFilePaths.get(file) ?? '' },
};

/** Back to a freshly started process (vi.resetModules keeps the mocked module, so its state is reset here). */
export function resetFakes(): void {
  FakeBrowserWindow.created.length = 0;
  ipcHandlers.clear();
  protocolHandlers.clear();
  privilegedSchemes.length = 0;
  applicationMenus.length = 0;
  revealedPaths.length = 0;
  for (const key of Object.keys(defaultSession.handlers)) delete defaultSession.handlers[key];
  fakeApp.lockGranted = true;
  fakeApp.quitCalls = 0;
  fakeApp.listeners.clear();
  fakeApp.ready = null;
  fakeApp.readyResolve = () => undefined;
}
