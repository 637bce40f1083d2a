/**
 * A path inside the packaged app's archive (resources/app.asar) as the same file in
 * app.asar.unpacked, where electron-builder puts what `asarUnpack` names. The pool's worker chunk
 * lives there: a worker thread loads it, and what it loads (koffi's native binary), with Node's
 * own loader, which cannot read inside an archive. Paths outside an archive come back unchanged.
 */
export function unpackedPath(path: string): string {
  return path.replace(/([\\/])app\.asar(?=[\\/])/, '$1app.asar.unpacked');
}
