/**
 * Corpus cases where `qemu-img check -r all` makes the image clean and Cowbell's repair does not
 * yet (issue 21 part 2, being fixed). The corpus test fails on any other weaker repair; empty this
 * list as repair catches up (the test names entries that now pass).
 */
export const KNOWN_WEAK_REPAIRS: readonly string[] = [];
