/**
 * Upper case one UTF-16 code unit at a time, each unit kept where its upper case is longer: the
 * shape of FAT's and NTFS's upcase tables (one unit to one unit). JavaScript's full case mapping
 * would turn "ß" into "SS", and two names the filesystem keeps apart would compare equal.
 */
export function simpleUpperCase(name: string): string {
  let result = '';
  for (const unit of name.split('')) {
    const upper = unit.toUpperCase();
    result += upper.length === 1 ? upper : unit;
  }
  return result;
}
