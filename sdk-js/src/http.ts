/**
 * The HTTP transport: one place that adds the bearer credential, serialises bodies, maps every
 * failure to a {@link HearthError} and retries once after refreshing on a 401.
 *
 * @module
 * @internal
 */

import { errorFromResponse, HearthError, networkError } from './errors.js';
import { stringifyJson } from './values.js';

/** Who the SDK is speaking as, asked before each request. @internal */
export interface CredentialSource {
  /** The bearer token to send (refreshed first if close to expiry), or null when signed out. */
  bearer(): Promise<{ token: string; kind: 'user' | 'service' } | null>;
  /**
   * Called after a 401 to a request sent with the user token `usedToken`; resolves true when a
   * fresh token is now available and the request is worth retrying once.
   */
  recoverFromUnauthorized(usedToken: string): Promise<boolean>;
}

/** Options of one request. @internal */
export interface RequestOptions {
  /** JSON body: any wire tree (serialised with `stringifyJson`). */
  body?: unknown;
  /** A plain-text body (`text/plain; charset=utf-8`), e.g. a rules source. Excludes `body`. */
  text?: string;
  /** Read the response body as text instead of JSON (it lands in `body` as a string). */
  responseText?: boolean;
  /**
   * Send exactly this bearer token (the admin API always speaks with the service key, even while
   * a user is signed in on the same client); no refresh-and-retry on 401.
   */
  bearerToken?: string;
  headers?: Record<string, string>;
  /** Send the bearer credential (default true). Auth routes that create sessions pass false. */
  authenticate?: boolean;
  /** Query-string parameters; undefined values are skipped. */
  query?: Record<string, string | number | undefined>;
}

/** A successful response: status, headers and the parsed JSON body (undefined when empty). @internal */
export interface HttpResponse {
  status: number;
  headers: Headers;
  body: any;
}

/** The `fetch` signature the SDK needs (the global `fetch` fits). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** @internal */
export class Transport {
  /** Set by the client once the auth module exists (it depends on this transport). */
  credentials: CredentialSource | null = null;

  constructor(
    readonly baseUrl: string,
    private readonly fetchImpl: FetchLike,
    /** Abort a request after this many ms (undefined: no limit). */
    private readonly timeoutMs?: number,
  ) {}

  async request(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    const authenticate = options.authenticate ?? true;
    let bearer =
      options.bearerToken !== undefined
        ? { token: options.bearerToken, kind: 'service' as const }
        : authenticate && this.credentials
          ? await this.credentials.bearer()
          : null;
    let response = await this.send(method, path, options, bearer?.token);
    if (response.status === 401 && bearer?.kind === 'user' && this.credentials) {
      // The token may have been revoked or expired early (clock skew): refresh once, then retry.
      const recovered = await this.credentials.recoverFromUnauthorized(bearer.token);
      if (recovered) {
        bearer = await this.credentials.bearer();
        response = await this.send(method, path, options, bearer?.token);
      }
    }
    const text = await readText(response);
    if (!response.ok) throw errorFromResponse(response.status, text);
    let body: unknown;
    if (options.responseText) {
      body = text;
    } else if (text) {
      try {
        body = JSON.parse(text);
      } catch (cause) {
        throw new HearthError('internal', `the server sent a response that is not JSON (HTTP ${response.status})`, {
          status: response.status,
          cause,
        });
      }
    }
    return { status: response.status, headers: response.headers, body };
  }

  private async send(method: string, path: string, options: RequestOptions, token: string | undefined): Promise<Response> {
    const accept = options.responseText ? 'text/plain, application/json' : 'application/json';
    const headers: Record<string, string> = { accept, ...options.headers };
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (options.text !== undefined) {
      body = options.text;
      headers['content-type'] = 'text/plain; charset=utf-8';
    } else if (options.body !== undefined) {
      body = stringifyJson(options.body);
      headers['content-type'] = 'application/json';
    }
    let url = this.baseUrl + path;
    if (options.query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(options.query)) {
        if (value !== undefined) params.set(key, String(value));
      }
      const search = params.toString();
      if (search) url += `?${search}`;
    }
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = body;
    if (this.timeoutMs !== undefined) init.signal = AbortSignal.timeout(this.timeoutMs);
    try {
      return await this.fetchImpl(url, init);
    } catch (cause) {
      throw networkError(cause);
    }
  }
}

async function readText(response: Response): Promise<string> {
  try {
    return await response.text();
  } catch (cause) {
    throw networkError(cause);
  }
}

/** Encodes a slash-separated resource path segment by segment for use in a URL. @internal */
export function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}
