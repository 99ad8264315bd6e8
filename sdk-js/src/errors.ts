/**
 * The one error type of the SDK. Every failure — a server error, a network failure, a bad argument
 * caught before a request is sent, a realtime subscription that the server ended — is a
 * {@link HearthError} whose `code` comes from the server's public table (DESIGN §3).
 *
 * @module
 */

/**
 * The public error codes of the Hearth server (DESIGN §3 and the auth routes). The trailing
 * `(string & {})` keeps the union open: a code added by a newer server still type-checks, while
 * editors still complete the known ones.
 */
export type HearthErrorCode =
  | 'invalid_argument'
  | 'unauthenticated'
  | 'permission_denied'
  | 'not_found'
  | 'already_exists'
  | 'aborted'
  | 'failed_precondition'
  | 'payload_too_large'
  | 'hook_rejected'
  | 'rate_limited'
  | 'internal'
  | 'unavailable'
  | 'invalid_credentials'
  | 'token_reused'
  | (string & {});

/** Options accepted by the {@link HearthError} constructor. */
export interface HearthErrorOptions {
  /** HTTP status of the response, or 0 when no response arrived (network failure, WebSocket). */
  status?: number;
  /** The `details` object of the server's error body, when it sent one. */
  details?: Record<string, unknown>;
  /** The underlying error (for example the `TypeError` thrown by `fetch` on a network failure). */
  cause?: unknown;
}

/** An error raised by any Hearth SDK call. Compare `code`, never the message. */
export class HearthError extends Error {
  /** Stable snake_case code from the server's table, e.g. `'permission_denied'`. */
  readonly code: HearthErrorCode;
  /** HTTP status (0 when the failure happened before or outside an HTTP response). */
  readonly status: number;
  /** Structured details from the server's error body, if any. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: HearthErrorCode, message: string, options: HearthErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HearthError';
    this.code = code;
    this.status = options.status ?? defaultStatusForCode(code);
    this.details = options.details;
  }
}

/** The HTTP status the server uses for each known code; 0 for codes without a fixed status. */
const STATUS_BY_CODE: Record<string, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  invalid_credentials: 401,
  token_reused: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  aborted: 409,
  failed_precondition: 412,
  payload_too_large: 413,
  hook_rejected: 422,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
};

function defaultStatusForCode(code: string): number {
  return STATUS_BY_CODE[code] ?? 0;
}

/**
 * The code to use when a response carries no parsable error body (a proxy's HTML page, an empty
 * 502). 409 maps to `aborted` because that is the retryable reading; a real `already_exists`
 * always comes with a body from the server.
 */
export function codeForStatus(status: number): HearthErrorCode {
  switch (status) {
    case 400:
      return 'invalid_argument';
    case 401:
      return 'unauthenticated';
    case 403:
      return 'permission_denied';
    case 404:
      return 'not_found';
    case 409:
      return 'aborted';
    case 412:
      return 'failed_precondition';
    case 413:
      return 'payload_too_large';
    case 422:
      return 'hook_rejected';
    case 429:
      return 'rate_limited';
    case 502:
    case 503:
    case 504:
      return 'unavailable';
    default:
      return status >= 500 ? 'internal' : 'invalid_argument';
  }
}

/**
 * Builds the {@link HearthError} for a non-2xx response from its status and (possibly unparsable)
 * body text. The server's shape is `{"error": {"code", "message", "details"?}}`.
 */
export function errorFromResponse(status: number, bodyText: string): HearthError {
  let parsed: unknown;
  try {
    parsed = bodyText ? JSON.parse(bodyText) : undefined;
  } catch {
    parsed = undefined;
  }
  const error = isObject(parsed) && isObject(parsed.error) ? parsed.error : undefined;
  if (error && typeof error.code === 'string') {
    const message = typeof error.message === 'string' ? error.message : error.code;
    const details = isObject(error.details) ? error.details : undefined;
    return new HearthError(error.code, message, { status, details });
  }
  const code = codeForStatus(status);
  const snippet = bodyText.length > 200 ? `${bodyText.slice(0, 200)}…` : bodyText;
  return new HearthError(code, `HTTP ${status}${snippet ? `: ${snippet}` : ''}`, { status });
}

/** Wraps a failure of `fetch` itself (DNS, refused connection, reset) as `unavailable`. */
export function networkError(cause: unknown): HearthError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new HearthError('unavailable', `network error: ${reason}`, { status: 0, cause });
}

/** Shorthand for argument errors detected by the SDK before anything is sent. */
export function invalidArgument(message: string): HearthError {
  return new HearthError('invalid_argument', message, { status: 0 });
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
