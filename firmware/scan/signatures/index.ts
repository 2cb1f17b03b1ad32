/*
 * scan/signatures/index.ts: the signature engine as the scan pipeline uses it:
 * load ClamAV signature files (load.ts), compile them into a database
 * (compile.ts), then one BodyScanner per scanned stream and lookupHash for
 * whole-attachment digests. Reloading is compiling a new database and swapping
 * the reference; scanners of the old one keep working until they are done.
 * Re-exports only, no code.
 */
export type { BodySignature, HashSignature, HashKind, SignatureSet, SignatureDb, BodyScanner } from './types.ts';
export { loadSignatureFiles, literalSignature, EICAR, EICAR_BYTES, SignatureFileError } from './load.ts';
export { compileSignatures } from './compile.ts';
