/**
 * Offsets: the service counts Unicode code points (Python string indices),
 * JavaScript strings index UTF-16 code units. They differ after every astral
 * character (emoji, many CJK extension characters, ...), which takes one code
 * point but two code units (a surrogate pair).
 *
 * The thin client converts every offset it returns with {@link OffsetMap}, so
 * that `text.slice(start, end)` is the mention's text.
 */

const SURROGATE = /[\uD800-\uDFFF]/;

/** Converts the code point offsets of one text to UTF-16 offsets, and back. */
export class OffsetMap {
  /** UTF-16 offset of each code point, plus the text's length at the end; null when the two agree. */
  private readonly starts: Uint32Array | null;
  /** How many code points the text has. */
  readonly codePoints: number;

  constructor(readonly text: string) {
    if (!SURROGATE.test(text)) {
      this.starts = null;
      this.codePoints = text.length;
      return;
    }
    const starts: number[] = [];
    let unit = 0;
    // A string iterator yields code points; a lone surrogate comes as one item
    // of its own. (It reaches the server as U+FFFD, one code point too, since
    // UTF-8 cannot carry it.)
    for (const character of text) {
      starts.push(unit);
      unit += character.length;
    }
    starts.push(unit);
    this.starts = Uint32Array.from(starts);
    this.codePoints = starts.length - 1;
  }

  /**
   * The UTF-16 offset of code point offset `offset`. Offsets past the end (which
   * the service does not give) stay as far past the end as they were.
   */
  toUtf16(offset: number): number {
    if (this.starts === null || offset < 0) {
      return offset;
    }
    if (offset > this.codePoints) {
      return this.text.length + (offset - this.codePoints);
    }
    return this.starts[offset]!;
  }

  /**
   * The code point offset of UTF-16 offset `offset` (inside a surrogate pair:
   * the pair's code point).
   */
  toCodePoint(offset: number): number {
    const starts = this.starts;
    if (starts === null || offset < 0) {
      return offset;
    }
    if (offset >= this.text.length) {
      return this.codePoints + (offset - this.text.length);
    }
    // the last code point that starts at or before `offset`
    let low = 0;
    let high = this.codePoints;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (starts[middle]! <= offset) {
        low = middle;
      } else {
        high = middle - 1;
      }
    }
    return low;
  }
}

/** `offset` (in code points of `text`) as a UTF-16 offset into `text`. */
export function codePointToUtf16(text: string, offset: number): number {
  return new OffsetMap(text).toUtf16(offset);
}

/** `offset` (a UTF-16 offset into `text`) in code points. */
export function utf16ToCodePoint(text: string, offset: number): number {
  return new OffsetMap(text).toCodePoint(offset);
}
