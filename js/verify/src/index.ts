/**
 * @cardsvc/verify: verify cardsvc e-card QR tokens and verifier bundles offline, in
 * browsers, WebViews, mini-programs and Node, held to the same vectors as the Python
 * `cardsvc.core`. Times are epoch seconds; every failure is a {@link CoreError}, and a
 * {@link VerificationError} names the failed check in `.check` (same names as Python).
 */
export { VERSION, VECTOR_SET } from "./version.js";
export {
  CoreError,
  DecodeError,
  InputTooLargeError,
  InvalidIdentityError,
  StatusListError,
  StatusPatchError,
  VerificationError,
} from "./errors.js";
export { KeyPurpose, VerifyingKey, type PublicJwk } from "./keys.js";
export { TrustAnchor, TrustList, TrustedKey } from "./trustlist.js";
export {
  Attribute,
  PURPOSE_ATTRIBUTES,
  Purpose,
  purposeFromName,
  purposeName,
  qrTokenToJson,
  verifyQrToken,
  type AttributeValue,
  type PurposeName,
  type QrToken,
  type TokenOptions,
} from "./qrtoken.js";
export { DeviceKey, type CompactCredential } from "./credential.js";
export {
  deviceBoundToJson,
  deviceReplayKey,
  slotOf,
  verifyDeviceBound,
  type DeviceBoundToken,
} from "./devicebound.js";
export { cardDocumentToClaims, verifyCardDocument, type CardDocument } from "./carddoc.js";
export { Status, StatusList, decodeStatusListJwt, verifyStatusListToken, type StatusListToken } from "./statuslist.js";
export { bundleToJson, verifyBundle, type Bundle, type BundleOptions } from "./bundle.js";
export { OfflineVerifier, REPLAY_NAME, STATE_NAME, verdictToJson, type OfflineVerifierOptions, type Outcome, type Verdict } from "./verifier.js";
export { IndexedDbStore, MemoryStore, type VerifierStore } from "./store.js";
/** Decoders, exported for tools and fuzzing; each raises only {@link DecodeError}. */
export { b45decode, b45encode } from "./base45.js";
export { decodeCbor } from "./cbor.js";
export { decodeSign1 } from "./cose.js";
export { decodeEntries, parsePatch } from "./statuspatch.js";
export { strictJsonObject } from "./json.js";
