export const TERMINAL_STATUSES = ["completed", "failed", "cancelled"];
export function isTerminal(status) {
    return TERMINAL_STATUSES.includes(status);
}
// ---------------------------------------------------------------------------------------
// Errors: every answer that is not 2xx becomes one of these, carrying the problem document.
/** Base of every error this client throws for an HTTP answer (problem+json, RFC 9457). */
export class AijobsError extends Error {
    status;
    code;
    problem;
    /** Seconds the server asked to wait (Retry-After), or null. */
    retryAfter;
    constructor(problem, retryAfter = null) {
        super(problem.detail ?? problem.title);
        this.name = new.target.name;
        this.status = problem.status;
        this.code = problem.code ?? null;
        this.problem = problem;
        this.retryAfter = retryAfter;
    }
}
/** 401: no token, an expired or invalid one: sign in again. */
export class UnauthorizedError extends AijobsError {
}
/** 403: signed in, but not allowed (admin endpoints). */
export class ForbiddenError extends AijobsError {
}
/** 404: no such job, or another user's (the API does not tell which). */
export class NotFoundError extends AijobsError {
}
/** 409: an Idempotency-Key reused for another request, or a job already finished. */
export class ConflictError extends AijobsError {
}
/** 413: the body is over MAX_BODY_BYTES. */
export class PayloadTooLargeError extends AijobsError {
}
/** 402: not enough credits. Nothing was charged. */
export class InsufficientCreditsError extends AijobsError {
    balance;
    /** What the job (or the batch) would have cost; null when the user has no account. */
    cost;
    constructor(problem, retryAfter = null) {
        super(problem, retryAfter);
        this.balance = problem.balance ?? 0;
        this.cost = problem.cost ?? null;
    }
}
/** 422: the request was invalid; `fields` names each field (`body.payload.tone`) and why. */
export class ValidationError extends AijobsError {
    fields;
    constructor(problem, retryAfter = null) {
        super(problem, retryAfter);
        this.fields = problem.errors ?? [];
    }
}
/** 429: too many jobs in flight, or too many open streams; try again after `retryAfter` s. */
export class RateLimitedError extends AijobsError {
    limit;
    constructor(problem, retryAfter = null) {
        super(problem, retryAfter);
        this.limit = typeof problem.limit === "number" ? problem.limit : null;
    }
}
/** 503: nothing was written or charged; the same request may be sent again after `retryAfter` s. */
export class ServiceUnavailableError extends AijobsError {
}
/** The request never got an HTTP answer: offline, DNS, refused, or blocked by CORS; or an
 * event stream kept closing before its first event. */
export class NetworkError extends Error {
    constructor(message, options) {
        super(message, options);
        this.name = "NetworkError";
    }
}
/** `wait()` ran out of time before the job finished; `job` is how it was last seen. */
export class WaitTimeoutError extends Error {
    job;
    constructor(job) {
        super(`job ${job.id} is still ${job.status}`);
        this.name = "WaitTimeoutError";
        this.job = job;
    }
}
const ERRORS = {
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
export function parseRetryAfter(value, now = Date.now()) {
    if (value === null || value.trim() === "")
        return null;
    if (/^\d+$/.test(value.trim()))
        return Number(value.trim());
    const at = Date.parse(value);
    return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}
/** The typed error for a non-2xx response; a body that is not a problem document (a proxy's
 * HTML page, say) still becomes one, so callers never see an untyped error. */
export async function errorFromResponse(response) {
    const text = await response.text().catch(() => "");
    let problem = null;
    try {
        const parsed = text ? JSON.parse(text) : null;
        if (parsed && typeof parsed === "object" && typeof parsed.status === "number") {
            problem = parsed;
        }
    }
    catch {
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
export function newIdempotencyKey() {
    if (typeof globalThis.crypto?.randomUUID === "function") {
        try {
            return globalThis.crypto.randomUUID();
        }
        catch {
            // fall through: some browsers define it but refuse it outside a secure context
        }
    }
    const bytes = new Uint8Array(16);
    globalThis.crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
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
    baseUrl;
    tokenSource;
    fetchImpl;
    constructor(options) {
        this.baseUrl = options.baseUrl.replace(/\/+$/, "");
        this.tokenSource = options.token;
        // Bound to globalThis: a bare `fetch` called as a method throws "Illegal invocation" in browsers.
        this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    }
    /** Create a job; its credits are charged now. */
    create(job, options = {}) {
        return this.send("POST", "/api/jobs", { body: job, ...options });
    }
    /** Create 1-10,000 jobs, all or nothing; they come back in the order asked. */
    async createBatch(jobs, options = {}) {
        const batch = await this.send("POST", "/api/jobs/batch", { body: { jobs }, ...options });
        return batch.items;
    }
    get(id, options = {}) {
        return this.send("GET", `/api/jobs/${encodeURIComponent(id)}`, options);
    }
    /** The job once it is completed, failed or cancelled (long polls, no busy loop). */
    async wait(id, options = {}) {
        const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
        let job = await this.get(id, options);
        while (!isTerminal(job.status)) {
            const left = (deadline - Date.now()) / 1000;
            if (left <= 0)
                throw new WaitTimeoutError(job);
            const wait = Math.max(1, Math.min(MAX_WAIT_SECONDS, Math.floor(left)));
            job = await this.send("GET", `/api/jobs/${encodeURIComponent(id)}?wait=${wait}`, options);
        }
        return job;
    }
    /** My jobs, newest first; pass `next_cursor` back as `cursor` for the next page. */
    list(query = {}, options = {}) {
        return this.send("GET", `/api/jobs${queryString(query)}`, options);
    }
    /** Every job of mine matching `query`, page after page. */
    async *listAll(query = {}, options = {}) {
        let cursor = query.cursor;
        do {
            const page = await this.list({ ...query, cursor }, options);
            yield* page.items;
            cursor = page.next_cursor;
        } while (cursor);
    }
    /** Pending: cancelled and refunded at once. Processing: asked to stop (the job says so). */
    cancel(id, options = {}) {
        return this.send("POST", `/api/jobs/${encodeURIComponent(id)}/cancel`, options);
    }
    /** A failed or cancelled job again, as a new job (charged again; `retry_of` names the old). */
    retry(id, options = {}) {
        return this.send("POST", `/api/jobs/${encodeURIComponent(id)}/retry`, options);
    }
    me(options = {}) {
        return this.send("GET", "/api/me", options);
    }
    ledger(query = {}, options = {}) {
        return this.send("GET", `/api/me/ledger${queryString(query)}`, options);
    }
    /** Public: the job types, their costs, example payloads and payload schemas. */
    jobTypes(options = {}) {
        return this.send("GET", "/api/job-types", { ...options, anonymous: true });
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
    async *events(id, options = {}) {
        const reconnect = options.reconnect ?? true;
        const path = `/api/jobs/${encodeURIComponent(id)}/events`;
        let last = null;
        let failures = 0;
        let opened = false;
        for (;;) {
            let response;
            try {
                response = await this.request("GET", path, { ...options, accept: "text/event-stream" });
            }
            catch (error) {
                // A first refusal is the caller's to handle, as for every other call; a refusal of a
                // reopening the client chose to make is waited out as the server asks.
                const busy = opened &&
                    (error instanceof ServiceUnavailableError ||
                        (error instanceof RateLimitedError && error.code === "too_many_streams"));
                if (!(busy || error instanceof NetworkError) || !reconnect || ++failures > MAX_RECONNECTS)
                    throw error;
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
                    if (message.event !== "status" || !message.data)
                        continue;
                    const event = JSON.parse(message.data);
                    failures = 0;
                    delivered = true;
                    if (event.status === last)
                        continue;
                    last = event.status;
                    yield event;
                    if (isTerminal(event.status))
                        return;
                }
            }
            catch (error) {
                if (isAbort(error, options.signal) || !reconnect || ++failures > MAX_RECONNECTS)
                    throw error;
                await sleep(RECONNECT_DELAY_MS, options.signal);
                continue;
            }
            if (!reconnect)
                return;
            // Closed cleanly but empty (a proxy cutting streams short): a failure too, or a server
            // that does so every time would be reopened forever.
            if (!delivered && ++failures > MAX_RECONNECTS) {
                throw new NetworkError(`GET ${path}: the event stream closed ${failures} times in a row before its first event`);
            }
            await sleep(RECONNECT_DELAY_MS, options.signal);
        }
    }
    // -------------------------------------------------------------------------------------
    async send(method, path, options = {}) {
        const response = await this.request(method, path, options);
        return (await response.json());
    }
    /** A 2xx response, or the typed error for the answer (NetworkError when there is none). */
    async request(method, path, options) {
        const headers = { Accept: options.accept ?? "application/json" };
        if (!options.anonymous) {
            const token = typeof this.tokenSource === "function" ? await this.tokenSource() : this.tokenSource;
            if (token)
                headers.Authorization = `Bearer ${token}`;
        }
        if (options.body !== undefined)
            headers["Content-Type"] = "application/json";
        if (options.idempotencyKey !== undefined)
            headers["Idempotency-Key"] = options.idempotencyKey;
        let response;
        try {
            response = await this.fetchImpl(`${this.baseUrl}${path}`, {
                method,
                headers,
                body: options.body === undefined ? undefined : JSON.stringify(options.body),
                signal: options.signal,
            });
        }
        catch (error) {
            if (isAbort(error, options.signal))
                throw error;
            throw new NetworkError(`${method} ${path}: no answer from ${this.baseUrl} (${String(error)})`, { cause: error });
        }
        if (!response.ok)
            throw await errorFromResponse(response);
        return response;
    }
}
export async function* readServerSentEvents(response, signal) {
    if (!response.body)
        return;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let event = "";
    let data = [];
    let id = null;
    const onAbort = () => void reader.cancel().catch(() => undefined);
    signal?.addEventListener("abort", onAbort);
    try {
        for (;;) {
            const { value, done } = await reader.read();
            if (signal?.aborted)
                throw signal.reason ?? new DOMException("aborted", "AbortError");
            if (done)
                return;
            buffer += decoder.decode(value, { stream: true });
            // A line ends at CRLF, LF or CR; a CR at the buffer's end may be half of a CRLF.
            let match;
            const lineEnd = /\r\n|\n|\r(?!$)/g;
            let start = 0;
            while ((match = lineEnd.exec(buffer)) !== null) {
                const line = buffer.slice(start, match.index);
                start = match.index + match[0].length;
                if (line === "") {
                    if (data.length > 0)
                        yield { event: event || "message", data: data.join("\n"), id };
                    event = "";
                    data = [];
                    continue;
                }
                if (line.startsWith(":"))
                    continue;
                const colon = line.indexOf(":");
                const field = colon < 0 ? line : line.slice(0, colon);
                const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
                if (field === "event")
                    event = value;
                else if (field === "data")
                    data.push(value);
                else if (field === "id")
                    id = value;
            }
            buffer = buffer.slice(start);
        }
    }
    finally {
        signal?.removeEventListener("abort", onAbort);
        reader.releaseLock();
        await response.body.cancel().catch(() => undefined);
    }
}
function queryString(query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
        if (value !== undefined && value !== null)
            params.set(name, String(value));
    }
    const text = params.toString();
    return text ? `?${text}` : "";
}
function isAbort(error, signal) {
    return signal?.aborted === true || (error instanceof Error && error.name === "AbortError");
}
function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        if (signal?.aborted)
            return reject(signal.reason);
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
