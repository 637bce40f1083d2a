/**
 * Corpus cases where `qemu-img check -r all` makes the image clean and Cowbell's repair does not.
 * The corpus test fails on any other weaker repair and names the entries here that pass now.
 * Empty since issue 21 part 2's repairs landed (no refcount table, botched v2→v3, snapshot
 * tables past the end of the file or with extra data it cannot parse): keep it so.
 */
export const KNOWN_WEAK_REPAIRS: readonly string[] = [];
