/**
 * The join token as handed to a device: `K10<sha256 hex of the CA certificate DER>::<id>.<secret>`
 * (k3s's "secure" format). The CA hash lets the device check whom it talks to before it sends the
 * secret; `<id>.<secret>` is what the server's token store redeems.
 */
import { ValidationError } from '../../src/util/errors.js';

export interface JoinToken {
  /** sha256 hex (lower case) of the CA certificate's DER. */
  caHash: string;
  /** `<id>.<secret>`, redeemed by the token store. */
  credential: string;
}

const K10 = /^K10([0-9a-f]{64})::([A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{16,256})$/;

export function formatJoinToken(caHash: string, credential: string): string {
  return `K10${caHash.toLowerCase()}::${credential}`;
}

/** Parses a K10 token; the error says what is wrong without repeating the secret. */
export function parseJoinToken(token: string): JoinToken {
  const m = K10.exec(token.trim());
  if (!m) {
    const why = !token.trim().startsWith('K10')
      ? 'it does not start with K10 (use the token in the server\'s DATA_DIR/join-token or from `drover token create`)'
      : 'expected K10<64 hex digits of the CA hash>::<id>.<secret>';
    throw new ValidationError([{ field: 'token', message: why }], 'invalid join token');
  }
  return { caHash: m[1]!, credential: m[2]! };
}
