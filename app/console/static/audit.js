// Signet console: the auditor's verifier, run entirely in this browser.
//
// Nothing the node says is taken as a verdict. From the verifier key the auditor pastes, this
// script checks: the key's own hash (C2SP signed-note), the checkpoint's Ed25519 signature
// (WebCrypto), every entry's leaf hash recomputed from its RFC 8785 bytes, the RFC 6962 root
// over all leaves, RFC 9162 inclusion proofs for single entries, and RFC 9162 consistency with
// the checkpoint this browser remembered (localStorage) on an earlier visit. Any failure turns
// the verdict red and names the first thing that failed.
//
// Formats: docs/exchange-log.md; the Python side is app/crypto/{note,checkpoint,merkle}.py.

const DATA = "/console/audit/data";
const PAGE = 1000;
const enc = new TextEncoder();

class Failure extends Error {}

// --- bytes ------------------------------------------------------------------------------------

function b64decode(text, what) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new Failure(`${what}: not standard base64`);
  }
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function b64encode(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// --- RFC 8785 (JCS) canonical JSON --------------------------------------------------------------
// JSON.stringify already serialises numbers (ECMAScript Number.prototype.toString) and strings
// exactly as RFC 8785 requires; what it does not do is sort object keys by UTF-16 code units,
// which is JavaScript's default string order.

function canonical(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Failure("entry holds a non-finite number");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  throw new Failure(`entry holds an unsupported value (${typeof value})`);
}

// --- Merkle tree (RFC 6962 / RFC 9162) ----------------------------------------------------------

const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));
const half = (n) => Math.floor(n / 2); // sizes may exceed 2**31: no 32-bit shifts
const odd = (n) => n % 2 === 1;

function isPowerOfTwo(n) {
  while (n > 1 && n % 2 === 0) n /= 2;
  return n === 1;
}

async function rootFromLeaves(leaves) {
  if (leaves.length === 0) return sha256(new Uint8Array());
  let level = leaves;
  while (level.length > 1) {
    // Pairing left to right and carrying an odd last node up unchanged builds exactly the
    // RFC 6962 tree (split at the largest power of two below n).
    const next = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(await nodeHash(level[i], level[i + 1]));
    if (odd(level.length)) next.push(level[level.length - 1]);
    level = next;
  }
  return level[0];
}

// RFC 9162 section 2.1.3.2: the root an inclusion proof implies.
async function rootFromInclusion(leaf, index, size, proof) {
  if (!(index >= 0 && index < size)) throw new Failure(`leaf index ${index} is outside size ${size}`);
  if (leaf.length !== 32) throw new Failure("leaf hash is not 32 bytes");
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (p.length !== 32) throw new Failure("inclusion proof hash is not 32 bytes");
    if (sn === 0) throw new Failure("inclusion proof is too long");
    if (odd(fn) || fn === sn) {
      r = await nodeHash(p, r);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new Failure("inclusion proof is too short");
  return r;
}

// RFC 9162 section 2.1.4.2: check that (size2, root2) extends (size1, root1).
async function verifyConsistency(size1, size2, proof, root1, root2) {
  if (size1 < 1 || size2 < size1) throw new Failure(`consistency from ${size1} to ${size2} is not defined`);
  if (size1 === size2) {
    if (proof.length) throw new Failure("equal sizes need an empty consistency proof");
    if (!equal(root1, root2)) throw new Failure(`two different roots for size ${size1}: the log forked`);
    return;
  }
  if (proof.length === 0) throw new Failure("empty consistency proof");
  for (const p of proof) if (p.length !== 32) throw new Failure("consistency proof hash is not 32 bytes");
  const path = [...proof];
  // The old tree is then itself a perfect subtree of the new one: its root starts the path.
  if (isPowerOfTwo(size1)) path.unshift(root1);
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) throw new Failure("consistency proof is too long");
    if (odd(fn) || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new Failure("consistency proof is too short");
  if (!equal(fr, root1)) throw new Failure(`consistency proof does not reproduce the remembered root of size ${size1}`);
  if (!equal(sr, root2)) throw new Failure(`consistency proof does not lead to the checkpoint root of size ${size2}`);
}

// --- signed notes, keys, checkpoints ------------------------------------------------------------

const ED25519 = 0x01;
const COSIGNATURE_V1 = 0x04;

// `name+hash+base64(alg || key)`; the hash is recomputed, never trusted.
async function parseVerifierKey(text, wantAlg) {
  // Split at the first two '+' only: names and hashes have none, base64 may.
  const t = text.trim();
  const a = t.indexOf("+");
  const b = a < 0 ? -1 : t.indexOf("+", a + 1);
  if (b < 0) throw new Failure("verifier key: expected name+hash+key");
  const [name, hashHex, keyB64] = [t.slice(0, a), t.slice(a + 1, b), t.slice(b + 1)];
  if (!name || /\s/.test(name)) throw new Failure("verifier key: bad name");
  if (!/^[0-9a-f]{8}$/.test(hashHex)) throw new Failure("verifier key: the hash must be 8 hex digits");
  const raw = b64decode(keyB64, "verifier key");
  if (raw.length !== 33) throw new Failure("verifier key: expected a type byte and a 32-byte Ed25519 key");
  let alg = raw[0];
  const pub = raw.slice(1);
  if (alg !== ED25519 && alg !== COSIGNATURE_V1) throw new Failure(`verifier key: unknown type 0x${alg.toString(16)}`);
  const computed = await keyHash(name, alg, pub);
  if (hex(computed) !== hashHex) throw new Failure("verifier key: its hash does not match its name and key");
  let hash = computed;
  if (wantAlg !== undefined && alg !== wantAlg) {
    // A peer's node key (0x01) serves as its witness key (0x04): same key, other type byte.
    alg = wantAlg;
    hash = await keyHash(name, alg, pub);
  }
  const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
  return { name, alg, hash, key };
}

async function keyHash(name, alg, pub) {
  return (await sha256(concat(enc.encode(name + "\n"), Uint8Array.of(alg), pub))).slice(0, 4);
}

function parseNote(note) {
  if (!note.endsWith("\n")) throw new Failure("checkpoint note does not end with a newline");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new Failure("checkpoint note has no signature block");
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split("\n");
  const sigs = lines.map((line) => {
    if (!line.startsWith("\u2014 ")) throw new Failure("checkpoint signature line does not start with '— '");
    const [name, b64, extra] = line.slice(2).split(" ");
    if (!name || !b64 || extra !== undefined) throw new Failure("malformed checkpoint signature line");
    const raw = b64decode(b64, "signature");
    if (raw.length < 5) throw new Failure("checkpoint signature is too short");
    return { name, hash: raw.slice(0, 4), sig: raw.slice(4) };
  });
  return { text, sigs };
}

function parseCheckpoint(text) {
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new Failure("checkpoint body has fewer than 3 lines");
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Failure("checkpoint size is not a decimal number");
  const size = Number(lines[1]);
  if (!Number.isSafeInteger(size)) throw new Failure("checkpoint size is too large for this verifier");
  const root = b64decode(lines[2], "checkpoint root");
  if (root.length !== 32) throw new Failure("checkpoint root is not 32 bytes");
  return { origin: lines[0], size, root };
}

async function openCheckpoint(note, vkey) {
  const { text, sigs } = parseNote(note);
  const mine = sigs.filter((s) => s.name === vkey.name && equal(s.hash, vkey.hash));
  if (mine.length === 0) throw new Failure(`the checkpoint is not signed by ${vkey.name} (${hex(vkey.hash)})`);
  for (const s of mine) {
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, vkey.key, s.sig, enc.encode(text));
    if (!ok) throw new Failure(`the checkpoint signature by ${vkey.name} does not verify`);
  }
  const cp = parseCheckpoint(text);
  if (cp.origin !== vkey.name) throw new Failure(`checkpoint origin ${cp.origin} is not the key's name ${vkey.name}`);
  return { ...cp, text, sigs };
}

async function verifyCosignature(cp, wkey) {
  const line = cp.sigs.find((s) => s.name === wkey.name && equal(s.hash, wkey.hash));
  if (!line) return null;
  if (line.sig.length !== 72) throw new Failure(`cosignature by ${wkey.name} is not 8 + 64 bytes`);
  let time = 0;
  for (const b of line.sig.slice(0, 8)) time = time * 256 + b;
  const msg = enc.encode(`cosignature/v1\ntime ${time}\n${cp.text}`);
  if (!(await crypto.subtle.verify({ name: "Ed25519" }, wkey.key, line.sig.slice(8), msg))) {
    throw new Failure(`cosignature by ${wkey.name} does not verify`);
  }
  return time;
}

// --- node data (fetched, then checked) ----------------------------------------------------------

async function get(path, as) {
  const resp = await fetch(DATA + path, { credentials: "same-origin", cache: "no-store" });
  if (!resp.ok) throw new Failure(`GET ${path}: HTTP ${resp.status}`);
  return as === "text" ? resp.text() : resp.json();
}

async function checkEntry(item, expectIndex) {
  if (item.index !== expectIndex) throw new Failure(`expected entry ${expectIndex}, the node sent ${item.index}`);
  const leaf = await leafHash(enc.encode(canonical(item.entry)));
  if (item.leaf_hash !== undefined && b64encode(leaf) !== item.leaf_hash) {
    throw new Failure(`entry ${item.index}: its content does not hash to the leaf the node stored: the entry was altered`);
  }
  return leaf;
}

// --- the page -----------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const stateKey = (origin) => `signet.audit.${origin}`;

function verdict(cls, text) {
  const v = $("verdict");
  v.className = `verdict ${cls}`;
  v.textContent = text;
}

function step(text, cls = "pass") {
  const li = document.createElement("li");
  li.className = cls;
  li.textContent = text;
  $("steps").append(li);
}

function requireWebCrypto() {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new Failure("this page is not a secure context (use https or localhost): WebCrypto is unavailable");
  }
}

async function verifyLog(event) {
  event.preventDefault();
  $("steps").replaceChildren();
  verdict("working", "Verifying…");
  try {
    requireWebCrypto();
    const vkey = await parseVerifierKey($("vkey").value, ED25519);
    localStorage.setItem("signet.vkey", $("vkey").value.trim());
    step(`Verifier key ${vkey.name} (${hex(vkey.hash)}) is well formed.`);

    const note = await get("/checkpoint", "text");
    const cp = await openCheckpoint(note, vkey);
    step(`Checkpoint signature verifies: ${cp.origin}, size ${cp.size}.`);

    const witnessLines = $("wkeys").value.split("\n").map((l) => l.trim()).filter(Boolean);
    let cosigned = 0;
    for (const line of witnessLines) {
      const wkey = await parseVerifierKey(line, COSIGNATURE_V1);
      const time = await verifyCosignature(cp, wkey);
      if (time === null) step(`No cosignature by witness ${wkey.name} on this checkpoint.`, "fail");
      else {
        cosigned++;
        step(`Witness ${wkey.name} cosigned at ${new Date(time * 1000).toISOString()}.`);
      }
    }

    const leaves = [];
    while (leaves.length < cp.size) {
      const start = leaves.length;
      const page = await get(`/entries?start=${start}&end=${Math.min(cp.size, start + PAGE)}`);
      if (!Array.isArray(page) || page.length === 0) throw new Failure(`entries from ${start}: the node sent nothing`);
      for (const item of page) {
        if (leaves.length >= cp.size) break;
        leaves.push(await checkEntry(item, leaves.length));
      }
      verdict("working", `Verifying… ${leaves.length} of ${cp.size} entries`);
    }
    step(`All ${cp.size} entries recomputed from their RFC 8785 bytes.`);
    const root = await rootFromLeaves(leaves);
    if (!equal(root, cp.root)) {
      throw new Failure(`the root of the entries (${b64encode(root)}) is not the signed root (${b64encode(cp.root)})`);
    }
    step("The Merkle root of the entries is the signed root.");

    const saved = JSON.parse(localStorage.getItem(stateKey(cp.origin)) || "null");
    if (saved) {
      const oldRoot = b64decode(saved.root, "remembered root");
      if (saved.size > cp.size) throw new Failure(`the log shrank from size ${saved.size} to ${cp.size}`);
      if (saved.size > 0) {
        const proof =
          saved.size < cp.size
            ? (await get(`/consistency?from=${saved.size}&to=${cp.size}`)).hashes.map((h) => b64decode(h, "proof"))
            : [];
        await verifyConsistency(saved.size, cp.size, proof, oldRoot, cp.root);
        // Stronger than the proof, since every entry is here: the old tree is our prefix.
        if (!equal(await rootFromLeaves(leaves.slice(0, saved.size)), oldRoot)) {
          throw new Failure(`the first ${saved.size} entries no longer hash to the root remembered on ${saved.at}`);
        }
        step(`Consistent with the checkpoint remembered on ${saved.at} (size ${saved.size}).`);
      }
    } else {
      step("No checkpoint remembered from an earlier visit: this one is remembered now.");
    }
    localStorage.setItem(
      stateKey(cp.origin),
      JSON.stringify({ size: cp.size, root: b64encode(cp.root), at: new Date().toISOString() }),
    );
    showRemembered(cp.origin);
    const w = witnessLines.length ? `, ${cosigned} of ${witnessLines.length} witnesses cosigned` : "";
    verdict("pass", `VERIFIED: ${cp.origin} size ${cp.size}, every entry and the root check out${w}.`);
  } catch (err) {
    const message = err instanceof Failure ? err.message : `unexpected error: ${err}`;
    step(message, "fail");
    verdict("fail", `FAILED: ${message}`);
  }
}

function showRemembered(origin) {
  const el = $("remembered");
  if (!el) return;
  const saved = JSON.parse(localStorage.getItem(stateKey(origin)) || "null");
  el.textContent = saved ? `Remembered: size ${saved.size}, root ${saved.root}, on ${saved.at}.` : "Nothing remembered yet.";
}

async function proveEntry(button) {
  const index = Number(button.dataset.index);
  const row = button.closest("tr");
  row.classList.remove("proved", "unproved");
  verdict("working", `Checking entry ${index}…`);
  try {
    requireWebCrypto();
    const vkey = await parseVerifierKey($("vkey").value, ED25519);
    localStorage.setItem("signet.vkey", $("vkey").value.trim());
    const cp = await openCheckpoint(await get("/checkpoint", "text"), vkey);
    if (index >= cp.size) throw new Failure(`entry ${index} is not in the latest checkpoint yet (size ${cp.size})`);
    const [item] = await get(`/entries?start=${index}&end=${index + 1}`);
    const leaf = await leafHash(enc.encode(canonical(item.entry)));
    const proof = await get(`/inclusion?index=${index}&size=${cp.size}`);
    const root = await rootFromInclusion(leaf, index, cp.size, proof.hashes.map((h) => b64decode(h, "proof")));
    if (!equal(root, cp.root)) throw new Failure(`entry ${index} as served is not included in the signed checkpoint of size ${cp.size}`);
    row.classList.add("proved");
    verdict("pass", `INCLUDED: entry ${index} is in ${cp.origin}'s signed checkpoint of size ${cp.size}.`);
  } catch (err) {
    row.classList.add("unproved");
    const message = err instanceof Failure ? err.message : `unexpected error: ${err}`;
    verdict("fail", `FAILED: ${message}`);
  }
}

function init() {
  const vkey = $("vkey");
  if (vkey && !vkey.value) vkey.value = localStorage.getItem("signet.vkey") || "";
  const form = $("verify-form");
  if (form) {
    form.addEventListener("submit", verifyLog);
    $("forget").addEventListener("click", () => {
      const origin = (vkey.value.split("+")[0] || "").trim();
      localStorage.removeItem(stateKey(origin));
      showRemembered(origin);
    });
    showRemembered((vkey.value.split("+")[0] || "").trim());
  }
  for (const b of document.querySelectorAll("button.prove")) b.addEventListener("click", () => proveEntry(b));
}

init();

// For the tests and other tools: the pure checks, importable as an ES module.
export { canonical, rootFromLeaves, rootFromInclusion, verifyConsistency, parseVerifierKey, parseNote };
