// A stand-in for an ESP32 running MicroPython, on stdin/stdout: the real MicroPython VM (the npm
// WebAssembly port) speaking MicroPython's REPL protocol byte for byte, with a filesystem and the
// firmware's host shims as its `esp32`, `machine` and `bluetooth` modules.
//
// Usage: node tools/boardvm/boardvm.mjs --flash DIR [--heap-kb N]
//
// tools/boardvm/standin.py puts this behind a pseudo-terminal, so mpremote (and edgeseal board)
// connect to it as to a board on /dev/ttyUSB0. What it speaks (docs/boards.md, "The stand-in"):
// - the friendly REPL and the raw REPL (Ctrl-A, code, Ctrl-D -> "OK<out>\x04<err>\x04>") through
//   the VM's own replInit / replProcessChar;
// - raw-paste mode (Ctrl-E "A" Ctrl-A -> "R\x01", window size, flow control with \x01, \x04 at
//   the end), done here: the event-driven REPL of this port would block reading stdin;
// - Ctrl-D on an empty line: a soft reset ("MPY: soft reboot"), a fresh VM over the same flash.
// The flash: DIR on the host is the board's filesystem (cwd "/flash" in the VM); it is copied in
// at every (soft) boot and written back after every command, so it survives restarts of this
// process as a board's flash survives power cycles. NVS is its own partition on a board: here
// the file DIR.nvs.json beside DIR (the shim's JSON format), outside the filesystem.
// Not modelled: power-on does not run main.py (the firmware's asyncio loop would block the VM and
// Ctrl-C cannot interrupt it), no radio, no ROMFS writes, no esptool bootloader.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const FLASH = "/flash"; // the board's filesystem root inside the VM (cwd)
const FROZEN = "/frozen";
const NVS_VM = "/nvs/nvs.json"; // the stand-in's own modules (as .frozen on a board): not in the listing
// The shims the stand-in's MicroPython gets as its port modules, and what they import.
const FROZEN_FILES = [
  "tests/shims/esp32.py", "tests/shims/machine.py", "tests/shims/bluetooth.py",
  "tests/firmware/fakes.py", "tools/sim/buses.py",
];
// why 256: MicroPython's raw-paste window on the ESP32 port (MICROPY_REPL_STDIN_BUFFER_MAX)
const PASTE_WINDOW_BYTES = 256;
const DEFAULT_HEAP_KB = 512; // larger than an ESP32's ~110 KB free: the shims and tests need room
const RAW_PROMPT = "raw REPL; CTRL-B to exit\r\n>";

function parseArgs(argv) {
  const o = { flash: null, heapKb: DEFAULT_HEAP_KB };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--flash") o.flash = argv[++i];
    else if (argv[i] === "--heap-kb") o.heapKb = parseInt(argv[++i], 10);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!o.flash) throw new Error("--flash DIR is required");
  return o;
}

const opts = parseArgs(process.argv.slice(2));
fs.mkdirSync(opts.flash, { recursive: true });
const nvsHost = path.resolve(opts.flash) + ".nvs.json";
let out = [];
let mp = null;
let mode = "friendly"; // friendly | raw | paste
let lineEmpty = true; // raw mode: nothing typed since the last prompt
let held = []; // a possible raw-paste request (Ctrl-E, "A") not yet complete
let paste = null; // { code: [], sinceAck: 0 } while in raw-paste mode
let dropOk = false; // after a raw paste, drop the "OK" the VM's raw REPL prints

function emit(s) {
  for (const b of Buffer.from(s, "latin1")) out.push(b);
}

function flush() {
  if (out.length) {
    process.stdout.write(Buffer.from(out));
    out = [];
  }
}

function copyIn(m, hostDir, vmDir) {
  m.FS.mkdirTree(vmDir);
  for (const name of fs.readdirSync(hostDir)) {
    const h = path.join(hostDir, name);
    const v = vmDir + "/" + name;
    if (fs.statSync(h).isDirectory()) copyIn(m, h, v);
    else m.FS.writeFile(v, fs.readFileSync(h));
  }
}

function syncOut(m, vmDir, hostDir) {
  // Mirror the VM's flash onto the host directory: write what changed, delete what is gone.
  const seen = new Set();
  fs.mkdirSync(hostDir, { recursive: true });
  for (const name of m.FS.readdir(vmDir)) {
    if (name === "." || name === "..") continue;
    seen.add(name);
    const v = vmDir + "/" + name;
    const h = path.join(hostDir, name);
    if (m.FS.isDir(m.FS.stat(v).mode)) {
      if (fs.existsSync(h) && !fs.statSync(h).isDirectory()) fs.rmSync(h);
      syncOut(m, v, h);
    } else {
      const data = m.FS.readFile(v);
      if (fs.existsSync(h) && fs.statSync(h).isDirectory()) fs.rmSync(h, { recursive: true });
      if (!fs.existsSync(h) || !Buffer.from(data).equals(fs.readFileSync(h))) fs.writeFileSync(h, data);
    }
  }
  for (const name of fs.readdirSync(hostDir)) {
    if (!seen.has(name)) fs.rmSync(path.join(hostDir, name), { recursive: true });
  }
}

function syncAll() {
  syncOut(mp, FLASH, opts.flash);
  if (mp.FS.analyzePath(NVS_VM).exists) fs.writeFileSync(nvsHost, mp.FS.readFile(NVS_VM));
}

async function boot() {
  // A fresh VM: MicroPython's state after a reset, over the flash as the host directory holds it.
  const m = await loadMicroPython({
    heapsize: opts.heapKb * 1024, linebuffer: false,
    stdout: (b) => { for (const x of b) out.push(x); },
    stderr: (b) => { for (const x of b) out.push(x); },
  });
  m.registerJsModule("_boardvm", { urandom: (n) => crypto.randomBytes(n).toString("hex") });
  for (const rel of FROZEN_FILES) {
    const dst = FROZEN + "/" + rel;
    m.FS.mkdirTree(path.posix.dirname(dst));
    m.FS.writeFile(dst, fs.readFileSync(path.join(ROOT, rel)));
  }
  // the shims import as tests.shims.x / tools.sim.buses; the port modules are their re-exports
  for (const pkg of ["tests", "tests/shims", "tests/firmware", "tools", "tools/sim"]) {
    m.FS.writeFile(FROZEN + "/" + pkg + "/__init__.py", "");
  }
  m.FS.writeFile(FROZEN + "/esp32.py",
    "from tests.shims import esp32 as _s\nfrom tests.shims.esp32 import *\n\n" +
    "class NVS(_s.NVS):\n    def __init__(self, namespace):\n" +
    `        super().__init__(namespace, store=${JSON.stringify(NVS_VM)})\n`);
  m.FS.writeFile(FROZEN + "/_boardvm_vfs.py", fs.readFileSync(path.join(ROOT, "tools/boardvm/vfs_errno.py")));
  m.FS.writeFile(FROZEN + "/machine.py", "from tests.shims.machine import *\n");
  m.FS.writeFile(FROZEN + "/bluetooth.py", "from tests.shims.bluetooth import *\n");
  copyIn(m, opts.flash, FLASH);
  m.FS.mkdirTree("/nvs");
  if (fs.existsSync(nvsHost)) m.FS.writeFile(NVS_VM, fs.readFileSync(nvsHost));
  m.runPython(
    "import os, sys, binascii, _boardvm\n" +
    "os.urandom = (lambda u, h: lambda n: h(u(n)))(_boardvm.urandom, binascii.unhexlify)\n" +
    `os.chdir(${JSON.stringify(FLASH)})\n` +
    `sys.path.append(${JSON.stringify(FROZEN)})\n` +
    "import _boardvm_vfs\n_boardvm_vfs.install()\n" +
    "del os, sys, binascii, _boardvm, _boardvm_vfs\n");
  out = [];
  m.replInit();
  out = [];
  mp = m;
}

function feedVm(c) {
  const r = mp.replProcessChar(c);
  return r;
}

async function softReset() {
  syncAll();
  emit("MPY: soft reboot\r\n");
  flush();
  const wasRaw = mode === "raw";
  await boot();
  if (wasRaw) {
    feedVm(0x01);
    out = [];
    emit("\r\n" + RAW_PROMPT);
    lineEmpty = true;
  } else {
    emit("MicroPython v1.29.0 (boardvm stand-in)\r\n>>> ");
  }
}

async function runPaste() {
  // The pasted program runs through the VM's raw REPL: same compile, same output framing.
  paste.code.push(0x04);
  emit("\x04");
  flush();
  dropOk = true;
  for (const b of paste.code) feedVm(b);
  paste = null;
  mode = "raw";
  lineEmpty = true;
  syncAll();
}

function stripOk() {
  if (dropOk && out.length >= 2 && out[0] === 0x4f && out[1] === 0x4b) out = out.slice(2);
  dropOk = false;
}

async function handle(c) {
  if (mode === "paste") {
    if (c === 0x04) {
      await runPaste();
      stripOk();
      return;
    }
    paste.code.push(c);
    if (++paste.sinceAck >= PASTE_WINDOW_BYTES) {
      paste.sinceAck = 0;
      emit("\x01");
    }
    return;
  }
  if (mode === "raw") {
    if (held.length === 0 && c === 0x05 && lineEmpty) { held.push(c); return; }
    if (held.length === 1 && c === 0x41) { held.push(c); return; }
    if (held.length === 2 && c === 0x01) {
      held = [];
      const w = Buffer.alloc(2);
      w.writeUInt16LE(PASTE_WINDOW_BYTES);
      emit("R\x01" + w.toString("latin1") + "\x01");
      paste = { code: [], sinceAck: 0 };
      mode = "paste";
      return;
    }
    const pending = held.concat([c]);
    held = [];
    for (const b of pending) {
      if (b === 0x04 && lineEmpty) {
        feedVm(b); // prints "OK\r\n" and asks for a soft reset
        await softReset();
        continue;
      }
      if (b === 0x02) mode = "friendly";
      const r = feedVm(b);
      if (b === 0x04 || b === 0x01 || b === 0x03) {
        lineEmpty = true;
        if (b === 0x04) syncAll();
      } else lineEmpty = false;
      if (r) await softReset();
    }
    return;
  }
  // friendly REPL
  if (c === 0x01) { mode = "raw"; lineEmpty = true; }
  const r = feedVm(c);
  if (c === 0x0d) syncAll();
  if (r) await softReset();
}

await boot();
emit("MicroPython v1.29.0 (boardvm stand-in)\r\n>>> ");
flush();
let queue = Promise.resolve();
process.stdin.on("data", (data) => {
  queue = queue.then(async () => {
    for (const c of data) await handle(c);
    flush();
  });
});
process.stdin.on("end", () => {
  queue.then(() => { syncAll(); flush(); process.exit(0); });
});
process.on("SIGTERM", () => { syncAll(); process.exit(0); });
