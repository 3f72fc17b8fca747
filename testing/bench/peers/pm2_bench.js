// PM2 through the measures of pm's benchmark driver.
//
// Run by peers.sh with node from a directory where `npm ci` installed the
// pm2 that package-lock.json pins:
//
//   node pm2_bench.js --dir=DIR --rounds=50 --capture_bytes=1073741824 \
//       --capture_rounds=5 --idle_seconds=5
//
// PM2_HOME is DIR/home, so the daemon (God), its socket, pidfile and logs
// are private to this run. One persistent client (the programmatic API:
// pm2.connect, then pm2.start ...) drives it. Prints one row per measure on
// stdout, tab-separated:
//
//   row <TAB> peer <TAB> key <TAB> measure <TAB> unit <TAB> median <TAB> p99 <TAB> note
//
// where key names pm's measure the row compares with (start, start_stop,
// capture, rss, cpu, per_process), after one `version <TAB> peer <TAB> version` line.
// Progress and errors go to stderr. However the script ends, it asks the
// daemon to kill its apps and itself (pm2.killDaemon); peers.sh's sweep
// kills whatever is left.
'use strict';

const fs = require('fs');
const path = require('path');
const { promisify } = require('util');

const args = {};
for (const a of process.argv.slice(2)) {
  const m = /^--([a-z_]+)=(.*)$/.exec(a);
  if (!m) throw new Error(`bad argument ${a}`);
  args[m[1]] = m[2];
}
const dir = path.resolve(args.dir);
const rounds = Number(args.rounds || 50);
const captureBytes = Number(args.capture_bytes || 2 ** 30);
const captureRounds = Number(args.capture_rounds || 3);
const idleSeconds = Number(args.idle_seconds || 5);
const sleepers = Number(args.sleepers || 0);  // 0: no memory per process measure
// Measures of pm's driver to run (idle, start, capture, sleepers; others
// ignored); empty: all.
const only = new Set((args.only || '').split(',').filter((m) => m));
const run = (measure) => only.size === 0 || only.has(measure);

// Before pm2 is loaded: it reads these when required.
const home = path.join(dir, 'home');
fs.mkdirSync(home, { recursive: true });
process.env.PM2_HOME = home;
process.env.PM2_DISABLE_VERSION_CHECK = '1';  // no calls home from the daemon
const pm2 = require('pm2');
const pm2Version = require('pm2/package.json').version;

const connect = promisify(pm2.connect.bind(pm2));
const start = promisify(pm2.start.bind(pm2));
const stop = promisify(pm2.stop.bind(pm2));
const del = promisify(pm2.delete.bind(pm2));
const describe = promisify(pm2.describe.bind(pm2));
const killDaemon = promisify(pm2.killDaemon.bind(pm2));

const log = (...a) => console.error('pm2:', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

function row(key, measure, unit, median, p99, note = '') {
  process.stdout.write(
      ['row', 'PM2', key, measure, unit, median.toFixed(4), p99.toFixed(4), note].join('\t') + '\n');
}

function summarize(values) {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return [0, 0];
  return [v[Math.floor(v.length / 2)], v[Math.min(v.length - 1, Math.floor(v.length * 0.99))]];
}

// Apps run the binary itself (no node wrapper) and are not restarted.
const app = (name, script, extra = {}) =>
  ({ name, script, interpreter: 'none', autorestart: false, ...extra });

function daemonPid() {
  try {
    return Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8').trim());
  } catch (e) {
    return 0;
  }
}

// RSS in KiB and CPU ticks of `pid` and its descendants.
function treeUsage(root) {
  const children = new Map();
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(f[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(p));
    } catch (e) { /* exited meanwhile */ }
  }
  let rss = 0, ticks = 0, count = 0;
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop();
    try {
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      rss += Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
      ++count;
    } catch (e) { /* exited meanwhile */ }
    todo.push(...(children.get(pid) || []));
  }
  return { rss, ticks, count };
}

async function measureIdle(pid) {
  const before = treeUsage(pid);
  await sleep(idleSeconds * 1000);  // idle means nobody calls
  const after = treeUsage(pid);
  const ticksPerSecond = 100;  // USER_HZ on Linux
  const cpu = (100 * (after.ticks - before.ticks)) / ticksPerSecond / idleSeconds;
  row('rss', 'PM2: RSS at rest', 'MiB', after.rss / 1024, after.rss / 1024,
      `the daemon (${after.count} process${after.count === 1 ? '' : 'es'})`);
  row('cpu', `PM2: CPU at rest over ${idleSeconds} s`, '%core', cpu, cpu);
}

async function measureStart() {
  const startMs = [], startStopMs = [];
  for (let i = 0; i < rounds; ++i) {
    const t0 = nowMs();
    const procs = await start(app(`true${i}`, '/bin/true'));
    startMs.push(nowMs() - t0);
    if (!procs.length || !procs[0].pm2_env) throw new Error('pm2.start returned no process');
    await del(`true${i}`);
  }
  for (let i = 0; i < rounds; ++i) {
    const t0 = nowMs();
    await start(app(`sleep${i}`, '/bin/sleep', { args: ['100'] }));
    await stop(`sleep${i}`);
    startStopMs.push(nowMs() - t0);
    await del(`sleep${i}`);
  }
  row('start', 'PM2: start /bin/true (pm2 API, unix socket)', 'ms', ...summarize(startMs),
      'answers after node\'s spawn, which waits for the exec');
  // pm2.stop answers when the daemon's check for the exit, every
  // kill_retry_time (100 ms), finds the process gone.
  row('start_stop', 'PM2: start + stop of sleep', 'ms', ...summarize(startStopMs),
      'the daemon looks for the exit every 100 ms');
}

function fileSize(file) {
  try {
    return fs.statSync(file).size;
  } catch (e) {
    return 0;
  }
}

// GB/s from pm2.start until the out log holds every byte (or, if some never
// arrive, until it last grew), and the bytes it never got.
async function captureRound(i) {
  const name = `capture${i}`;
  const outFile = path.join(dir, `${name}.log`);
  const t0 = nowMs();
  await start(app(name, '/usr/bin/head', {
    args: ['-c', String(captureBytes), '/dev/zero'],
    out_file: outFile,
    error_file: path.join(dir, `${name}.err`),
    merge_logs: true,  // the file name as given, no -<id> suffix
  }));
  let size = 0, lastSize = -1, grownAt = t0, exited = false, nextCheck = 0;
  for (;;) {
    size = fileSize(outFile);
    const now = nowMs();
    if (size !== lastSize) [lastSize, grownAt] = [size, now];
    if (size >= captureBytes) break;
    // The app may have exited with bytes still on their way; give up once
    // it has and the file stopped growing for 3 s.
    if (now >= nextCheck) {
      nextCheck = now + 200;
      if (!exited) {
        const [info] = await describe(name);
        exited = !info || info.pm2_env.status !== 'online';
      } else if (now - grownAt > 3000) {
        break;
      }
    }
    if (now - t0 > 600000) {
      log(`capture round ${i}: still ${size} bytes after 600 s`);
      break;
    }
    await sleep(2);
  }
  await del(name);
  fs.truncateSync(outFile, 0);  // free the GiB now
  return [size / ((grownAt - t0) / 1000) / 1e9, captureBytes - size];
}

async function measureCapture() {
  const rates = [], lost = [];
  for (let i = 0; i < captureRounds; ++i) {
    const [rate, missing] = await captureRound(i);
    log(`capture round ${i}: ${rate.toFixed(3)} GB/s, ${missing} bytes missing`);
    rates.push(rate);
    lost.push(missing);
  }
  const losing = lost.filter((m) => m > 0);
  const note = losing.length ?
      `lost bytes in ${losing.length} of ${captureRounds} rounds (up to ${Math.max(...losing)} B)` :
      `no byte lost in ${captureRounds} rounds`;
  row('capture', `PM2: capture ${Math.floor(captureBytes / 2 ** 20)} MiB to its log file`, 'GB/s',
      ...summarize(rates), note);
}

// The daemon's RSS growth per sleeping process (its own RSS, not the
// sleeps'): PM2 runs no helper per process, so the daemon is the whole cost.
async function measureSleepers(pid) {
  const daemonRss = (p) => Number(/VmRSS:\s+(\d+)/.exec(
      fs.readFileSync(`/proc/${p}/status`, 'utf8'))[1]);
  const beforeRss = daemonRss(pid);
  for (let i = 0; i < sleepers; ++i) {
    await start(app(`sleeper${i}`, '/bin/sleep', { args: ['1000'] }));
  }
  await sleep(500);  // as pm's measure: let the last starts settle
  const after = daemonRss(pid);
  const per = (after - beforeRss) / Math.max(1, sleepers);
  row('per_process', `PM2: daemon RSS per sleeping process (${sleepers})`, 'KiB', per, per,
      `daemon RSS ${(beforeRss / 1024).toFixed(1)} -> ${(after / 1024).toFixed(1)} MiB, ` +
      'no helper process');
  await del('all');
}

async function cleanup() {
  try {
    await Promise.race([killDaemon(), sleep(15000)]);
  } catch (e) {
    log('killDaemon:', e.message || e);
  }
  pm2.disconnect();
}

async function main() {
  try {
    await connect(false);
    const pid = daemonPid();
    if (!pid) throw new Error(`no daemon pidfile in ${home}`);
    process.stdout.write(`version\tPM2\t${pm2Version}\n`);
    log('version', pm2Version, 'pid', pid);
    if (run('idle')) await measureIdle(pid);
    if (run('start')) await measureStart();
    if (run('capture')) await measureCapture();
    if (run('sleepers') && sleepers > 0) await measureSleepers(pid);
  } finally {
    await cleanup();
  }
}

// Ctrl-C reaches this script too: stop the daemon before going.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    log(`${sig}: stopping the daemon`);
    cleanup().finally(() => process.exit(1));
  });
}

main().then(() => process.exit(0), (e) => {
  log('failed:', e.stack || e);
  process.exit(1);
});
