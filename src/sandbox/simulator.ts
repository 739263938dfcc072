/**
 * A built-in ElkAPI simulator: a real HTTP server answering the two Luma endpoints in the upstream's real shapes
 * (`upstream/ELKAPI.md`). It backs the key-less sandbox mode (DESIGN §4.2), the tests and the benchmarks.
 *
 * Task states are derived from `clock.now() - createdAt` at query time — there are no timers — so a ManualClock
 * moves a task from queued to completed instantly. Tests can also make it misbehave on purpose (`injectFault`).
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { AddressInfo } from 'node:net';

import { type Clock, type Random, systemClock, toIso } from '../clock.js';
import { isJsonObject } from '../lib/json.js';
import { type CancelTimer, systemTimers, type Timers } from '../timers.js';
import type { UpstreamFrame } from '../upstream/types.js';
import { sampleThumbnail, sampleVideo } from './assets.js';

export interface SandboxOptions {
  /** Default `127.0.0.1`. */
  host?: string;
  /** Default 0: any free port (read it back from `sandbox.port`). */
  port?: number;
  /** When set, every request must carry `Authorization: Bearer <apiKey>` or gets 401. */
  apiKey?: string;
  /** Time from create to the terminal state. Default 10 000. */
  durationMs?: number;
  /** Time spent `queued` before `dreaming`. Default 2 000. */
  queueMs?: number;
  /** Share (0..1) of creates and queries answered with a transient 503. Default 0. */
  errorRate?: number;
  /** Real (not clock) delay added before every answer. Default 0. */
  latencyMs?: number;
  /** Drives task states; tests pass a ManualClock. Default: system clock. */
  clock?: Clock;
  /** Decides errorRate hits. Default Math.random. */
  random?: Random;
  /** Origin + path prefix where the gateway serves the sample assets, e.g. `http://127.0.0.1:3000/sandbox/assets`. */
  assetBaseUrl: string;
  /** Fixed `estimate_wait_seconds` while dreaming (null: report none). Default: the real remaining seconds. */
  estimateWaitSeconds?: number | null;
  /**
   * Call a task's `callback_url` like Luma does (`upstream/ELKAPI.md`): POST the generation on dreaming, completed and
   * failed, unsigned, retried 3 times 100 ms apart, 5 s timeout. Default true; false plays an upstream whose
   * callbacks are all lost.
   */
  callbacks?: boolean;
  /** Schedules callbacks and their retries; tests pass ManualTimers on the same clock. Default: real timers. */
  timers?: Timers;
}

/** One scripted misbehaviour, consumed by the next matching request(s). */
export interface SandboxFault {
  op: 'create' | 'query' | 'any';
  /** How many matching requests it applies to. Default 1. */
  times?: number;
  /** Answer status. Default 502 with `html`, else 500. */
  status?: number;
  /** Answer body: an object is sent as JSON, a string as is. Default: an OpenAI-style error (or an HTML page). */
  body?: string | object;
  headers?: Record<string, string>;
  /** Real delay before anything is sent (headers included). */
  delayMs?: number;
  /** Answer with an HTML error page, as relays and their CDNs do. */
  html?: boolean;
  /** Destroy the socket instead of answering: a network error for the client. */
  destroySocket?: boolean;
}
// A fault with `delayMs` but none of status / body / html / destroySocket only delays the request (and adds its
// headers): the simulator then answers normally, which is how tests make a slow upstream. Any other fault
// answers on its own (by default 500 with an OpenAI-style error).

/** Pins a task to a state regardless of the clock, e.g. to force `completed` now or a never-seen state. */
export interface SandboxStateOverride {
  /** `queued`, `dreaming`, `completed`, `failed`, or any string a relay might invent. */
  state: string;
  /** Reported when `state` is `failed`. Default `Simulated failure`. */
  failureReason?: string | null;
  /** Reported while running. Default: as without an override. */
  estimateWaitSeconds?: number | null;
}

/** The create request as the simulator echoes it back (`request` in the 201 answer). */
export interface SandboxRequestEcho {
  prompt: string;
  aspect_ratio: string;
  loop: boolean;
  keyframes: { frame0?: UpstreamFrame; frame1?: UpstreamFrame } | null;
  callback_url: string | null;
  model?: string;
  resolution?: string;
  duration?: string;
}

export interface SandboxTask {
  readonly id: string;
  readonly createdAtMs: number;
  readonly request: SandboxRequestEcho;
  /** How the task ends once `durationMs` has passed: `failed` when the prompt contains `[fail]`. */
  readonly outcome: 'completed' | 'failed';
  override: SandboxStateOverride | null;
}

export interface SandboxStats {
  /** Every request, whatever its path or answer. */
  requests: number;
  /** Requests to the create route (including those answered by a fault or the error rate). */
  creates: number;
  /** Requests to the query route. */
  queries: number;
  queriesById: Map<string, number>;
  /** Callback attempts sent (retries included). */
  callbacksSent: number;
  /** Callbacks answered 2xx. */
  callbacksDelivered: number;
  /** Callbacks given up after the last retry. */
  callbacksFailed: number;
}

export interface Sandbox {
  /** e.g. `http://127.0.0.1:41234` — the ElkAPI base URL to give the gateway. */
  readonly url: string;
  readonly port: number;
  readonly stats: SandboxStats;
  /** The `Authorization` header of the latest request (null when it had none). */
  readonly lastAuthorization: string | null;
  readonly tasks: ReadonlyMap<string, SandboxTask>;
  /** Faults not yet consumed. */
  readonly pendingFaults: number;
  injectFault(fault: SandboxFault): void;
  /** Pins a task's state (null: back to the clock). Throws for an unknown id. */
  setTaskState(id: string, override: SandboxStateOverride | null): void;
  completeNow(id: string): void;
  failNow(id: string, failureReason?: string): void;
  /** The state a query would report now, or null for an unknown id. */
  currentState(id: string): string | null;
  /** Drops a task: later queries answer `task_not_exist`. Returns whether it existed. */
  forget(id: string): boolean;
  /** Clears counters, `lastAuthorization` and pending faults (tasks stay). */
  reset(): void;
  /** Resolves once every callback attempt in flight has been answered (or failed); retries not yet due are not waited for. */
  callbacksSettled(): Promise<void>;
  /** Stops listening and destroys open sockets, keep-alive ones included. */
  close(): Promise<void>;
}

const GENERATIONS_PATH = '/dream-machine/v1/generations';
const CALLBACK_RETRIES = 3;
const CALLBACK_RETRY_DELAY_MS = 100;
const CALLBACK_TIMEOUT_MS = 5_000;
/** States Luma calls back on. */
const CALLBACK_STATES = new Set(['dreaming', 'completed', 'failed']);
const MAX_BODY_BYTES = 1024 * 1024;
const DOWNLOAD_URL_LIFETIME_SECONDS = 3600;
const ASPECT_RATIOS = new Set(['16:9', '9:16', '1:1', '4:3', '3:4', '21:9', '9:21']);
const RESOLUTIONS = new Set(['540p', '720p', '1080p', '4k']);
const DURATIONS = new Set(['5s', '9s']);

export async function startSandbox(options: SandboxOptions): Promise<Sandbox> {
  const simulator = new SandboxSimulator(options);
  await simulator.listen(options.host ?? '127.0.0.1', options.port ?? 0);
  return simulator;
}

type Route = { kind: 'create' } | { kind: 'query'; id: string } | { kind: 'method_not_allowed'; allow: string } | { kind: 'not_found' };

type Operation = 'create' | 'query' | 'other';

interface PendingFault extends SandboxFault {
  remaining: number;
}

/** An upstream error answer: status plus JSON body. */
interface ErrorAnswer {
  status: number;
  body: object;
}

class SandboxSimulator implements Sandbox {
  readonly stats: SandboxStats = {
    requests: 0,
    creates: 0,
    queries: 0,
    queriesById: new Map(),
    callbacksSent: 0,
    callbacksDelivered: 0,
    callbacksFailed: 0,
  };
  #lastAuthorization: string | null = null;
  readonly #tasks = new Map<string, SandboxTask>();
  #faults: PendingFault[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Scheduled callbacks and retries, by task. */
  readonly #callbackTimers = new Map<string, Set<CancelTimer>>();
  readonly #callbacksInFlight = new Set<Promise<void>>();
  readonly #callbackTimerSource: Timers;
  readonly #callbacksOn: boolean;
  // Per-instance secret so download_url signatures look real and change with every signing time.
  readonly #signingSecret = randomBytes(32);
  readonly #server = createServer((req, res) => {
    this.#handle(req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 500, openAiError('sandbox internal error', 'upstream_error'));
      else res.destroy();
    });
  });
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #durationMs: number;
  readonly #queueMs: number;
  readonly #errorRate: number;
  readonly #latencyMs: number;
  readonly #assetBaseUrl: string;
  #url = '';
  #port = 0;
  #closing: Promise<void> | null = null;

  constructor(private readonly options: SandboxOptions) {
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#durationMs = nonNegative('durationMs', options.durationMs ?? 10_000);
    this.#queueMs = nonNegative('queueMs', options.queueMs ?? 2_000);
    this.#latencyMs = nonNegative('latencyMs', options.latencyMs ?? 0);
    this.#errorRate = options.errorRate ?? 0;
    if (!(this.#errorRate >= 0 && this.#errorRate <= 1)) throw new RangeError('errorRate must be within 0..1');
    this.#assetBaseUrl = options.assetBaseUrl.replace(/\/+$/, '');
    this.#callbackTimerSource = options.timers ?? systemTimers;
    this.#callbacksOn = options.callbacks ?? true;
  }

  get url(): string {
    return this.#url;
  }
  get port(): number {
    return this.#port;
  }
  get lastAuthorization(): string | null {
    return this.#lastAuthorization;
  }
  get tasks(): ReadonlyMap<string, SandboxTask> {
    return this.#tasks;
  }
  get pendingFaults(): number {
    return this.#faults.length;
  }

  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const address = this.#server.address() as AddressInfo;
    this.#port = address.port;
    this.#url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
  }

  injectFault(fault: SandboxFault): void {
    const times = fault.times ?? 1;
    if (!Number.isInteger(times) || times < 1) throw new RangeError('fault.times must be a positive integer');
    this.#faults.push({ ...fault, remaining: times });
  }

  setTaskState(id: string, override: SandboxStateOverride | null): void {
    const task = this.#tasks.get(id);
    if (!task) throw new Error(`sandbox: no task ${id}`);
    const before = this.#stateAt(task, this.#clock.now()).state;
    task.override = override;
    const after = this.#stateAt(task, this.#clock.now()).state;
    if (after !== before && CALLBACK_STATES.has(after)) this.#callBack(task, 0);
  }

  completeNow(id: string): void {
    this.setTaskState(id, { state: 'completed' });
  }

  failNow(id: string, failureReason = 'Simulated failure'): void {
    this.setTaskState(id, { state: 'failed', failureReason });
  }

  currentState(id: string): string | null {
    const task = this.#tasks.get(id);
    return task ? this.#stateAt(task, this.#clock.now()).state : null;
  }

  forget(id: string): boolean {
    this.#cancelCallbacks(id);
    return this.#tasks.delete(id);
  }

  async callbacksSettled(): Promise<void> {
    while (this.#callbacksInFlight.size > 0) await Promise.allSettled([...this.#callbacksInFlight]);
  }

  reset(): void {
    // Mutated in place: tests may hold a reference to `stats`.
    this.stats.requests = 0;
    this.stats.creates = 0;
    this.stats.queries = 0;
    this.stats.queriesById.clear();
    this.stats.callbacksSent = 0;
    this.stats.callbacksDelivered = 0;
    this.stats.callbacksFailed = 0;
    this.#lastAuthorization = null;
    this.#faults = [];
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      // Requests parked in a delay never finish: drop their timers so nothing keeps the process alive.
      for (const timer of this.#timers) clearTimeout(timer);
      this.#timers.clear();
      for (const id of [...this.#callbackTimers.keys()]) this.#cancelCallbacks(id);
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closing;
  }

  // ---- request handling ----

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const route = resolveRoute(req.method ?? 'GET', req.url ?? '/');
    this.#count(req, route);

    const fault = this.#takeFault(route.kind === 'create' || route.kind === 'query' ? route.kind : 'other');
    if (fault && (await this.#applyFault(fault, req, res))) return;

    if (this.#latencyMs > 0) await this.#sleep(this.#latencyMs);

    if (route.kind === 'not_found') return sendHtml(res, 404);
    if (route.kind === 'method_not_allowed') {
      return sendJson(res, 405, openAiError('Method Not Allowed', 'invalid_request_error'), { allow: route.allow });
    }
    const { apiKey } = this.options;
    if (apiKey !== undefined && req.headers.authorization !== `Bearer ${apiKey}`) {
      // The relay's own wording (fixtures/error-401.json).
      const requestId = randomUUID().replaceAll('-', '');
      return sendJson(res, 401, openAiError(`Invalid token (request id: ${requestId})`, 'new_api_error'));
    }
    if (this.#errorRate > 0 && this.#random() < this.#errorRate) {
      return sendJson(res, 503, openAiError('upstream overloaded', 'upstream_error'));
    }

    if (route.kind === 'create') return this.#create(req, res);
    return this.#query(route.id, res);
  }

  #count(req: IncomingMessage, route: Route): void {
    this.stats.requests += 1;
    this.#lastAuthorization = req.headers.authorization ?? null;
    if (route.kind === 'create') this.stats.creates += 1;
    if (route.kind === 'query') {
      this.stats.queries += 1;
      this.stats.queriesById.set(route.id, (this.stats.queriesById.get(route.id) ?? 0) + 1);
    }
  }

  async #create(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req, MAX_BODY_BYTES);
    if (raw === null) {
      return sendJson(res, 413, openAiError('Request body too large', 'invalid_request_error'), {
        connection: 'close',
      });
    }
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      return sendJson(res, 400, openAiError('Invalid JSON body', 'invalid_request_error'));
    }
    const validated = this.#validateCreate(body);
    if ('status' in validated) return sendJson(res, validated.status, validated.body);

    const now = this.#clock.now();
    const task: SandboxTask = {
      id: randomUUID(),
      createdAtMs: now,
      request: validated,
      outcome: validated.prompt.includes('[fail]') ? 'failed' : 'completed',
      override: null,
    };
    this.#tasks.set(task.id, task);
    this.#scheduleCallbacks(task);
    // Luma's official shape (fixtures/create-201.json).
    sendJson(res, 201, {
      id: task.id,
      state: 'queued',
      failure_reason: null,
      created_at: toIso(now),
      assets: null,
      version: null,
      request: task.request,
    });
  }

  /** Luma's validation, as far as the gateway can observe it: the first problem found answers 400. */
  #validateCreate(body: unknown): SandboxRequestEcho | ErrorAnswer {
    if (!isJsonObject(body)) return invalid('Request body must be a JSON object', '');
    const { prompt, aspect_ratio, loop, keyframes, callback_url, model, resolution, duration } = body;

    if (typeof prompt !== 'string' || prompt.length < 3 || prompt.length > 5000) {
      return invalid('prompt must be a string of 3 to 5000 characters', 'prompt');
    }
    if (aspect_ratio !== undefined && (typeof aspect_ratio !== 'string' || !ASPECT_RATIOS.has(aspect_ratio))) {
      return invalid(`aspect_ratio must be one of ${[...ASPECT_RATIOS].join(', ')}`, 'aspect_ratio');
    }
    if (loop !== undefined && typeof loop !== 'boolean') return invalid('loop must be a boolean', 'loop');
    if (callback_url !== undefined && callback_url !== null && typeof callback_url !== 'string') {
      return invalid('callback_url must be a string', 'callback_url');
    }
    if (model !== undefined && typeof model !== 'string') return invalid('model must be a string', 'model');
    if (resolution !== undefined && (typeof resolution !== 'string' || !RESOLUTIONS.has(resolution))) {
      return invalid(`resolution must be one of ${[...RESOLUTIONS].join(', ')}`, 'resolution');
    }
    if (duration !== undefined && (typeof duration !== 'string' || !DURATIONS.has(duration))) {
      return invalid(`duration must be one of ${[...DURATIONS].join(', ')}`, 'duration');
    }

    let frames: SandboxRequestEcho['keyframes'] = null;
    if (keyframes !== undefined && keyframes !== null) {
      if (!isJsonObject(keyframes)) return invalid('keyframes must be an object', 'keyframes');
      frames = {};
      for (const name of ['frame0', 'frame1'] as const) {
        if (keyframes[name] === undefined || keyframes[name] === null) continue;
        const frame = this.#validateFrame(keyframes[name], `keyframes.${name}`);
        if ('status' in frame) return frame;
        frames[name] = frame;
      }
    }

    // After validation, like Luma: moderation runs on a well-formed request.
    if (prompt.includes('[moderate]')) return invalid('Advanced prompt moderation failed', 'prompt');

    const echo: SandboxRequestEcho = {
      prompt,
      aspect_ratio: aspect_ratio ?? '16:9',
      loop: loop ?? false,
      keyframes: frames,
      callback_url: callback_url ?? null,
    };
    if (model !== undefined) echo.model = model;
    if (resolution !== undefined) echo.resolution = resolution;
    if (duration !== undefined) echo.duration = duration;
    return echo;
  }

  #validateFrame(frame: unknown, param: string): UpstreamFrame | ErrorAnswer {
    if (isJsonObject(frame) && frame.type === 'image') {
      if (typeof frame.url === 'string' && /^https?:\/\//.test(frame.url)) return { type: 'image', url: frame.url };
      return invalid(`${param}.url must be an http(s) URL`, param);
    }
    if (isJsonObject(frame) && frame.type === 'generation') {
      if (typeof frame.id === 'string' && this.#tasks.has(frame.id)) return { type: 'generation', id: frame.id };
      return invalid(`${param}: no generation found with id ${String(frame.id)}`, param);
    }
    return invalid(`${param}.type must be "image" or "generation"`, param);
  }

  #query(id: string, res: ServerResponse): void {
    const task = this.#tasks.get(id);
    if (!task) return sendJson(res, 400, { code: 'task_not_exist', message: 'task_not_exist', data: null });
    sendJson(res, 200, this.#webAppGeneration(task, this.#clock.now()));
  }

  #stateAt(task: SandboxTask, now: number): { state: string; estimateWaitSeconds: number | null } {
    const elapsed = now - task.createdAtMs;
    const remainingSeconds = Math.max(0, Math.ceil((this.#durationMs - elapsed) / 1000));
    const dreamingEstimate = this.options.estimateWaitSeconds !== undefined ? this.options.estimateWaitSeconds : remainingSeconds;

    if (task.override) {
      const { state, estimateWaitSeconds } = task.override;
      const running = state !== 'queued' && state !== 'completed' && state !== 'failed';
      return { state, estimateWaitSeconds: estimateWaitSeconds ?? (running ? dreamingEstimate : null) };
    }
    if (elapsed >= this.#durationMs) return { state: task.outcome, estimateWaitSeconds: null };
    if (elapsed < this.#queueMs) return { state: 'queued', estimateWaitSeconds: null };
    return { state: 'dreaming', estimateWaitSeconds: dreamingEstimate };
  }

  /** The relay's web-app shape (fixtures/query-*.json); failure_reason only on failed tasks, as relays do. */
  #webAppGeneration(task: SandboxTask, now: number): object {
    const { state, estimateWaitSeconds } = this.#stateAt(task, now);
    const completed = state === 'completed';
    const videoUrl = `${this.#assetBaseUrl}/${sampleVideo.file}`;
    const { width, height } = sampleThumbnail;
    const thumbnail = completed ? { url: `${this.#assetBaseUrl}/${sampleThumbnail.file}`, width, height } : null;
    const failure = state === 'failed' ? { failure_reason: task.override?.failureReason ?? 'Simulated failure' } : {};
    return {
      id: task.id,
      liked: null,
      state,
      ...failure,
      video: completed
        ? {
            url: videoUrl,
            width: sampleVideo.width,
            height: sampleVideo.height,
            duration: sampleVideo.durationSeconds,
            download_url: this.#presign(videoUrl, task.id, now),
          }
        : null,
      prompt: task.request.prompt,
      thumbnail,
      video_raw: null,
      created_at: toIso(task.createdAtMs),
      last_frame: thumbnail, // the sample has no separate last frame
      queue_state: null,
      estimate_wait_seconds: estimateWaitSeconds,
    };
  }

  /** A fresh S3-style presigned link per query, so the gateway's refresh of expiring links can be tested. */
  #presign(url: string, taskId: string, now: number): string {
    const amzDate = toIso(now).replace(/[-:]/g, '').replace(/\.\d+/, ''); // 20260101T000000Z
    const signature = createHmac('sha256', this.#signingSecret).update(`${taskId}\n${amzDate}`).digest('hex');
    return `${url}?X-Amz-Date=${amzDate}&X-Amz-Expires=${DOWNLOAD_URL_LIFETIME_SECONDS}&X-Amz-Signature=${signature}`;
  }

  // ---- callbacks ----

  /** Luma calls back when the task starts dreaming and when it ends. */
  #scheduleCallbacks(task: SandboxTask): void {
    if (!this.#callbacksOn || task.request.callback_url === null) return;
    if (this.#queueMs < this.#durationMs) this.#later(task.id, this.#queueMs, () => this.#callBack(task, 0));
    this.#later(task.id, this.#durationMs, () => this.#callBack(task, 0));
  }

  #later(taskId: string, ms: number, run: () => void): void {
    const timers = this.#callbackTimers.get(taskId) ?? new Set<CancelTimer>();
    this.#callbackTimers.set(taskId, timers);
    const cancel = this.#callbackTimerSource.setTimeout(() => {
      timers.delete(cancel);
      run();
    }, ms);
    timers.add(cancel);
  }

  #cancelCallbacks(taskId: string): void {
    for (const cancel of this.#callbackTimers.get(taskId) ?? []) cancel();
    this.#callbackTimers.delete(taskId);
  }

  /** One attempt: POST the generation as it is now, unsigned; a failure is retried 100 ms later, 3 times. */
  #callBack(task: SandboxTask, retry: number): void {
    const url = task.request.callback_url;
    if (!this.#callbacksOn || url === null || this.#closing !== null || !this.#tasks.has(task.id)) return;
    this.stats.callbacksSent += 1;
    const attempt = fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(this.#webAppGeneration(task, this.#clock.now())),
      redirect: 'manual',
      signal: AbortSignal.timeout(CALLBACK_TIMEOUT_MS),
    })
      .then(async (response) => {
        await response.arrayBuffer().catch(() => undefined);
        return response.status >= 200 && response.status < 300;
      })
      .catch(() => false)
      .then((delivered) => {
        if (delivered) this.stats.callbacksDelivered += 1;
        else if (retry < CALLBACK_RETRIES) this.#later(task.id, CALLBACK_RETRY_DELAY_MS, () => this.#callBack(task, retry + 1));
        else this.stats.callbacksFailed += 1;
      })
      .finally(() => this.#callbacksInFlight.delete(attempt));
    this.#callbacksInFlight.add(attempt);
  }

  // ---- faults ----

  #takeFault(operation: Operation): PendingFault | null {
    const index = this.#faults.findIndex((fault) => fault.op === 'any' || fault.op === operation);
    const fault = this.#faults[index];
    if (!fault) return null;
    fault.remaining -= 1;
    if (fault.remaining === 0) this.#faults.splice(index, 1);
    return fault;
  }

  /** Returns true when the fault answered (or killed) the request; false when it only delayed it. */
  async #applyFault(fault: SandboxFault, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (fault.delayMs !== undefined && fault.delayMs > 0) await this.#sleep(fault.delayMs);
    if (fault.destroySocket) {
      req.socket.destroy();
      return true;
    }
    for (const [name, value] of Object.entries(fault.headers ?? {})) res.setHeader(name, value);
    const answers = fault.status !== undefined || fault.body !== undefined || fault.html === true;
    const delayOnly = fault.delayMs !== undefined && !answers;
    if (delayOnly) return false;

    const status = fault.status ?? (fault.html ? 502 : 500);
    if (fault.html && fault.body === undefined) sendHtml(res, status);
    else if (fault.body === undefined) sendJson(res, status, openAiError('simulated fault', 'upstream_error'));
    else if (typeof fault.body === 'string') {
      sendRaw(res, status, fault.body, fault.html ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8');
    } else sendJson(res, status, fault.body);
    return true;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        resolve();
      }, ms);
      this.#timers.add(timer);
    });
  }
}

// ---- helpers ----

function resolveRoute(method: string, rawUrl: string): Route {
  const path = rawUrl.split('?', 1)[0] ?? '/';
  if (path === GENERATIONS_PATH || path === `${GENERATIONS_PATH}/`) {
    return method === 'POST' ? { kind: 'create' } : { kind: 'method_not_allowed', allow: 'POST' };
  }
  if (path.startsWith(`${GENERATIONS_PATH}/`)) {
    const segment = path.slice(GENERATIONS_PATH.length + 1);
    if (segment === '' || segment.includes('/')) return { kind: 'not_found' };
    let id: string;
    try {
      id = decodeURIComponent(segment);
    } catch {
      return { kind: 'not_found' };
    }
    return method === 'GET' ? { kind: 'query', id } : { kind: 'method_not_allowed', allow: 'GET' };
  }
  return { kind: 'not_found' };
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number`);
  return value;
}

function openAiError(message: string, type: string, param = ''): object {
  return { error: { message, type, param, code: '' } };
}

function invalid(message: string, param: string): ErrorAnswer {
  return { status: 400, body: openAiError(message, 'invalid_request_error', param) };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  sendRaw(res, status, JSON.stringify(body), 'application/json; charset=utf-8');
}

/** An nginx-style error page: what a relay's front proxy answers for wrong paths and outages. */
function sendHtml(res: ServerResponse, status: number): void {
  const title = `${status} ${STATUS_CODES[status] ?? 'Error'}`;
  const page =
    `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n` +
    `<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`;
  sendRaw(res, status, page, 'text/html; charset=utf-8');
}

function sendRaw(res: ServerResponse, status: number, body: string, contentType: string): void {
  if (res.writableEnded || res.destroyed) return; // the client went away while we were delaying
  if (!res.hasHeader('content-type')) res.setHeader('content-type', contentType);
  res.setHeader('content-length', Buffer.byteLength(body));
  res.statusCode = status;
  res.end(body);
}
