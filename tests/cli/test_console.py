"""The console entry point (F13): Ctrl-C while the command line is still being imported,
and a standard output that cannot be written."""

import importlib.abc
import os
import subprocess
import sys

from poppoarc import console


class InterruptedImport(importlib.abc.MetaPathFinder):
    """Ctrl-C arriving while ``poppoarc.cli`` (and all it imports) is being loaded."""

    def find_spec(self, name, path=None, target=None):
        if name == "poppoarc.cli":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_during_the_imports_is_one_line_and_130(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "poppoarc.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    monkeypatch.setattr(sys, "argv", ["poppoarc", "list"])
    assert console.main() == 130
    out, err = capsys.readouterr()
    assert out == "" and err == "poppoarc: interrupted\n"


def test_the_console_script_and_module_use_the_thin_entry():
    setup = (console.__file__.rsplit("/poppoarc/", 1)[0] + "/setup.cfg")
    assert "poppoarc = poppoarc.console:main" in open(setup).read()
    done = subprocess.run([sys.executable, "-m", "poppoarc", "--version"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stdout.startswith("poppoarc ")


def test_a_full_standard_output_is_named_as_such(cli):
    cli.pack()
    for extra in ((), ("--json",)):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "poppoarc", "--root", str(cli.root),
                                   "--store", str(cli.store), "list", *extra], stdout=full,
                                  stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "LANG": "C", "LC_ALL": "C"})
        assert done.returncode == 23, done.stderr
        assert done.stderr.splitlines() == [
            "poppoarc: error: cannot write to standard output: No space left on device (the "
            "file or device it is redirected to)"], done.stderr
