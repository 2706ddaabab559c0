/** Identity values of card documents: citizen ID numbers, region codes, card numbers. */
import { InvalidIdentityError } from "./errors.js";

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK = "10X98765432";
const PROVINCES = new Set<string>();
for (const [a, b] of [[11, 15], [21, 23], [31, 37], [41, 46], [50, 54], [61, 65], [71, 71], [81, 83]] as const) {
  for (let n = a; n <= b; n++) PROVINCES.add(String(n));
}

/** The GB 11643-1999 check character for 17 ASCII digits. */
export function gb11643CheckCharacter(first17: string): string {
  if (!/^[0-9]{17}$/.test(first17)) {
    throw new InvalidIdentityError("citizen_id", first17, "the first 17 characters must be 17 ASCII digits");
  }
  let total = 0;
  for (let i = 0; i < 17; i++) total += (first17.charCodeAt(i) - 48) * WEIGHTS[i]!;
  return CHECK[total % 11]!;
}

function isCalendarDate(y: number, m: number, d: number): boolean {
  if (y < 1 || m < 1 || m > 12 || d < 1) return false;
  const date = new Date(Date.UTC(2000, m - 1, d));
  date.setUTCFullYear(y);
  return date.getUTCMonth() === m - 1 && date.getUTCDate() === d;
}

/** Today's date in China (UTC+8) as YYYY-MM-DD. */
function todayInChina(): string {
  return new Date(Date.now() + 8 * 3600000).toISOString().slice(0, 10);
}

/**
 * Check every GB 11643-1999 rule of a citizen ID number; returns the canonical form
 * (upper-case X). Raises {@link InvalidIdentityError}.
 */
export function parseCitizenId(value: unknown, today: string = todayInChina()): string {
  const field = "citizen_id";
  if (typeof value !== "string") throw new InvalidIdentityError(field, value, "must be a string");
  if ([...value].length !== 18) throw new InvalidIdentityError(field, value, "must be 18 characters");
  if (!/^[0-9]{17}/.test(value)) throw new InvalidIdentityError(field, value, "the first 17 characters must be ASCII digits");
  const canonical = value[17] === "x" ? `${value.slice(0, 17)}X` : value;
  const check = canonical[17]!;
  if (!/^[0-9X]$/.test(check)) throw new InvalidIdentityError(field, value, "the check character must be a digit 0-9 or X");
  if (!PROVINCES.has(canonical.slice(0, 2))) throw new InvalidIdentityError(field, value, "region code has no province-level prefix");
  const raw = canonical.slice(6, 14);
  const y = Number(raw.slice(0, 4));
  const m = Number(raw.slice(4, 6));
  const d = Number(raw.slice(6, 8));
  if (!isCalendarDate(y, m, d)) throw new InvalidIdentityError(field, value, `birth date ${raw} is not a calendar date`);
  const birth = `${raw.slice(0, 4)}-${raw.slice(4, 6)}-${raw.slice(6, 8)}`;
  if (birth < "1850-01-01") throw new InvalidIdentityError(field, value, `birth date ${raw} is before 1850-01-01`);
  if (birth > today) throw new InvalidIdentityError(field, value, `birth date ${raw} is in the future`);
  const expected = gb11643CheckCharacter(canonical.slice(0, 17));
  if (check !== expected) throw new InvalidIdentityError(field, value, `check character should be ${expected}, got ${check}`);
  return canonical;
}

/** Sex from a citizen ID number: odd sequence numbers are male. */
export function citizenIdSex(id: string): "M" | "F" {
  return Number(id[16]) % 2 === 1 ? "M" : "F";
}

/** Birth date of a citizen ID number, YYYY-MM-DD. */
export function citizenIdBirthDate(id: string): string {
  return `${id.slice(6, 10)}-${id.slice(10, 12)}-${id.slice(12, 14)}`;
}

/** A 6-digit GB/T 2260 region code with a province-level prefix. */
export function parseRegionCode(value: unknown): string {
  if (typeof value !== "string" || !/^[0-9]{6}$/.test(value) || !PROVINCES.has(value.slice(0, 2))) {
    throw new InvalidIdentityError("region_code", value, "must be 6 ASCII digits with a province-level prefix");
  }
  return value;
}

/** A 9-character card number of ASCII letters and digits, upper-cased. */
export function parseCardNumber(value: unknown): string {
  if (typeof value !== "string" || !/^[A-Za-z0-9]{9}$/.test(value)) {
    throw new InvalidIdentityError("card_number", value, "must be 9 ASCII letters or digits");
  }
  return value.toUpperCase();
}

export { isCalendarDate };
