"""The Debian package's test: builds pm's .deb with make_deb.sh from the
binaries Bazel built (`make deb` does the same with the opt ones), runs
lintian on it as `make deb` does (no error allowed), checks that it holds
what a system service needs (the binaries, the systemd units, the flag
files as conffiles, the bash completion), and unpacks it into a scratch
root to check that every path its units and flag files name is there.

Run by deb_test.sh (an sh_test) with Debian's /usr/bin/python3; the
arguments are the runfiles paths of make_deb.sh, the binaries and the
README."""

import gzip
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import unittest

ARGS = {}

BINARIES = ["usr/bin/pm", "usr/bin/pm_users", "usr/libexec/pm/gateway",
            "usr/libexec/pm/log_store", "usr/libexec/pm/pm-shim",
            "usr/libexec/pm/registry", "usr/libexec/pm/supervisor"]
UNITS = ["pm-gateway.service", "pm-log-store.service", "pm-registry.service",
         "pm-supervisor.service", "pm.target"]
CONFFILES = ["/etc/pm/gateway.flags", "/etc/pm/log_store.flags",
             "/etc/pm/registry.flags", "/etc/pm/supervisor.flags"]
COMPLETION = "usr/share/bash-completion/completions/pm"
UNITDIR = "lib/systemd/system"


def run(args, **kwargs):
    """Runs args, which must succeed; returns their stdout."""
    return subprocess.run(args, capture_output=True, text=True, check=True,
                          **kwargs).stdout


def pm_version(pm):
    """The version pm says it is ("pm 0.14.0 (commit ...)"): the one
    `make deb` takes from common/version.h."""
    return run([pm, "--version"]).split()[1]


def lintian(deb):
    """Runs `lintian --fail-on error` on deb, as `make deb` does; returns
    the finished process, its report in stdout.

    Lintian unpacks the package it checks and warns when run as root
    ("running with root privileges is not recommended!"), which is how CI
    runs the tests: as root it runs as nobody instead, on a copy of the
    package in a directory of nobody's own, from which it starts (the
    test's tmpdir and runfiles lie below root's home, which nobody cannot
    enter)."""
    command = ["lintian", "--fail-on", "error", "--tag-display-limit", "0"]
    if os.geteuid() != 0:
        home = os.path.join(os.environ["TEST_TMPDIR"], "lintian-home")
        os.makedirs(home, exist_ok=True)
        return subprocess.run(command + [deb], capture_output=True, text=True,
                              env=dict(os.environ, HOME=home, TMPDIR=home))
    nobody = pwd.getpwnam("nobody")
    home = tempfile.mkdtemp(prefix="pm_lintian.", dir="/tmp")
    try:
        copy = os.path.join(home, os.path.basename(deb))
        shutil.copyfile(deb, copy)
        for path in [home, copy]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        setpriv = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                   "--clear-groups", "--"]
        return subprocess.run(setpriv + command + [copy], capture_output=True, text=True,
                              cwd=home, env=dict(os.environ, HOME=home, TMPDIR=home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def contents(deb):
    """`dpkg-deb --contents` as {path: (mode, owner)}, paths without the
    leading "./" or a directory's trailing "/"."""
    listing = {}
    for line in run(["dpkg-deb", "--contents", deb]).splitlines():
        mode, owner, _, _, _, path = line.split(None, 5)
        listing[path.split(" -> ")[0].lstrip(".").strip("/")] = (mode, owner)
    return listing


def unit_settings(path):
    """A unit file's settings as [(key, value)], in order."""
    settings = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith(("#", ";")):
                settings.append(tuple(line.split("=", 1)))
    return settings


class DebianPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = os.environ["TEST_TMPDIR"]
        cls.version = pm_version(ARGS["pm"])
        cls.deb = run(
            [ARGS["make_deb"], os.path.join(tmp, "dist"), cls.version,
             ARGS["pm"], ARGS["pm_users"], ARGS["registry"], ARGS["log_store"],
             ARGS["supervisor"], ARGS["gateway"], ARGS["pm_shim"], ARGS["readme"]],
            env=dict(os.environ, TMPDIR=tmp)).strip()
        cls.contents = contents(cls.deb)
        cls.root = os.path.join(tmp, "root")
        run(["dpkg", "-x", cls.deb, cls.root])

    def test_lintian_finds_no_error(self):
        checked = lintian(self.deb)
        # The warnings and notes stay in the test's log.
        print("lintian:\n" + checked.stdout + checked.stderr, file=sys.stderr)
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
        self.assertNotIn("E: ", checked.stdout)

    def test_lintian_fails_a_package_with_an_error(self):
        # The check has teeth: the same package without its copyright file
        # (an error in Debian's policy) fails it.
        tree = os.path.join(os.environ["TEST_TMPDIR"], "broken")
        run(["dpkg-deb", "--raw-extract", self.deb, tree])
        os.remove(os.path.join(tree, "usr/share/doc/pm/copyright"))
        broken = os.path.join(os.environ["TEST_TMPDIR"], "pm_broken.deb")
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", tree, broken])
        checked = lintian(broken)
        self.assertNotEqual(checked.returncode, 0, checked.stdout)
        self.assertIn("E: pm: no-copyright-file", checked.stdout)

    def test_the_binaries_are_in_usr_bin_and_usr_libexec_pm(self):
        installed = sorted(path for path in self.contents
                           if os.path.dirname(path) in ("usr/bin", "usr/libexec/pm"))
        self.assertEqual(installed, BINARIES)
        for path in BINARIES:
            self.assertEqual(self.contents[path], ("-rwxr-xr-x", "root/root"), path)

    def test_the_systemd_units_are_in_lib_systemd_system(self):
        units = sorted(os.path.basename(path) for path in self.contents
                       if os.path.dirname(path) == UNITDIR)
        self.assertEqual(units, UNITS)
        for unit in UNITS:
            self.assertEqual(self.contents[os.path.join(UNITDIR, unit)],
                             ("-rw-r--r--", "root/root"), unit)

    def test_the_flag_files_are_conffiles(self):
        # dpkg keeps an administrator's changes to a conffile on upgrade.
        conffiles = run(["dpkg-deb", "--info", self.deb, "conffiles"]).split()
        self.assertEqual(sorted(conffiles), CONFFILES)
        for path in CONFFILES:
            self.assertEqual(self.contents[path.lstrip("/")], ("-rw-r--r--", "root/root"), path)

    def test_the_bash_completion_is_installed(self):
        self.assertEqual(self.contents[COMPLETION], ("-rw-r--r--", "root/root"))
        completion = os.path.join(self.root, COMPLETION)
        with open(completion) as f:
            self.assertIn("complete ", f.read())
        run(["bash", "-n", completion])

    def test_the_control_file_names_pm_its_version_and_its_libraries(self):
        fields = dict(line.split(": ", 1) for line in run(
            ["dpkg-deb", "--field", self.deb, "Package", "Version", "Architecture",
             "Depends"]).splitlines())
        self.assertEqual(fields["Package"], "pm")
        self.assertEqual(fields["Version"], self.version)
        self.assertEqual(fields["Architecture"], run(["dpkg", "--print-architecture"]).strip())
        # From dpkg-shlibdeps, which make_deb.sh runs quietly.
        self.assertIn("libc6", fields["Depends"])
        # A native package's changelog names the version it ships.
        with gzip.open(os.path.join(self.root, "usr/share/doc/pm/changelog.gz"), "rt") as f:
            self.assertEqual(f.readline().split()[:2], ["pm", "(%s)" % self.version])

    def test_the_units_name_the_installed_binaries_and_flag_files(self):
        programs = []
        for unit in UNITS:
            settings = unit_settings(os.path.join(self.root, UNITDIR, unit))
            for key, value in settings:
                if key == "Documentation" and value.startswith("file://"):
                    self.assertTrue(os.path.isfile(self.root + value[len("file://"):]),
                                    "%s: %s=%s" % (unit, key, value))
                if key != "ExecStart":
                    continue
                program, *flags = value.split()
                self.assertTrue(os.access(self.root + program, os.X_OK), "%s: %s" % (unit, value))
                programs.append(program)
                flagfiles = [flag.split("=", 1)[1] for flag in flags
                             if flag.startswith("--flagfile=")]
                self.assertEqual(len(flagfiles), 1, "%s: %s" % (unit, value))
                self.assertIn(flagfiles[0], CONFFILES, unit)
                self.check_flag_file(flagfiles[0], unit, dict(settings))
        self.assertEqual(sorted(programs), sorted(
            "/" + path for path in BINARIES if path.startswith("usr/libexec/pm/")
            and not path.endswith("pm-shim")))

    def check_flag_file(self, flagfile, unit, settings):
        """The paths in flagfile are installed (under /usr) or made by the
        unit that reads it (RuntimeDirectory=, StateDirectory=); those under
        /etc/pm (the TLS files, the users) are the administrator's."""
        with open(self.root + flagfile) as f:
            flags = dict(line.strip().split("=", 1) for line in f
                         if line.startswith("--") and "=" in line)
        self.assertEqual(flags["--runtime_dir"], "/run/" + settings["RuntimeDirectory"], unit)
        self.assertEqual(flags["--state_dir"], "/var/lib/" + settings["StateDirectory"], unit)
        for flag, value in flags.items():
            if value.startswith("/usr/"):
                self.assertTrue(os.access(self.root + value, os.X_OK),
                                "%s: %s=%s" % (flagfile, flag, value))
        if flagfile == "/etc/pm/supervisor.flags":
            self.assertEqual(flags["--shim_binary"], "/usr/libexec/pm/pm-shim")


if __name__ == "__main__":
    names = ["make_deb", "pm", "pm_users", "registry", "log_store", "supervisor", "gateway",
             "pm_shim", "readme"]
    ARGS.update({name: os.path.abspath(path) for name, path in zip(names, sys.argv[1:])})
    unittest.main(argv=[sys.argv[0]], verbosity=2)
