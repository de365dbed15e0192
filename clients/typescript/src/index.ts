// A small typed client for the aijobs HTTP API. One file, no runtime dependencies, only
// `fetch`: it runs in browsers, Chrome extensions (pages and service workers) and Node 20.
// Every type comes from ./schema.ts, generated from /openapi.json (`make client-types`), so
// when the spec publishes per-type payloads and results (a union discriminated by `type`),
// `create({ type: "ai_generation", payload })` checks the payload without a change here.
import type { components, paths } from "./schema.js";

export type Schemas = components["schemas"];
export type Job = Schemas["Job"];
export type JobCreate = Schemas["JobCreate"];
export type JobEvent = Schemas["JobEvent"];
export type JobPage = Schemas["JobPage"];
export type JobTypeInfo = Schemas["JobTypeInfo"];
export type Me = Schemas["Me"];
export type LedgerEntry = Schemas["LedgerEntry"];
export type LedgerPage = Schemas["LedgerPage"];
export type Problem = Schemas["Problem"];
export type FieldError = Schemas["FieldError"];
export type JobStatus = Job["status"];
/** Every type name the spec knows: `string` until it lists them, then their union. */
export type JobType = JobCreate["type"];
/** The payload of one job type (the whole `payload` type while the spec has one for all). */
export type PayloadOf<T extends JobType> = JobCreate extends infer U
  ? U extends { type: infer K; payload: infer P }
    ? T extends K
      ? P
      : never
    : never
  : never;
export type ListJobsQuery = NonNullable<paths["/api/jobs"]["get"]["parameters"]["query"]>;
export type LedgerQuery = NonNullable<paths["/api/me/ledger"]["get"]["parameters"]["query"]>;

export const TERMINAL_STATUSES: readonly JobStatus[] = ["completed", "failed", "cancelled"];

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

// ---------------------------------------------------------------------------------------
// Errors: every answer that is not 2xx becomes one of these, carrying the problem document.

/** Base of every error this client throws for an HTTP answer (problem+json, RFC 9457). */
export class AijobsError extends Error {
  readonly status: number;
  readonly code: string | null;
  readonly problem: Problem;
  /** Seconds the server asked to wait (Retry-After), or null. */
  readonly retryAfter: number | null;

  constructor(problem: Problem, retryAfter: number | null = null) {
    super(problem.detail ?? problem.title);
    this.name = new.target.name;
    this.status = problem.status;
    this.code = problem.code ?? null;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

/** 401: no token, an expired or invalid one: sign in again. */
export class UnauthorizedError extends AijobsError {}
/** 403: signed in, but not allowed (admin endpoints). */
export class ForbiddenError extends AijobsError {}
/** 404: no such job, or another user's (the API does not tell which). */
export class NotFoundError extends AijobsError {}
/** 409: an Idempotency-Key reused for another request, or a job already finished. */
export class ConflictError extends AijobsError {}
/** 413: the body is over MAX_BODY_BYTES. */
export class PayloadTooLargeError extends AijobsError {}

/** 402: not enough credits. Nothing was charged. */
export class InsufficientCreditsError extends AijobsError {
  readonly balance: number;
  /** What the job (or the batch) would have cost; null when the user has no account. */
  readonly cost: number | null;

  constructor(problem: Problem, retryAfter: number | null = null) {
    super(problem, retryAfter);
    this.balance = problem.balance ?? 0;
    this.cost = problem.cost ?? null;
  }
}

/** 422: the request was invalid; `fields` names each field (`body.payload.tone`) and why. */
export class ValidationError extends AijobsError {
  readonly fields: FieldError[];

  constructor(problem: Problem, retryAfter: number | null = null) {
    super(problem, retryAfter);
    this.fields = problem.errors ?? [];
  }
}

/** 429: too many jobs in flight, or too many open streams; try again after `retryAfter` s. */
export class RateLimitedError extends AijobsError {
  readonly limit: number | null;

  constructor(problem: Problem, retryAfter: number | null = null) {
    super(problem, retryAfter);
    this.limit = typeof problem.limit === "number" ? problem.limit : null;
  }
}

/** 503: nothing was written or charged; the same request may be sent again after `retryAfter` s. */
export class ServiceUnavailableError extends AijobsError {}

/** The request never got an HTTP answer: offline, DNS, refused, or blocked by CORS; or an
 * event stream kept closing before its first event. */
export class NetworkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NetworkError";
  }
}

/** `wait()` ran out of time before the job finished; `job` is how it was last seen. */
export class WaitTimeoutError extends Error {
  readonly job: Job;

  constructor(job: Job) {
    super(`job ${job.id} is still ${job.status}`);
    this.name = "WaitTimeoutError";
    this.job = job;
  }
}

const ERRORS: Record<number, new (problem: Problem, retryAfter: number | null) => AijobsError> = {
  401: UnauthorizedError,
  402: InsufficientCreditsError,
  403: ForbiddenError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  422: ValidationError,
  429: RateLimitedError,
  503: ServiceUnavailableError,
};

/** Seconds from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null || value.trim() === "") return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

/** The typed error for a non-2xx response; a body that is not a problem document (a proxy's
 * HTML page, say) still becomes one, so callers never see an untyped error. */
export async function errorFromResponse(response: Response): Promise<AijobsError> {
  const text = await response.text().catch(() => "");
  let problem: Problem | null = null;
  try {
    const parsed: unknown = text ? JSON.parse(text) : null;
    if (parsed && typeof parsed === "object" && typeof (parsed as Problem).status === "number") {
      problem = parsed as Problem;
    }
  } catch {
    // not JSON: described below
  }
  problem ??= {
    type: "about:blank",
    title: response.statusText || `HTTP ${response.status}`,
    status: response.status,
    detail: text.slice(0, 500) || null,
  };
  const retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
  const Class = ERRORS[response.status] ?? AijobsError;
  return new Class(problem, retryAfter);
}

// ---------------------------------------------------------------------------------------

/** A fresh Idempotency-Key (a v4 uuid). Works where `crypto.randomUUID` does not: a page
 * served over plain http on a LAN address is not a secure context, and has no randomUUID. */
export function newIdempotencyKey(): string {
  if (typeof globalThis.crypto?.randomUUID === "function") {
    try {
      return globalThis.crypto.randomUUID();
    } catch {
      // fall through: some browsers define it but refuse it outside a secure context
    }
  }
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export type TokenSource = string | null | undefined | (() => string | null | undefined | Promise<string | null | undefined>);

export interface ClientOptions {
  /** The API's origin (and path prefix, if any), e.g. `https://jobs.example.com`. */
  baseUrl: string;
  /** The user's access token (a Supabase JWT), or a function returning the current one, so a
   * refreshed session is picked up on the next request. */
  token?: TokenSource;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface CreateOptions extends RequestOptions {
  /** Sent as Idempotency-Key: the same key and body replay the first answer, one job, one
   * charge. Use `newIdempotencyKey()` once per user intent and reuse it on every retry. */
  idempotencyKey?: string;
}

export interface WaitOptions extends RequestOptions {
  /** Give up (WaitTimeoutError) after this long; by default wait until the job finishes. */
  timeoutMs?: number;
}

export interface EventsOptions extends RequestOptions {
  /** Reopen the stream when the connection drops before the job finishes (default true). */
  reconnect?: boolean;
}

/** The longest long poll the API holds (GET /api/jobs/{id}?wait=, at most 60 s). */
const MAX_WAIT_SECONDS = 30;
const RECONNECT_DELAY_MS = 1000;
/** Failed connections in a row (no answer, a refusal, a stream that closed before its first
 * event) before events() gives up. */
const MAX_RECONNECTS = 5;
/** The longest Retry-After a reconnect waits, whatever the server asks. */
const MAX_RETRY_AFTER_MS = MAX_WAIT_SECONDS * 1000;

export class AijobsClient {
  readonly baseUrl: string;
  private readonly tokenSource: TokenSource;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.tokenSource = options.token;
    // Bound to globalThis: a bare `fetch` called as a method throws "Illegal invocation" in browsers.
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** Create a job; its credits are charged now. */
  create(job: JobCreate, options: CreateOptions = {}): Promise<Job> {
    return this.send<Job>("POST", "/api/jobs", { body: job, ...options });
  }

  /** Create 1-10,000 jobs, all or nothing; they come back in the order asked. */
  async createBatch(jobs: JobCreate[], options: CreateOptions = {}): Promise<Job[]> {
    const batch = await this.send<Schemas["JobBatch"]>("POST", "/api/jobs/batch", { body: { jobs }, ...options });
    return batch.items;
  }

  get(id: string, options: RequestOptions = {}): Promise<Job> {
    return this.send<Job>("GET", `/api/jobs/${encodeURIComponent(id)}`, options);
  }

  /** The job once it is completed, failed or cancelled (long polls, no busy loop). */
  async wait(id: string, options: WaitOptions = {}): Promise<Job> {
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    let job = await this.get(id, options);
    while (!isTerminal(job.status)) {
      const left = (deadline - Date.now()) / 1000;
      if (left <= 0) throw new WaitTimeoutError(job);
      const wait = Math.max(1, Math.min(MAX_WAIT_SECONDS, Math.floor(left)));
      job = await this.send<Job>("GET", `/api/jobs/${encodeURIComponent(id)}?wait=${wait}`, options);
    }
    return job;
  }

  /** My jobs, newest first; pass `next_cursor` back as `cursor` for the next page. */
  list(query: ListJobsQuery = {}, options: RequestOptions = {}): Promise<JobPage> {
    return this.send<JobPage>("GET", `/api/jobs${queryString(query)}`, options);
  }

  /** Every job of mine matching `query`, page after page. */
  async *listAll(query: ListJobsQuery = {}, options: RequestOptions = {}): AsyncGenerator<Job> {
    let cursor: string | null | undefined = query.cursor;
    do {
      const page = await this.list({ ...query, cursor }, options);
      yield* page.items;
      cursor = page.next_cursor;
    } while (cursor);
  }

  /** Pending: cancelled and refunded at once. Processing: asked to stop (the job says so). */
  cancel(id: string, options: RequestOptions = {}): Promise<Job> {
    return this.send<Job>("POST", `/api/jobs/${encodeURIComponent(id)}/cancel`, options);
  }

  /** A failed or cancelled job again, as a new job (charged again; `retry_of` names the old). */
  retry(id: string, options: CreateOptions = {}): Promise<Job> {
    return this.send<Job>("POST", `/api/jobs/${encodeURIComponent(id)}/retry`, options);
  }

  me(options: RequestOptions = {}): Promise<Me> {
    return this.send<Me>("GET", "/api/me", options);
  }

  ledger(query: LedgerQuery = {}, options: RequestOptions = {}): Promise<LedgerPage> {
    return this.send<LedgerPage>("GET", `/api/me/ledger${queryString(query)}`, options);
  }

  /** Public: the job types, their costs, example payloads and payload schemas. */
  jobTypes(options: RequestOptions = {}): Promise<JobTypeInfo[]> {
    return this.send<JobTypeInfo[]>("GET", "/api/job-types", { ...options, anonymous: true });
  }

  /**
   * The job's status changes as they happen, read from Server-Sent Events over `fetch`
   * (EventSource cannot send an Authorization header). The first event is the status it has
   * now; the iteration ends after a terminal one. Break out of the loop, or abort the signal,
   * to close the stream. A dropped connection is reopened (the API answers a new stream with
   * the current status, and a repeat is skipped); a reopening answered 503, or 429
   * `too_many_streams` (the server has not yet seen the old stream close), is tried again
   * after its Retry-After. A 200 that is not an event stream (an app's fallback page) throws
   * an `AijobsError` at once; no answer, a refusal on reopening, or a stream that closes
   * before its first event count as failures, and `MAX_RECONNECTS` in a row end it.
   */
  async *events(id: string, options: EventsOptions = {}): AsyncGenerator<JobEvent> {
    const reconnect = options.reconnect ?? true;
    const path = `/api/jobs/${encodeURIComponent(id)}/events`;
    let last: JobStatus | null = null;
    let failures = 0;
    let opened = false;
    for (;;) {
      let response: Response;
      try {
        response = await this.request("GET", path, { ...options, accept: "text/event-stream" });
      } catch (error) {
        // A first refusal is the caller's to handle, as for every other call; a refusal of a
        // reopening the client chose to make is waited out as the server asks.
        const busy =
          opened &&
          (error instanceof ServiceUnavailableError ||
            (error instanceof RateLimitedError && error.code === "too_many_streams"));
        if (!(busy || error instanceof NetworkError) || !reconnect || ++failures > MAX_RECONNECTS) throw error;
        const asked = (error instanceof AijobsError ? (error.retryAfter ?? 0) : 0) * 1000;
        await sleep(Math.min(MAX_RETRY_AFTER_MS, Math.max(RECONNECT_DELAY_MS, asked)), options.signal);
        continue;
      }
      opened = true;
      const type = response.headers.get("Content-Type");
      if (type?.split(";")[0]?.trim().toLowerCase() !== "text/event-stream") {
        // A proxy's or an app's fallback page: reading it as a stream would find no event,
        // and reopening it would answer the same.
        await response.body?.cancel().catch(() => undefined);
        throw new AijobsError({
          type: "about:blank",
          title: "Not an event stream",
          status: response.status,
          detail: `GET ${path} answered ${type ?? "no Content-Type"}, not text/event-stream: is ${this.baseUrl} the API?`,
        });
      }
      let delivered = false;
      try {
        for await (const message of readServerSentEvents(response, options.signal)) {
          if (message.event !== "status" || !message.data) continue;
          const event = JSON.parse(message.data) as JobEvent;
          failures = 0;
          delivered = true;
          if (event.status === last) continue;
          last = event.status;
          yield event;
          if (isTerminal(event.status)) return;
        }
      } catch (error) {
        if (isAbort(error, options.signal) || !reconnect || ++failures > MAX_RECONNECTS) throw error;
        await sleep(RECONNECT_DELAY_MS, options.signal);
        continue;
      }
      if (!reconnect) return;
      // Closed cleanly but empty (a proxy cutting streams short): a failure too, or a server
      // that does so every time would be reopened forever.
      if (!delivered && ++failures > MAX_RECONNECTS) {
        throw new NetworkError(`GET ${path}: the event stream closed ${failures} times in a row before its first event`);
      }
      await sleep(RECONNECT_DELAY_MS, options.signal);
    }
  }

  // -------------------------------------------------------------------------------------

  private async send<T>(
    method: string,
    path: string,
    options: CreateOptions & { body?: unknown; anonymous?: boolean } = {},
  ): Promise<T> {
    const response = await this.request(method, path, options);
    return (await response.json()) as T;
  }

  /** A 2xx response, or the typed error for the answer (NetworkError when there is none). */
  private async request(
    method: string,
    path: string,
    options: CreateOptions & { body?: unknown; anonymous?: boolean; accept?: string },
  ): Promise<Response> {
    const headers: Record<string, string> = { Accept: options.accept ?? "application/json" };
    if (!options.anonymous) {
      const token = typeof this.tokenSource === "function" ? await this.tokenSource() : this.tokenSource;
      if (token) headers.Authorization = `Bearer ${token}`;
    }
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (options.idempotencyKey !== undefined) headers["Idempotency-Key"] = options.idempotencyKey;
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.baseUrl}${path}`, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: options.signal,
      });
    } catch (error) {
      if (isAbort(error, options.signal)) throw error;
      throw new NetworkError(`${method} ${path}: no answer from ${this.baseUrl} (${String(error)})`, { cause: error });
    }
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events (the WHATWG event-stream format), parsed from a fetch body.

export interface ServerSentEvent {
  event: string;
  data: string;
  id: string | null;
}

export async function* readServerSentEvents(response: Response, signal?: AbortSignal): AsyncGenerator<ServerSentEvent> {
  if (!response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let id: string | null = null;
  const onAbort = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener("abort", onAbort);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (signal?.aborted) throw signal.reason ?? new DOMException("aborted", "AbortError");
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      // A line ends at CRLF, LF or CR; a CR at the buffer's end may be half of a CRLF.
      let match: RegExpExecArray | null;
      const lineEnd = /\r\n|\n|\r(?!$)/g;
      let start = 0;
      while ((match = lineEnd.exec(buffer)) !== null) {
        const line = buffer.slice(start, match.index);
        start = match.index + match[0].length;
        if (line === "") {
          if (data.length > 0) yield { event: event || "message", data: data.join("\n"), id };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      }
      buffer = buffer.slice(start);
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
    await response.body.cancel().catch(() => undefined);
  }
}

function queryString(query: Record<string, string | number | null | undefined>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null) params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

function isAbort(error: unknown, signal?: AbortSignal): boolean {
  return signal?.aborted === true || (error instanceof Error && error.name === "AbortError");
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
