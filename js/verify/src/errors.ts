/**
 * Errors raised by @cardsvc/verify, mirroring cardsvc.core.errors.
 *
 * Every error derives from {@link CoreError}; a {@link VerificationError} names the failed
 * check in `.check` with the same stable names as the Python verifier (`signature`,
 * `expired`, `purpose`, `key-unknown`, ...). `name` is the Python class name, so a result
 * can be compared with the vectors' `expected.error`.
 */

/** A value for an error message: cut to `limit` characters, never copied whole. */
export function shown(value: unknown, limit = 48): string {
  let text: string;
  if (typeof value === "string") text = JSON.stringify(value);
  else if (typeof value === "bigint") text = value.toString();
  else if (value instanceof Uint8Array) text = `<${value.length} bytes>`;
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = `<${typeof value}>`;
    }
  }
  return text.length <= limit ? text : `${text.slice(0, limit - 3)}...`;
}

/** Root of every error raised by this package. */
export class CoreError extends Error {
  /** Short machine-readable code, stable across releases (as in Python). */
  readonly code: string = "core-error";
  readonly detail: string;
  constructor(detail: string) {
    super(detail);
    this.detail = detail;
    this.name = "CoreError";
  }
}

/** An identity value (citizen ID number, card number) is malformed. */
export class InvalidIdentityError extends CoreError {
  override readonly code: string = "invalid-identity";
  readonly field: string;
  readonly reason: string;
  constructor(field: string, value: unknown, reason: string) {
    super(`${field} ${shown(value)}: ${reason}`);
    this.name = "InvalidIdentityError";
    this.field = field;
    this.reason = reason;
  }
}

/** Bytes or text could not be decoded into the expected format. */
export class DecodeError extends CoreError {
  override readonly code: string = "decode-error";
  readonly formatName: string;
  readonly reason: string;
  constructor(formatName: string, reason: string) {
    super(`${formatName}: ${reason}`);
    this.name = "DecodeError";
    this.formatName = formatName;
    this.reason = reason;
  }
}

/** Input exceeds the documented size limit; refused before any expensive work. */
export class InputTooLargeError extends DecodeError {
  override readonly code: string = "input-too-large";
  readonly size: number;
  readonly limit: number;
  constructor(formatName: string, size: number, limit: number) {
    super(formatName, `${size} bytes exceeds the limit of ${limit}`);
    this.name = "InputTooLargeError";
    this.size = size;
    this.limit = limit;
  }
}

/** A signed object failed verification; `check` names the failed check. */
export class VerificationError extends CoreError {
  override readonly code: string = "verification-failed";
  readonly check: string;
  constructor(check: string, detail: string) {
    super(`${check}: ${detail}`);
    this.name = "VerificationError";
    this.check = check;
  }
}

/** A status list operation was invalid (index out of range, bad status value). */
export class StatusListError extends CoreError {
  override readonly code: string = "status-list-error";
  constructor(detail: string) {
    super(detail);
    this.name = "StatusListError";
  }
}

/**
 * An entry patch does not apply to the held list: `patch-base`, `patch-index`,
 * `patch-status` or `patch-digest`.
 */
export class StatusPatchError extends VerificationError {
  readonly uri: string;
  readonly index: number | null;
  readonly status: number | null;
  constructor(
    check: string,
    detail: string,
    opts: { uri: string; index?: number | null; status?: number | null },
  ) {
    super(check, `${opts.uri}: ${detail}`);
    this.name = "StatusPatchError";
    this.uri = opts.uri;
    this.index = opts.index ?? null;
    this.status = opts.status ?? null;
  }
}
