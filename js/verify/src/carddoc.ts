/** The card document: the issuer-signed facts written on a card's chip (`ssc-card+jwt`). */
import { CoreError, DecodeError, VerificationError } from "./errors.js";
import {
  citizenIdBirthDate,
  citizenIdSex,
  isCalendarDate,
  parseCardNumber,
  parseCitizenId,
  parseRegionCode,
} from "./identity.js";
import { checkTimes, verifyJws } from "./jws.js";
import { isJsonInt, isJsonObject, type JsonObject } from "./json.js";
import { KeyPurpose, VerifyingKey } from "./keys.js";
import { statusReferenceJson, textLength } from "./qrtoken.js";
import type { TrustList } from "./trustlist.js";

export const CARD_DOCUMENT_TYP = "ssc-card+jwt";
/** A card document is written into a chip file: a few KB at most. */
export const MAX_CARD_DOCUMENT_SIZE = 8 * 1024;
const CLAIMS = ["iss", "iat", "nbf", "exp", "card_no", "id_no", "name", "sex", "birth_date", "region", "issued", "expires", "cnf", "status"];

/** The verified contents of a card document; dates `YYYY-MM-DD`, times epoch seconds. */
export interface CardDocument {
  issuer: string;
  cardNumber: string;
  citizenId: string;
  name: string;
  sex: "M" | "F";
  birthDate: string;
  region: string;
  issueDate: string;
  expiryDate: string;
  chipKey: VerifyingKey;
  status: { idx: number; uri: string };
  issuedAt: number;
  /** The end of the expiry day, China time. */
  expiresAt: number;
}

function checkName(name: unknown): string {
  if (typeof name !== "string" || !name) throw new DecodeError("card document", "name must be a non-empty string");
  if (textLength(name) > 64) throw new DecodeError("card document", "name longer than 64 characters");
  if (/\p{C}/u.test(name)) throw new DecodeError("card document", "name contains control or unassigned characters");
  if (name !== name.trim()) throw new DecodeError("card document", "name has leading or trailing whitespace");
  return name;
}

function isoDate(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length !== 10 || !/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(value)) {
    throw new DecodeError("card document", `${what} must be a YYYY-MM-DD date`);
  }
  if (!isCalendarDate(Number(value.slice(0, 4)), Number(value.slice(5, 7)), Number(value.slice(8, 10)))) {
    throw new DecodeError("card document", `${what} is not a calendar date`);
  }
  return value;
}

function endOfDayChina(day: string): number {
  const d = new Date(Date.UTC(2000, Number(day.slice(5, 7)) - 1, Number(day.slice(8, 10)) + 1));
  d.setUTCFullYear(Number(day.slice(0, 4)));
  return Math.floor(d.getTime() / 1000) - 8 * 3600;
}

function statusReference(obj: unknown): { idx: number; uri: string } {
  if (!isJsonObject(obj) || Object.keys(obj).length !== 1 || !("status_list" in obj)) {
    throw new DecodeError("status reference", "must be {status_list: {idx, uri}}");
  }
  const inner = obj["status_list"];
  if (!isJsonObject(inner) || Object.keys(inner).length !== 2 || !("idx" in inner) || !("uri" in inner)) {
    throw new DecodeError("status reference", "status_list must hold exactly idx and uri");
  }
  const idx = inner["idx"];
  const uri = inner["uri"];
  if (typeof idx !== "number" || !Number.isInteger(idx)) throw new DecodeError("status reference", "idx must be an integer");
  if (typeof uri !== "string") throw new DecodeError("status reference", "uri must be an http(s) URL");
  statusReferenceJson(idx, uri);
  return { idx, uri };
}

async function fromClaims(claims: JsonObject): Promise<CardDocument> {
  const missing = CLAIMS.filter((c) => c !== "nbf" && !(c in claims));
  if (missing.length) throw new VerificationError("claims", `missing claims: ${missing.sort().join(", ")}`);
  const unknown = Object.keys(claims).filter((c) => !CLAIMS.includes(c));
  if (unknown.length) throw new VerificationError("claims", `unknown claims: ${unknown.sort().join(", ").slice(0, 80)}`);
  let doc: CardDocument;
  try {
    const cnf = claims["cnf"];
    if (!isJsonObject(cnf) || Object.keys(cnf).length !== 1 || !("jwk" in cnf)) {
      throw new DecodeError("card document", "cnf must hold exactly the chip's jwk");
    }
    const issuer = claims["iss"];
    if (typeof issuer !== "string" || !issuer) throw new DecodeError("card document", "iss must be a non-empty string");
    const sex = claims["sex"];
    if (sex !== "M" && sex !== "F") throw new DecodeError("card document", "sex must be M or F");
    const iat = claims["iat"];
    if (!isJsonInt(iat)) throw new DecodeError("card document", "iat must be an integer");
    const cardNumber = parseCardNumber(claims["card_no"]);
    const citizenId = parseCitizenId(claims["id_no"]);
    const name = checkName(claims["name"]);
    const birthDate = isoDate(claims["birth_date"], "birth_date");
    const region = parseRegionCode(claims["region"]);
    const issueDate = isoDate(claims["issued"], "issued");
    const expiryDate = isoDate(claims["expires"], "expires");
    const chipKey = await VerifyingKey.fromJwk(cnf["jwk"]);
    const status = statusReference(claims["status"]);
    const issuedAt = Number(iat);
    if (!(issuedAt >= -62135596800 && issuedAt <= 253402300799)) throw new VerificationError("claims", "malformed claim: iat out of range");
    if (sex !== citizenIdSex(citizenId)) throw new DecodeError("card document", "sex does not match the citizen ID number");
    if (birthDate !== citizenIdBirthDate(citizenId)) throw new DecodeError("card document", "birth date does not match the citizen ID number");
    if (expiryDate <= issueDate) throw new DecodeError("card document", "expiry date is not after the issue date");
    doc = { issuer, cardNumber, citizenId, name, sex, birthDate, region, issueDate, expiryDate, chipKey, status, issuedAt, expiresAt: endOfDayChina(expiryDate) };
  } catch (e) {
    if (e instanceof VerificationError) throw e;
    if (e instanceof CoreError) throw new VerificationError("claims", e.detail);
    throw e;
  }
  if (claims["exp"] !== doc.expiresAt) throw new VerificationError("claims", "exp does not match the card's expiry date");
  return doc;
}

/** The claims view of a card document (the `expected.result` of card-document vectors). */
export function cardDocumentToClaims(doc: CardDocument): Record<string, unknown> {
  const { kty, crv, x, y, kid } = doc.chipKey.jwk();
  return {
    iss: doc.issuer,
    iat: doc.issuedAt,
    exp: doc.expiresAt,
    card_no: doc.cardNumber,
    id_no: doc.citizenId,
    name: doc.name,
    sex: doc.sex,
    birth_date: doc.birthDate,
    region: doc.region,
    issued: doc.issueDate,
    expires: doc.expiryDate,
    cnf: { jwk: { kty, crv, x, y, kid } },
    status: { status_list: doc.status },
  };
}

/**
 * Verify a card document: a `card-document` key of `trustList` in its window, the key's
 * algorithm, `iat`/`nbf`/`exp` with `leeway`, the claims, and `issuer` if given.
 */
export async function verifyCardDocument(
  token: unknown,
  opts: { trustList: TrustList; now: number; leeway: number; issuer?: string },
): Promise<CardDocument> {
  const verified = await verifyJws(token, {
    typ: CARD_DOCUMENT_TYP,
    maxSize: MAX_CARD_DOCUMENT_SIZE,
    keyFor: (header) => {
      const kid = header["kid"];
      if (typeof kid !== "string") throw new VerificationError("key-unknown", "header has no kid");
      return opts.trustList.find(kid, KeyPurpose.CARD_DOCUMENT, opts.now).key;
    },
  });
  checkTimes(verified.claims, opts.now, opts.leeway);
  const trusted = opts.trustList.find(verified.key.kid, KeyPurpose.CARD_DOCUMENT, opts.now);
  const doc = await fromClaims(verified.claims);
  if (doc.issuedAt < trusted.notBefore - opts.leeway) throw new VerificationError("key-window", "signed before its key was valid");
  if (opts.issuer !== undefined && doc.issuer !== opts.issuer) throw new VerificationError("issuer", "iss is not the expected issuer");
  return doc;
}
