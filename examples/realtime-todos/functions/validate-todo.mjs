// The example's validation function: a plain node:http server that Hearth calls as a `before`
// hook (DESIGN §6) on every create and update of a todo or a board item.
//
// - Every call is verified with the npm `standardwebhooks` package: a call without a valid
//   signature from the hook's secret is refused with 401 before anything else is read.
// - The body is parsed with the npm `cloudevents` package (structured mode,
//   `Content-Type: application/cloudevents+json`).
// - The answer follows DESIGN §6: `{"allow": false, "message"}` refuses the write (the client gets
//   422 `hook_rejected` with that message), `{"allow": true, "data"}` replaces the document's data
//   (the rules judge the replacement again), `{"allow": true}` lets it through unchanged.
//
// Run it with `npm run functions` (see functions/start.mjs), which also registers the hooks.

import { createServer } from 'node:http';
import { HTTP } from 'cloudevents';
import { Webhook } from 'standardwebhooks';

/** Longest text, in characters (the rules say the same; the hook is checked on admin writes too). */
export const MAX_TEXT_CHARS = 200;
/** Words a todo may not contain (whole words, any case). */
export const BANNED_WORDS = ['spam', 'casino', 'lottery'];

/** Trims the text and collapses every run of whitespace (tabs, newlines too) into one space. */
export function tidyText(text) {
  return text.trim().replace(/\s+/g, ' ');
}

/**
 * The verdict on one hook event (a parsed CloudEvent): what the function answers with 200.
 * Pure, so it is easy to read and to test.
 */
export function judge(event) {
  // Only creates and updates are registered; anything else (a delete) has nothing to check.
  if (!['dev.hearth.document.beforeCreate', 'dev.hearth.document.beforeUpdate'].includes(event.type)) {
    return { allow: true };
  }
  const data = event.data?.after?.data;
  if (!data || typeof data.text !== 'string') return { allow: false, message: 'A todo needs some text.' };
  const text = tidyText(data.text);
  if (text === '') return { allow: false, message: 'A todo needs some text.' };
  if (text.length > MAX_TEXT_CHARS) {
    return { allow: false, message: `A todo is at most ${MAX_TEXT_CHARS} characters (this one has ${text.length}).` };
  }
  const banned = BANNED_WORDS.find((word) => new RegExp(`\\b${word}\\b`, 'i').test(text));
  if (banned) return { allow: false, message: `Todos may not mention "${banned}".` };
  // The replacement is the whole document: the other fields go back as they came (typed values
  // such as {"$timestamp": ...} included).
  if (text !== data.text) return { allow: true, data: { ...data, text } };
  return { allow: true };
}

/**
 * The HTTP function: verify (401 when that fails), parse, judge. `secret` is the hook's
 * `whsec_...` secret; `log` receives one line per call.
 */
export function createValidateTodoServer({ secret, log = () => {} }) {
  const webhook = new Webhook(secret);
  return createServer((request, response) => {
    const reply = (status, body) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    if (request.method !== 'POST') return reply(405, { error: 'POST a hook event' });
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      // The signature covers the exact bytes sent: verify the raw body, before parsing it.
      const body = Buffer.concat(chunks).toString('utf8');
      try {
        webhook.verify(body, request.headers);
      } catch (error) {
        log(`refused an unverified call: ${error.message}`);
        return reply(401, { error: 'invalid signature' });
      }
      let event;
      try {
        event = HTTP.toEvent({ headers: request.headers, body });
        // toEvent parses leniently; validate() checks the CloudEvents 1.0 schema (required
        // attributes, formats) and throws when it does not hold.
        event.validate();
      } catch (error) {
        log(`refused a call that is not a CloudEvent: ${error.message}`);
        return reply(400, { error: 'not a CloudEvent' });
      }
      const verdict = judge(event);
      log(`${event.type} ${event.subject}: ${verdict.allow ? (verdict.data ? 'tidied' : 'allowed') : `refused (${verdict.message})`}`);
      reply(200, verdict);
    });
  });
}
