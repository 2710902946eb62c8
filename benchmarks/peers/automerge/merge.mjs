// The Automerge peer of `python -m benchmarks conflict`: the same workload the benchmark
// gives Loro, with the real Automerge (the npm package build.sh installs).
//
//   node merge.mjs AUTOMERGE_DIR WORKLOAD.json  ->  one JSON object on stdout
//
// WORKLOAD.json is {"documents": [[base, sideA, sideB], ...]}: the record fields of each
// VM's base copy and of the two regions' concurrent copies, as benchmarks/conflict.py writes
// them. Untimed, per document (as for Loro): build the base as an Automerge document (nested
// objects are Automerge maps, so the merge is field-level), fork it twice (clone: a new
// actor each), apply the edit from base to each side as one change, take each side's changes
// (getChanges), free those documents, and load the base from its saved bytes. Timed: apply both sides' changes to
// the loaded base in one applyChanges call and read the merged document as plain JSON
// (toJS), for every document. Then, untimed, every merged document is checked: a field one
// side changed has that side's value, a field both changed has one of theirs.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [dir, workload] = process.argv.slice(2);
if (!dir || !workload) {
  console.error("usage: node merge.mjs AUTOMERGE_DIR WORKLOAD.json (AUTOMERGE_DIR: build.sh prints it)");
  process.exit(2);
}
const require = createRequire(join(dir, "package.json"));
const A = require("@automerge/automerge");
const version = JSON.parse(
  readFileSync(join(dir, "node_modules/@automerge/automerge/package.json"), "utf8"),
).version;

// Strings as ImmutableString: a scalar replaced whole, as Loro's map values are (a plain
// string would become collaborative text, which neither Loro's side nor ours is doing).
// Lists become Automerge lists; an edit assigns the whole new list, as the Loro side does.
function toAm(v) {
  if (typeof v === "string") return new A.ImmutableString(v);
  if (Array.isArray(v)) return v.map(toAm);
  if (v !== null && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = toAm(x);
    return out;
  }
  return v;
}

const isMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// The edit from `old` to `now` as Automerge operations (what _loro_apply does for Loro).
function apply(target, old, now) {
  const keys = [...new Set([...Object.keys(old), ...Object.keys(now)])].sort();
  for (const k of keys) {
    if (!(k in now)) delete target[k];
    else if (isMap(now[k]) && isMap(old[k])) apply(target[k], old[k], now[k]);
    else if (JSON.stringify(old[k]) !== JSON.stringify(now[k])) target[k] = toAm(now[k]);
  }
}

const plain = (v) => JSON.parse(JSON.stringify(v)); // ImmutableString -> string

// Leaves (a map's fields; lists and scalars whole) that break the merge's contract.
function violations(base, a, b, merged, path = "") {
  const bad = [];
  const keys = new Set([...Object.keys(base), ...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const p = `${path}/${k}`;
    if (isMap(base[k]) && isMap(a[k]) && isMap(b[k]) && isMap(merged[k])) {
      bad.push(...violations(base[k], a[k], b[k], merged[k], p));
      continue;
    }
    const [o, x, y, m] = [base[k], a[k], b[k], merged[k]].map((v) => JSON.stringify(v));
    const want = x === o ? [y] : y === o ? [x] : [x, y];
    if (!want.includes(m)) bad.push(`${p}: ${m} not in ${want.join(" | ")}`);
  }
  return bad;
}

const t0 = process.hrtime.bigint();
const docs = JSON.parse(readFileSync(workload, "utf8")).documents;
const t1 = process.hrtime.bigint();
// Each document's WASM memory is freed only by A.free (or, late, by a finalizer): the
// builder docs and forks are freed here, as Python frees Loro's at once. Left alive, 10,000
// of them make the timed merges ~8x slower (97 against 777 merges/s for 2,000 documents).
const prepared = docs.map(([base, a, b]) => {
  const doc = A.from(toAm(base));
  const changes = [a, b].flatMap((side) => {
    const fork = A.clone(doc);
    const edited = A.change(fork, (d) => apply(d, base, side)); // shares fork's handle
    const out = A.getChanges(fork, edited);
    A.free(edited);
    return out;
  });
  const saved = A.save(doc);
  A.free(doc);
  return [saved, changes];
});
const bases = prepared.map(([saved]) => A.load(saved)); // loaded before timing, as for Loro
const t2 = process.hrtime.bigint();
const merged = new Array(bases.length);
for (let i = 0; i < bases.length; i++) {
  const [doc] = A.applyChanges(bases[i], prepared[i][1]);
  merged[i] = A.toJS(doc);
}
const t3 = process.hrtime.bigint();
const bad = [];
docs.forEach(([base, a, b], i) => {
  for (const v of violations(base, a, b, plain(merged[i]))) bad.push(`document ${i}${v}`);
});
const secs = (x, y) => Number(y - x) / 1e9;
console.log(
  JSON.stringify({
    merges_per_s: bases.length / secs(t2, t3),
    documents: bases.length,
    version,
    node: process.version,
    timed_s: secs(t2, t3),
    untimed_parse_s: secs(t0, t1),
    untimed_prepare_s: secs(t1, t2),
    changes_per_merge: prepared.reduce((n, [, c]) => n + c.length, 0) / prepared.length,
    checked: docs.length,
    violations: bad.slice(0, 5),
    violation_count: bad.length,
  }),
);
process.exit(bad.length ? 1 : 0);
