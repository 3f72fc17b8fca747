"""The packaging test: installs pm into a scratch root as `make install`
does, checks the systemd units with systemd-analyze, then runs the installed
services as their units would (the flag files, Type=notify) and drives them
with the installed `pm`.

Run by install_test.sh (an sh_test) with Debian's /usr/bin/python3; the
arguments are the runfiles paths of install.sh and the binaries."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

ARGS = {}


class InstalledPm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = os.path.join(os.environ["TEST_TMPDIR"], "root")
        # Unix socket paths must fit in 108 bytes: the runtime dir is short.
        cls.short = tempfile.mkdtemp(prefix="pm_pkg.", dir="/tmp")
        cls.prefix = cls.root + "/usr"
        cls.sysconfdir = cls.root + "/etc/pm"
        cls.unitdir = cls.root + "/lib/systemd/system"
        cls.runtime_dir = cls.short + "/run"
        cls.state_dir = cls.root + "/var/lib/pm"
        os.makedirs(cls.state_dir, mode=0o700)
        env = dict(os.environ, RUNTIMEDIR=cls.runtime_dir, STATEDIR=cls.state_dir)
        subprocess.run(
            [ARGS["install"], "", cls.prefix, cls.sysconfdir, cls.unitdir,
             ARGS["pm"], ARGS["pm_users"], ARGS["registry"], ARGS["log_store"],
             ARGS["supervisor"], ARGS["gateway"], ARGS["pm_shim"], ARGS["readme"]],
            check=True, env=env)
        cls.services = []
        cls.notify_sockets = []

    @classmethod
    def tearDownClass(cls):
        for process in reversed(cls.services):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        for notify in cls.notify_sockets:
            notify.close()
        shutil.rmtree(cls.short, ignore_errors=True)

    def units(self):
        return sorted(os.path.join(self.unitdir, u) for u in os.listdir(self.unitdir))

    def test_1_the_install_has_everything_in_place(self):
        for path in ["bin/pm", "bin/pm_users", "libexec/pm/registry", "libexec/pm/log_store",
                     "libexec/pm/supervisor", "libexec/pm/gateway", "libexec/pm/pm-shim"]:
            self.assertTrue(os.access(os.path.join(self.prefix, path), os.X_OK), path)
        self.assertEqual(
            [os.path.basename(u) for u in self.units()],
            ["pm-gateway.service", "pm-log-store.service", "pm-registry.service",
             "pm-supervisor.service", "pm.target"])
        for path in self.units() + [os.path.join(self.sysconfdir, f)
                                    for f in os.listdir(self.sysconfdir)]:
            with open(path) as f:
                self.assertNotIn("@", f.read(), path)  # every placeholder filled
        with open(os.path.join(self.sysconfdir, "supervisor.flags")) as f:
            self.assertIn("--shim_binary=%s/libexec/pm/pm-shim\n" % self.prefix, f.read())
        completion = os.path.join(self.prefix, "share/bash-completion/completions/pm")
        subprocess.run(["bash", "-n", completion], check=True)

    def test_2_systemd_analyze_verifies_every_unit(self):
        verified = subprocess.run(["systemd-analyze", "verify"] + self.units(),
                                  capture_output=True, text=True)
        self.assertEqual(verified.returncode, 0, verified.stderr)
        self.assertEqual(verified.stderr, "")
        # The check has teeth: a unit with a bad setting fails it.
        broken = os.path.join(os.environ["TEST_TMPDIR"], "pm-broken.service")
        with open(os.path.join(self.unitdir, "pm-supervisor.service")) as f:
            text = f.read().replace("KillMode=process", "KillMode=whatever")
        with open(broken, "w") as f:
            f.write(text)
        refused = subprocess.run(["systemd-analyze", "verify", broken],
                                 capture_output=True, text=True)
        self.assertIn("Failed to parse kill mode", refused.stderr)

    def start_as_the_unit_would(self, name):
        """Starts service `name` with its flag file and a notify socket of
        the test's own; returns once it said READY=1 (Type=notify)."""
        notify_path = os.path.join(self.short, "notify.%s.%d" % (name, len(self.services)))
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(60)
        self.notify_sockets.append(notify)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        process = subprocess.Popen(
            [os.path.join(self.prefix, "libexec/pm", name),
             "--flagfile=%s/%s.flags" % (self.sysconfdir, name)], env=env)
        self.services.append(process)
        message = notify.recv(4096).decode()
        self.assertIn("READY=1\n", message)
        self.assertIn("MAINPID=%d\n" % process.pid, message)
        return process

    def test_3_the_installed_services_run_and_the_installed_pm_drives_them(self):
        for name in ["registry", "log_store", "supervisor"]:
            self.start_as_the_unit_would(name)
        pm = [os.path.join(self.prefix, "bin/pm"), "--runtime_dir", self.runtime_dir]
        ran = subprocess.run(pm + ["run", "--", "sh", "-c", "echo hello from the package"],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(ran.returncode, 0, ran.stderr)
        self.assertEqual(ran.stdout, "hello from the package\n")
        listed = subprocess.run(pm + ["list", "--all"], capture_output=True, text=True,
                                timeout=120)
        self.assertIn("exited", listed.stdout)
        # A stop of the supervisor unit is a handoff (KillSignal=SIGUSR2):
        # a running process outlives it and is re-adopted by the next one.
        started = subprocess.run(pm + ["start", "--name", "outlives", "--", "sleep", "1000"],
                                 capture_output=True, text=True, timeout=120, check=True)
        supervisor = self.services[-1]
        supervisor.send_signal(signal.SIGUSR2)
        self.assertEqual(supervisor.wait(timeout=60), 0)
        self.start_as_the_unit_would("supervisor")
        status = subprocess.run(pm + ["status", "outlives"], capture_output=True, text=True,
                                timeout=120)
        self.assertIn("state:        running", status.stdout, status.stderr)
        stopped = subprocess.run(pm + ["stop", "--grace", "0", started.stdout.strip()],
                                 capture_output=True, text=True, timeout=120)
        self.assertEqual(stopped.returncode, 0, stopped.stderr)


if __name__ == "__main__":
    names = ["install", "pm", "pm_users", "registry", "log_store", "supervisor", "gateway",
             "pm_shim", "readme"]
    ARGS.update({name: os.path.abspath(path) for name, path in zip(names, sys.argv[1:])})
    unittest.main(argv=[sys.argv[0]], verbosity=2)
