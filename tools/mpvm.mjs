// Runs firmware tests (or one script) inside a real MicroPython VM: the npm WebAssembly port, under node.
//
// Usage:
//   node tools/mpvm.mjs [--heap-kb N] [--copy DIR]... [--filter SUBSTR]     run tests/firmware/**/test_*.py
//   node tools/mpvm.mjs [--heap-kb N] [--romfs IMG] [--copy DIR]... --run FILE.py [ARG]...  run one script (global ARGV = [FILE, ARG...];
//                                                                        this port's sys has no argv)
//
// The repo's DEFAULT_DIRS (firmware/, tests/firmware/, tests/vectors/, tests/shims/, tools/, boards/) plus every
// --copy DIR are copied into the VM's
// filesystem under /repo, which becomes the working directory and the head of sys.path, so
// `import firmware.x` and `open("tests/vectors/...")` work exactly as under CPython from the repo root.
// Test modules are plain Python, run by tests/firmware/runner.py (the same runner the hardware-in-the-
// loop test uses on a board): every top-level test_* function; VM_SKIP lists host-only tests.
// Exit status: 0 when everything passed, 1 on any failure or Python error.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const VM_ROOT = "/repo";
// Default heap for tests: generous, because the tests themselves (vectors, fakes) are not board code.
// The firmware's own footprint is measured separately with a small --heap-kb (see docs).
const DEFAULT_HEAP_KB = 16 * 1024;
const DEFAULT_DIRS = ["firmware", "tests/firmware", "tests/shims", "tests/vectors", "tools", "boards"];

function parseArgs(argv) {
  const opts = { heapKb: DEFAULT_HEAP_KB, dirs: [...DEFAULT_DIRS], run: null, runArgs: [], filter: "", romfs: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--heap-kb") opts.heapKb = parseInt(argv[++i], 10);
    else if (a === "--copy") opts.dirs.push(argv[++i]);
    else if (a === "--filter") opts.filter = argv[++i];
    else if (a === "--romfs") opts.romfs = argv[++i];
    else if (a === "--run") { opts.run = argv[++i]; opts.runArgs = argv.slice(i + 1); break; }
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

function copyTree(mp, relDir) {
  const src = path.join(ROOT, relDir);
  if (!fs.existsSync(src)) return;
  const stat = fs.statSync(src);
  const dst = path.posix.join(VM_ROOT, relDir.split(path.sep).join("/"));
  if (stat.isFile()) {
    mp.FS.mkdirTree(path.posix.dirname(dst));
    mp.FS.writeFile(dst, fs.readFileSync(src));
    return;
  }
  mp.FS.mkdirTree(dst);
  for (const name of fs.readdirSync(src)) {
    if (name === "__pycache__" || name.startsWith(".")) continue;
    const rel = path.join(relDir, name);
    const full = path.join(ROOT, rel);
    if (fs.statSync(full).isDirectory()) copyTree(mp, rel);
    else if (/\.(py|json|bin|txt)$/.test(name)) copyTree(mp, rel);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const mpOptions = {
    heapsize: opts.heapKb * 1024,
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  };
  if (opts.romfs) {
    // A ROMFS image (mpremote romfs build) mounted at /rom: its .mpy code runs in place, as on a
    // board whose MicroPython has ROMFS. The firmware then comes from /rom, not from /repo.
    mpOptions.romfs = new Uint8Array(fs.readFileSync(opts.romfs));
    opts.dirs = opts.dirs.filter((d) => d !== "firmware");
  }
  const mp = await loadMicroPython(mpOptions);
  for (const d of opts.dirs) copyTree(mp, d);
  mp.FS.mkdirTree(VM_ROOT + "/tests");
  mp.FS.writeFile(VM_ROOT + "/tests/__init__.py", "");
  mp.runPython(`import os, sys\nos.chdir(${JSON.stringify(VM_ROOT)})\nsys.path.insert(0, ${JSON.stringify(VM_ROOT)})`);

  if (opts.run) {
    const argv = [opts.run, ...opts.runArgs];
    copyTree(mp, opts.run);
    mp.runPython(`ARGV = ${JSON.stringify(argv)}`);
    const code = fs.readFileSync(path.join(ROOT, opts.run), "utf8");
    try {
      await mp.runPythonAsync(code);
    } catch (e) {
      process.stderr.write(String(e.message || e) + "\n");
      process.exitCode = 1;
    }
    return;
  }

  const started = Date.now();
  mp.runPython(`from tests.firmware.runner import main as _main\n_failures = _main(${JSON.stringify(opts.filter)})`);
  const failures = Number(mp.globals.get("_failures"));
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`MicroPython VM: heap ${opts.heapKb} KB, ${seconds} s`);
  if (failures > 0) process.exitCode = 1;
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
