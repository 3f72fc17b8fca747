"""The stack's Prometheus metrics, checked with Prometheus's own tools.

Run by gateway_harness (a private stack with its gateway, and the launcher's
/metrics of every service on 127.0.0.1:$PM_METRICS_PORT). A client nobody
here wrote (python3-grpcio) drives the gateway; the metrics must count what
it did, `promtool check metrics` must accept the text, and Debian's
`prometheus`, run on loopback, must scrape it and answer a query with the
same value through its HTTP API.
"""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import grpc

from pm.v1 import process_manager_pb2 as pm
from pm.v1 import process_manager_pb2_grpc as pm_grpc

TARGET = os.environ["PM_GATEWAY_TARGET"]
CERTS = os.environ["PM_CERTS"]
USER = os.environ["PM_USER"]
METRICS = "http://127.0.0.1:%s/metrics" % os.environ["PM_METRICS_PORT"]
with open(os.environ["PM_PASSWORD_FILE"]) as f:
    PASSWORD = f.readline().rstrip("\n")
TIMEOUT = 60  # a safety net, not a speed claim
Status = pm.ProcessStatus


def read(name):
    with open(os.path.join(CERTS, name), "rb") as f:
        return f.read()


def stub(password=PASSWORD):
    tls = grpc.ssl_channel_credentials(read("ca.pem"), read("client.key"), read("client.pem"))
    header = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()
    auth = grpc.metadata_call_credentials(
        lambda _, callback: callback((("authorization", header),), None))
    return pm_grpc.ProcessManagerStub(
        grpc.secure_channel(TARGET, grpc.composite_channel_credentials(tls, auth)))


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")


def scrape():
    """The launcher's /metrics as {series: value}, after promtool accepts it."""
    with urllib.request.urlopen(METRICS, timeout=TIMEOUT) as answer:
        assert answer.status == 200, answer.status
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4"), \
            answer.headers["Content-Type"]
        text = answer.read().decode()
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                             capture_output=True)
    assert checked.returncode == 0, "promtool: %s%s\n%s" % (checked.stdout, checked.stderr, text)
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, "not a sample line: %r" % line
        assert match.group(1) not in samples, "series twice: " + match.group(1)
        samples[match.group(1)] = float(match.group(2))
    return samples


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Metrics(unittest.TestCase):
    def test_metrics_count_what_the_stack_did(self):
        before = scrape()
        client = stub()
        for script, code in (("exit 0", 0), ("exit 3", 3)):
            started = client.Start(pm.StartRequest(executable="/bin/sh", args=["-c", script]),
                                   timeout=TIMEOUT)
            ended = client.Wait(pm.WaitRequest(id=started.id), timeout=TIMEOUT)
            self.assertEqual((ended.state, ended.exit_code), (Status.STATE_EXITED, code))
        sleeper = client.Start(pm.StartRequest(executable="sleep", args=["1000"]),
                               timeout=TIMEOUT)
        client.Stop(pm.StopRequest(id=sleeper.id), timeout=TIMEOUT)
        ended = client.Wait(pm.WaitRequest(id=sleeper.id), timeout=TIMEOUT)
        self.assertEqual(ended.state, Status.STATE_SIGNALED)
        with self.assertRaises(grpc.RpcError) as unknown:
            client.GetStatus(pm.GetStatusRequest(id="0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e"),
                             timeout=TIMEOUT)
        self.assertEqual(unknown.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError):
            stub(password="wrong").List(pm.ListRequest(), timeout=TIMEOUT)

        after = scrape()

        def grew(series, by):
            self.assertEqual(after.get(series, 0) - before.get(series, 0), by, series)

        grew('pm_gateway_calls_total{method="Start",code="OK"}', 3)
        grew('pm_gateway_calls_total{method="Stop",code="OK"}', 1)
        grew('pm_gateway_calls_total{method="GetStatus",code="NOT_FOUND"}', 1)
        grew('pm_gateway_auth_failures_total{reason="rejected"}', 1)
        grew('pm_supervisor_starts_total{code="OK"}', 3)
        grew("pm_supervisor_start_seconds_count", 3)
        grew('pm_supervisor_start_seconds_bucket{le="+Inf"}', 3)
        self.assertGreater(after["pm_supervisor_start_seconds_sum"],
                           before.get("pm_supervisor_start_seconds_sum", 0))
        grew("pm_supervisor_stops_total", 1)
        grew('pm_supervisor_exits_total{reason="exit_zero"}', 1)
        grew('pm_supervisor_exits_total{reason="exit_nonzero"}', 1)
        grew('pm_supervisor_exits_total{reason="signal"}', 1)
        grew('pm_registry_processes{state="exited"}', 2)
        grew('pm_registry_processes{state="signaled"}', 1)
        self.assertEqual(after['pm_registry_processes{state="running"}'], 0)
        for service in ("registry", "log_store", "supervisor", "gateway"):
            self.assertEqual(after['pm_stack_service_up{service="%s"}' % service], 1, service)
            self.assertEqual(after['pm_stack_service_deaths_total{service="%s"}' % service], 0)
        self.assertIn("pm_log_store_retained_bytes", after)
        self.assertIn("pm_log_store_followers", after)
        self.assertIn('pm_log_store_dropped_bytes_total{cause="total_cap"}', after)
        self.assertIn("pm_supervisor_output_bytes_total", after)

    def test_a_run_stopped_in_its_backoff_is_one_exit_and_restarts_count(self):
        client = stub()
        before = scrape()
        request = pm.StartRequest(executable="/bin/sh", args=["-c", "exit 4"])
        request.restart.policy = pm.RestartPolicy.POLICY_ALWAYS
        request.restart.first_delay.FromSeconds(3600)
        request.restart.max_delay.FromSeconds(3600)
        started = client.Start(request, timeout=TIMEOUT)
        # Its first run ends at once; the event says it waits for the next.
        events = client.Watch(pm.WatchRequest(id=started.id, after_sequence=0,
                                              kinds=[pm.Event.KIND_RESTARTING]),
                              timeout=TIMEOUT)
        next(iter(events))
        events.cancel()
        client.Stop(pm.StopRequest(id=started.id), timeout=TIMEOUT)
        ended = client.Wait(pm.WaitRequest(id=started.id), timeout=TIMEOUT)
        self.assertEqual((ended.state, ended.exit_code), (Status.STATE_EXITED, 4))
        after = scrape()
        # One run, one end: the Exited that repeats the run's end after the
        # stop is not counted again.
        series = 'pm_supervisor_exits_total{reason="exit_nonzero"}'
        self.assertEqual(after[series] - before.get(series, 0), 1)
        self.assertEqual(after["pm_supervisor_restarts_total"],
                         before.get("pm_supervisor_restarts_total", 0))

    def test_prometheus_scrapes_the_stack_and_answers_a_query(self):
        client = stub()
        started = client.Start(pm.StartRequest(executable="/bin/true"), timeout=TIMEOUT)
        client.Wait(pm.WaitRequest(id=started.id), timeout=TIMEOUT)
        want = scrape()['pm_supervisor_starts_total{code="OK"}']
        work = tempfile.mkdtemp(prefix="pm_prometheus.")
        port = free_port()
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: pm\n"
                    "    static_configs:\n"
                    "      - targets: ['127.0.0.1:%s']\n" % os.environ["PM_METRICS_PORT"])
        checked = subprocess.run(["promtool", "check", "config", config], capture_output=True,
                                 text=True)
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
        log = open(os.path.join(work, "prometheus.log"), "w")
        server = subprocess.Popen(
            ["prometheus", "--config.file=" + config,
             "--storage.tsdb.path=" + os.path.join(work, "data"),
             "--web.listen-address=127.0.0.1:%d" % port], stdout=log, stderr=log)
        try:
            query = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode(
                {"query": 'pm_supervisor_starts_total{code="OK",job="pm"}'}))
            got = None
            # Prometheus scrapes on its own clock and has no way to tell us it
            # did: its query API is asked until the value is there (every
            # 100 ms; the deadline is a safety net).
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                self.assertIsNone(server.poll(), "prometheus exited; see its log")
                try:
                    with urllib.request.urlopen(query, timeout=5) as answer:
                        body = json.load(answer)
                    result = body["data"]["result"]
                    if result:
                        got = float(result[0]["value"][1])
                        if got >= want:
                            break
                except (OSError, ValueError):
                    pass  # not listening yet
                time.sleep(0.1)
            self.assertEqual(got, want)
        finally:
            server.terminate()
            server.wait(timeout=TIMEOUT)
            log.close()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
