// The nesting depth of a parsed JSON value, measured without recursion: JSON.parse accepts values
// nested far deeper than JSON.stringify (recursive) can write back, so depth is bounded at the edge.

/**
 * True when `value` holds more than `max` levels of nested arrays and objects (a scalar is 0
 * levels, `[]` and `{}` one, `[[1]]` two). Iterative, so any depth is measured; it stops as soon as
 * `max` is exceeded.
 */
export function exceedsJsonDepth(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  for (let entry = stack.pop(); entry !== undefined; entry = stack.pop()) {
    const [node, depth] = entry;
    if (node === null || typeof node !== "object") continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}
