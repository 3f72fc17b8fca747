// The design doc's use cases through the gateway, from Node.
//
// A client nobody here wrote: @grpc/grpc-js and @grpc/proto-loader from npm
// (installed by bazel/install_node_deps.sh), loading the .proto at run time.
// Run by gateway_harness, which starts a private stack and passes the
// gateway's address, the PKI and the password file in the environment.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');

let grpc, protoLoader;
try {
  grpc = require('@grpc/grpc-js');
  protoLoader = require('@grpc/proto-loader');
} catch (e) {
  console.error('node_client_test: @grpc/grpc-js is not installed; run `make deps` ' +
                '(bazel/install_node_deps.sh): ' + e.message);
  process.exit(1);
}

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through gateway_harness`);
  return value;
};
const TARGET = env('PM_GATEWAY_TARGET');
const CERTS = env('PM_CERTS');
const USER = env('PM_USER');
const PASSWORD = fs.readFileSync(env('PM_PASSWORD_FILE'), 'utf8').split('\n')[0];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TIMEOUT_MS = 60000;  // a safety net, not a speed claim

const definition = protoLoader.loadSync('pm/v1/process_manager.proto', {
  includeDirs: [env('PM_PROTO_DIR'), '/usr/include'],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
});
const { ProcessManager } = grpc.loadPackageDefinition(definition).pm.v1;

const read = (name) => fs.readFileSync(path.join(CERTS, name));
const basic = (user, password) =>
  'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');

// A client with the given certificate (null: none) and authorization header
// (null: none).
function client({ cert = 'client', authorization = basic(USER, PASSWORD) } = {}) {
  let creds = cert === null
    ? grpc.credentials.createSsl(read('ca.pem'))
    : grpc.credentials.createSsl(read('ca.pem'), read(`${cert}.key`), read(`${cert}.pem`));
  if (authorization !== null) {
    creds = grpc.credentials.combineChannelCredentials(
      creds,
      grpc.credentials.createFromMetadataGenerator((_params, callback) => {
        const metadata = new grpc.Metadata();
        metadata.set('authorization', authorization);
        callback(null, metadata);
      }));
  }
  return new ProcessManager(TARGET, creds);
}

const deadline = () => ({ deadline: Date.now() + TIMEOUT_MS });
// A unary call as a promise.
const call = (c, method, request) =>
  new Promise((resolve, reject) =>
    c[method](request, deadline(), (err, response) => (err ? reject(err) : resolve(response))));
// Every chunk of a stream, and how it ended.
const drain = (stream) =>
  new Promise((resolve, reject) => {
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('error', reject);
    stream.on('end', () => resolve(chunks));
  });
const text = (chunks, which) =>
  Buffer.concat(chunks.filter((c) => !which || c.stream === which).map((c) => c.data)).toString();
const shell = (script) => ({ executable: '/bin/sh', args: ['-c', script] });

test('start, status, output from the start, exit code', async () => {
  const pm = client();
  const started = await call(pm, 'Start', shell('echo one; echo two >&2; exit 3'));
  assert.match(started.id, UUID);
  const final = await call(pm, 'Wait', { id: started.id });
  assert.equal(final.state, 'STATE_EXITED');
  assert.equal(final.exit_code, 3);
  const status = await call(pm, 'GetStatus', { id: started.id });
  assert.equal(status.executable, '/bin/sh');
  const chunks = await drain(pm.StreamOutput({ id: started.id, from_start: true }, deadline()));
  assert.equal(text(chunks, 'STREAM_STDOUT'), 'one\n');
  assert.equal(text(chunks, 'STREAM_STDERR'), 'two\n');
  const listed = await call(pm, 'List', {});
  assert.ok(listed.processes.some((p) => p.id === started.id));
  pm.close();
});

test('followed output, then stop gives the exit code', async () => {
  const pm = client();
  const started = await call(pm, 'Start', shell(
    'trap "echo bye; exit 7" TERM; echo ready; while :; do sleep 0.1; done'));
  const running = await call(pm, 'GetStatus', { id: started.id });
  assert.equal(running.state, 'STATE_RUNNING');
  const stream = pm.StreamOutput({ id: started.id, from_start: true, follow: true }, deadline());
  const all = drain(stream);
  // Stop once "ready" has arrived; the followed stream carries on to the end.
  const ready = new Promise((resolve) => {
    let seen = '';
    stream.on('data', (c) => { seen += c.data.toString(); if (seen.includes('ready\n')) resolve(); });
  });
  await ready;
  const stopped = await call(pm, 'Stop', { id: started.id, grace_period_ms: 5000 });
  const output = text(await all);
  assert.ok(output.startsWith('ready\n'), output);
  assert.ok(output.endsWith('bye\n'), output);
  assert.equal(stopped.stopped, true);
  assert.equal(stopped.status.state, 'STATE_EXITED');
  assert.equal(stopped.status.exit_code, 7);
  pm.close();
});

test('a cancelled follow ends with CANCELLED', async () => {
  const pm = client();
  const started = await call(pm, 'Start', shell('echo x; sleep 1000'));
  const stream = pm.StreamOutput({ id: started.id, from_start: true, follow: true }, deadline());
  const first = await new Promise((resolve) => stream.once('data', resolve));
  assert.equal(first.data.toString(), 'x\n');
  const ended = new Promise((resolve) => stream.on('error', resolve));
  stream.cancel();
  assert.equal((await ended).code, grpc.status.CANCELLED);
  await call(pm, 'Stop', { id: started.id, grace_period_ms: 100 });
  pm.close();
});

test('a bad executable is the OS error', async () => {
  const pm = client();
  await assert.rejects(call(pm, 'Start', { executable: '/nonexistent/prog' }), (err) => {
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.match(err.details, /\/nonexistent\/prog/);
    assert.match(err.details, /ENOENT/);
    return true;
  });
  pm.close();
});

test('an unknown UUID is NOT_FOUND', async () => {
  const pm = client();
  const id = '123e4567-e89b-42d3-a456-426614174000';
  await assert.rejects(call(pm, 'GetStatus', { id }), { code: grpc.status.NOT_FOUND });
  await assert.rejects(call(pm, 'Stop', { id }), { code: grpc.status.NOT_FOUND });
  await assert.rejects(drain(pm.StreamOutput({ id }, deadline())), { code: grpc.status.NOT_FOUND });
  pm.close();
});

const refused = async (options, code) => {
  const pm = client(options);
  try {
    await assert.rejects(call(pm, 'List', {}), (err) => {
      assert.equal(err.code, code, err.details);
      assert.ok(!String(err.details).includes(PASSWORD), 'the password is in the error');
      return true;
    });
  } finally {
    pm.close();
  }
};

test('a wrong password is PERMISSION_DENIED', () =>
  refused({ authorization: basic(USER, PASSWORD + 'x') }, grpc.status.PERMISSION_DENIED));
test('an unknown user is PERMISSION_DENIED', () =>
  refused({ authorization: basic('nobody', PASSWORD) }, grpc.status.PERMISSION_DENIED));
test('a missing password is UNAUTHENTICATED', () =>
  refused({ authorization: null }, grpc.status.UNAUTHENTICATED));
test('no client certificate is refused at TLS', () =>
  refused({ cert: null }, grpc.status.UNAVAILABLE));
test('a certificate from an untrusted CA is refused at TLS', () =>
  refused({ cert: 'untrusted-client' }, grpc.status.UNAVAILABLE));
